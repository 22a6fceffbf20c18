"""Spatial engines behind one interface: an in-process shapely STRtree, or PostGIS with a GiST index.

Both answer the same questions with the same semantics (pygeoapi style: one provider interface):
- a point belongs to every parcel whose geometry it intersects, so a point on a shared edge belongs to both
  parcels (ST_Intersects in PostGIS, the 'intersects' predicate in shapely; both use GEOS semantics);
- a box (possibly of zero size: a point or a segment) selects parcels whose real geometry intersects it, not
  their envelope;
- answers are ordered by (commune, sheet, parcel).

The STRtree is built once per database, lazily at the first lookup (or at startup), and rebuilt when the
`land_versions` counter moves: at once in the process that made the change (a flag set after commit), and
within REFRESH_SECONDS in other processes.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import shapely
from shapely import STRtree
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, Engine, String, event, select, text, type_coerce, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from saola.core.errors import Conflict
from saola.db.types import utcnow
from saola.domains.land.models import LandParcel, LandVersion

log = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0
VERSION_NAME = "parcels"
EngineName = Literal["auto", "strtree", "postgis"]


@dataclass(frozen=True)
class ParcelFilter:
    """Attribute conditions every engine applies the same way (None means no condition)."""

    unit_codes: frozenset[str] | None = None
    sheet_no: int | None = None
    parcel_no: int | None = None
    primary_use: str | None = None
    allowed_use: str | None = None


class SpatialEngine(Protocol):
    """What a spatial backend answers; ids come ordered by (commune, sheet, parcel)."""

    name: str

    def at_point(self, session: Session, lon: float, lat: float) -> list[uuid.UUID]:
        """Parcels whose geometry intersects the point."""
        ...

    def search(self, session: Session, *, geometry: BaseGeometry | None, where: ParcelFilter, limit: int,
               offset: int) -> tuple[int, list[uuid.UUID]]:
        """Total matched and one page of parcels intersecting the geometry (any when None) and the filter."""
        ...

    def near(self, session: Session, geometry: BaseGeometry, distance: float) -> list[uuid.UUID]:
        """Parcels within `distance` degrees of the geometry (touching neighbours use a tiny distance)."""
        ...


# --- change tracking ---------------------------------------------------------------------------------------

_GENERATION = [0]  # bumped after a commit that changed parcels in this process


def mark_changed(session: Session) -> None:
    """Bump the parcels version in the caller's transaction; indexes rebuild once it commits."""
    session.execute(update(LandVersion).where(LandVersion.name == VERSION_NAME)
                    .values(version=LandVersion.version + 1, updated_at=utcnow()))
    session.info["land_changed"] = True


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop("land_changed", False):
        _GENERATION[0] += 1


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop("land_changed", None)


def db_key(session: Session) -> str:
    """A key naming the session's database, remembered on the session (caches are per database)."""
    key = session.info.get("land_db_key")
    if key is None:
        key = session.info["land_db_key"] = str(session.get_bind().url)
    return key


# --- in-process engine -------------------------------------------------------------------------------------


