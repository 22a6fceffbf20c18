"""Observations: the one bulk ingest path every door calls, series queries over rollups, and latest values.

Ingest stays bulk end to end: a batch is validated in one pass (plain rows checked in the per-row loop by
pydantic's rules, anything else by pydantic itself), looked up with a handful of queries, and written with one
statement per table. SQLite: executemany, and the hourly and daily rollups and latest values upserted in the same
transaction. PostgreSQL: binary COPY straight into observations (a staging table only when the batch repeats
stored readings) plus one rollup delta per series and hour queued in the same transaction and folded after
commit (rollups.py), so dashboards never scan raw readings and reads see their own writes.
"""

from __future__ import annotations

import math
import re
import struct
import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from itertools import groupby
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np
import orjson
import psycopg
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Uuid,
    func,
    literal,
    literal_column,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session

from saola.core.auth.context import Actor
from saola.core.cache import LookupCache
from saola.core.entities.models import Entity
from saola.core.errors import FieldError, Forbidden, NotFound, ValidationFailed
from saola.core.health.metrics import OBSERVATIONS_INGESTED
from saola.core.indicators.models import Indicator
from saola.core.indicators.service import IndicatorRef, indicators_by_code, local_to_utc
from saola.core.observations import rollups
from saola.core.observations.live import LiveReadings
from saola.core.observations.models import DailyRollup, HourlyRollup, LatestObservation, Observation, Subject
from saola.core.observations.schemas import (
    MAX_BATCH,
    MAX_POINTS,
    SUBJECT_RULE,
    Agg,
    Bucket,
    IngestResult,
    LatestRead,
    ObservationDict,
    ObservationIn,
    Point,
    Series,
    SubjectKind,
)
from saola.core.units.models import Unit
from saola.core.units.service import normalize_code, scope_condition
from saola.db.ids import new_id
from saola.db.many import chunks, is_postgresql, one_of
from saola.db.outbox import record_change
from saola.db.types import UTCDateTime, utcnow
from saola.db.upsert import upsert_rows
from saola.runtime import large_allocations

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_AHEAD = timedelta(days=1)
_MICROSECOND = timedelta(microseconds=1)
_SID_BIAS = 1 << 31  # subject ids (provisional ones are negative) made non-negative inside a row's packed key
VN_OFFSET_S = 7 * 3600  # Vietnam is UTC+7 all year: a local day starts at 17:00 UTC the day before
VN_OFFSET = timedelta(seconds=VN_OFFSET_S)

_batch_adapter: TypeAdapter[list[ObservationDict]] = TypeAdapter(list[ObservationDict])

# The look-ups of a batch's subjects, each asked about many values at once (saola.db.many).
_UNITS_WITH_SUBJECTS = (select(Unit.code, Unit.path, Subject.id)
                        .outerjoin(Subject, Subject.key == literal("u:").concat(Unit.code)))
_ENTITIES_WITH_UNITS = select(Entity.id, Entity.unit_code, Unit.path).join(Unit, Unit.code == Entity.unit_code)
_SUBJECT_IDS = select(Subject.key, Subject.id)


def _lookup(session: Session, stmt: Select[Any], column: Any, item_type: Any, values: Sequence[Any]) -> list[Any]:
    """Rows of a look-up statement whose column is one of many values."""
    pg = is_postgresql(session)
    return [row for chunk in chunks(values, pg) for row in session.execute(stmt.where(one_of(column, chunk,
                                                                                              item_type, pg)))]


_UNIT_SUBJECTS = LookupCache("unit subjects")  # unit code -> (path, subject id)


class _Subject:
    """A subject named by a batch: its key, its unit (for scope) and its integer id (negative until stored)."""

    __slots__ = ("entity_id", "id", "key", "kind", "unit_code", "unit_path")

    def __init__(self, key: str, kind: str, unit_code: str, unit_path: str, entity_id: uuid.UUID | None,
                 subject_id: int | None) -> None:
        self.key, self.kind, self.unit_code, self.unit_path = key, kind, unit_code, unit_path
        self.entity_id, self.id = entity_id, subject_id or 0


# ---------------------------------------------------------------------------------------------------------------
# ingest


def _validated(items: Sequence[ObservationIn | Mapping[str, Any]]) -> tuple[list[tuple[int, dict]], list[FieldError]]:
    """(index, row dict) for rows that pass type validation, and a FieldError for every problem found."""
    if all(isinstance(it, ObservationIn) for it in items):
        return [(i, it.__dict__) for i, it in enumerate(items)], []  # already validated (the HTTP door)
    plain = [it.__dict__ if isinstance(it, ObservationIn) else it for it in items]
    try:
        # One pydantic call for the whole batch, into plain dicts: several times cheaper than a model per row.
        return list(enumerate(_batch_adapter.validate_python(plain))), []  # type: ignore[arg-type]
    except ValidationError as exc:
        found = exc.errors(include_url=False)
    # loc is (row, field[, union member]): keep the row and the field, which is what callers can act on.
    errors = [FieldError(["items", *e["loc"][:2]], e["msg"], e["type"]) for e in found]
    bad = {e["loc"][0] for e in found if e["loc"]}
    good = [i for i in range(len(plain)) if i not in bad]
    rows = _batch_adapter.validate_python([plain[i] for i in good]) if good else []
    return list(zip(good, rows, strict=True)), errors  # type: ignore[arg-type]


def _subjects(session: Session, raw_units: Iterable[str], raw_entities: Iterable[str | uuid.UUID],
              ) -> tuple[dict[str, _Subject], dict[Any, _Subject]]:
    """The subjects a batch names, by the unit code or entity id as given; unknown ones are left out.

    Subjects not stored yet get provisional negative ids, replaced once they are created (after validation).
    """
    codes = {raw: normalize_code(raw) for raw in raw_units}
    # Unit codes are short alphanumerics; anything else is unknown without asking the database (which may
    # refuse NUL bytes or lone surrogates outright).
    listed = sorted({c for c in codes.values() if c.isascii() and c.isalnum()})
    known: dict[str, tuple[str, int | None]] = _UNIT_SUBJECTS.get_many(session, listed)  # type: ignore[assignment]
    asked = [code for code in listed if code not in known]
    for code, path, sid in _lookup(session, _UNITS_WITH_SUBJECTS, Unit.code, String, asked):
        known[code] = (path, sid)
        if sid is not None:  # a unit's subject, once stored, keeps its id
            _UNIT_SUBJECTS.put(session, code, (path, sid))
    by_unit = {code: _Subject("u:" + code, "unit", code, known[code][0], None, known[code][1])
               for code in listed if code in known}
    units = {raw: by_unit[code] for raw, code in codes.items() if code in by_unit}

    parsed: dict[Any, uuid.UUID] = {}
    for raw in raw_entities:
        try:
            parsed[raw] = raw if isinstance(raw, uuid.UUID) else uuid.UUID(raw)
        except ValueError:
            continue  # reported per row as an unknown entity
    ids = sorted(set(parsed.values()))
    found: dict[uuid.UUID, _Subject] = {}
    for eid, unit_code, path in _lookup(session, _ENTITIES_WITH_UNITS, Entity.id, Uuid, ids):
        found[eid] = _Subject(f"e:{eid}", "entity", unit_code, path, eid, None)
    keys = [s.key for s in found.values()]
    by_key = {s.key: s for s in found.values()}
    for key, sid in _lookup(session, _SUBJECT_IDS, Subject.key, String, keys):
        by_key[key].id = sid
    entities = {raw: found[eid] for raw, eid in parsed.items() if eid in found}
    provisional = -1
    for subject in (*by_unit.values(), *found.values()):
        if not subject.id:
            subject.id, provisional = provisional, provisional - 1
    return units, entities


