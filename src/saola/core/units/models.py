"""Tables of the unit tree and agencies."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from saola.db.base import Base, IdMixin, NodeMixin, TimestampMixin


class Unit(TimestampMixin, Base):
    """An administrative unit with its official code; path is the chain of codes from the nation down."""

    __tablename__ = "units"
    # Every subtree check is `path LIKE 'VN.68.%'`; PostgreSQL uses a btree for that only with text_pattern_ops
    # (the unique index follows the database's collation).
    __table_args__ = (Index("ix_units_path_pattern", "path", postgresql_ops={"path": "text_pattern_ops"}),)

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200), default="")
    level: Mapped[str] = mapped_column(String(16), index=True)  # nation | province | commune
    division_type: Mapped[str] = mapped_column(String(40), default="")
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("units.code"), index=True)
    path: Mapped[str] = mapped_column(String(64), unique=True)
    search_name: Mapped[str] = mapped_column(String(200), index=True)
    codename: Mapped[str] = mapped_column(String(120), default="")


class Agency(IdMixin, NodeMixin, TimestampMixin, Base):
    """An office that owns work inside a unit (a department, the police, a commune People's Committee)."""

    __tablename__ = "agencies"
    __table_args__ = (
        UniqueConstraint("unit_code", "code"),
        Index("ix_agencies_unit_code", "unit_code"),
    )

    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"))
    code: Mapped[str] = mapped_column(String(60))
    name: Mapped[str] = mapped_column(String(255))
    name_en: Mapped[str] = mapped_column(String(255), default="")
    kind: Mapped[str] = mapped_column(String(40), default="department")
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agencies.id"))
    search_name: Mapped[str] = mapped_column(String(255), default="")
