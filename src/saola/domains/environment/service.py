"""Environment services: stations with their indices for the map, series, rankings, the AQI calculator, QCVN 05
reports and water quality. Plain keyword-only functions; reads are scoped to the caller's units."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from saola.core.auth.context import Actor
from saola.core.entities.models import Entity
from saola.core.errors import FieldError, NotFound, ValidationFailed
from saola.core.indicators.models import Indicator
from saola.core.observations import service as observations
from saola.core.observations.models import DailyRollup, HourlyRollup, LatestObservation, Subject
from saola.core.units.models import Unit
from saola.core.units.service import normalize_code, scope_condition
from saola.db.types import utcnow
from saola.domains.environment import aqi
from saola.domains.environment.models import QualityFlag, StationState
from saola.domains.environment.params import (
    AQI_US,
    AQI_US_DAY,
    AQI_VN,
    AQI_VN_DAY,
    BY_CODE,
    ENTITY_TYPE,
    KIND_OF_TYPE,
    QCVN05_OF_CODE,
    WATER_KEYS,
)
from saola.domains.environment.standards import exceedances, load_standards, water_class, wqi

READ = "environment:read"
SILENT_MINUTES = 30
MAX_REPORT_DAYS = 366
PUBLIC_FIELDS = ("id", "code", "name", "kind", "aqi", "aqi_level", "aqi_label_vi", "aqi_label_en", "aqi_color",
                 "dominant", "aqi_us", "status", "observed_at", "latest")
VN_OFFSET = timedelta(hours=7)


# ---------------------------------------------------------------------------------------------------------------
# stations for the map


def _station_rows(session: Session, where: list[ColumnElement[bool]]) -> list[Any]:
    stmt = (select(Entity, StationState, Unit.name)
            .join(Unit, Unit.code == Entity.unit_code)
            .outerjoin(StationState, StationState.entity_id == Entity.id)
            .where(Entity.type.in_(list(ENTITY_TYPE.values())), *where)
            .order_by(Entity.unit_code, Entity.name))
    return list(session.execute(stmt))


def _latest_by_entity(session: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, tuple[datetime, float]]]:
    out: dict[uuid.UUID, dict[str, tuple[datetime, float]]] = {}
    for s in range(0, len(ids), 500):
        stmt = (select(Subject.entity_id, Indicator.code, LatestObservation.ts, LatestObservation.value)
                .join(Subject, Subject.id == LatestObservation.subject_id)
                .join(Indicator, Indicator.id == LatestObservation.indicator_id)
                .where(Subject.entity_id.in_(ids[s:s + 500]), Indicator.code.like("env.%")))
        for eid, code, ts, value in session.execute(stmt):
            out.setdefault(eid, {})[code] = (ts, value)
    return out


def _feature(entity: Entity, state: StationState | None, unit_name: str,
             latest: Mapping[str, tuple[datetime, float]], now: datetime) -> dict[str, Any]:
    readings = {code: value for code, (_ts, value) in latest.items() if code in BY_CODE}
    times = [ts for code, (ts, _v) in latest.items() if code in BY_CODE]
    observed = max(times) if times else None
    if observed is None:
        status = "no_data"
    elif now - observed > timedelta(minutes=SILENT_MINUTES):
        status = "silent"
    elif state is not None and state.stuck:
        status = "stuck"
    else:
        status = "ok"
    band = aqi.level_of(state.aqi_vn if state else None)
    props = {
        "id": str(entity.id), "code": entity.external_id or str(entity.id), "name": entity.name,
        "kind": KIND_OF_TYPE[entity.type], "unit_code": entity.unit_code, "unit_name": unit_name,
        "aqi": state.aqi_vn if state else None, "aqi_level": band.level if band else None,
        "aqi_label_vi": band.label_vi if band else None, "aqi_label_en": band.label_en if band else None,
        "aqi_color": band.color if band else "#9e9e9e", "dominant": state.dominant if state else None,
        "aqi_us": state.aqi_us if state else None, "aqi_day": state.aqi_vn_day if state else None,
        "aqi_at": state.aqi_ts.isoformat() if state and state.aqi_ts else None,
        "status": status, "stuck": list(state.stuck) if state else [],
        "exceedances": list(state.exceedances) if state else [],
        "observed_at": observed.astimezone(UTC).isoformat() if observed else None, "latest": readings,
    }
    return {"type": "Feature", "id": str(entity.id), "geometry": entity.geometry, "properties": props}


def stations_geojson(session: Session, *, actor: Actor, kind: str | None = None, within: str | None = None,
                     now: datetime | None = None) -> dict[str, Any]:
    """Stations in the caller's scope with latest readings and VN_AQI, as a GeoJSON FeatureCollection."""
    actor.require(READ)
    where: list[ColumnElement[bool]] = [scope_condition(actor, Unit.path)]
    if kind is not None:
        where.append(Entity.type == _entity_type(kind))
    if within is not None:
        unit = session.get(Unit, normalize_code(within)) if within.isascii() and within.isalnum() else None
        if unit is None or not actor.sees_path(unit.path):
            raise NotFound(f"unit {within!r} not found")
        where.append(scope_condition(Actor("system", None, "within", "", unit.code, unit.path), Unit.path))
    return _collection(session, where, now or utcnow())


