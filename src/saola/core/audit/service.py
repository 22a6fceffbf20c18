"""Write and read the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from saola.core.audit.models import AuditEntry
from saola.core.auth.context import Actor
from saola.core.units.service import units_in_scope


def audit(
    session: Session, *, actor: Actor, action: str, target_type: str, target_id: str,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction (it commits or rolls back with the change)."""
    entry = AuditEntry(actor_kind=actor.kind, actor_name=actor.name, actor_scope=actor.scope_code,
                       action=action, target_type=target_type, target_id=target_id, detail=detail or {})
    session.add(entry)
    return entry


def list_audit(
    session: Session, *, actor: Actor, action: str | None = None, actor_name: str | None = None,
    since: datetime | None = None, until: datetime | None = None, limit: int = 100, offset: int = 0,
) -> tuple[int, list[AuditEntry]]:
    """Entries made by actors whose scope lies inside the caller's scope, newest first."""
    actor.require("audit:read")
    stmt = select(AuditEntry).where(AuditEntry.actor_scope.in_(units_in_scope(actor)))
    if action:
        stmt = stmt.where(AuditEntry.action == action)
    if actor_name:
        stmt = stmt.where(AuditEntry.actor_name == actor_name)
    if since:
        stmt = stmt.where(AuditEntry.at >= since)
    if until:
        stmt = stmt.where(AuditEntry.at < until)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    items = session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit).offset(offset))
    return total, list(items)
