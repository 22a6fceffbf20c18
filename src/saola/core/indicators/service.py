"""Indicator catalog and plan targets (to be completed)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from saola.packs.manager import Registry


def sync_declared(session: Session, *, registry: Registry) -> int:
    """Create or update catalog rows for every indicator a pack declares."""
    return 0
