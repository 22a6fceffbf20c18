"""Response models of the ingest doors and of dead letters."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class DeadLetterRead(BaseModel):
    """A refused message with its reason; payload is cut to a bounded size (payload_bytes tells the original)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    received_at: datetime
    channel: str
    topic: str
    source_name: str | None
    source_id: int | None
    authenticated: bool
    payload: str
    payload_bytes: int
    reason: str
    errors: list[dict[str, Any]]


class DeadLetterPage(BaseModel):
    """A page of dead letters, newest first, and the total that matched."""

    total: int
    items: list[DeadLetterRead]
