"""Tables of the land pack: parcels (public), their holders (personal data, kept apart) and a change counter.

Geometry is stored portably as WKB (EPSG:4326, always a MultiPolygon) with its bounding box in four float
columns, so SQLite and PostgreSQL share one schema. On PostgreSQL with PostGIS available, the land migration
(and the pack's startup hook) adds a generated column `geom geometry(MultiPolygon, 4326)` computed from the
WKB, with a GiST index; see saola.domains.land.spatial.ensure_postgis.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, Float, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from saola.db.base import Base, IdMixin, NodeMixin, TimestampMixin
from saola.db.types import JSONType, UTCDateTime, utcnow


class LandParcel(IdMixin, NodeMixin, TimestampMixin, Base):
    """A cadastral parcel (thửa đất): commune, map sheet (số tờ), parcel number (số thửa), uses and planning.

    land_use is a list of {"code", "area_m2"}; primary_use is the code with the largest area, kept in its own
    column for filters. Nothing here is personal data: holders live in land_parcel_private.
    """

    __tablename__ = "land_parcels"
    __table_args__ = (
        UniqueConstraint("unit_code", "sheet_no", "parcel_no"),
        Index("ix_land_parcels_primary_use", "primary_use"),
    )

    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"))
    sheet_no: Mapped[int] = mapped_column(Integer)
    parcel_no: Mapped[int] = mapped_column(Integer)
    area_m2: Mapped[float] = mapped_column(Float)
    land_use: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    primary_use: Mapped[str] = mapped_column(String(8))
    allowed_use: Mapped[str | None] = mapped_column(String(8))
    building_density_pct: Mapped[float | None] = mapped_column(Float)
    floors_min: Mapped[int | None] = mapped_column(Integer)
    floors_max: Mapped[int | None] = mapped_column(Integer)
    land_use_coefficient: Mapped[float | None] = mapped_column(Float)
    setback_m: Mapped[float | None] = mapped_column(Float)
    geom_wkb: Mapped[bytes] = mapped_column(LargeBinary)
    min_lon: Mapped[float] = mapped_column(Float)
    min_lat: Mapped[float] = mapped_column(Float)
    max_lon: Mapped[float] = mapped_column(Float)
    max_lat: Mapped[float] = mapped_column(Float)
    label_lon: Mapped[float] = mapped_column(Float)  # a point inside the parcel, for labels and answers
    label_lat: Mapped[float] = mapped_column(Float)


class LandParcelPrivate(TimestampMixin, Base):
    """Holder and certificate of a parcel: personal data, read only with 'land:private:read' inside scope."""

    __tablename__ = "land_parcel_private"

    parcel_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("land_parcels.id", ondelete="CASCADE"), primary_key=True
    )
    holder_name: Mapped[str | None] = mapped_column(String(255))
    certificate_no: Mapped[str | None] = mapped_column(String(60))
    certificate_issued_on: Mapped[date | None] = mapped_column(Date)


class LandVersion(Base):
    """A counter bumped by every change to parcels, so in-process spatial indexes know when to rebuild."""

    __tablename__ = "land_versions"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
