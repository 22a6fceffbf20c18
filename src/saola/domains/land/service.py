"""Land services: point, key and box lookups (public and scoped), and the one bulk write path for parcels.

Public functions take `actor=None` for citizen-facing answers: those never read land_parcel_private.
A signed-in actor needs 'land:read' and sees only parcels of communes inside its scope; holder data comes
with 'land:private:read'.
"""

from __future__ import annotations

import itertools
import uuid
from collections import namedtuple
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Dialect, Float, Integer, LargeBinary, String, Table, delete, func, select
from sqlalchemy.orm import Session

from saola.core.audit.service import audit
from saola.core.auth.context import Actor
from saola.core.errors import FieldError, Forbidden, NotFound, ValidationFailed
from saola.core.units.models import Unit
from saola.core.units.service import normalize_code, scope_condition
from saola.db.base import current_node
from saola.db.ids import new_id
from saola.db.outbox import record_change
from saola.db.types import utcnow
from saola.domains.land.codes import describe
from saola.domains.land.crs import check_point
from saola.domains.land.models import LandParcel, LandParcelPrivate
from saola.domains.land.spatial import EngineName, ParcelFilter, db_key, engine_for, mark_changed

NEIGHBOUR_DISTANCE = 1e-6  # degrees (about 0.1 m): parcels this close count as touching
MAP_MAX_FEATURES = 10_000
PRIVATE_FIELDS = ("holder_name", "certificate_no", "certificate_issued_on")
BBox = tuple[float, float, float, float]

_PUBLIC_NAMES = (
    "id", "unit_code", "sheet_no", "parcel_no", "area_m2", "land_use", "primary_use", "allowed_use",
    "building_density_pct", "floors_min", "floors_max", "land_use_coefficient", "setback_m", "geom_wkb", "min_lon",
    "min_lat", "max_lon", "max_lat", "label_lon", "label_lat", "updated_at",
)
ParcelRow = namedtuple("ParcelRow", [*_PUBLIC_NAMES, *PRIVATE_FIELDS], defaults=(None,) * len(PRIVATE_FIELDS))


# --- units -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _UnitInfo:
    code: str
    name: str
    path: str
    level: str
    parent_code: str | None


_UNITS: dict[tuple[str, str], _UnitInfo] = {}


def _unit(session: Session, code: str) -> _UnitInfo | None:
    """A unit's name and path, cached (unit names change only when the official list is reloaded).

    Misses are not cached: anyone may ask the public API for any code.
    """
    key = (db_key(session), code)
    found = _UNITS.get(key)
    if found is None:
        row = session.execute(select(Unit.code, Unit.name, Unit.path, Unit.level, Unit.parent_code)
                              .where(Unit.code == code)).first()
        if row is None:
            return None
        found = _UNITS[key] = _UnitInfo(*row)
    return found


def commune_or_422(session: Session, code: str | int, *, loc: Sequence[str | int]) -> _UnitInfo:
    """The commune with this code; 422 naming the field when there is no such commune."""
    unit = _unit(session, normalize_code(code))
    if unit is None or unit.level != "commune":
        raise ValidationFailed(f"unknown commune code {code!r}", [FieldError(list(loc), f"unknown commune {code!r}")])
    return unit


# --- views -------------------------------------------------------------------------------------------------


