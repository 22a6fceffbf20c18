"""Declarative base and the mixins every kernel table shares."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import MetaData, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from saola.db.ids import new_id
from saola.db.types import UTCDateTime, utcnow

# Stable constraint names so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base class of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class IdMixin:
    """A UUIDv7 primary key."""

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)


class TimestampMixin:
    """Creation and update times, in UTC."""

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)


# One process serves one node; make_engine sets this from Settings.node_id.
CURRENT_NODE = {"id": "local"}


def current_node() -> str:
    """The id of the node this process serves."""
    return CURRENT_NODE["id"]


class NodeMixin:
    """The deployment node a record came from, so federation can tell local from remote rows."""

    origin_node: Mapped[str] = mapped_column(String(64), default=current_node, nullable=False)
