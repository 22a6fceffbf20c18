"""Dead letters: messages a door received but could not accept, kept with the reason so nothing is lost silently."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from saola.db.base import Base, IdMixin, NodeMixin
from saola.db.types import JSONType, UTCDateTime, utcnow


class DeadLetter(IdMixin, NodeMixin, Base):
    """One refused message: where it came from, what it said (cut to a bounded size) and why it was refused."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        Index("ix_dead_letters_received", "received_at"),
        Index("ix_dead_letters_source", "source_id", "received_at"),
    )

    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    channel: Mapped[str] = mapped_column(String(16))  # mqtt, http ...
    topic: Mapped[str] = mapped_column(String(255), default="")
    source_name: Mapped[str | None] = mapped_column(String(80))
    # The source the message claims to come from (by its topic), when such a source exists; `authenticated`
    # tells whether its key proved it.
    source_id: Mapped[int | None] = mapped_column(Integer)
    authenticated: Mapped[bool] = mapped_column(Boolean, default=False)
    payload: Mapped[str] = mapped_column(Text, default="")
    payload_bytes: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(String(500))
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
