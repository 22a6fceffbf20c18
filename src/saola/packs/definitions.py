"""What packs hand to the kernel through hooks: plain frozen data, never subclasses of kernel classes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Aggregation = Literal["avg", "sum", "min", "max", "last"]
Direction = Literal["higher_is_better", "lower_is_better", "neutral"]
Periodicity = Literal["realtime", "hour", "day", "month", "quarter", "year"]


@dataclass(frozen=True)
class PackInfo:
    """Who a pack is: slug (unique), version, display names, and the packs it needs."""

    slug: str
    version: str
    name_vi: str
    name_en: str
    depends: tuple[str, ...] = ()


@dataclass(frozen=True)
class IndicatorDefinition:
    """A measured quantity a pack declares; the kernel keeps the catalog row in step with it."""

    code: str
    name_vi: str
    name_en: str
    unit: str
    domain: str
    aggregation: Aggregation = "avg"
    direction: Direction = "neutral"
    periodicity: Periodicity = "realtime"
    subject_kind: Literal["unit", "entity", "any"] = "any"
    min_value: float | None = None
    max_value: float | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class EntityTypeDefinition:
    """A kind of asset or feature (station, camera, parcel ...) and the attributes it may carry."""

    type: str
    name_vi: str
    name_en: str
    domain: str
    geometry: Literal["Point", "LineString", "Polygon", "MultiPolygon", "any", "none"] = "any"
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EventTypeDefinition:
    """A kind of event a pack emits (camera intrusion, dossier late ...)."""

    type: str
    name_vi: str
    name_en: str
    domain: str
    default_severity: Literal["info", "low", "medium", "high", "critical"] = "info"


@dataclass(frozen=True)
class DashboardPanel:
    """A wallboard tile: which indicator it shows and how."""

    key: str
    title_vi: str
    title_en: str
    domain: str
    indicator_codes: tuple[str, ...]
    kind: Literal["kpi", "trend", "table", "map"] = "kpi"
    order: int = 100


@dataclass(frozen=True)
class MapLayer:
    """A layer on the map: a GeoJSON URL served by the pack and how to draw it."""

    key: str
    title_vi: str
    title_en: str
    url: str
    min_zoom: int = 0
    style: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleDefinition:
    """A rule a pack proposes by default; stored as data and editable once installed."""

    key: str
    name_vi: str
    name_en: str
    kind: str
    params: dict[str, Any]
    severity: Literal["low", "medium", "high", "critical"] = "medium"


@dataclass(frozen=True)
class Simulator:
    """A demo source: called every `interval_seconds` with a DemoContext, writes through kernel services."""

    name: str
    interval_seconds: float
    tick: Callable[[Any], None]


@dataclass(frozen=True)
class ScheduledJob:
    """Periodic work a pack needs (recomputations, pulls from a source system)."""

    name: str
    interval_seconds: float
    run: Callable[[Any], None]
