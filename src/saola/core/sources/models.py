"""The sources table. Integer ids keep observation rows narrow."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from saola.db.base import Base, NodeMixin, TimestampMixin
from saola.db.types import JSONType, UTCDateTime


class Source(NodeMixin, TimestampMixin, Base):
    """A registered source system. Only a hash of its API key is stored."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    description: Mapped[str] = mapped_column(String(500), default="")
    scope_code: Mapped[str] = mapped_column(ForeignKey("units.code"))
    allowed_writes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    key_prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    rate_limit_per_minute: Mapped[int] = mapped_column(Integer, default=600)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
