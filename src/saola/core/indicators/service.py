"""Indicator catalog and plan targets: declared and local indicators, lookups for ingest, targets per period."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session

from saola.core.audit.service import audit
from saola.core.auth.context import Actor
from saola.core.cache import LookupCache
from saola.core.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from saola.core.indicators.models import Indicator, IndicatorTarget
from saola.core.indicators.schemas import IndicatorCreate, IndicatorUpdate, TargetIn
from saola.core.text import fold
from saola.core.units.models import Unit
from saola.core.units.service import get_unit, normalize_code, scope_condition
from saola.db.outbox import record_change
from saola.db.types import utcnow
from saola.db.upsert import upsert_rows
from saola.packs.definitions import IndicatorDefinition
from saola.packs.manager import Registry

# Vietnam keeps one fixed offset all year (no daylight saving), so a plain offset is exact for current dates.
VN_OFFSET = timedelta(hours=7)
VN_TZ_FIXED = timezone(VN_OFFSET, "ICT")

_DECLARED_FIELDS = ("name_vi", "name_en", "unit", "domain", "aggregation", "direction", "periodicity",
                    "subject_kind", "min_value", "max_value", "thresholds", "description")
_PERIOD = re.compile(r"^(\d{4})(?:-(?:[Qq]([1-4])|(0[1-9]|1[0-2])))?$")


_BY_CODE = (select(Indicator.id, Indicator.code, Indicator.aggregation, Indicator.subject_kind, Indicator.min_value,
                   Indicator.max_value, Indicator.is_active)
            .where(Indicator.code.in_(bindparam("codes", expanding=True))))


_REFS = LookupCache("indicators")


@dataclass(frozen=True, slots=True)
class IndicatorRef:
    """What ingest and queries need of an indicator, detached from the session."""

    id: int
    code: str
    aggregation: str
    subject_kind: str
    min_value: float | None
    max_value: float | None
    is_active: bool


def _search_name(code: str, name_vi: str, name_en: str) -> str:
    # Code and both names in one folded string, so 'pm25', 'bui min' and 'fine dust' all find env.pm25.
    return fold(f"{code} {name_vi} {name_en}")[:255]


def sync_declared(session: Session, *, registry: Registry) -> int:
    """Create or update catalog rows for every indicator a pack declares; returns how many rows changed."""
    definitions: dict[str, IndicatorDefinition] = dict(registry.indicators)
    if not definitions:
        return 0
    existing = {i.code: i for i in session.scalars(select(Indicator).where(Indicator.code.in_(list(definitions))))}
    changed = 0
    for code, d in sorted(definitions.items()):
        values: dict[str, Any] = {f: getattr(d, f) for f in _DECLARED_FIELDS}
        values["thresholds"] = dict(d.thresholds)
        values["declared_by"] = d.domain
        values["search_name"] = _search_name(code, d.name_vi, d.name_en)
        row = existing.get(code)
        if row is None:
            session.add(Indicator(code=code, is_active=True, **values))
            changed += 1
        elif any(getattr(row, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(row, k, v)
            changed += 1
    if changed:
        session.flush()
        _REFS.clear_after_commit(session)
        record_change(session, topic="indicators.synced", aggregate_type="indicator", aggregate_id="*",
                      payload={"changed": changed, "declared": len(definitions)})
    return changed


def _find(session: Session, code: str) -> Indicator:
    indicator = session.scalar(select(Indicator).where(Indicator.code == code))
    if indicator is None:
        raise NotFound(f"indicator {code!r} not found")
    return indicator


def get_indicator(session: Session, *, actor: Actor, code: str) -> Indicator:
    """One indicator by its code."""
    actor.require("indicators:read")
    return _find(session, code)


def list_indicators(
    session: Session, *, actor: Actor, domain: str | None = None, q: str | None = None,
    active: bool | None = None, limit: int = 100, offset: int = 0,
) -> tuple[int, list[Indicator]]:
    """Indicators filtered by domain, activity and diacritic-insensitive text, ordered by code."""
    actor.require("indicators:read")
    stmt = select(Indicator)
    if domain:
        stmt = stmt.where(Indicator.domain == domain)
    if active is not None:
        stmt = stmt.where(Indicator.is_active.is_(active))
    if q:
        clean = q.replace("\x00", "").encode("utf-8", "ignore").decode("utf-8")  # no NUL, no lone surrogates
        for word in fold(clean).split():
            stmt = stmt.where(Indicator.search_name.contains(word, autoescape=True))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    return total, list(session.scalars(stmt.order_by(Indicator.code).limit(limit).offset(offset)))


def create_indicator(session: Session, *, actor: Actor, data: IndicatorCreate) -> Indicator:
    """Add a local indicator (not declared by a pack) to the catalog."""
    actor.require("indicators:write")
    if session.scalar(select(Indicator.id).where(Indicator.code == data.code)) is not None:
        raise Conflict(f"indicator {data.code!r} already exists")
    values = data.model_dump()
    indicator = Indicator(**values, search_name=_search_name(data.code, data.name_vi, data.name_en),
                          declared_by=None, is_active=True)
    session.add(indicator)
    session.flush()
    audit(session, actor=actor, action="indicator.create", target_type="indicator", target_id=data.code,
          detail={"domain": data.domain, "unit": data.unit})
    record_change(session, topic="indicators.created", aggregate_type="indicator", aggregate_id=data.code,
                  payload={"domain": data.domain})
    return indicator


def update_indicator(session: Session, *, actor: Actor, code: str, changes: IndicatorUpdate) -> Indicator:
    """Change some fields of an indicator; fields not sent stay as they are."""
    actor.require("indicators:write")
    indicator = _find(session, code)
    values = changes.model_dump(exclude_unset=True)
    nulls = [k for k, v in values.items() if v is None and k not in ("min_value", "max_value")]
    if nulls:
        raise ValidationFailed("these fields cannot be null",
                               [FieldError(["body", k], "may be left out but not null") for k in nulls])
    lo = values.get("min_value", indicator.min_value)
    hi = values.get("max_value", indicator.max_value)
    if lo is not None and hi is not None and lo > hi:
        raise ValidationFailed("min_value must not exceed max_value",
                               [FieldError(["body", "min_value"], "must not exceed max_value")])
    for k, v in values.items():
        setattr(indicator, k, v)
    indicator.search_name = _search_name(indicator.code, indicator.name_vi, indicator.name_en)
    session.flush()
    _REFS.clear_after_commit(session)
    audit(session, actor=actor, action="indicator.update", target_type="indicator", target_id=code,
          detail={"fields": sorted(values)})
    record_change(session, topic="indicators.updated", aggregate_type="indicator", aggregate_id=code,
                  payload={"fields": sorted(values)})
    return indicator


def indicators_by_code(session: Session, codes: Iterable[str], *, cached: bool = False) -> dict[str, IndicatorRef]:
    """Look up many indicators by code in one query; unknown codes are simply absent from the answer.

    cached=True answers from the lookup cache (saola.core.cache) what it holds, for the write paths.
    """
    # Codes are printable ASCII; others cannot match and some (NUL, lone surrogates) would upset the driver.
    wanted = {c for c in codes if isinstance(c, str) and c.isascii() and c.isprintable()}
    if not wanted:
        return {}
    found: dict[str, IndicatorRef] = _REFS.get_many(session, wanted) if cached else {}  # type: ignore[assignment]
    listed = sorted(wanted - set(found))
    # Chunked so that a batch naming thousands of codes stays under every driver's parameter limit.
    for start in range(0, len(listed), 500):
        for row in session.execute(_BY_CODE, {"codes": listed[start:start + 500]}):
            found[row.code] = ref = IndicatorRef(*row)
            if cached:
                _REFS.put(session, row.code, ref)
    return found


def local_to_utc(year: int, month: int, day: int = 1) -> datetime:
    """The UTC instant of local midnight (Vietnam, UTC+7) on a date."""
    return datetime(year, month, day, tzinfo=VN_TZ_FIXED).astimezone(UTC)


def parse_period(period: str) -> tuple[str, datetime, datetime]:
    """'2026', '2026-Q4' or '2026-11' -> (canonical text, start, end) with [start, end) in UTC; ValueError else."""
    match = _PERIOD.match(period.strip()) if isinstance(period, str) else None
    if not match:
        raise ValueError("expected YYYY, YYYY-Qn or YYYY-MM")
    year = int(match.group(1))
    if not 1970 <= year <= 2200:
        raise ValueError("year must lie between 1970 and 2200")
    if match.group(2):
        q = int(match.group(2))
        first = 3 * (q - 1) + 1
        start, canonical = local_to_utc(year, first), f"{year}-Q{q}"
        end = local_to_utc(year + 1, 1) if q == 4 else local_to_utc(year, first + 3)
    elif match.group(3):
        month = int(match.group(3))
        start, canonical = local_to_utc(year, month), f"{year}-{month:02d}"
        end = local_to_utc(year + 1, 1) if month == 12 else local_to_utc(year, month + 1)
    else:
        start, end, canonical = local_to_utc(year, 1), local_to_utc(year + 1, 1), f"{year}"
    return canonical, start, end


def upsert_targets(session: Session, *, actor: Actor, code: str, items: Sequence[TargetIn]) -> list[IndicatorTarget]:
    """Create or replace plan targets of an indicator, one per (unit, period), in units of the actor's scope."""
    actor.require("targets:write")
    indicator = _find(session, code)
    errors: list[FieldError] = []
    parsed: list[tuple[int, str, str, datetime, datetime]] = []
    codes = {normalize_code(t.unit) for t in items}
    units = {u.code: u for u in session.scalars(select(Unit).where(Unit.code.in_(codes)))}
    for i, item in enumerate(items):
        unit_code = normalize_code(item.unit)
        if unit_code not in units:
            errors.append(FieldError(["body", "items", i, "unit"], f"unknown unit {item.unit!r}"))
        try:
            canonical, start, end = parse_period(item.period)
        except ValueError as exc:
            errors.append(FieldError(["body", "items", i, "period"], f"{item.period!r}: {exc}"))
            continue
        parsed.append((i, unit_code, canonical, start, end))
    if errors:
        raise ValidationFailed(f"{len(errors)} invalid target(s); nothing was saved", errors)
    outside = sorted({u for _, u, *_ in parsed if not actor.sees_path(units[u].path)})
    if outside:
        raise Forbidden(f"units {', '.join(outside)} are outside the scope of {actor.kind} {actor.name!r}")
    now = utcnow()
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for i, unit_code, canonical, start, end in parsed:  # a later row for the same (unit, period) wins
        rows[(unit_code, canonical)] = dict(
            indicator_id=indicator.id, unit_code=unit_code, period=canonical, period_start=start, period_end=end,
            target_value=items[i].target_value, note=items[i].note, created_by=actor.id, updated_at=now,
        )
    upsert_rows(session, IndicatorTarget.__table__, list(rows.values()),
                key=["indicator_id", "unit_code", "period"],
                update=["period_start", "period_end", "target_value", "note", "updated_at"])
    audit(session, actor=actor, action="targets.upsert", target_type="indicator", target_id=code,
          detail={"targets": [f"{u}/{p}" for u, p in rows]})
    record_change(session, topic="targets.upserted", aggregate_type="indicator", aggregate_id=code,
                  payload={"units": sorted({u for u, _ in rows}), "periods": sorted({p for _, p in rows})})
    conditions = [(IndicatorTarget.unit_code == u) & (IndicatorTarget.period == p) for u, p in rows]
    stmt = select(IndicatorTarget).where(IndicatorTarget.indicator_id == indicator.id, or_(*conditions))
    # The upsert bypassed the ORM: overwrite any stale copies already in the session.
    stmt = stmt.order_by(IndicatorTarget.unit_code, IndicatorTarget.period_start)
    return list(session.scalars(stmt.execution_options(populate_existing=True)))


def list_targets(
    session: Session, *, actor: Actor, code: str, unit: str | None = None, year: int | None = None,
    limit: int = 1000, offset: int = 0,
) -> list[IndicatorTarget]:
    """Plan targets of an indicator in units of the actor's scope, filtered by unit and year."""
    actor.require("indicators:read")
    indicator = _find(session, code)
    stmt = (select(IndicatorTarget).join(Unit, Unit.code == IndicatorTarget.unit_code)
            .where(IndicatorTarget.indicator_id == indicator.id, scope_condition(actor, Unit.path)))
    if unit:
        stmt = stmt.where(IndicatorTarget.unit_code == get_unit(session, actor=actor, code=unit).code)
    if year is not None:
        stmt = stmt.where(IndicatorTarget.period_start >= local_to_utc(year, 1),
                          IndicatorTarget.period_start < local_to_utc(year + 1, 1))
    stmt = stmt.order_by(IndicatorTarget.unit_code, IndicatorTarget.period_start, IndicatorTarget.period)
    return list(session.scalars(stmt.limit(limit).offset(offset)))
