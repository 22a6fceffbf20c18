"""Narrow time-series tables: raw observations, hourly and daily rollups, and the latest value.

Rows carry small integer keys (indicator_id, subject_id) so that a reading costs a few dozen bytes; the
natural key (indicator, subject, time) makes re-delivery harmless.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from saola.db.base import Base
from saola.db.types import UTCDateTime


class Subject(Base):
    """What an observation is about: a unit, or an entity (which lies in a unit). Integer id for narrow rows."""

    __tablename__ = "subjects"
    __table_args__ = (UniqueConstraint("key"), Index("ix_subjects_unit", "unit_code"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(48))  # 'u:68' or 'e:<uuid>'
    kind: Mapped[str] = mapped_column(String(8))  # unit | entity
    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"))
    entity_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("entities.id"))


class Observation(Base):
    """One value of one indicator for one subject at one time."""

    __tablename__ = "observations"

    indicator_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    quality: Mapped[int] = mapped_column(SmallInteger, default=0)  # 0 good, 1 suspect, 2 bad
    source_id: Mapped[int | None] = mapped_column(Integer)


# Rollup and latest rows are updated by every batch: leave room in each page so PostgreSQL can update them in
# place (HOT updates) instead of writing new index entries each time.
_UPDATED_IN_PLACE = {"postgresql_with": {"fillfactor": 70}}


class _Rollup:
    indicator_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    sum: Mapped[float] = mapped_column(Float)
    min: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)
    last_ts: Mapped[datetime] = mapped_column(UTCDateTime)
    last_value: Mapped[float] = mapped_column(Float)


class HourlyRollup(_Rollup, Base):
    """Count, sum, min, max and last of good-quality readings per indicator, subject and UTC hour."""

    __tablename__ = "observation_rollups_hourly"
    __table_args__ = (_UPDATED_IN_PLACE,)


class DailyRollup(_Rollup, Base):
    """The same per local day (Asia/Ho_Chi_Minh, UTC+7): a day in Vietnam, not in Greenwich."""

    __tablename__ = "observation_rollups_daily"
    __table_args__ = (_UPDATED_IN_PLACE,)


class LatestObservation(Base):
    """The newest reading per indicator and subject, kept on ingest for the wallboard."""

    __tablename__ = "observation_latest"
    __table_args__ = (Index("ix_observation_latest_subject", "subject_id"), _UPDATED_IN_PLACE)

    indicator_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    value: Mapped[float] = mapped_column(Float)
    quality: Mapped[int] = mapped_column(SmallInteger, default=0)
    source_id: Mapped[int | None] = mapped_column(Integer)


# Rollup deltas waiting to be folded (PostgreSQL; see rollups.py): one row per ingest transaction, holding one delta
# per (indicator, subject, UTC hour) of its new readings as parallel arrays (migration 0302). n, total, lo, hi and
# last_* cover the bucket's good readings (n = 0: none, and the others are 0); top_* is its newest reading of any
# quality, for the latest-value table (top_source 0: no source). Times are Unix microseconds. No key and no index:
# rows are only appended by ingest and taken all at once by a fold.
rollup_queue = Table(
    "observation_rollup_queue", Base.metadata,
    *(Column(name, ARRAY(kind), nullable=False) for name, kind in (
        ("indicator_id", Integer), ("subject_id", Integer), ("hour_us", BigInteger), ("n", Integer),
        ("total", Float), ("lo", Float), ("hi", Float), ("last_us", BigInteger), ("last_value", Float),
        ("top_us", BigInteger), ("top_value", Float), ("top_quality", SmallInteger), ("top_source", Integer))),
)
