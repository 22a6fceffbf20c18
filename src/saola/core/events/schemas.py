"""Request and response models of events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from saola.core.entities.schemas import TYPE_PATTERN, UNIT_PATTERN, JsonObject, SafeStr

Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")
MAX_BATCH = 10_000


class EventCreate(BaseModel):
    """One event to record: type, time (with a time zone), place, and optionally severity, entity and data."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: str = Field(min_length=1, max_length=60, pattern=TYPE_PATTERN, description="A type a pack declares")
    occurred_at: AwareDatetime = Field(description="When it happened; not before 1970, at most a day ahead")
    unit_code: str = Field(min_length=1, max_length=16, pattern=UNIT_PATTERN)
    severity: Severity | None = Field(default=None, description="Default: the type's default severity")
    entity_id: uuid.UUID | None = None
    lon: float | None = Field(default=None, ge=-180, le=180)
    lat: float | None = Field(default=None, ge=-90, le=90)
    title: SafeStr = Field(default="", max_length=300)
    data: JsonObject = Field(default_factory=dict)
    external_id: SafeStr | None = Field(default=None, min_length=1, max_length=120,
                                        description="The sender's id; re-sending it records nothing new")


class EventBatch(BaseModel):
    """Events to record together."""

    model_config = ConfigDict(extra="forbid")

    items: list[EventCreate] = Field(min_length=1, max_length=MAX_BATCH)


class EventBatchResult(BaseModel):
    """What a batch did; ids follow the items' order (a duplicate gets the id recorded the first time)."""

    accepted: int
    duplicates: int
    ids: list[uuid.UUID]


class EventRead(BaseModel):
    """A recorded event."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    type: str
    severity: Severity
    occurred_at: datetime
    received_at: datetime
    unit_code: str
    entity_id: uuid.UUID | None
    lon: float | None
    lat: float | None
    title: str
    data: dict[str, Any]
    source_id: int | None
    external_id: str | None


class EventPage(BaseModel):
    """A page of events, newest first, and the total that matched."""

    total: int
    items: list[EventRead]
