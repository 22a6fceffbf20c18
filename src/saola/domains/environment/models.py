"""Tables of the environment pack: each station's current indices and flags, and the data-quality log.

Readings and the indices themselves live in the kernel's observations (written through its ingest); these
tables keep what a number cannot carry: the dominant pollutant, the sub-indices, stuck sensors, and when and
why readings were flagged.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from saola.db.base import Base
from saola.db.types import JSONType, UTCDateTime, utcnow


class StationState(Base):
    """The newest indices of a station, upserted by the AQI engine as readings arrive."""

    __tablename__ = "env_station_state"

    entity_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("entities.id", ondelete="CASCADE"),
                                                 primary_key=True)
    aqi_vn: Mapped[int | None] = mapped_column(Integer)
    aqi_vn_level: Mapped[int | None] = mapped_column(Integer)
    dominant: Mapped[str | None] = mapped_column(String(16))
    aqi_us: Mapped[int | None] = mapped_column(Integer)
    aqi_vn_day: Mapped[int | None] = mapped_column(Integer)
    aqi_us_day: Mapped[int | None] = mapped_column(Integer)
    aqi_ts: Mapped[datetime | None] = mapped_column(UTCDateTime)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # sub-indices, concentrations, day
    stuck: Mapped[list[str]] = mapped_column(JSONType, default=list)  # indicator codes flat-lining now
    exceedances: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class QualityFlag(Base):
    """A stretch of readings flagged by the pack: a stuck sensor, a gap, or a value out of physical range."""

    __tablename__ = "env_quality_flags"
    __table_args__ = (Index("ix_env_quality_flags_entity", "entity_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entity_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("entities.id", ondelete="CASCADE"))
    indicator: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(12))  # stuck | gap | range
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    value: Mapped[float | None] = mapped_column(Float)