def _store_new_subjects(session: Session, subjects: Sequence[_Subject]) -> dict[int, int]:
    """Insert the subjects that have provisional ids; returns provisional id -> stored id."""
    new = {s.key: s for s in subjects if s.id < 0}
    if not new:
        return {}
    rows = [dict(key=s.key, kind=s.kind, unit_code=s.unit_code, entity_id=s.entity_id) for s in new.values()]
    upsert_rows(session, Subject.__table__, rows, key=["key"])  # DO NOTHING: a concurrent creator may win
    remap: dict[int, int] = {}
    for key, sid in _lookup(session, _SUBJECT_IDS, Subject.key, String, sorted(new)):
        remap[new[key].id] = sid
        new[key].id = sid
    return remap


def _ts_text(ts: datetime) -> str:
    # isoformat with microseconds always matches SQLAlchemy's SQLite DateTime storage format once the
    # '+00:00' suffix is cut, so rows written here read back through the ORM like any other.
    return ts.astimezone(UTC).isoformat(" ", "microseconds")[:26]


def _parse_ts(ts: str | datetime) -> datetime | str:
    """An aware datetime, or the reason why not."""
    if isinstance(ts, datetime):
        return ts
    try:
        parsed = datetime.fromisoformat(ts)
    except ValueError:
        return "Input should be a valid datetime with a time zone, e.g. 2026-11-25T08:00:00+07:00"
    return parsed if parsed.tzinfo is not None else "Input should have timezone info"


def _moment(ts: str | datetime, sqlite: bool) -> tuple[float, Any, str, int] | None:
    """(epoch seconds, the time as the driver takes it, ISO text, epoch microseconds) or None when not aware."""
    parsed = _parse_ts(ts)
    if isinstance(parsed, str):
        return None
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 pushed off the calendar by its offset: out of range anyway
        return None
    # The integer microseconds sort rows faster than datetimes do (the batch is sorted by key once).
    return utc.timestamp(), (_ts_text(utc) if sqlite else utc), utc.isoformat(), (utc - EPOCH) // _MICROSECOND


def _row_errors(i: int, r: Mapping[str, Any], ind: IndicatorRef | None, subject: _Subject | None,
                units: Mapping[str, _Subject], entities: Mapping[Any, _Subject],
                latest_e: float) -> list[FieldError]:
    """Every reason a type-valid row is refused (the slow path, taken only for bad rows)."""
    errors = []
    code, unit, entity = r["indicator"], r.get("unit"), r.get("entity")
    if ind is None or not ind.is_active:
        why = f"unknown indicator {code!r}" if ind is None else f"indicator {code!r} is inactive"
        errors.append(FieldError(["items", i, "indicator"], why))
    if (unit is None) == (entity is None):
        errors.append(FieldError(["items", i, "entity"], SUBJECT_RULE))
    elif unit is not None and unit not in units:
        errors.append(FieldError(["items", i, "unit"], f"unknown unit {unit!r}"))
    elif entity is not None and entity not in entities:
        why = "Input should be a valid UUID" if isinstance(entity, str) and not _is_uuid(entity) else "unknown entity"
        errors.append(FieldError(["items", i, "entity"], f"{why}: {entity}"))
    elif ind is not None and subject is not None and ind.subject_kind not in ("any", subject.kind):
        errors.append(FieldError(["items", i, subject.kind], f"indicator {code!r} is measured on {ind.subject_kind}s"))
    parsed = _parse_ts(r["ts"])
    if isinstance(parsed, str):
        errors.append(FieldError(["items", i, "ts"], parsed))
    elif parsed.timestamp() < 0:
        errors.append(FieldError(["items", i, "ts"], "must not be before 1970-01-01"))
    elif parsed.timestamp() > latest_e:
        errors.append(FieldError(["items", i, "ts"], "must not be more than one day in the future"))
    return errors


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


_MISSING = object()
_RowT = tuple[int, int, Any, float, int, "int | None"]  # indicator_id, subject_id, time, value, quality, source_id


class _NotPlain(Exception):
    """A row the fast path cannot vouch for: the batch goes through pydantic instead."""


_KEYS = frozenset(ObservationDict.__annotations__)
_PLAIN_UNIT = re.compile(r"[A-Za-z0-9]{1,16}")


