"""The wallboard's overview for one unit, read from latest values, hourly/daily rollups and plan targets.

Nothing here scans raw observations: a KPI's value comes from observation_latest (one row per indicator and
subject), its trend from observation_rollups_hourly or _daily (primary key: indicator, subject, bucket), its target
from indicator_targets (index on unit and period start). tests/dashboards checks the query plans say so.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from saola.core.auth.context import Actor
from saola.core.cases.models import Case
from saola.core.cases.service import CaseFilter, filtered
from saola.core.dashboards.schemas import Kpi, LayerRead, Overview, PanelRead, Status, TrendPoint, UnitBrief
from saola.core.entities.models import Entity
from saola.core.errors import FieldError, NotFound, ValidationFailed
from saola.core.indicators.models import Indicator, IndicatorTarget
from saola.core.observations.models import DailyRollup, HourlyRollup, LatestObservation, Subject
from saola.core.units.models import Unit
from saola.db.types import utcnow
from saola.packs.definitions import DashboardPanel, MapLayer

VN_OFFSET = timedelta(hours=7)  # Vietnam has no daylight saving: daily rollups are local days

# A value older than this (by the indicator's periodicity) is shown as stale on the wallboard.
STALE_AFTER: dict[str, timedelta] = {
    "realtime": timedelta(hours=2), "hour": timedelta(hours=3), "day": timedelta(days=2),
    "month": timedelta(days=62), "quarter": timedelta(days=190), "year": timedelta(days=400),
}
# Trend line: which rollup and how far back, by periodicity; monthly figures sit in daily buckets.
TREND_WINDOW: dict[str, tuple[str, timedelta, int]] = {
    "realtime": ("hour", timedelta(hours=24), 24), "hour": ("hour", timedelta(hours=24), 24),
    "day": ("day", timedelta(days=30), 30), "month": ("day", timedelta(days=400), 13),
    "quarter": ("day", timedelta(days=800), 8), "year": ("day", timedelta(days=3660), 10),
}
_RANK: dict[str, int] = {"none": 0, "good": 1, "warning": 2, "critical": 3}
MAX_INCIDENTS = 500


@dataclass
class _Agg:
    """Latest (or bucket) aggregates of one indicator over the subjects asked for."""

    count: int
    total: float
    low: float
    high: float
    last: float
    ts: datetime | None = None
    rows: int = 1


def _subtree(path: str, column: ColumnElement[str]) -> ColumnElement[bool]:
    return or_(column == path, column.startswith(path + ".", autoescape=True))


def _brief(unit: Any) -> UnitBrief:
    return UnitBrief(code=unit.code, name=unit.name, name_en=unit.name_en or "", level=unit.level,
                     parent_code=unit.parent_code)


def resolve_unit(session: Session, *, actor: Actor, code: str | None) -> Unit:
    """The unit asked for (default: the caller's own), or 404 when it does not exist or lies outside the scope."""
    wanted = code if code is not None else actor.scope_code
    unit = session.get(Unit, wanted) if wanted.isascii() and wanted.isalnum() and len(wanted) <= 16 else None
    if unit is None or not actor.sees_path(unit.path):
        raise NotFound(f"unit {wanted!r} not found")
    return unit


def _combine(agg: str, a: _Agg) -> float:
    """One value from the aggregates, following the indicator's aggregation ('last': the newest subject's value)."""
    if agg == "avg":
        return a.total / a.count if a.count else 0.0
    if agg == "min":
        return a.low
    if agg == "max":
        return a.high
    if agg == "sum":
        return a.total
    return a.last


def status_of(ind: Indicator, value: float | None, target: float | None) -> Status:
    """good / warning / critical against the plan target when there is one, else against the thresholds."""
    if value is None:
        return "none"
    if target is not None and ind.direction != "neutral":
        if ind.direction == "higher_is_better":
            ratio = value / target if target else (1.0 if value >= 0 else 0.0)
            return "good" if ratio >= 1 else "warning" if ratio >= 0.9 else "critical"
        return "good" if value <= target else "warning" if value <= target * 1.1 else "critical"
    levels = {k: v for k, v in (ind.thresholds or {}).items() if isinstance(v, int | float)}
    warn, crit = levels.get("warning"), levels.get("critical")
    if warn is None and crit is None:
        return "none"
    if ind.direction == "higher_is_better":
        if crit is not None and value <= crit:
            return "critical"
        return "warning" if warn is not None and value <= warn else "good"
    if crit is not None and value >= crit:
        return "critical"
    return "warning" if warn is not None and value >= warn else "good"


def _subjects_of(session: Session, root: Unit) -> tuple[int | None, ColumnElement[bool], Any]:
    """The unit's own subject id, and the subtree's subjects as a subquery.

    A subquery, not a list of ids: PostgreSQL hashes it once, where `subject_id = ANY(<hundreds of ids>)` is a
    linear search for every rollup row (measured: 40 ms instead of a few for 400 stations over 24 hours).
    """
    own = session.scalar(select(Subject.id).where(Subject.key == f"u:{root.code}"))
    sub = (select(Subject.id).join(Unit, Unit.code == Subject.unit_code)
           .where(_subtree(root.path, Unit.path)).scalar_subquery())
    return own, LatestObservation.subject_id.in_(sub), sub


def _latest(session: Session, ids: Sequence[int], subjects: ColumnElement[bool],
            own: int | None, last_wanted: set[int]) -> tuple[dict[int, _Agg], dict[int, _Agg]]:
    """Latest-value aggregates per indicator over the subtree, and the unit's own latest value.

    One hash aggregate; the newest subject's value is looked up only for 'last' indicators that need it.
    """
    if not ids:
        return {}, {}
    lo = LatestObservation
    is_own = lo.subject_id == own if own is not None else literal(False)
    stmt = (select(lo.indicator_id, func.count(), func.sum(lo.value), func.min(lo.value), func.max(lo.value),
                   func.max(lo.ts), func.max(case((is_own, lo.value))), func.max(case((is_own, lo.ts))))
            .where(lo.indicator_id.in_(ids), subjects).group_by(lo.indicator_id))
    sub: dict[int, _Agg] = {}
    mine: dict[int, _Agg] = {}
    for iid, n, total, low, high, newest, own_value, own_ts in session.execute(stmt):
        sub[iid] = _Agg(int(n), float(total or 0), float(low), float(high), float(high), newest)
        if own_ts is not None:
            v = float(own_value)
            mine[iid] = _Agg(1, v, v, v, v, own_ts)
    need_last = [i for i in last_wanted if i in sub and i not in mine and sub[i].count > 1]
    if need_last:
        ranked = select(lo.indicator_id, lo.value, func.row_number().over(
            partition_by=lo.indicator_id, order_by=(lo.ts.desc(), lo.subject_id.desc())).label("rn")).where(
            lo.indicator_id.in_(need_last), subjects).subquery()
        for iid, value, _ in session.execute(select(ranked).where(ranked.c.rn == 1)):
            sub[iid].last = float(value)
    return sub, mine


def _trend_rows(session: Session, table: Any, windows: Sequence[tuple[Sequence[int], datetime]], subjects: Any,
                own: int | None) -> dict[tuple[int, bool], list[tuple[datetime, _Agg]]]:
    """Rollup aggregates per indicator and bucket over the subtree, the unit's own subject apart, in one query.

    For 'last' over several subjects a bucket shows the mean of their last values (one subject: its last value).
    """
    by_since: dict[datetime, list[int]] = {}
    for ids, since in windows:
        by_since.setdefault(since, []).extend(ids)  # periodicities sharing a window share one condition
    windows = [(ids, since) for since, ids in by_since.items() if ids]
    if not windows:
        return {}
    mine = (table.subject_id == own) if own is not None else literal(False)
    stmt = (select(table.indicator_id, table.bucket, mine.label("own"), func.count(), func.sum(table.count),
                   func.sum(table.sum), func.min(table.min), func.max(table.max), func.sum(table.last_value))
            .where(or_(*(and_(table.indicator_id.in_(ids), table.bucket >= since) for ids, since in windows)),
                   table.subject_id.in_(subjects))
            .group_by(table.indicator_id, table.bucket, *([mine] if own is not None else [])))
    out: dict[tuple[int, bool], list[tuple[datetime, _Agg]]] = {}
    for iid, bucket, is_own, rows, n, total, low, high, lasts in session.execute(stmt):
        out.setdefault((iid, bool(is_own)), []).append(
            (bucket, _Agg(int(n or 0), float(total or 0), float(low), float(high), float(lasts or 0), None, rows)))
    return out


# Rollup buckets before the current one rarely change (only late readings touch them), so the trend lines keep
# those for a few minutes per unit and indicator set and read only the current bucket afresh: the province's
# sparklines then cost hundreds of rollup rows per overview instead of tens of thousands (400 stations x 24 h).
TREND_CACHE_SECONDS = 300.0
TREND_CACHE_SIZE = 512
_trend_cache: OrderedDict[tuple[Any, ...], tuple[float, dict[tuple[int, bool], list[tuple[datetime, _Agg]]]]] = (
    OrderedDict())
_trend_lock = threading.Lock()


def _bucket_start(now: datetime, grain: str) -> datetime:
    """The start of the rollup bucket holding now: the UTC hour, or the local (UTC+7) day."""
    if grain == "hour":
        return now.replace(minute=0, second=0, microsecond=0)
    local = now + VN_OFFSET
    return local.replace(hour=0, minute=0, second=0, microsecond=0) - VN_OFFSET


def _trend_cached(session: Session, table: Any, grain: str, windows: Sequence[tuple[Sequence[int], datetime]],
                  subjects: Any, own: int | None, root: Unit, now: datetime,
                  ) -> dict[tuple[int, bool], list[tuple[datetime, _Agg]]]:
    """The trend rows: closed buckets from the cache when fresh, the current bucket always from the rollups."""
    cutoff = _bucket_start(now, grain)
    floored = [(tuple(sorted(ids)), _bucket_start(since, grain)) for ids, since in windows if ids]
    if not floored:
        return {}
    key = (str(session.get_bind().url), table.__tablename__, root.path, own, tuple(floored), cutoff)
    with _trend_lock:
        hit = _trend_cache.get(key)
        if hit is not None and hit[0] < time.monotonic():
            del _trend_cache[key]
            hit = None
    if hit is not None:
        fresh = _trend_rows(session, table, [(ids, cutoff) for ids, _ in floored], subjects, own)
        out = {k: list(v) for k, v in hit[1].items()}
        for k, rows in fresh.items():
            out.setdefault(k, []).extend(rows)
        return out
    rows = _trend_rows(session, table, floored, subjects, own)
    closed = {k: [r for r in v if r[0] < cutoff] for k, v in rows.items()}
    with _trend_lock:
        _trend_cache[key] = (time.monotonic() + TREND_CACHE_SECONDS, closed)
        while len(_trend_cache) > TREND_CACHE_SIZE:
            _trend_cache.popitem(last=False)
    return rows


def _merged(parts: Sequence[list[tuple[datetime, _Agg]]]) -> list[tuple[datetime, _Agg]]:
    """The subtree's buckets: the unit's own rows and the others' added together, in time order."""
    merged: dict[datetime, _Agg] = {}
    for part in parts:
        for bucket, a in part:
            b = merged.get(bucket)
            merged[bucket] = a if b is None else _Agg(a.count + b.count, a.total + b.total, min(a.low, b.low),
                                                      max(a.high, b.high), a.last + b.last, None, a.rows + b.rows)
    return sorted(merged.items())


def _targets(session: Session, unit_code: str, ids: Sequence[int], now: datetime) -> dict[int, list[Any]]:
    if not ids:
        return {}
    t = IndicatorTarget
    rows = session.execute(select(t.indicator_id, t.period, t.period_start, t.period_end, t.target_value).where(
        t.unit_code == unit_code, t.indicator_id.in_(ids), t.period_end > now - timedelta(days=800),
        t.period_start <= now))
    out: dict[int, list[Any]] = {}
    for row in rows:
        out.setdefault(row.indicator_id, []).append(row)
    return out


def _target_for(targets: list[Any], when: datetime) -> Any:
    """The most specific target whose period holds the moment (a month before a quarter before a year)."""
    holding = [t for t in targets if t.period_start <= when < t.period_end]
    return min(holding, key=lambda t: t.period_end - t.period_start) if holding else None


def overview(
    session: Session, *, actor: Actor, panels: Sequence[DashboardPanel], layers: Sequence[MapLayer],
    unit: str | None = None, now: datetime | None = None,
) -> Overview:
    """Every tile's KPIs for a unit (and its subtree), the map layers, and the units above and below it.

    Seven reads whatever the number of tiles: the unit, the catalog rows, the subtree's subjects, the latest
    values, the hourly and the daily rollups, the targets, and the units above and below.
    """
    actor.require("observations:read")
    now = now or utcnow()
    root = resolve_unit(session, actor=actor, code=unit)
    codes = sorted({c for p in panels for c in p.indicator_codes})
    indicators = {i.code: i for i in session.scalars(select(Indicator).where(Indicator.code.in_(codes)))}
    ids = [i.id for i in indicators.values()]
    own_sid, subjects, subject_ids = _subjects_of(session, root)
    sub, own = _latest(session, ids, subjects, own_sid,
                       {i.id for i in indicators.values() if i.aggregation == "last"})

    by_id = {i.id: i for i in indicators.values()}
    trends: dict[tuple[int, bool], list[tuple[datetime, _Agg]]] = {}
    with_data = [i for i in ids if i in sub]  # no latest value in the subtree: no rollup rows either
    for grain, table in (("hour", HourlyRollup), ("day", DailyRollup)):
        windows = [([i for i in with_data if by_id[i].periodicity == periodicity], now - span)
                   for periodicity, (g, span, _) in TREND_WINDOW.items() if g == grain]
        trends.update(_trend_cached(session, table, grain, windows, subject_ids, own_sid, root, now))
    targets = _targets(session, root.code, ids, now)

    panel_reads: list[PanelRead] = []
    for panel in sorted(panels, key=lambda p: (p.order, p.key)):
        kpis: list[Kpi] = []
        for code in panel.indicator_codes:
            ind = indicators.get(code)
            if ind is None:
                continue  # declared by a pack but not yet synced into the catalog
            mine = ind.id in own
            agg = own.get(ind.id) or sub.get(ind.id)
            value = _combine(ind.aggregation, agg) if agg else None
            ts = agg.ts if agg else None
            age = round((now - ts).total_seconds(), 1) if ts else None
            target_row = _target_for(targets.get(ind.id, []), ts or now)
            target = target_row.target_value if target_row else None
            keep = TREND_WINDOW.get(ind.periodicity, TREND_WINDOW["day"])[2]
            buckets = (trends.get((ind.id, True), []) if mine else
                       _merged([trends.get((ind.id, True), []), trends.get((ind.id, False), [])]))
            trend = [TrendPoint(ts=b, value=round(_combine(ind.aggregation, _per_subject(a)), 4))
                     for b, a in buckets][-keep:]
            kpis.append(Kpi(
                indicator=code, name_vi=ind.name_vi, name_en=ind.name_en, unit=ind.unit, direction=ind.direction,
                periodicity=ind.periodicity, aggregation=ind.aggregation,
                value=None if value is None else round(value, 4), ts=ts, age_seconds=age,
                stale=bool(ts and now - ts > STALE_AFTER.get(ind.periodicity, timedelta(days=2))),
                subjects=agg.count if agg else 0,
                source="unit" if mine else "subtree" if agg else "none",
                target=target, target_period=target_row.period if target_row else None,
                progress=round(value / target, 4) if value is not None and target else None,
                thresholds=dict(ind.thresholds or {}), status=status_of(ind, value, target), trend=trend))
        worst = max((k.status for k in kpis), key=_RANK.__getitem__, default="none")
        ages = [k.age_seconds for k in kpis if k.age_seconds is not None]
        panel_reads.append(PanelRead(key=panel.key, title_vi=panel.title_vi, title_en=panel.title_en,
                                     domain=panel.domain, kind=panel.kind, order=panel.order, status=worst,
                                     age_seconds=max(ages) if ages else None, kpis=kpis))

    chain = root.path.split(".")[:-1]
    near = session.execute(select(Unit.code, Unit.name, Unit.name_en, Unit.level, Unit.parent_code, Unit.path)
                           .where(or_(Unit.code.in_(chain), Unit.parent_code == root.code))).all()
    ancestors = sorted((u for u in near if u.code in chain and actor.sees_path(u.path)), key=lambda u: len(u.path))
    children = sorted((u for u in near if u.parent_code == root.code and u.code not in chain), key=lambda u: u.code)
    return Overview(
        unit=_brief(root), ancestors=[_brief(u) for u in ancestors], children=[_brief(u) for u in children],
        generated_at=now, panels=panel_reads,
        layers=[LayerRead(key=m.key, title_vi=m.title_vi, title_en=m.title_en, url=m.url, min_zoom=m.min_zoom,
                          style=dict(m.style)) for m in layers])


def _per_subject(a: _Agg) -> _Agg:
    """A bucket's aggregates with 'last' as the mean over the subjects that reported (the sum came from SQL)."""
    return _Agg(a.count, a.total, a.low, a.high, a.last / a.rows if a.rows else a.last, a.ts, a.rows)


def _point_of(case: Case, entity: Entity | None) -> tuple[float, float] | None:
    data = case.data or {}
    lon, lat = data.get("lon"), data.get("lat")
    if isinstance(lon, int | float) and isinstance(lat, int | float) and -180 <= lon <= 180 and -90 <= lat <= 90:
        return float(lon), float(lat)
    if entity is not None and entity.min_lon is not None and entity.max_lon is not None:
        return ((entity.min_lon + entity.max_lon) / 2, ((entity.min_lat or 0) + (entity.max_lat or 0)) / 2)
    return None


def incidents_geojson(session: Session, *, actor: Actor, unit: str | None = None,
                      now: datetime | None = None) -> dict[str, Any]:
    """Open incidents in the caller's scope that have a place (their entity, or lon/lat in their data)."""
    if unit is not None and not (unit.isascii() and unit.isalnum() and len(unit) <= 16):
        raise ValidationFailed("unit must be an official unit code", [FieldError(["query", "unit"], "bad code")])
    stmt = filtered(session, actor=actor, filters=CaseFilter(case_type="incident", unit=unit), now=now)
    stmt = stmt.where(Case.is_open.is_(True)).order_by(Case.created_at.desc()).limit(MAX_INCIDENTS)
    cases = list(session.scalars(stmt))
    entity_ids = {c.entity_id for c in cases if c.entity_id}
    entities = ({e.id: e for e in session.scalars(select(Entity).where(Entity.id.in_(entity_ids)))}
                if entity_ids else {})
    features = []
    for c in cases:
        point = _point_of(c, entities.get(c.entity_id) if c.entity_id else None)
        if point is None:
            continue
        features.append({"type": "Feature", "id": str(c.id), "geometry": {"type": "Point", "coordinates": point},
                         "properties": {"id": str(c.id), "code": c.code, "title": c.title, "status": c.status,
                                        "priority": c.priority, "unit_code": c.unit_code,
                                        "created_at": c.created_at.isoformat()}})
    return {"type": "FeatureCollection", "features": features}


def kernel_layers(entity_types: Sequence[str]) -> list[MapLayer]:
    """The kernel's own map layers: open incidents, and cameras once a pack declares a camera entity type."""
    layers = [MapLayer(key="core.incidents", title_vi="Sự cố đang xử lý", title_en="Open incidents",
                       url="/api/dashboards/incidents.geojson",
                       style={"color": "#ff5d5d", "radius": 8, "icon": "incident"})]
    for t in sorted(entity_types):
        if t == "camera" or t.startswith("camera."):
            layers.append(MapLayer(key=f"core.{t}", title_vi="Camera", title_en="Cameras",
                                   url=f"/api/entities.geojson?type={t}&limit=5000",
                                   style={"color": "#9ad0ff", "radius": 5, "icon": "camera"}))
    return layers