@dataclass
class ParcelIndex:
    """Every parcel of a database in memory: geometries in an STRtree and narrow numpy columns."""

    ids: np.ndarray  # (n, 16) uint8: UUID bytes
    unit_idx: np.ndarray  # int32 into units
    sheet: np.ndarray  # int32
    parcel: np.ndarray  # int32
    primary_idx: np.ndarray  # int16 into codes
    allowed_idx: np.ndarray  # int16 into codes (-1: none)
    geoms: np.ndarray  # shapely geometries
    units: list[str]
    codes: list[str]
    tree: STRtree = field(init=False)
    version: int = 0

    def __post_init__(self) -> None:
        self.tree = STRtree(self.geoms)

    def __len__(self) -> int:
        return len(self.geoms)

    def id_at(self, positions: np.ndarray) -> list[uuid.UUID]:
        """UUIDs of the parcels at these positions."""
        return [uuid.UUID(bytes=self.ids[i].tobytes()) for i in positions]

    def mask(self, where: ParcelFilter, positions: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask of positions (or of every parcel) that pass the filter."""
        n = len(self) if positions is None else len(positions)
        pick = (lambda a: a) if positions is None else (lambda a: a[positions])
        ok = np.ones(n, dtype=bool)
        if where.unit_codes is not None:
            wanted = [self.units.index(u) for u in where.unit_codes if u in self.units]
            ok &= np.isin(pick(self.unit_idx), np.asarray(wanted, dtype=np.int32))
        if where.sheet_no is not None:
            ok &= pick(self.sheet) == where.sheet_no
        if where.parcel_no is not None:
            ok &= pick(self.parcel) == where.parcel_no
        for value, column in ((where.primary_use, self.primary_idx), (where.allowed_use, self.allowed_idx)):
            if value is not None:
                code = self.codes.index(value) if value in self.codes else -2
                ok &= pick(column) == code
        return ok


def build_index(session: Session) -> ParcelIndex:
    """Read every parcel (ordered by commune, sheet, parcel) and build the in-memory index."""
    version = session.scalar(select(LandVersion.version).where(LandVersion.name == VERSION_NAME)) or 0
    # The id comes back as the driver gives it (hex text on SQLite, uuid on PostgreSQL): building 100k UUID
    # objects would take longer than reading the rows.
    rows = session.connection().execute(
        select(type_coerce(LandParcel.id, String), LandParcel.unit_code, LandParcel.sheet_no, LandParcel.parcel_no,
               LandParcel.primary_use, LandParcel.allowed_use, LandParcel.geom_wkb)
        .order_by(LandParcel.unit_code, LandParcel.sheet_no, LandParcel.parcel_no)
    ).all()
    n = len(rows)
    pids, unit_codes, sheets, parcels, primary, allowed, wkbs = zip(*rows, strict=True) if n else ([],) * 7
    units: dict[str, int] = {}
    codes: dict[str, int] = {}
    raw = b"".join(p.bytes for p in pids) if n and isinstance(pids[0], uuid.UUID) else bytes.fromhex(
        "".join(pids).replace("-", ""))
    ids = np.frombuffer(raw, dtype=np.uint8).reshape(n, 16)
    unit_idx = np.array([units.setdefault(u, len(units)) for u in unit_codes], dtype=np.int32)
    sheet = np.array(sheets, dtype=np.int32)
    parcel = np.array(parcels, dtype=np.int32)
    primary_idx = np.array([codes.setdefault(c, len(codes)) for c in primary], dtype=np.int16)
    allowed_idx = np.array([codes.setdefault(c, len(codes)) if c else -1 for c in allowed], dtype=np.int16)
    geoms = shapely.from_wkb(np.array(wkbs, dtype=object)) if n else np.empty(0, dtype=object)
    return ParcelIndex(ids=ids, unit_idx=unit_idx, sheet=sheet, parcel=parcel, primary_idx=primary_idx,
                       allowed_idx=allowed_idx, geoms=geoms, units=list(units), codes=list(codes), version=version)


@dataclass
class _Cached:
    index: ParcelIndex | None = None
    checked_at: float = 0.0
    generation: int = -1
    lock: threading.Lock = field(default_factory=threading.Lock)


_CACHE: dict[str, _Cached] = {}
_CACHE_LOCK = threading.Lock()


def parcel_index(session: Session) -> ParcelIndex:
    """The in-memory index of the session's database, rebuilt when parcels changed since it was built."""
    key = db_key(session)
    cached = _CACHE.get(key)
    if cached is None:
        with _CACHE_LOCK:
            cached = _CACHE.setdefault(key, _Cached())
    generation = _GENERATION[0]
    now = time.monotonic()
    index = cached.index
    if index is not None and cached.generation == generation and now - cached.checked_at < REFRESH_SECONDS:
        return index
    version = session.scalar(select(LandVersion.version).where(LandVersion.name == VERSION_NAME)) or 0
    if index is None or index.version != version:
        with cached.lock:
            index = cached.index
            if index is None or index.version != version:
                started = time.perf_counter()
                index = build_index(session)
                cached.index = index
                log.info("land: STRtree of %d parcels built in %.2f s", len(index), time.perf_counter() - started)
    cached.generation, cached.checked_at = generation, now
    return index


def forget_indexes() -> None:
    """Drop every cached in-memory index (tests and benchmarks use it to measure a cold build)."""
    _CACHE.clear()


class StrTreeEngine:
    """Point and box queries on a shapely STRtree held in memory."""

    name = "strtree"

    def at_point(self, session: Session, lon: float, lat: float) -> list[uuid.UUID]:
        """Parcels whose geometry intersects the point."""
        index = parcel_index(session)
        if not len(index):
            return []
        hits = index.tree.query(shapely.Point(lon, lat), predicate="intersects")
        hits.sort()
        return index.id_at(hits)

    def search(self, session: Session, *, geometry: BaseGeometry | None, where: ParcelFilter, limit: int,
               offset: int) -> tuple[int, list[uuid.UUID]]:
        """Total matched and one page of parcels intersecting the geometry and passing the filter."""
        index = parcel_index(session)
        if not len(index):
            return 0, []
        if geometry is None:
            positions = np.flatnonzero(index.mask(where))
        else:
            positions = index.tree.query(geometry, predicate="intersects")
            positions.sort()
            positions = positions[index.mask(where, positions)]
        return len(positions), index.id_at(positions[offset: offset + limit])

    def near(self, session: Session, geometry: BaseGeometry, distance: float) -> list[uuid.UUID]:
        """Parcels within `distance` degrees of the geometry."""
        index = parcel_index(session)
        if not len(index):
            return []
        hits = index.tree.query(geometry, predicate="dwithin", distance=distance)
        hits.sort()
        return index.id_at(hits)


# --- PostGIS engine ----------------------------------------------------------------------------------------

_ORDER = (LandParcel.unit_code, LandParcel.sheet_no, LandParcel.parcel_no)
_AT_POINT_SQL = ("SELECT id FROM land_parcels WHERE ST_Intersects(geom, ST_SetSRID(ST_MakePoint(%s, %s), 4326)) "
                 "ORDER BY unit_code, sheet_no, parcel_no")


def _apply(stmt, where: ParcelFilter):  # type: ignore[no-untyped-def]
    if where.unit_codes is not None:
        stmt = stmt.where(LandParcel.unit_code.in_(sorted(where.unit_codes)))
    if where.sheet_no is not None:
        stmt = stmt.where(LandParcel.sheet_no == where.sheet_no)
    if where.parcel_no is not None:
        stmt = stmt.where(LandParcel.parcel_no == where.parcel_no)
    if where.primary_use is not None:
        stmt = stmt.where(LandParcel.primary_use == where.primary_use)
    if where.allowed_use is not None:
        stmt = stmt.where(LandParcel.allowed_use == where.allowed_use)
    return stmt


class PostgisEngine:
    """The same queries through PostGIS: ST_Intersects / ST_DWithin on the GiST-indexed `geom` column."""

    name = "postgis"

    def at_point(self, session: Session, lon: float, lat: float) -> list[uuid.UUID]:
        """Parcels whose geometry intersects the point (straight on the driver: the hot path; psycopg prepares it)."""
        driver = session.connection().connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor:
            cursor.execute(_AT_POINT_SQL, (lon, lat))
            return [row[0] for row in cursor.fetchall()]

    def search(self, session: Session, *, geometry: BaseGeometry | None, where: ParcelFilter, limit: int,
               offset: int) -> tuple[int, list[uuid.UUID]]:
        """Total matched and one page of parcels intersecting the geometry and passing the filter."""
        stmt = _apply(select(LandParcel.id), where)
        if geometry is not None:
            stmt = stmt.where(text("ST_Intersects(geom, ST_GeomFromWKB(:area, 4326))")
                              .bindparams(area=shapely.to_wkb(geometry)))
        total = session.scalar(select(text("count(*)")).select_from(stmt.subquery())) or 0
        ids = list(session.scalars(stmt.order_by(*_ORDER).limit(limit).offset(offset))) if total > offset else []
        return total, ids

    def near(self, session: Session, geometry: BaseGeometry, distance: float) -> list[uuid.UUID]:
        """Parcels within `distance` degrees of the geometry."""
        stmt = (select(LandParcel.id)
                .where(text("ST_DWithin(geom, ST_GeomFromWKB(:area, 4326), :distance)")
                       .bindparams(area=shapely.to_wkb(geometry), distance=distance))
                .order_by(*_ORDER))
        return list(session.scalars(stmt))


STRTREE = StrTreeEngine()
POSTGIS = PostgisEngine()
_POSTGIS_READY: dict[str, bool] = {}


def postgis_ready(session: Session) -> bool:
    """True when the database is PostgreSQL and land_parcels has its PostGIS `geom` column."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    key = db_key(session)
    if key not in _POSTGIS_READY:
        _POSTGIS_READY[key] = bool(session.scalar(text(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = 'land_parcels' AND column_name = 'geom'")))
    return _POSTGIS_READY[key]


def engine_for(session: Session, prefer: EngineName = "auto") -> SpatialEngine:
    """PostGIS when the database has it (or when asked for), else the in-process STRtree."""
    if prefer == "strtree":
        return STRTREE
    ready = postgis_ready(session)
    if prefer == "postgis" and not ready:
        raise Conflict("PostGIS is not available on this database")
    return POSTGIS if ready else STRTREE


def ensure_postgis(bind: Engine | Connection) -> bool:
    """Add the PostGIS `geom` column and its GiST index when PostgreSQL has PostGIS; idempotent, never fatal."""
    if bind.dialect.name != "postgresql":
        return False
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            return ensure_postgis(conn)
    conn = bind
    if not conn.scalar(text("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'")):
        return False
    if not conn.scalar(text("SELECT 1 FROM pg_extension WHERE extname = 'postgis'")):
        try:
            with conn.begin_nested():
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
        except DBAPIError:
            log.warning("land: PostGIS is installed but this role may not create the extension; using STRtree")
            return False
    has_column = conn.scalar(text(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'land_parcels' AND column_name = 'geom'"))
    if not has_column:
        conn.execute(text("ALTER TABLE land_parcels ADD COLUMN geom geometry(MultiPolygon, 4326) "
                          "GENERATED ALWAYS AS (ST_Multi(ST_GeomFromWKB(geom_wkb, 4326))) STORED"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_land_parcels_geom ON land_parcels USING gist (geom)"))
    _POSTGIS_READY[str(conn.engine.url)] = True
    return True