class _Reader:
    """Parcel rows by id straight from the driver, decoded by SQLAlchemy's own type processors.

    A lookup is the hot path of the public API: the generic statement path costs several times more than
    SQLite's own work for one row, so the SQL is prebuilt per dialect and run on the session's connection
    (inside its transaction).
    """

    def __init__(self, dialect: Dialect) -> None:
        parcels, private = LandParcel.__table__, LandParcelPrivate.__table__
        columns = [parcels.c[n] for n in _PUBLIC_NAMES] + [private.c[n] for n in PRIVATE_FIELDS]
        plain = (Float, Integer, String, LargeBinary)  # the drivers return these as Python values already
        self.procs = [None if isinstance(c.type, plain) else c.type.dialect_impl(dialect).result_processor(
            dialect, None) for c in columns]
        self.bind_id = parcels.c.id.type.dialect_impl(dialect).bind_processor(dialect) or (lambda v: v)
        self.mark = "?" if dialect.paramstyle == "qmark" else "%s"
        public = ", ".join(f"p.{n}" for n in _PUBLIC_NAMES)
        self.public_sql = f"SELECT {public} FROM land_parcels p WHERE p.id IN "
        self.private_sql = (f"SELECT {public}, {', '.join(f'h.{n}' for n in PRIVATE_FIELDS)} FROM land_parcels p "
                            f"LEFT OUTER JOIN land_parcel_private h ON h.parcel_id = p.id WHERE p.id IN ")

    def rows(self, session: Session, ids: Sequence[uuid.UUID], *, private: bool) -> list[ParcelRow]:
        """The rows of these ids, in no particular order."""
        driver = session.connection().connection.driver_connection
        assert driver is not None
        procs = self.procs
        out: list[ParcelRow] = []
        for start in range(0, len(ids), 500):
            part = ids[start: start + 500]
            sql = (self.private_sql if private else self.public_sql) + f"({', '.join([self.mark] * len(part))})"
            cursor = driver.cursor()
            try:
                cursor.execute(sql, [self.bind_id(i) for i in part])
                for raw in cursor.fetchall():
                    out.append(ParcelRow(*[p(v) if p is not None and v is not None else v
                                           for p, v in zip(procs, raw, strict=False)]))
            finally:
                cursor.close()
        return out


_READERS: dict[str, _Reader] = {}


def _fetch(session: Session, ids: Sequence[uuid.UUID], *, private: bool) -> list[ParcelRow]:
    """Rows of these parcels in the given order (ids that vanished meanwhile are skipped)."""
    if not ids:
        return []
    dialect = session.get_bind().dialect
    reader = _READERS.get(dialect.name)
    if reader is None:
        reader = _READERS[dialect.name] = _Reader(dialect)
    rows = {r.id: r for r in reader.rows(session, ids, private=private)}
    return [rows[i] for i in ids if i in rows]