def _entity_type(kind: str) -> str:
    if kind not in ENTITY_TYPE:
        raise ValidationFailed(f"unknown station kind {kind!r}; expected one of {', '.join(ENTITY_TYPE)}",
                               [FieldError(["query", "kind"], "expected air, water, weather or hydro")])
    return ENTITY_TYPE[kind]


def _collection(session: Session, where: list[ColumnElement[bool]], now: datetime) -> dict[str, Any]:
    rows = _station_rows(session, where)
    latest = _latest_by_entity(session, [e.id for e, _s, _u in rows])
    features = [_feature(e, s, u, latest.get(e.id, {}), now) for e, s, u in rows]
    return {"type": "FeatureCollection", "features": features, "generated_at": now.isoformat()}


def public_air_quality(session: Session, *, now: datetime | None = None) -> dict[str, Any]:
    """Air stations of the whole node with their VN_AQI and air readings: public fields only, no sign-in."""
    full = _collection(session, [Entity.type == ENTITY_TYPE["air"]], now or utcnow())
    for feature in full["features"]:
        props = feature["properties"]
        feature["properties"] = {k: props[k] for k in PUBLIC_FIELDS}
    return full


# ---------------------------------------------------------------------------------------------------------------
# one station


def station(session: Session, *, actor: Actor, station_id: uuid.UUID) -> Entity:
    """A station inside the caller's scope, or NotFound."""
    actor.require(READ)
    row = session.execute(select(Entity, Unit.path).join(Unit, Unit.code == Entity.unit_code)
                          .where(Entity.id == station_id, Entity.type.in_(list(ENTITY_TYPE.values())))).first()
    if row is None or not actor.sees_path(row[1]):
        raise NotFound(f"station {station_id} not found")
    return row[0]


def aqi_series(session: Session, *, actor: Actor, station_id: uuid.UUID, period: str = "hour",
               start: datetime | None = None, end: datetime | None = None) -> dict[str, Any]:
    """Hourly (or daily) VN_AQI and US AQI of a station: the last value of each hour (or local day)."""
    entity = station(session, actor=actor, station_id=station_id)
    end = end or utcnow()
    start = start or end - (timedelta(hours=48) if period == "hour" else timedelta(days=30))
    codes = (AQI_VN, AQI_US) if period == "hour" else (AQI_VN_DAY, AQI_US_DAY)
    by_ts: dict[datetime, dict[str, Any]] = {}
    for code, key in zip(codes, ("aqi_vn", "aqi_us"), strict=True):
        series = observations.query_series(session, actor=actor, indicator=code, entity=entity.id, start=start,
                                           end=end, bucket=period, agg="last")  # type: ignore[arg-type]
        for p in series.points:
            by_ts.setdefault(p.ts, {"ts": p.ts})[key] = int(p.value)
    points = []
    for ts in sorted(by_ts):
        row = {"aqi_vn": None, "aqi_us": None, **by_ts[ts]}
        band = aqi.level_of(row["aqi_vn"])
        row["level"], row["color"] = (band.level, band.color) if band else (None, None)
        points.append(row)
    return {"station": str(entity.id), "period": period, "start": start, "end": end, "points": points}


def quality_flags(session: Session, *, actor: Actor, station_id: uuid.UUID, limit: int = 200) -> list[QualityFlag]:
    """The newest data-quality flags of a station."""
    entity = station(session, actor=actor, station_id=station_id)
    return list(session.scalars(select(QualityFlag).where(QualityFlag.entity_id == entity.id)
                                .order_by(QualityFlag.started_at.desc(), QualityFlag.id.desc()).limit(limit)))


# ---------------------------------------------------------------------------------------------------------------
# ranking