def _resolve(session: Session, items: Sequence[ObservationIn | Mapping[str, Any]], *, latest_e: float, sqlite: bool,
             source_id: int | None, fast: bool) -> tuple[Any, ...]:
    """Validate and resolve a batch to rows keyed for insertion; ValidationFailed with every row error.

    fast=True skips pydantic and checks each row in the per-row loop itself, accepting exactly what pydantic
    accepts for well-formed rows; anything unusual (a wrong type, an unknown name, an extra key) raises
    _NotPlain, and the batch is resolved again with fast=False so that the errors are pydantic's and complete.
    """
    if fast:
        try:
            valid: Any = enumerate(items)
            ind_codes = {r["indicator"] for r in items}  # type: ignore[index]
            unit_raws = {r.get("unit") for r in items} - {None}  # type: ignore[union-attr]
            entity_raws = {r.get("entity") for r in items} - {None}  # type: ignore[union-attr]
        except (KeyError, TypeError, AttributeError):  # not dicts, missing keys, unhashable values
            raise _NotPlain from None
        # Only names pydantic accepts as they are: ' 24781' would be normalised by the lookup but is refused.
        unit_raws = {u for u in unit_raws if type(u) is str and _PLAIN_UNIT.fullmatch(u)}
        entity_raws = {e for e in entity_raws if isinstance(e, uuid.UUID) or (type(e) is str and len(e) <= 64)}
        errors: list[FieldError] = []
    else:
        valid, errors = _validated(items)
        ind_codes = {r["indicator"] for _, r in valid}
        unit_raws = {r.get("unit") for _, r in valid} - {None}
        entity_raws = {r.get("entity") for _, r in valid} - {None}

    # Bulk lookups: a few queries per batch, never one per row.
    indicators = indicators_by_code(session, ind_codes, cached=True)
    units, entities = _subjects(session, unit_raws, entity_raws)  # type: ignore[arg-type]
    inf = float("inf")
    bounds = {r.id: (-inf if r.min_value is None else r.min_value, inf if r.max_value is None else r.max_value)
              for r in indicators.values()}

    # The per-row loop does dictionary lookups and comparisons only: it runs for every reading. A batch carries
    # few distinct times (a network reports all stations at once), so each is parsed and formatted once.
    # Rows keyed by one integer packing (indicator, subject, microseconds): hashed and sorted faster than tuples.
    rows: dict[int, tuple[int, int, Any, float, int, int | None]] = {}
    moments: dict[Any, tuple[float, Any, str, int] | None] = {}
    ind_get, unit_get, entity_get, moment_get = indicators.get, units.get, entities.get, moments.get
    keys, isfinite = _KEYS, math.isfinite
    out_of_range = 0
    try:
        for i, r in valid:
            # Extra keys are refused. A row of at most four keys needs no set check: indicator, ts and value are
            # required below (KeyError) and the fourth must be unit or entity, or the row has no subject.
            if fast and (type(r) is not dict or (len(r) > 4 and not keys.issuperset(r))):
                raise _NotPlain
            ind = ind_get(r["indicator"])
            unit, entity = r.get("unit"), r.get("entity")
            subject = unit_get(unit) if entity is None else entity_get(entity) if unit is None else None
            ts = r["ts"]
            moment = moment_get(ts, _MISSING)
            if moment is _MISSING:
                if fast and not ((type(ts) is str and len(ts) <= 64)
                                 or (isinstance(ts, datetime) and ts.utcoffset() is not None)):
                    raise _NotPlain
                moment = moments[ts] = _moment(ts, sqlite)
            if (ind is None or subject is None or moment is None or not ind.is_active
                    or not 0.0 <= moment[0] <= latest_e  # type: ignore[index]
                    or (ind.subject_kind != "any" and ind.subject_kind != subject.kind)):
                if fast:
                    raise _NotPlain
                errors.extend(_row_errors(i, r, ind, subject, units, entities, latest_e))
                continue
            iid, sid, m, value = ind.id, subject.id, moment[1], r["value"]  # type: ignore[index]
            quality = r.get("quality", 0)
            if fast:  # pydantic's StrictFloat (ints become floats, no bools, finite) and quality 0..2
                if type(value) is not float:
                    if type(value) is not int:
                        raise _NotPlain
                    try:
                        value = float(value)
                    except OverflowError:
                        raise _NotPlain from None
                if not isfinite(value) or type(quality) is not int or not 0 <= quality <= 2:
                    raise _NotPlain
            lo, hi = bounds[iid]
            if lo <= value <= hi:
                rows[(((iid << 32) + sid + _SID_BIAS) << 64) + moment[3]] = (  # type: ignore[index]
                    iid, sid, m, value, quality, source_id)  # a later copy wins
            else:  # kept, but marked bad and left out of rollups
                rows[(((iid << 32) + sid + _SID_BIAS) << 64) + moment[3]] = (  # type: ignore[index]
                    iid, sid, m, value, 2, source_id)
                out_of_range += 1
    except (KeyError, TypeError) as exc:  # a missing field, an unhashable value: only plain rows get this far
        if not fast:
            raise
        raise _NotPlain from exc
    if errors:
        errors.sort(key=lambda e: e.loc[1] if len(e.loc) > 1 and isinstance(e.loc[1], int) else -1)
        raise ValidationFailed(f"{len({tuple(e.loc[:2]) for e in errors})} invalid reading(s); nothing was written",
                               errors)
    return indicators, units, entities, rows, moments, bounds, out_of_range


LARGE_BATCH = 1_000  # readings from which a batch is handled with the collector's large-batch setting


def ingest(
    session: Session, *, actor: Actor, items: Sequence[ObservationIn | Mapping[str, Any]],
    now: datetime | None = None,
) -> IngestResult:
    """Validate and write a batch of readings, all or nothing, keeping rollups and latest values in step."""
    with large_allocations() if len(items) >= LARGE_BATCH else nullcontext():
        return _ingest(session, actor=actor, items=items, now=now)


