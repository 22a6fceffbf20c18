"""What the overview API answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

Status = Literal["good", "warning", "critical", "none"]


class TrendPoint(BaseModel):
    """One bucket of a KPI's trend line."""

    ts: datetime
    value: float


class Kpi(BaseModel):
    """One indicator on a tile: its value for the unit, how it stands against target or thresholds, its trend."""

    indicator: str
    name_vi: str
    name_en: str
    unit: str
    direction: str
    periodicity: str
    aggregation: str
    value: float | None
    ts: datetime | None
    age_seconds: float | None
    stale: bool
    subjects: int
    source: Literal["unit", "subtree", "none"]
    target: float | None = None
    target_period: str | None = None
    progress: float | None = None
    thresholds: dict[str, Any] = {}
    status: Status = "none"
    trend: list[TrendPoint] = []


class PanelRead(BaseModel):
    """A wallboard tile contributed by a pack, with its KPIs."""

    key: str
    title_vi: str
    title_en: str
    domain: str
    kind: str
    order: int
    status: Status
    age_seconds: float | None
    kpis: list[Kpi]


class LayerRead(BaseModel):
    """A map layer contributed by a pack (or the kernel)."""

    key: str
    title_vi: str
    title_en: str
    url: str
    min_zoom: int
    style: dict[str, Any]


class UnitBrief(BaseModel):
    """A unit as the wallboard shows it."""

    code: str
    name: str
    name_en: str
    level: str
    parent_code: str | None


class Overview(BaseModel):
    """Everything the wallboard needs for one unit, in one answer."""

    unit: UnitBrief
    ancestors: list[UnitBrief]
    children: list[UnitBrief]
    generated_at: datetime
    panels: list[PanelRead]
    layers: list[LayerRead]
