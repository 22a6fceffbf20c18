"""The events table: append-only (database triggers refuse UPDATE and DELETE)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from saola.db.base import Base, IdMixin, NodeMixin
from saola.db.types import JSONType, UTCDateTime, utcnow


class Event(IdMixin, NodeMixin, Base):
    """Something that happened: typed, with severity, time and place."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("source_id", "external_id"),
        Index("ix_events_unit_time", "unit_code", "occurred_at"),
        Index("ix_events_type_time", "type", "occurred_at"),
        Index("ix_events_time", "occurred_at"),  # the newest-first listing of a whole scope
    )

    type: Mapped[str] = mapped_column(String(60))
    severity: Mapped[str] = mapped_column(String(16), default="info")
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"))
    entity_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("entities.id"), index=True)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    title: Mapped[str] = mapped_column(String(300), default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    source_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("sources.id"))
    external_id: Mapped[str | None] = mapped_column(String(120))
