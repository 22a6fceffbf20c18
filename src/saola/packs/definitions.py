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


@dataclass(frozen=True)
class FeatureQuery:
    """One items request of the OGC API – Features door, already checked: box in CRS84, page, property filters."""

    limit: int
    offset: int = 0
    bbox: tuple[float, float, float, float] | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FeaturePage:
    """A provider's answer: how many features matched, and this page as GeoJSON Feature dicts."""

    number_matched: int
    features: list[dict[str, Any]]


@dataclass(frozen=True)
class FeatureCollectionProvider:
    """A feature collection served by the OGC API – Features door (pygeoapi-style provider).

    The callables get an open read-only SQLAlchemy session. `items` answers a FeatureQuery: a zero-size bbox
    is a point and must intersect the real geometry, not its envelope. `item` returns one Feature or None.
    `extent` returns the CRS84 bounding box or None. `queryables` names the properties that may be used as
    filters with their JSON type ("string", "integer" or "number"). A provider raises the kernel's
    ValidationFailed for a bad filter value; the door answers 400.
    """

    id: str
    title: str
    description: str
    items: Callable[[Any, FeatureQuery], FeaturePage]
    item: Callable[[Any, str], dict[str, Any] | None]
    extent: Callable[[Any], tuple[float, float, float, float] | None]
    queryables: dict[str, str] = field(default_factory=dict)
    keywords: tuple[str, ...] = ()
    default_limit: int = 10
    max_limit: int = 10_000


@dataclass(frozen=True)
class CaseTypeDefinition:
    """A kind of case (incident, citizen report, directive, task ...): its status flow and SLA policy, as data.

    `transitions` maps each status to the statuses it may move to; a status absent from the keys has no way out.
    `resolved_statuses` count as handled (they stop the SLA clock and decide on-time); `closed_statuses` end
    the case. `sla_minutes` and `first_response_minutes` give the time to resolve and to first respond per
    priority ("*" for any priority not listed); reaching a status in `response_statuses` is the first response.
    `reason_required` lists statuses a case only enters with a reason; `checklist_gate` lists statuses a case
    only enters once its required SOP steps are ticked. Overdue open cases escalate one level at each offset
    of `escalation_after_minutes` past the deadline; open cases get a reminder at each of
    `remind_before_minutes` before it.
    """

    type: str
    name_vi: str
    name_en: str
    prefix: str
    initial_status: str
    transitions: dict[str, tuple[str, ...]]
    status_labels: dict[str, str]
    resolved_statuses: tuple[str, ...] = ()
    closed_statuses: tuple[str, ...] = ()
    response_statuses: tuple[str, ...] = ()
    sla_minutes: dict[str, int] = field(default_factory=dict)
    first_response_minutes: dict[str, int] = field(default_factory=dict)
    reason_required: tuple[str, ...] = ()
    checklist_gate: tuple[str, ...] = ()
    escalation_after_minutes: tuple[int, ...] = (0,)
    remind_before_minutes: tuple[int, ...] = ()
    categories: dict[str, str] = field(default_factory=dict)