def _ingest(session: Session, *, actor: Actor, items: Sequence[ObservationIn | Mapping[str, Any]],
            now: datetime | None) -> IngestResult:
    actor.require("observations:write")
    if len(items) > MAX_BATCH:
        raise ValidationFailed(f"a batch holds at most {MAX_BATCH} readings, got {len(items)}",
                               [FieldError(["items"], f"at most {MAX_BATCH} items")])
    if not items:
        return IngestResult(accepted=0, duplicates=0, flagged=0, batch_id=str(new_id()))
    latest_e = ((now or utcnow()) + MAX_AHEAD).timestamp()
    sqlite = session.get_bind().dialect.name == "sqlite"
    try:
        resolved = _resolve(session, items, latest_e=latest_e, sqlite=sqlite, source_id=actor.source_id, fast=True)
    except _NotPlain:  # some row needs pydantic's verdict: validate the whole batch and report every row error
        resolved = _resolve(session, items, latest_e=latest_e, sqlite=sqlite, source_id=actor.source_id, fast=False)
    indicators, units, entities, rows, moments, bounds, out_of_range = resolved
    source_id = actor.source_id

    # Every subject and indicator found was named by a valid row, so these are exactly the batch's own.
    subjects = list({s.key: s for s in (*units.values(), *entities.values())}.values())
    outside = sorted({s.unit_code for s in subjects if not actor.sees_path(s.unit_path)})
    if outside:
        shown = ", ".join(outside[:10]) + (" ..." if len(outside) > 10 else "")
        raise Forbidden(f"units {shown} are outside the scope of {actor.kind} {actor.name!r} ({actor.scope_code})")
    codes = sorted(indicators)
    denied = [c for c in codes if not actor.may_write("observations", c)]
    if denied:
        raise Forbidden(f"{actor.kind} {actor.name!r} may not write observations of {', '.join(denied)}")

    batch_id = str(new_id())
    # Subscribers on this node (rules, the live stream) get the new rows themselves; the outbox keeps the summary.
    live: dict[str, Any] = {"items": []}
    entry = record_change(session, topic="observations.ingested", aggregate_type="observation_batch",
                          aggregate_id=batch_id, payload={}, live=live)
    if sqlite:
        session.flush()  # the outbox row takes SQLite's write lock before we look for existing rows
    remap = _store_new_subjects(session, subjects)
    if remap:  # first readings of some subjects: swap their provisional ids for the stored ones
        mask = (1 << 64) - 1
        rows = {(((v[0] << 32) + remap.get(v[1], v[1]) + _SID_BIAS) << 64) + (k & mask):
                (v[0], remap.get(v[1], v[1]), *v[2:]) for k, v in rows.items()}  # type: ignore[misc]
    # Key order: inserts walk the primary key, rollups see time order. Keys are unique: values never compared.
    ordered = [rows[k] for k in sorted(rows)]
    micros = {m[1]: m[3] for m in moments.values() if m is not None}
    if sqlite:
        new, flagged = _write_sqlite(session, ordered, bounds if out_of_range else None)
        cols = _Columns.of(new, micros) if new else None
    else:
        new, flagged, cols = _write_postgresql(session, ordered, micros, bounds if out_of_range else None,
                                               out_of_range)
    accepted = len(new)
    live["items"] = _live_items(cols, indicators, subjects, moments)

    duplicates = len(items) - accepted
    seen = [m[0] for m in moments.values() if m is not None]
    entry.payload = {
        "batch_id": batch_id, "accepted": accepted, "duplicates": duplicates, "flagged": flagged,
        "indicators": codes, "units": sorted({s.unit_code for s in subjects}), "source_id": source_id,
        "ts_min": datetime.fromtimestamp(min(seen), UTC).isoformat() if seen else None,
        "ts_max": datetime.fromtimestamp(max(seen), UTC).isoformat() if seen else None,
    }
    OBSERVATIONS_INGESTED.labels("accepted").inc(accepted)
    OBSERVATIONS_INGESTED.labels("duplicate").inc(duplicates)
    OBSERVATIONS_INGESTED.labels("flagged").inc(flagged)
    return IngestResult(accepted=accepted, duplicates=duplicates, flagged=flagged, batch_id=batch_id)


_SQLITE_EXISTING = (
    # One statement, one index range per (indicator, subject) over the batch's times for that pair: json_each
    # drives the outer loop (CROSS JOIN fixes the order in SQLite) and each probe is a primary-key range scan.
    "SELECT o.indicator_id, o.subject_id, o.ts FROM json_each(?) AS j CROSS JOIN observations AS o "
    "WHERE o.indicator_id = json_extract(j.value, '$[0]') AND o.subject_id = json_extract(j.value, '$[1]') "
    "AND o.ts >= json_extract(j.value, '$[2]') AND o.ts <= json_extract(j.value, '$[3]')"
)
_SQLITE_INSERT = ("INSERT INTO observations (indicator_id, subject_id, ts, value, quality, source_id) "
                  "VALUES (?, ?, ?, ?, ?, ?)")
_ROLLUP_UPSERT = (
    'INSERT INTO {t} (indicator_id, subject_id, bucket, "count", "sum", "min", "max", last_ts, last_value) '
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (indicator_id, subject_id, bucket) DO UPDATE SET "
    '"count" = {t}."count" + excluded."count", "sum" = {t}."sum" + excluded."sum", '
    '"min" = min({t}."min", excluded."min"), "max" = max({t}."max", excluded."max"), '
    "last_value = CASE WHEN excluded.last_ts >= {t}.last_ts THEN excluded.last_value ELSE {t}.last_value END, "
    "last_ts = max({t}.last_ts, excluded.last_ts)"
)
_SQLITE_LATEST = (
    "INSERT INTO observation_latest (indicator_id, subject_id, ts, value, quality, source_id) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (indicator_id, subject_id) DO UPDATE SET "
    "ts = excluded.ts, value = excluded.value, quality = excluded.quality, source_id = excluded.source_id "
    "WHERE excluded.ts >= observation_latest.ts"
)


def _local_day_text(hour: str) -> str:
    """'YYYY-MM-DD HH' (a UTC hour) -> the stored text of the local (UTC+7) day that hour falls in."""
    local = datetime(int(hour[:4]), int(hour[5:7]), int(hour[8:10]), int(hour[11:13]), tzinfo=UTC) + VN_OFFSET
    return _ts_text(datetime(local.year, local.month, local.day, tzinfo=UTC) - VN_OFFSET)


def _live_items(cols: _Columns | None, indicators: Mapping[str, IndicatorRef], subjects: Sequence[_Subject],
                moments: Mapping[Any, tuple[float, Any, str, int] | None]) -> LiveReadings:
    """The new rows (as columns, sorted by key), in runs of one series, for subscribers (the rules engine, the live
    stream, packs)."""
    if cols is None:
        return LiveReadings([], [], [], [], [], [])
    code_of = {ref.id: code for code, ref in indicators.items()}
    unit_of = {s.id: s.unit_code for s in subjects}
    entity_of = {s.id: str(s.entity_id) if s.entity_id else None for s in subjects}
    iso_of = {m[3]: m[2] for m in moments.values() if m is not None}
    starts = _run_starts(cols.indicator, cols.subject)
    series = [(code_of[i], unit_of[s], entity_of[s])
              for i, s in zip(cols.indicator[starts].tolist(), cols.subject[starts].tolist(), strict=True)]
    stamps, index = np.unique(cols.us, return_inverse=True)
    return LiveReadings(series, [*starts[1:].tolist(), len(cols.us)], [iso_of[u] for u in stamps.tolist()],
                        index.tolist(), cols.value.tolist(), cols.quality.tolist())