def _land_uses(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        entry = describe(item.get("code"))
        out.append({"code": item.get("code"), "name_vi": entry.name_vi if entry else "",
                    "name_en": entry.name_en if entry else "", "area_m2": item.get("area_m2")})
    return out


def _view(session: Session, row: Any, *, geometry: bool, private: bool) -> dict[str, Any]:
    """The answer for one parcel; holder data only when `private` (the row then carries it)."""
    commune = _unit(session, row.unit_code)
    province = _unit(session, commune.parent_code) if commune and commune.parent_code else None
    allowed = describe(row.allowed_use)
    view: dict[str, Any] = {
        "id": str(row.id),
        "commune": {"code": row.unit_code, "name": commune.name if commune else ""},
        "province": {"code": province.code, "name": province.name} if province else None,
        "sheet_no": row.sheet_no,
        "parcel_no": row.parcel_no,
        "area_m2": row.area_m2,
        "primary_use": row.primary_use,
        "land_use": _land_uses(row.land_use or []),
        "planning": {
            "allowed_use": row.allowed_use,
            "allowed_use_name_vi": allowed.name_vi if allowed else None,
            "allowed_use_name_en": allowed.name_en if allowed else None,
            "building_density_pct": row.building_density_pct,
            "floors_min": row.floors_min,
            "floors_max": row.floors_max,
            "land_use_coefficient": row.land_use_coefficient,
            "setback_m": row.setback_m,
        },
        "label_point": (row.label_lon, row.label_lat),
        "bbox": (row.min_lon, row.min_lat, row.max_lon, row.max_lat),
        "geometry": orjson.loads(shapely.to_geojson(shapely.from_wkb(row.geom_wkb))) if geometry else None,
        "updated_at": row.updated_at,
    }
    if private:
        has_holder = any(getattr(row, f) is not None for f in PRIVATE_FIELDS)
        view["holder"] = {f: getattr(row, f) for f in PRIVATE_FIELDS} if has_holder else None
    return view


def _visible(session: Session, actor: Actor | None, rows: list[Any]) -> list[Any]:
    if actor is None:
        return rows
    out = []
    for r in rows:
        unit = _unit(session, r.unit_code)
        if unit is not None and actor.sees_path(unit.path):
            out.append(r)
    return out


def _views(session: Session, actor: Actor | None, ids: Sequence[uuid.UUID], *, geometry: bool) -> list[dict]:
    private = actor is not None and actor.can("land:private:read")
    rows = _visible(session, actor, _fetch(session, ids, private=private))
    views = [_view(session, r, geometry=geometry, private=private) for r in rows]
    shown = [v["id"] for v in views if v.get("holder")]
    if shown and actor is not None:  # reading personal data leaves a trace in the audit log
        audit(session, actor=actor, action="land.holder.read", target_type="land_parcel", target_id=shown[0],
              detail={"parcels": shown[:50]})
    return views


def _check_reader(actor: Actor | None) -> None:
    if actor is not None:
        actor.require("land:read")


# --- lookups -----------------------------------------------------------------------------------------------


def lookup_point(
    session: Session, *, actor: Actor | None, lon: float, lat: float, neighbours: bool = False,
    geometry: bool = True, engine: EngineName = "auto",
) -> dict[str, Any]:
    """The parcels containing a point (both parcels on a shared edge), with their touching neighbours if asked."""
    _check_reader(actor)
    check_point(lon, lat)
    spatial = engine_for(session, engine)
    ids = spatial.at_point(session, lon, lat)
    found = _views(session, actor, ids, geometry=geometry)
    result: dict[str, Any] = {"lon": lon, "lat": lat, "parcels": found, "neighbours": None}
    if neighbours:
        result["neighbours"] = _views(session, actor, neighbour_ids(session, found_ids=ids, engine=engine),
                                      geometry=geometry)
    return result


def neighbour_ids(session: Session, *, found_ids: Sequence[uuid.UUID], engine: EngineName = "auto") -> list[uuid.UUID]:
    """Parcels touching any of these parcels (within NEIGHBOUR_DISTANCE), the parcels themselves left out."""
    spatial = engine_for(session, engine)
    seen = set(found_ids)
    out: list[uuid.UUID] = []
    for row in _fetch(session, found_ids, private=False):
        for pid in spatial.near(session, shapely.from_wkb(row.geom_wkb), NEIGHBOUR_DISTANCE):
            if pid not in seen:
                seen.add(pid)
                out.append(pid)
    return out


def get_by_key(
    session: Session, *, actor: Actor | None, commune: str, sheet_no: int, parcel_no: int, geometry: bool = True,
) -> dict[str, Any]:
    """One parcel by commune, sheet and parcel number; 422 for an unknown commune, 404 when absent or out of scope."""
    _check_reader(actor)
    unit = commune_or_422(session, commune, loc=("path", "commune"))
    pid = session.scalar(select(LandParcel.id).where(LandParcel.unit_code == unit.code,
                                                     LandParcel.sheet_no == sheet_no,
                                                     LandParcel.parcel_no == parcel_no))
    views = _views(session, actor, [pid], geometry=geometry) if pid else []
    if not views:
        raise NotFound(f"parcel {sheet_no}/{parcel_no} of commune {unit.code} not found")
    return views[0]


def get_by_id(session: Session, *, actor: Actor | None, parcel_id: uuid.UUID, geometry: bool = True) -> dict[str, Any]:
    """One parcel by id; 404 when absent or outside the caller's scope."""
    _check_reader(actor)
    views = _views(session, actor, [parcel_id], geometry=geometry)
    if not views:
        raise NotFound(f"parcel {parcel_id} not found")
    return views[0]


def area_geometry(bbox: BBox) -> BaseGeometry:
    """The query geometry of a box: a point when it has no size, a segment when it is flat, else a rectangle."""
    x0, y0, x1, y1 = bbox
    if x0 == x1 and y0 == y1:
        return shapely.Point(x0, y0)
    if x0 == x1 or y0 == y1:
        return shapely.LineString([(x0, y0), (x1, y1)])
    return shapely.box(x0, y0, x1, y1)


def check_bbox(bbox: BBox, *, loc: Sequence[str | int] = ("query", "bbox")) -> None:
    """Raise 422 when a box is not finite or its corners are swapped."""
    x0, y0, x1, y1 = bbox
    if not all(np.isfinite(v) for v in bbox) or not (-180 <= x0 <= 180 and -180 <= x1 <= 180):
        raise ValidationFailed("bbox has invalid numbers", [FieldError(list(loc), "expected finite lon/lat values")])
    if not (-90 <= y0 <= 90 and -90 <= y1 <= 90):
        raise ValidationFailed("bbox latitude outside [-90, 90]", [FieldError(list(loc), "latitude out of range")])
    if x0 > x1 or y0 > y1:
        raise ValidationFailed("bbox corners are swapped",
                               [FieldError(list(loc), "expected minlon,minlat,maxlon,maxlat")])


def search(
    session: Session, *, actor: Actor | None, bbox: BBox | None = None, where: ParcelFilter = ParcelFilter(),
    limit: int = 100, offset: int = 0, engine: EngineName = "auto",
) -> tuple[int, list[uuid.UUID]]:
    """Total and one page of parcel ids intersecting a box (real geometry, not envelope) and passing a filter."""
    _check_reader(actor)
    if bbox is not None:
        check_bbox(bbox)
    if actor is not None:
        where = _scoped(session, actor, where)
    spatial = engine_for(session, engine)
    return spatial.search(session, geometry=area_geometry(bbox) if bbox else None, where=where, limit=limit,
                          offset=offset)


def _scoped(session: Session, actor: Actor, where: ParcelFilter) -> ParcelFilter:
    """Narrow a filter to the communes the actor sees (no condition for a nation-wide actor)."""
    if actor.scope_path == "VN":
        return where
    codes = frozenset(session.scalars(select(Unit.code).where(Unit.level == "commune",
                                                              scope_condition(actor, Unit.path))))
    if where.unit_codes is not None:
        codes = codes & where.unit_codes
    return ParcelFilter(unit_codes=codes, sheet_no=where.sheet_no, parcel_no=where.parcel_no,
                        primary_use=where.primary_use, allowed_use=where.allowed_use)


def feature(row_view: dict[str, Any]) -> dict[str, Any]:
    """A public parcel view as a flat GeoJSON Feature (the OGC API and the map use it)."""
    planning = row_view["planning"]
    return {
        "type": "Feature",
        "id": row_view["id"],
        "geometry": row_view["geometry"],
        "properties": {
            "commune_code": row_view["commune"]["code"],
            "commune_name": row_view["commune"]["name"],
            "sheet_no": row_view["sheet_no"],
            "parcel_no": row_view["parcel_no"],
            "area_m2": row_view["area_m2"],
            "land_use": row_view["primary_use"],
            "land_use_name": row_view["land_use"][0]["name_vi"] if row_view["land_use"] else None,
            "land_uses": "+".join(u["code"] for u in row_view["land_use"]),
            "allowed_use": planning["allowed_use"],
            "building_density_pct": planning["building_density_pct"],
            "floors_min": planning["floors_min"],
            "floors_max": planning["floors_max"],
            "land_use_coefficient": planning["land_use_coefficient"],
            "setback_m": planning["setback_m"],
        },
    }


def public_features(session: Session, ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    """Public GeoJSON Features of these parcels, in order."""
    return [feature(v) for v in _views(session, None, ids, geometry=True)]


def map_geojson(
    session: Session, *, bbox: BBox, zoom: int, limit: int = 5000, engine: EngineName = "auto",
) -> bytes:
    """A FeatureCollection for the map: slim properties, geometries simplified to half a pixel at this zoom."""
    total, ids = search(session, actor=None, bbox=bbox, limit=min(limit, MAP_MAX_FEATURES), engine=engine)
    rows = _fetch(session, ids, private=False)
    geoms = shapely.from_wkb([r.geom_wkb for r in rows]) if rows else np.empty(0, dtype=object)
    if len(geoms) and zoom < 19:
        tolerance = 360.0 / (256 * 2 ** zoom) / 2
        geoms = shapely.simplify(geoms, tolerance, preserve_topology=True)
    geoms = shapely.transform(geoms, lambda c: np.round(c, 7)) if len(geoms) else geoms
    texts = shapely.to_geojson(geoms) if len(geoms) else []
    features = [
        {"type": "Feature", "id": str(r.id), "geometry": orjson.Fragment(t),
         "properties": {"commune_code": r.unit_code, "sheet_no": r.sheet_no, "parcel_no": r.parcel_no,
                        "land_use": r.primary_use, "allowed_use": r.allowed_use, "area_m2": round(r.area_m2, 1)}}
        for r, t in zip(rows, texts, strict=True)
    ]
    return orjson.dumps({"type": "FeatureCollection", "numberMatched": total, "numberReturned": len(features),
                         "truncated": total > len(features), "zoom": zoom, "features": features})


def extent(session: Session) -> BBox | None:
    """The bounding box of every parcel, or None when there are none."""
    row = session.execute(select(func.min(LandParcel.min_lon), func.min(LandParcel.min_lat),
                                 func.max(LandParcel.max_lon), func.max(LandParcel.max_lat))).one()
    return None if row[0] is None else (row[0], row[1], row[2], row[3])


def count_parcels(session: Session, *, unit_codes: Sequence[str] | None = None) -> dict[str, int]:
    """Number of parcels per commune (all communes, or these)."""
    stmt = select(LandParcel.unit_code, func.count()).group_by(LandParcel.unit_code)
    if unit_codes is not None:
        stmt = stmt.where(LandParcel.unit_code.in_(list(unit_codes)))
    return {code: n for code, n in session.execute(stmt)}


# --- writes ------------------------------------------------------------------------------------------------

_UPDATE_COLUMNS = [
    "area_m2", "land_use", "primary_use", "allowed_use", "building_density_pct", "floors_min", "floors_max",
    "land_use_coefficient", "setback_m", "geom_wkb", "min_lon", "min_lat", "max_lon", "max_lat", "label_lon",
    "label_lat", "updated_at",
]
_PARCEL_COLUMNS = ["unit_code", "sheet_no", "parcel_no", *_UPDATE_COLUMNS[:-1]]


def _bulk_upsert(
    session: Session, table: Table, columns: dict[str, list[Any]], *, constants: dict[str, Any],
    key: Sequence[str], update: Sequence[str],
) -> None:
    """INSERT ... ON CONFLICT DO UPDATE of columnar values with the driver's executemany (SQLite and PostgreSQL).

    Values go through each column type's bind processor, but constants (times, node) only once: the
    per-value type processing of the generic path costs more than the database's own work at 100k rows.
    """
    n = len(next(iter(columns.values()), []))
    if not n:
        return
    conn = session.connection()
    dialect = conn.dialect
    plain = (Float, Integer, String, LargeBinary)
    values: list[Any] = []
    for name, column in columns.items():
        col_type = table.c[name].type
        proc = None if isinstance(col_type, plain) else col_type.dialect_impl(dialect).bind_processor(dialect)
        values.append([proc(v) if v is not None else None for v in column] if proc else column)
    for name, value in constants.items():
        proc = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        values.append(itertools.repeat(proc(value) if proc else value, n))
    names = [*columns, *constants]
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = (f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join([mark] * len(names))}) "
           f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in update)}")
    conn.exec_driver_sql(sql, list(zip(*values, strict=False)))  # constants are endless repeats


