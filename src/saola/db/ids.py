"""Globally unique, time-sortable identifiers (UUIDv7)."""

from __future__ import annotations

import uuid

import uuid_utils


def new_id() -> uuid.UUID:
    """A new UUIDv7: unique across nodes and sortable by creation time."""
    return uuid.UUID(int=uuid_utils.uuid7().int)