def _write_sqlite(session: Session, ordered: list[_RowT],
                  bounds: Mapping[int, tuple[float, float]] | None) -> tuple[list[_RowT], int]:
    """Insert the new rows and fold them into rollups with a few executemany calls on the session's connection.

    ordered holds the batch's rows sorted by (indicator, subject, time text); bounds is given when some rows
    were out of range, to count the new ones among them. Returns the rows inserted and how many were flagged.
    """
    if not ordered:
        return [], 0
    probe = []
    for (iid, sid), group in groupby(ordered, key=itemgetter(0, 1)):
        members = list(group)
        probe.append((iid, sid, members[0][2], members[-1][2]))
    cur = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        existing = set(cur.execute(_SQLITE_EXISTING, (orjson.dumps(probe).decode(),)))
        new = [r for r in ordered if r[:3] not in existing] if existing else ordered
        if not new:
            return [], 0
        cur.executemany(_SQLITE_INSERT, new)

        # Rollup deltas of the good readings. Rows come in (indicator, subject, time) order, so each bucket is a
        # run of consecutive rows and the row just seen is the newest of its bucket so far.
        hourly: list[list[Any]] = []
        acc: list[Any] = [None, None, None]
        for iid, sid, text, value, quality, _src in new:
            if quality:
                continue
            hour = text[:13]
            if hour == acc[2] and sid == acc[1] and iid == acc[0]:
                acc[3] += 1
                acc[4] += value
                if value < acc[5]:
                    acc[5] = value
                elif value > acc[6]:
                    acc[6] = value
                acc[7], acc[8] = text, value
            else:
                acc = [iid, sid, hour, 1, value, value, value, text, value]
                hourly.append(acc)
        # Local days are whole UTC hours (UTC+7), so a day's delta is the sum of its hours' deltas.
        days: dict[str, str] = {}
        daily: list[list[Any]] = []
        day_acc: list[Any] = [None, None, None]
        for a in hourly:
            day = days.get(a[2]) or days.setdefault(a[2], _local_day_text(a[2]))
            if day == day_acc[2] and a[1] == day_acc[1] and a[0] == day_acc[0]:
                day_acc[3] += a[3]
                day_acc[4] += a[4]
                day_acc[5] = min(day_acc[5], a[5])
                day_acc[6] = max(day_acc[6], a[6])
                day_acc[7], day_acc[8] = a[7], a[8]
            else:
                day_acc = [a[0], a[1], day, *a[3:]]
                daily.append(day_acc)
        for a in hourly:
            a[2] += ":00:00.000000"
        cur.executemany(_ROLLUP_UPSERT.format(t="observation_rollups_hourly"), hourly)
        cur.executemany(_ROLLUP_UPSERT.format(t="observation_rollups_daily"), daily)
        latest = {(r[0], r[1]): r for r in new}  # in key order the last row of each pair is its newest
        cur.executemany(_SQLITE_LATEST, list(latest.values()))
        flagged = 0 if bounds is None else sum(
            1 for r in new if r[4] == 2 and not bounds[r[0]][0] <= r[3] <= bounds[r[0]][1])
        return new, flagged
    finally:
        cur.close()


_PG_COPY = ("COPY {table} (indicator_id, subject_id, ts, value, quality, source_id) FROM STDIN (FORMAT BINARY)")
_PG_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS saola_obs_staging (indicator_id int4 NOT NULL, subject_id int4 NOT NULL, "
    "ts timestamptz NOT NULL, value float8 NOT NULL, quality int2 NOT NULL, source_id int4) ON COMMIT DELETE ROWS; "
    "DELETE FROM saola_obs_staging"  # empty already, unless an earlier batch of this transaction used it
)
# Only when the batch repeats stored readings: insert what is new and name it, in key order.
_PG_INSERT_NEW = """
WITH ins AS (
    INSERT INTO observations (indicator_id, subject_id, ts, value, quality, source_id)
    SELECT indicator_id, subject_id, ts, value, quality, source_id FROM saola_obs_staging
    ON CONFLICT (indicator_id, subject_id, ts) DO NOTHING
    RETURNING indicator_id, subject_id, ts
  )
SELECT array_agg(ARRAY[indicator_id, subject_id] ORDER BY indicator_id, subject_id, ts),
       array_agg(ts ORDER BY indicator_id, subject_id, ts)
FROM ins
"""


# Small batches (single readings, the MQTT door's small rounds) are written in one round trip: the insert and the
# rollup deltas of what it inserted in one statement, with the batch as arrays. Past a few dozen rows COPY is
# cheaper although it takes more round trips: a 250-reading POST took 10.4 ms in the server by COPY against 14.8 ms
# by this statement (measured 2026-12-02; at 20 rows the two were even).
_PG_SMALL_ROWS = 32
_EPOCH_SQL = "timestamptz '1970-01-01 00:00:00+00'"
# The queue row of rollup deltas from array literals (one per column of observation_rollup_queue).
_QUEUE_ROW = ("SELECT %s::int4[], %s::int4[], %s::int8[], %s::int4[], %s::float8[], %s::float8[], %s::float8[], "
              "%s::int8[], %s::float8[], %s::int8[], %s::float8[], %s::int2[], %s::int4[]")
_QUEUE_INSERT = f"INSERT INTO {rollups.QUEUE_TABLE} {_QUEUE_ROW}"
# The insert and, when every row was new (the usual case), the rollup deltas Python computed for them, in one
# statement. When some rows were stored already the deltas are left out and the keys of the inserted rows come back,
# for the caller to queue the deltas of those alone.
_PG_SMALL_WRITE = f"""
WITH ins AS (
    INSERT INTO observations (indicator_id, subject_id, ts, value, quality, source_id)
    SELECT i, s, {_EPOCH_SQL} + u * interval '1 microsecond', v, q, src
    FROM unnest(%s::int4[], %s::int4[], %s::int8[], %s::float8[], %s::int2[], %s::int4[]) AS b(i, s, u, v, q, src)
    ON CONFLICT (indicator_id, subject_id, ts) DO NOTHING
    RETURNING indicator_id, subject_id, ts
  ),
  n AS (SELECT count(*) AS c FROM ins),
  q AS ({_QUEUE_INSERT} WHERE (SELECT c FROM n) = %s)
-- CASE runs its subqueries only when some rows were not inserted; both arrays read the same materialised rows in
-- the same order.
SELECT c, CASE WHEN c < %s THEN (SELECT array_agg(ARRAY[indicator_id, subject_id]) FROM ins) END,
       CASE WHEN c < %s THEN (SELECT array_agg(ts) FROM ins) END
FROM n
"""


