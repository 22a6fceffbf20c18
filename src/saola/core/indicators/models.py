"""The indicator catalog and plan targets."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from saola.db.base import Base, IdMixin, NodeMixin, TimestampMixin
from saola.db.types import JSONType, UTCDateTime


class Indicator(TimestampMixin, Base):
    """A measured quantity. The small integer id keeps observation rows narrow; code is the public key."""

    __tablename__ = "indicators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(80), unique=True)
    name_vi: Mapped[str] = mapped_column(String(255))
    name_en: Mapped[str] = mapped_column(String(255), default="")
    search_name: Mapped[str] = mapped_column(String(255), default="")
    unit: Mapped[str] = mapped_column(String(40), default="")
    domain: Mapped[str] = mapped_column(String(40), index=True)
    aggregation: Mapped[str] = mapped_column(String(8), default="avg")
    direction: Mapped[str] = mapped_column(String(20), default="neutral")
    periodicity: Mapped[str] = mapped_column(String(10), default="realtime")
    subject_kind: Mapped[str] = mapped_column(String(8), default="any")
    min_value: Mapped[float | None] = mapped_column(Float)
    max_value: Mapped[float | None] = mapped_column(Float)
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    description: Mapped[str] = mapped_column(String(1000), default="")
    declared_by: Mapped[str | None] = mapped_column(String(40))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class IndicatorTarget(IdMixin, NodeMixin, TimestampMixin, Base):
    """A plan target (chỉ tiêu kế hoạch) of an indicator for one unit and one period."""

    __tablename__ = "indicator_targets"
    __table_args__ = (
        UniqueConstraint("indicator_id", "unit_code", "period"),
        Index("ix_indicator_targets_unit", "unit_code", "period_start"),
    )

    indicator_id: Mapped[int] = mapped_column(ForeignKey("indicators.id"))
    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"))
    period: Mapped[str] = mapped_column(String(10))  # 2026, 2026-Q4, 2026-11
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    target_value: Mapped[float] = mapped_column(Float)
    note: Mapped[str] = mapped_column(String(500), default="")
    created_by: Mapped[uuid.UUID | None] = mapped_column()