def ranking(session: Session, *, actor: Actor, by: str = "station", period: str = "hour",
            within: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Air stations (or communes, by their worst station) ordered from the worst VN_AQI to the best."""
    actor.require(READ)
    column = StationState.aqi_vn if period == "hour" else StationState.aqi_vn_day
    where: list[ColumnElement[bool]] = [scope_condition(actor, Unit.path), Entity.type == ENTITY_TYPE["air"],
                                        column.is_not(None)]
    if within is not None:
        unit = session.get(Unit, normalize_code(within)) if within.isascii() and within.isalnum() else None
        if unit is None or not actor.sees_path(unit.path):
            raise NotFound(f"unit {within!r} not found")
        where.append(scope_condition(Actor("system", None, "within", "", unit.code, unit.path), Unit.path))
    rows = session.execute(select(Entity.id, Entity.name, Entity.unit_code, Unit.name, column, StationState.dominant)
                           .join(Unit, Unit.code == Entity.unit_code)
                           .join(StationState, StationState.entity_id == Entity.id).where(*where)).all()
    if by == "station":
        items = [{"id": str(i), "name": n, "unit_code": u, "unit_name": un, "aqi": a, "dominant": d}
                 for i, n, u, un, a, d in rows]
    else:
        grouped: dict[str, dict[str, Any]] = {}
        for _i, _n, u, un, a, _d in rows:
            g = grouped.setdefault(u, {"unit_code": u, "unit_name": un, "values": []})
            g["values"].append(a)
        items = [{"unit_code": g["unit_code"], "unit_name": g["unit_name"], "aqi": max(g["values"]),
                  "aqi_mean": round(sum(g["values"]) / len(g["values"]), 1), "stations": len(g["values"])}
                 for g in grouped.values()]
    items.sort(key=lambda r: (-r["aqi"], r.get("name") or r["unit_name"]))
    for rank, item in enumerate(items[:limit], start=1):
        band = aqi.level_of(item["aqi"])
        item.update(rank=rank, level=band.level if band else None, label_vi=band.label_vi if band else None,
                    color=band.color if band else None)
    return items[:limit]


# ---------------------------------------------------------------------------------------------------------------
# calculator


def calculate(*, hourly: Mapping[str, Sequence[float | None]] | None = None,
              daily: Mapping[str, Sequence[float | None]] | None = None,
              daily_values: Mapping[str, aqi.DayValues] | None = None,
              epa_edition: aqi.EpaEdition = "2024") -> dict[str, Any]:
    """VN_AQI and US AQI with sub-indices from hourly series (oldest first) and/or a day's values."""
    out: dict[str, Any] = {}
    if hourly:
        out["hourly"] = {"vn": aqi.vn_hourly(hourly).as_dict(), "us": aqi.us_hourly(hourly, epa_edition).as_dict()}
    if daily or daily_values:
        values = dict(daily_values or {})
        for p, series in (daily or {}).items():
            hours = list(series)
            before, day = (hours[:-24], hours[-24:]) if len(hours) > 24 else ([], hours)
            values[p] = aqi.day_values(p, day, before)
        out["daily"] = {"vn": aqi.vn_daily(values).as_dict(), "us": aqi.us_daily(values, epa_edition).as_dict(),
                        "values": {p: {"mean_24h": v.mean_24h, "max_1h": v.max_1h, "max_8h": v.max_8h}
                                   for p, v in values.items()}}
    return out


# ---------------------------------------------------------------------------------------------------------------
# QCVN 05 report and water quality


def qcvn05_report(session: Session, *, actor: Actor, station_id: uuid.UUID, start: datetime,
                  end: datetime) -> dict[str, Any]:
    """Exceedances of QCVN 05:2023 per averaging period (1 h, 8 h, 24 h, year) between start and end.

    Reads the hourly and daily rollups (good readings only), never raw readings.
    """
    entity = station(session, actor=actor, station_id=station_id)
    if start >= end:
        raise ValidationFailed("start must be before end", [FieldError(["query", "start"], "must be before end")])
    if end - start > timedelta(days=MAX_REPORT_DAYS):
        raise ValidationFailed(f"at most {MAX_REPORT_DAYS} days per report",
                               [FieldError(["query", "end"], f"at most {MAX_REPORT_DAYS} days after start")])
    standards = load_standards()
    subject = session.scalar(select(Subject.id).where(Subject.key == f"e:{entity.id}"))
    codes = {c: p for c, p in QCVN05_OF_CODE.items()}
    ids = {i: codes[c] for c, i in session.execute(select(Indicator.code, Indicator.id)
                                                   .where(Indicator.code.in_(list(codes))))}
    hourly: dict[str, list[tuple[datetime, float]]] = {}
    daily: dict[str, list[tuple[datetime, float]]] = {}
    if subject is not None and ids:
        for iid, bucket, total, count in session.execute(
                select(HourlyRollup.indicator_id, HourlyRollup.bucket, HourlyRollup.sum, HourlyRollup.count)
                .where(HourlyRollup.subject_id == subject, HourlyRollup.indicator_id.in_(list(ids)),
                       HourlyRollup.bucket >= start, HourlyRollup.bucket < end).order_by(HourlyRollup.bucket)):
            hourly.setdefault(ids[iid], []).append((bucket, total / count))
        for iid, bucket, total, count in session.execute(
                select(DailyRollup.indicator_id, DailyRollup.bucket, DailyRollup.sum, DailyRollup.count)
                .where(DailyRollup.subject_id == subject, DailyRollup.indicator_id.in_(list(ids)),
                       DailyRollup.bucket >= start - timedelta(days=1), DailyRollup.bucket < end)
                .order_by(DailyRollup.bucket)):
            daily.setdefault(ids[iid], []).append((bucket, total / count))
    on = (end + VN_OFFSET).date()
    report: dict[str, Any] = {}
    for p in sorted(set(QCVN05_OF_CODE.values())):
        limits = standards.air_limits(on).get(p, {})
        if not limits:
            continue
        hours = hourly.get(p, [])
        entry: dict[str, Any] = {"limits": limits, "periods": {}}
        if "1h" in limits:
            entry["periods"]["1h"] = _summary(exceedances(standards, p, "1h", hours, on), len(hours))
        if "8h" in limits:
            eights = _rolling8(hours)
            entry["periods"]["8h"] = _summary(exceedances(standards, p, "8h", eights, on), len(eights))
        if "24h" in limits:
            days = [((b + VN_OFFSET).date().isoformat(), v) for b, v in daily.get(p, []) if b >= start - VN_OFFSET]
            entry["periods"]["24h"] = _summary(exceedances(standards, p, "24h", days, on), len(days))
        if "year" in limits and daily.get(p):
            values = [v for _b, v in daily[p]]
            mean = sum(values) / len(values)
            entry["periods"]["year"] = {"mean": round(mean, 2), "days": len(values), "limit": limits["year"],
                                        "exceeded": mean > limits["year"],
                                        "note": "trung bình các ngày có số liệu trong khoảng thời gian đã chọn"}
        report[p] = entry
    return {"station": str(entity.id), "standard": "QCVN 05:2023/BTNMT", "start": start, "end": end,
            "parameters": report}


def _rolling8(hours: Sequence[tuple[datetime, float]]) -> list[tuple[datetime, float]]:
    """8-hour means ending at each hour that has at least 6 of its 8 hours."""
    by_hour = {int(b.timestamp() // 3600): v for b, v in hours}
    out = []
    for h in sorted(by_hour):
        window = [by_hour[k] for k in range(h - 7, h + 1) if k in by_hour]
        if len(window) >= 6:
            out.append((datetime.fromtimestamp(h * 3600, UTC), sum(window) / len(window)))
    return out


def _summary(found: list[dict[str, Any]], periods: int) -> dict[str, Any]:
    worst = max(found, key=lambda f: f["value"]) if found else None
    return {"periods": periods, "exceeded": len(found), "worst": worst, "items": found[:200]}


def water_quality(session: Session, *, actor: Actor, station_id: uuid.UUID) -> dict[str, Any]:
    """QCVN 08 class and VN_WQI from the station's latest water readings (where the inputs exist)."""
    entity = station(session, actor=actor, station_id=station_id)
    latest = _latest_by_entity(session, [entity.id]).get(entity.id, {})
    values = {code[4:]: value for code, (_ts, value) in latest.items() if code[4:] in WATER_KEYS}
    return water_from_values(values) | {"station": str(entity.id)}


def water_from_values(values: Mapping[str, float]) -> dict[str, Any]:
    """QCVN 08 class and VN_WQI from parameter values (keys such as ph, do, bod5, cod, nh4_n, coliform)."""
    standards = load_standards()
    return {"values": dict(values), "qcvn08": water_class(standards, values), "wqi": wqi(standards, values)}


def report_day(ts: datetime) -> date:
    """The local (Vietnam) day of an instant."""
    return (ts.astimezone(UTC) + VN_OFFSET).date()