def _pg_array(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal of numbers (None: NULL).

    psycopg adapts a Python list element by element; joining the text in one call is several times cheaper, and
    repr() of a float is its shortest exact form, which PostgreSQL reads back to the same double.
    """
    return "{" + ",".join(["NULL" if v is None else repr(v) for v in values]) + "}"


def _array_texts(rows: Sequence[_RowT], micros: Mapping[Any, int]) -> list[str]:
    """The rows' columns as PostgreSQL array literals (times as Unix microseconds)."""
    iids, sids, stamps, values, qualities, sources = zip(*rows, strict=True)
    return [_pg_array(iids), _pg_array(sids), _pg_array([micros[t] for t in stamps]), _pg_array(values),
            _pg_array(qualities), _pg_array(sources)]


# PostgreSQL's binary COPY format (documented with COPY): a signature, then per row the field count and each field
# as length + big-endian value (-1: NULL), then -1. A batch is packed column by column with numpy (a structured
# array with the row's layout): a tenth of struct.pack per row, itself a third of psycopg's write_row.
_PG_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_PG_TRAILER = b"\xff\xff"
_PG_EPOCH_MICROS = 946_684_800_000_000  # 2000-01-01T00:00:00Z, PostgreSQL's timestamp origin, in Unix microseconds
# An observation row: field count, then (length, value) per column; the source's length is -1 (NULL) when the batch
# has no source, and its value is left out.
_OBS_FIELDS = [("fields", ">i2"), ("n1", ">i4"), ("indicator", ">i4"), ("n2", ">i4"), ("subject", ">i4"),
               ("n3", ">i4"), ("ts", ">i8"), ("n4", ">i4"), ("value", ">f8"), ("n5", ">i4"), ("quality", ">i2"),
               ("n6", ">i4")]
_OBS_ROW = np.dtype([*_OBS_FIELDS, ("source", ">i4")])
_OBS_ROW_NO_SOURCE = np.dtype(_OBS_FIELDS)
# A one-dimensional array field: its length, then dimensions, has-nulls, element type oid, length and lower bound;
# then each element as length + value. The queue's columns: (type oid, big-endian numpy type) in table order.
_PG_ARRAY_HEAD = struct.Struct(">iiiiii").pack
_INT4, _INT8, _FLOAT8, _INT2 = (23, ">i4"), (20, ">i8"), (701, ">f8"), (21, ">i2")
_QUEUE_COLUMNS = (_INT4, _INT4, _INT8, _INT4, _FLOAT8, _FLOAT8, _FLOAT8, _INT8, _FLOAT8, _INT8, _FLOAT8, _INT2, _INT4)


class _Columns(NamedTuple):
    """A sorted batch as numpy columns, times as Unix microseconds: what COPY and the rollup deltas read."""

    indicator: np.ndarray
    subject: np.ndarray
    us: np.ndarray
    value: np.ndarray
    quality: np.ndarray
    source: int | None  # one per batch: the writing source's

    @classmethod
    def of(cls, rows: Sequence[_RowT], micros: Mapping[Any, int]) -> _Columns:
        """The columns of rows (all of one source, as a batch is)."""
        iids, sids, stamps, values, qualities, sources = zip(*rows, strict=True)
        return cls(np.array(iids, np.int32), np.array(sids, np.int32), np.array([micros[t] for t in stamps], np.int64),
                   np.array(values, np.float64), np.array(qualities, np.int16), sources[0])


def _copy_observations(cur: Any, table: str, cols: _Columns) -> None:
    """COPY observation rows in PostgreSQL's binary format, every column packed by numpy in one call."""
    packed = np.empty(len(cols.us), _OBS_ROW_NO_SOURCE if cols.source is None else _OBS_ROW)
    packed["fields"], packed["n1"], packed["n2"], packed["n3"], packed["n4"], packed["n5"] = 6, 4, 4, 8, 8, 2
    packed["indicator"], packed["subject"], packed["ts"] = cols.indicator, cols.subject, cols.us - _PG_EPOCH_MICROS
    packed["value"], packed["quality"] = cols.value, cols.quality
    if cols.source is None:
        packed["n6"] = -1
    else:
        packed["n6"], packed["source"] = 4, cols.source
    with cur.copy(_PG_COPY.format(table=table)) as copy:
        copy.write(_PG_SIGNATURE + packed.tobytes() + _PG_TRAILER)


def _copy_queue_row(cur: Any, columns: Sequence[Sequence[Any]]) -> None:
    """COPY one queue row, its 13 columns of deltas as binary arrays (numpy packs each column in one call)."""
    data = [_PG_SIGNATURE, struct.pack(">h", len(columns))]
    for values, (oid, kind) in zip(columns, _QUEUE_COLUMNS, strict=True):
        packed = np.empty(len(values), dtype=[("size", ">i4"), ("value", kind)])
        packed["size"] = packed.dtype["value"].itemsize
        packed["value"] = values
        data.append(_PG_ARRAY_HEAD(20 + packed.nbytes, 1, 0, oid, len(values), 1))
        data.append(packed.tobytes())
    data.append(_PG_TRAILER)
    with cur.copy(rollups.QUEUE_COPY) as copy:
        copy.write(b"".join(data))


_HOUR_US = 3_600_000_000


def _run_starts(*keys: np.ndarray) -> np.ndarray:
    """Where each run of equal keys begins, in rows sorted by those keys (the first row always does)."""
    first = np.zeros(len(keys[0]), dtype=bool)
    first[:1] = True
    for key in keys:
        first[1:] |= key[1:] != key[:-1]
    return np.flatnonzero(first)


def _rollup_deltas(cols: _Columns) -> list[np.ndarray]:
    """One rollup delta per (indicator, subject, UTC hour) of the rows, as the queue's 13 columns.

    Rows come sorted by (indicator, subject, time), so a bucket is a run of consecutive rows and its last row is
    its newest. A bucket with no good reading has n = 0 and zeros for the good-reading columns; a batch without a
    source has top_source 0 (see the queue table).
    """
    indicator, subject, us, value, quality = cols.indicator, cols.subject, cols.us, cols.value, cols.quality
    n = len(us)
    hour = us - us % _HOUR_US
    starts = _run_starts(indicator, subject, hour)
    newest = np.append(starts[1:], n) - 1
    good = quality == 0
    counts = np.add.reduceat(good.astype(np.int32), starts)
    none = counts == 0
    totals = np.add.reduceat(np.where(good, value, 0.0), starts)
    lows = np.minimum.reduceat(np.where(good, value, np.inf), starts)
    highs = np.maximum.reduceat(np.where(good, value, -np.inf), starts)
    last_good = np.maximum.reduceat(np.where(good, np.arange(n), -1), starts)
    lows[none], highs[none], last_good[none] = 0.0, 0.0, 0
    lasts = np.where(none, 0, us[last_good])
    last_values = np.where(none, 0.0, value[last_good])
    return [indicator[starts], subject[starts], hour[starts], counts, totals, lows, highs, lasts, last_values,
            us[newest], value[newest], quality[newest], np.full(len(starts), cols.source or 0, np.int32)]


def _write_postgresql(session: Session, ordered: list[_RowT], micros: Mapping[Any, int],
                      bounds: Mapping[int, tuple[float, float]] | None, out_of_range: int,
                      ) -> tuple[list[_RowT], int, _Columns | None]:
    """COPY the batch straight into observations and queue its rollup deltas, in the caller's transaction.

    A batch that repeats stored readings makes the COPY fail on the primary key: it is then rolled back to a
    savepoint and written through a staging table with ON CONFLICT DO NOTHING, which names the new rows. The
    deltas are folded into rollups and latest values after commit (rollups.py). Returns the rows inserted, how
    many of them were flagged out of range, and their columns (None when there are none).
    """
    if not ordered:
        return [], 0, None
    pg = session.connection().connection.driver_connection
    cols: _Columns | None = _Columns.of(ordered, micros)
    if len(ordered) <= _PG_SMALL_ROWS:
        n = len(ordered)
        with pg.cursor() as cur:  # type: ignore[union-attr]
            deltas = [_pg_array(column.tolist()) for column in _rollup_deltas(cols)]  # type: ignore[arg-type]
            cur.execute(_PG_SMALL_WRITE, [*_array_texts(ordered, micros), *deltas, n, n, n])
            accepted, pairs, times = cur.fetchone()  # type: ignore[misc]
            if accepted == n:
                new, flagged = ordered, out_of_range
            else:
                inserted = {(i, s, t) for (i, s), t in zip(pairs or [], times or [], strict=True)}
                new = [r for r in ordered if r[:3] in inserted]
                flagged = 0 if bounds is None else sum(
                    1 for r in new if r[4] == 2 and not bounds[r[0]][0] <= r[3] <= bounds[r[0]][1])
                cols = _Columns.of(new, micros) if new else None
                if cols is not None:
                    cur.execute(_QUEUE_INSERT, [_pg_array(column.tolist()) for column in _rollup_deltas(cols)])
        if new:
            rollups.mark_queued(session)
        return new, flagged, cols
    with pg.cursor() as cur:  # type: ignore[union-attr]
        cur.execute("SAVEPOINT saola_obs")
        try:
            _copy_observations(cur, "observations", cols)  # type: ignore[arg-type]
        except psycopg.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT saola_obs")
            cur.execute(_PG_STAGING)
            _copy_observations(cur, "saola_obs_staging", cols)  # type: ignore[arg-type]
            cur.execute(_PG_INSERT_NEW)
            pairs, times = cur.fetchone()  # type: ignore[misc]
            inserted = {(i, s, t) for (i, s), t in zip(pairs or [], times or [], strict=True)}
            new = [r for r in ordered if r[:3] in inserted]
            flagged = 0 if bounds is None else sum(
                1 for r in new if r[4] == 2 and not bounds[r[0]][0] <= r[3] <= bounds[r[0]][1])
            cols = _Columns.of(new, micros) if new else None
        else:
            new, flagged = ordered, out_of_range
        # The savepoint is left to the commit: releasing it would cost a round trip and gain nothing.
        if cols is not None:
            _copy_queue_row(cur, _rollup_deltas(cols))
    if new:
        rollups.mark_queued(session)
    return new, flagged, cols


# ---------------------------------------------------------------------------------------------------------------
# reads


def _indicator(session: Session, code: str) -> IndicatorRef:
    ref = indicators_by_code(session, [code]).get(code)
    if ref is None:
        raise NotFound(f"indicator {code!r} not found")
    return ref


def _unit_in_scope(session: Session, actor: Actor, code: str) -> Unit:
    unit = session.get(Unit, normalize_code(code)) if len(code) <= 16 and code.isascii() and code.isalnum() else None
    if unit is None or not actor.sees_path(unit.path):
        raise NotFound(f"unit {code!r} not found")
    return unit


def _subtree(path: str, column: ColumnElement[str]) -> ColumnElement[bool]:
    return or_(column == path, column.startswith(path + ".", autoescape=True))


def _subject_condition(
    session: Session, actor: Actor, column: Any, *, unit: str | None, entity: uuid.UUID | None,
    within: str | None, kind: SubjectKind | None,
) -> ColumnElement[bool] | None:
    """SQL condition on subject_id for the requested subject(s); None when the subject has no data yet."""
    given = [n for n, v in (("unit", unit), ("entity", entity), ("within", within)) if v is not None]
    if len(given) != 1:
        raise ValidationFailed("give exactly one of unit, entity or within",
                               [FieldError(["query", given[1] if len(given) > 1 else "unit"],
                                           "give exactly one of unit, entity or within")])
    if within is not None:
        root = _unit_in_scope(session, actor, within)
        sub = select(Subject.id).join(Unit, Unit.code == Subject.unit_code).where(_subtree(root.path, Unit.path))
        if kind is not None:
            sub = sub.where(Subject.kind == kind)
        return column.in_(sub.scalar_subquery())
    if unit is not None:
        key = "u:" + _unit_in_scope(session, actor, unit).code
    else:
        found = session.execute(select(Entity.id, Unit.path).join(Unit, Unit.code == Entity.unit_code)
                                .where(Entity.id == entity)).first()
        if found is None or not actor.sees_path(found.path):
            raise NotFound(f"entity {entity} not found")
        key = f"e:{entity}"
    sid = session.scalar(select(Subject.id).where(Subject.key == key))
    return None if sid is None else column == sid


def _minute(dialect: str, col: Any) -> ColumnElement[Any]:
    if dialect == "sqlite":  # stored text 'YYYY-MM-DD HH:MM:SS.ffffff': cut after the minute
        expr = func.substr(col, 1, 16).concat(":00.000000")
    else:
        expr = func.date_trunc("minute", func.timezone("UTC", col))
    return type_coerce(expr, UTCDateTime())


def _month(dialect: str, col: Any) -> ColumnElement[Any]:
    # Local (UTC+7) month of a daily bucket, returned as the UTC instant of that month's first local midnight.
    if dialect == "sqlite":
        expr = func.strftime("%Y-%m-%d %H:%M:%S.000000", func.strftime("%Y-%m-01", col, "+7 hours"), "-7 hours")
    else:
        expr = (func.date_trunc("month", func.timezone("UTC", col) + literal_column("interval '7 hours'"))
                - literal_column("interval '7 hours'"))
    return type_coerce(expr, UTCDateTime())


def _floor(ts: datetime, bucket: Bucket) -> datetime:
    """The start of the bucket holding ts (hour in UTC; day and month in Vietnam's local time)."""
    ts = ts.astimezone(UTC)
    if bucket == "hour":
        return ts.replace(minute=0, second=0, microsecond=0)
    if bucket == "minute":
        return ts.replace(second=0, microsecond=0)
    if bucket in ("day", "month"):
        local = ts + timedelta(seconds=VN_OFFSET_S)
        return local_to_utc(local.year, local.month, local.day if bucket == "day" else 1)
    return ts


_BUCKET_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_LAST_QUERY_TIME = datetime(2200, 1, 1, tzinfo=UTC)


def _query_time(value: datetime, name: str) -> datetime:
    """A query bound in UTC, or a 422 naming it: aware, between 1970 and 2200."""
    try:
        utc = value.astimezone(UTC) if value.tzinfo is not None else None
    except OverflowError:  # for example year 1 with a positive offset
        utc = None
    if utc is None or not EPOCH <= utc <= _LAST_QUERY_TIME:
        raise ValidationFailed(f"{name} must be a time with a time zone between 1970 and 2200",
                               [FieldError(["query", name], "aware time between 1970 and 2200 expected")])
    return utc


def query_series(
    session: Session, *, actor: Actor, indicator: str, unit: str | None = None, entity: uuid.UUID | None = None,
    within: str | None = None, kind: SubjectKind | None = None, start: datetime | None = None,
    end: datetime | None = None, bucket: Bucket = "hour", agg: Agg | None = None, max_quality: int = 0,
    now: datetime | None = None,
) -> Series:
    """A series of one indicator for a subject (or aggregated over a unit's subtree) between start and end.

    hour, day and month read the rollup tables (good readings only); raw and minute read observations through
    the primary key, including readings up to max_quality.
    """
    actor.require("observations:read")
    ind = _indicator(session, indicator)
    end = _query_time(end or now or utcnow(), "end")
    start = _query_time(start, "start") if start is not None else end - timedelta(hours=24)
    if start >= end:
        raise ValidationFailed("start must be before end", [FieldError(["query", "start"], "must be before end")])
    if bucket in ("hour", "day", "month") and max_quality > 0:
        raise ValidationFailed("rollups keep good readings only; use bucket raw or minute for max_quality > 0",
                               [FieldError(["query", "max_quality"], "only 0 with hour, day or month")])
    span = _BUCKET_SECONDS.get(bucket)
    if span and (end - _floor(start, bucket)).total_seconds() / span > MAX_POINTS:
        raise ValidationFailed(f"more than {MAX_POINTS} {bucket} buckets asked for; narrow start/end or use a "
                               f"coarser bucket", [FieldError(["query", "bucket"], f"over {MAX_POINTS} points")])
    agg = agg or ind.aggregation  # type: ignore[assignment]
    result = Series(indicator=ind.code, bucket=bucket, agg=agg, start=start, end=end, points=[])  # type: ignore[arg-type]
    dialect = session.get_bind().dialect.name

    table: Any = Observation if bucket in ("raw", "minute") else HourlyRollup if bucket == "hour" else DailyRollup
    time_col = table.ts if table is Observation else table.bucket
    subject = _subject_condition(session, actor, table.subject_id, unit=unit, entity=entity, within=within,
                                 kind=kind)
    if subject is None:
        return result
    where = [table.indicator_id == ind.id, subject, time_col >= _floor(start, bucket), time_col < end]
    if table is Observation:
        where.append(Observation.quality <= max_quality)
    key = (time_col if bucket in ("raw", "hour", "day") else
           _minute(dialect, time_col) if bucket == "minute" else _month(dialect, time_col)).label("b")
    stmt = _aggregate(table, key, agg, where)  # type: ignore[arg-type]
    points = [Point(ts=b, value=v, count=n) for b, v, n in session.execute(stmt.limit(MAX_POINTS + 1))]
    if len(points) > MAX_POINTS:
        raise ValidationFailed(f"more than {MAX_POINTS} points; narrow start/end or use a coarser bucket",
                               [FieldError(["query", "bucket"], f"over {MAX_POINTS} points")])
    result.points = points
    return result


def _aggregate(table: Any, key: ColumnElement[Any], agg: Agg, where: list[ColumnElement[bool]]) -> Select[Any]:
    """SELECT bucket, value, count grouped by bucket, from raw readings or from rollups."""
    raw = table is Observation
    n = func.count() if raw else func.sum(table.count)
    if agg == "last":
        # The value of the newest reading in each bucket, across every subject asked for.
        newest = table.ts if raw else table.last_ts
        ranked = select(
            key, (table.value if raw else table.last_value).label("v"),
            (literal(1) if raw else table.count).label("c"),
            func.row_number().over(partition_by=key, order_by=(newest.desc(), table.subject_id.desc())).label("rn"),
        ).where(*where).subquery()
        return (select(ranked.c.b, func.max(ranked.c.v).filter(ranked.c.rn == 1), func.sum(ranked.c.c))
                .group_by(ranked.c.b).order_by(ranked.c.b))
    if raw:
        value = {"avg": func.avg(table.value), "sum": func.sum(table.value), "min": func.min(table.value),
                 "max": func.max(table.value), "count": func.count()}[agg]
    else:
        value = {"avg": func.sum(table.sum) / func.sum(table.count), "sum": func.sum(table.sum),
                 "min": func.min(table.min), "max": func.max(table.max), "count": func.sum(table.count)}[agg]
    return select(key, value, n).where(*where).group_by(key).order_by(key)


def latest(
    session: Session, *, actor: Actor, indicators: Sequence[str], within: str | None = None,
    kind: SubjectKind | None = None, limit: int = 1000, now: datetime | None = None,
) -> list[LatestRead]:
    """The newest reading per subject of some indicators, from the latest-value table, inside the actor's scope."""
    actor.require("observations:read")
    refs = indicators_by_code(session, indicators)
    unknown = sorted(set(indicators) - set(refs))
    if unknown:
        raise NotFound(f"indicator(s) {', '.join(unknown)} not found")
    now = now or utcnow()
    stmt = (
        select(Indicator.code, Subject.kind, Subject.unit_code, Subject.entity_id, Unit.name, Entity.name,
               LatestObservation.ts, LatestObservation.value, LatestObservation.quality)
        .join(Subject, Subject.id == LatestObservation.subject_id)
        .join(Unit, Unit.code == Subject.unit_code)
        .join(Indicator, Indicator.id == LatestObservation.indicator_id)
        .outerjoin(Entity, Entity.id == Subject.entity_id)
        .where(LatestObservation.indicator_id.in_([r.id for r in refs.values()]), scope_condition(actor, Unit.path))
    )
    if within is not None:
        stmt = stmt.where(_subtree(_unit_in_scope(session, actor, within).path, Unit.path))
    if kind is not None:
        stmt = stmt.where(Subject.kind == kind)
    stmt = stmt.order_by(Indicator.code, Unit.path, Subject.key).limit(limit)
    return [
        LatestRead(indicator=code, subject_kind=skind, unit_code=ucode, entity_id=eid,
                   label=(ename if skind == "entity" and ename else uname), ts=ts, value=value, quality=quality,
                   age_seconds=round((now - ts).total_seconds(), 3))
        for code, skind, ucode, eid, uname, ename, ts, value, quality in session.execute(stmt)
    ]

