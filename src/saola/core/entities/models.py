"""The entities table: typed assets and features with GeoJSON geometry."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from saola.db.base import Base, IdMixin, NodeMixin, TimestampMixin
from saola.db.types import JSONType


class Entity(IdMixin, NodeMixin, TimestampMixin, Base):
    """An asset or feature (station, camera, parcel ...) inside a unit.

    min/max lon/lat hold the geometry's bounding box so map queries use a plain index on any database.
    """

    __tablename__ = "entities"
    __table_args__ = (
        UniqueConstraint("type", "external_id"),
        Index("ix_entities_unit_type", "unit_code", "type"),
        Index("ix_entities_bbox", "min_lon", "min_lat"),
    )

    type: Mapped[str] = mapped_column(String(60), index=True)
    name: Mapped[str] = mapped_column(String(255))
    search_name: Mapped[str] = mapped_column(String(255), default="", index=True)
    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"))
    external_id: Mapped[str | None] = mapped_column(String(120))
    geometry: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    min_lon: Mapped[float | None] = mapped_column(Float)
    min_lat: Mapped[float | None] = mapped_column(Float)
    max_lon: Mapped[float | None] = mapped_column(Float)
    max_lat: Mapped[float | None] = mapped_column(Float)
    source_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("sources.id"))
    agency_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agencies.id"))