@dataclass(frozen=True)
class StoreResult:
    """How many parcels a write created and updated."""

    created: int
    updated: int


def store_parcels(
    session: Session, *, actor: Actor, rows: Sequence[dict[str, Any]], with_private: bool, source: str,
    progress: Callable[[int, int], None] | None = None, chunk: int = 5000,
) -> StoreResult:
    """Create or update parcels by (commune, sheet, parcel) in the caller's transaction: never duplicates.

    Each row holds the land_parcels columns (geometry as WKB with its box) and, when with_private, the
    holder fields; an all-empty holder removes the stored one. Rows must be checked already (see importer).
    """
    actor.require("land:write")
    communes = sorted({r["unit_code"] for r in rows})
    for code in communes:
        unit = _unit(session, code)
        if unit is None or unit.level != "commune":
            raise ValidationFailed(f"unknown commune {code!r}", [FieldError(["unit_code"], "unknown commune")])
        if not actor.sees_path(unit.path):
            raise Forbidden(f"commune {code} is outside the scope of {actor.kind} {actor.name!r}")
    existing: dict[tuple[str, int, int], uuid.UUID] = {}
    for start in range(0, len(communes), 500):
        stmt = select(LandParcel.unit_code, LandParcel.sheet_no, LandParcel.parcel_no, LandParcel.id).where(
            LandParcel.unit_code.in_(communes[start: start + 500]))
        existing.update(((u, s, p), i) for u, s, p, i in session.execute(stmt))
    now = utcnow()
    ids: list[uuid.UUID] = []
    for r in rows:
        pid = existing.get((r["unit_code"], r["sheet_no"], r["parcel_no"]))
        ids.append(pid if pid is not None else new_id())
    created = len(rows) - sum(1 for r in rows if (r["unit_code"], r["sheet_no"], r["parcel_no"]) in existing)
    holder_rows: list[int] = []
    cleared: list[uuid.UUID] = []
    if with_private:
        for i, r in enumerate(rows):
            if any(r.get(f) is not None for f in PRIVATE_FIELDS):
                holder_rows.append(i)
            elif (r["unit_code"], r["sheet_no"], r["parcel_no"]) in existing:
                cleared.append(ids[i])
    total = len(rows) + len(holder_rows)
    done = 0
    stamps = {"created_at": now, "updated_at": now}
    for start in range(0, len(rows), chunk):
        part = rows[start: start + chunk]
        columns = {"id": ids[start: start + chunk], **{c: [r.get(c) for r in part] for c in _PARCEL_COLUMNS}}
        _bulk_upsert(session, LandParcel.__table__, columns, constants={**stamps, "origin_node": current_node()},
                     key=["unit_code", "sheet_no", "parcel_no"], update=_UPDATE_COLUMNS)
        done += len(part)
        if progress:
            progress(done, total)
    for start in range(0, len(holder_rows), chunk):
        picked = holder_rows[start: start + chunk]
        columns = {"parcel_id": [ids[i] for i in picked],
                   **{f: [rows[i].get(f) for i in picked] for f in PRIVATE_FIELDS}}
        _bulk_upsert(session, LandParcelPrivate.__table__, columns, constants=stamps, key=["parcel_id"],
                     update=[*PRIVATE_FIELDS, "updated_at"])
        done += len(picked)
        if progress:
            progress(done, total)
    for start in range(0, len(cleared), 500):
        session.execute(delete(LandParcelPrivate).where(LandParcelPrivate.parcel_id.in_(cleared[start: start + 500])))
    result = StoreResult(created=created, updated=len(rows) - created)
    if rows:
        mark_changed(session)
        detail = {"source": source, "communes": communes[:50], "created": result.created, "updated": result.updated}
        audit(session, actor=actor, action="land.parcels.store", target_type="land_parcels",
              target_id=source[:80], detail=detail)
        record_change(session, topic="land.parcels.changed", aggregate_type="land_parcels",
                      aggregate_id=source[:80], payload=detail)
    return result

