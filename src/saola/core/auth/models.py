"""The users table."""

from __future__ import annotations

import uuid

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from saola.db.base import Base, IdMixin, NodeMixin, TimestampMixin


class User(IdMixin, NodeMixin, TimestampMixin, Base):
    """A person who logs in: a role and a scope (the unit subtree they may see and act in)."""

    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(80), unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    scope_code: Mapped[str] = mapped_column(ForeignKey("units.code"))
    agency_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agencies.id"))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)
