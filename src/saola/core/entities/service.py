"""Entities: typed assets and features with checked GeoJSON geometry, each inside a unit of the tree."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    TextClause,
    Uuid,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSON as PG_JSON
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from saola.core.audit.service import audit
from saola.core.auth.context import Actor
from saola.core.entities.models import Entity
from saola.core.entities.schemas import MAX_BATCH, EntityBatchResult, EntityCreate, EntityUpdate, Geometry
from saola.core.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from saola.core.events.models import Event
from saola.core.observations.models import Subject
from saola.core.text import fold
from saola.core.units.models import Agency, Unit
from saola.core.units.service import get_unit, normalize_code, require_unit_in_scope, scope_condition
from saola.db.base import current_node
from saola.db.ids import new_id
from saola.db.many import chunks, is_postgresql, one_of
from saola.db.outbox import record_change
from saola.db.types import UTCDateTime, utcnow
from saola.packs.definitions import EntityTypeDefinition
from saola.packs.manager import Registry

Loc = list[str | int]
BBox = tuple[float, float, float, float]
MAX_GEOMETRY_ERRORS = 20
MAX_ERRORS = 200


# --- geometry -----------------------------------------------------------------------------------------------


class _GeometryCheck:
    """Walks GeoJSON coordinates, collecting errors (with their paths) and the bounding box."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.min_lon = self.min_lat = math.inf
        self.max_lon = self.max_lat = -math.inf

    def fail(self, loc: Loc, msg: str) -> None:
        if len(self.errors) < MAX_GEOMETRY_ERRORS:
            self.errors.append(FieldError(loc, msg))

    def position(self, value: Any, loc: Loc) -> list[float] | None:
        if not isinstance(value, list | tuple) or not 2 <= len(value) <= 3:
            self.fail(loc, "a position is [longitude, latitude] or [longitude, latitude, altitude]")
            return None
        numbers: list[float] = []
        for k, n in enumerate(value):
            if isinstance(n, bool) or not isinstance(n, int | float):
                self.fail([*loc, k], "coordinates must be numbers")
                return None
            try:
                f = float(n)
            except OverflowError:
                f = math.inf
            if not math.isfinite(f):
                self.fail([*loc, k], "coordinates must be finite numbers")
                return None
            numbers.append(f)
        lon, lat = numbers[0], numbers[1]
        ok = True
        if not -180.0 <= lon <= 180.0:
            self.fail([*loc, 0], f"longitude {lon} is outside [-180, 180]")
            ok = False
        if not -90.0 <= lat <= 90.0:
            self.fail([*loc, 1], f"latitude {lat} is outside [-90, 90]")
            ok = False
        if not ok:
            return None
        self.min_lon, self.max_lon = min(self.min_lon, lon), max(self.max_lon, lon)
        self.min_lat, self.max_lat = min(self.min_lat, lat), max(self.max_lat, lat)
        return numbers

    def array(self, value: Any, loc: Loc, minimum: int, what: str) -> list[Any] | None:
        if not isinstance(value, list | tuple):
            self.fail(loc, f"expected an array of {what}")
            return None
        if len(value) < minimum:
            self.fail(loc, f"expected at least {minimum} {what}")
            return None
        return list(value)

    def positions(self, value: Any, loc: Loc, minimum: int) -> list[list[float] | None] | None:
        items = self.array(value, loc, minimum, "positions")
        return None if items is None else [self.position(p, [*loc, i]) for i, p in enumerate(items)]

    def line(self, value: Any, loc: Loc) -> None:
        self.positions(value, loc, 2)

    def ring(self, value: Any, loc: Loc) -> None:
        points = self.positions(value, loc, 4)
        if points and points[0] is not None and points[-1] is not None and points[0] != points[-1]:
            self.fail(loc, "a polygon ring must be closed: its last position must equal its first")

    def polygon(self, value: Any, loc: Loc) -> None:
        rings = self.array(value, loc, 1, "linear rings")
        for i, ring in enumerate(rings or []):
            self.ring(ring, [*loc, i])

    def geometry(self, kind: str, coords: Any, loc: Loc) -> None:
        if kind == "Point":
            self.position(coords, loc)
        elif kind == "MultiPoint":
            self.positions(coords, loc, 1)
        elif kind == "LineString":
            self.line(coords, loc)
        elif kind == "MultiLineString":
            for i, part in enumerate(self.array(coords, loc, 1, "line strings") or []):
                self.line(part, [*loc, i])
        elif kind == "Polygon":
            self.polygon(coords, loc)
        elif kind == "MultiPolygon":
            for i, part in enumerate(self.array(coords, loc, 1, "polygons") or []):
                self.polygon(part, [*loc, i])


GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")


def validate_geometry(geometry: Mapping[str, Any], *, loc: Sequence[str | int]) -> tuple[list[FieldError], BBox | None]:
    """Check a GeoJSON geometry (types, finite in-range positions, closed rings); errors and its bounding box."""
    check = _GeometryCheck()
    kind = geometry.get("type") if isinstance(geometry, Mapping) else None
    if kind not in GEOMETRY_TYPES:
        return [FieldError([*loc, "type"], f"geometry type must be one of {', '.join(GEOMETRY_TYPES)}")], None
    if "coordinates" not in geometry:
        return [FieldError([*loc, "coordinates"], "coordinates are required")], None
    check.geometry(str(kind), geometry["coordinates"], [*loc, "coordinates"])
    if check.errors:
        return check.errors, None
    return [], (check.min_lon, check.min_lat, check.max_lon, check.max_lat)


def _checked_geometry(
    definition: EntityTypeDefinition | None, geometry: Mapping[str, Any] | None, loc: Loc, errors: list[FieldError]
) -> tuple[dict[str, Any] | None, BBox | None]:
    if geometry is None:
        return None, None
    wanted = definition.geometry if definition else "any"
    if definition and wanted == "none":
        errors.append(FieldError(loc, f"entities of type {definition.type!r} have no geometry"))
        return None, None
    if definition and wanted != "any" and geometry.get("type") != wanted:
        errors.append(FieldError([*loc, "type"], f"entities of type {definition.type!r} need a {wanted}"))
        return None, None
    coordinates = geometry["coordinates"]
    bbox = _point_box(coordinates) if geometry.get("type") == "Point" else None
    if bbox is None:
        problems, bbox = validate_geometry(geometry, loc=loc)
        errors.extend(problems)
    return {"type": geometry["type"], "coordinates": coordinates}, bbox


def _point_box(coordinates: Any) -> BBox | None:
    """The bounding box of well-formed Point coordinates; None leaves them to validate_geometry (and its errors).

    Most entities are Points: this reads them by the same rules (two or three finite numbers, longitude and
    latitude in range) without the general walker.
    """
    if type(coordinates) is not list or not 2 <= len(coordinates) <= 3:
        return None
    try:
        for n in coordinates:
            if (type(n) is not float and type(n) is not int) or not math.isfinite(n):
                return None
    except OverflowError:  # an integer past the range of floats
        return None
    lon, lat = float(coordinates[0]), float(coordinates[1])
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        return None
    return lon, lat, lon, lat


def _geometry_of(model: Geometry | None) -> dict[str, Any] | None:
    # What model_dump gives for the two fields, without pydantic's serializer walking the coordinates.
    return None if model is None else {"type": model.type, "coordinates": model.coordinates}


def _bbox_columns(bbox: BBox | None) -> dict[str, float | None]:
    if bbox is None:
        return {"min_lon": None, "min_lat": None, "max_lon": None, "max_lat": None}
    return {"min_lon": bbox[0], "min_lat": bbox[1], "max_lon": bbox[2], "max_lat": bbox[3]}


def parse_bbox(text: str, *, loc: Sequence[str | int] = ("query", "bbox")) -> BBox:
    """'minLon,minLat,maxLon,maxLat' as four numbers; 422 naming the parameter when malformed."""
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 4 or not all(math.isfinite(p) for p in parts):
        raise ValidationFailed("bbox must be minLon,minLat,maxLon,maxLat",
                               [FieldError(list(loc), "expected four numbers: minLon,minLat,maxLon,maxLat")])
    min_lon, min_lat, max_lon, max_lat = parts
    if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise ValidationFailed("bbox is out of range or inverted",
                               [FieldError(list(loc), "need -180 <= minLon <= maxLon <= 180 and "
                                                      "-90 <= minLat <= maxLat <= 90")])
    return min_lon, min_lat, max_lon, max_lat


# --- checks shared by the writes --------------------------------------------------------------------------------


def _definition(registry: Registry, entity_type: str, loc: Loc) -> EntityTypeDefinition:
    definition = registry.entity_types.get(entity_type)
    if definition is None:
        raise ValidationFailed(f"undeclared entity type {entity_type!r}",
                               [FieldError(loc, f"entity type {entity_type!r} is not declared by any loaded pack")])
    return definition


def _require_may_write(actor: Actor, entity_type: str) -> None:
    if not actor.may_write("entities", entity_type):
        raise Forbidden(f"{actor.kind} {actor.name!r} may not write entities of type {entity_type!r}")


def _agencies_in_scope(session: Session, actor: Actor, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    wanted = list(set(ids))
    found: set[uuid.UUID] = set()
    pg = is_postgresql(session)
    for chunk in chunks(wanted, pg):
        rows = session.execute(
            select(Agency.id).join(Unit, Unit.code == Agency.unit_code)
            .where(one_of(Agency.id, chunk, Uuid, pg), scope_condition(actor, Unit.path))
        )
        found.update(r[0] for r in rows)
    return found


def _unit_paths(session: Session, codes: Iterable[str]) -> dict[str, str]:
    wanted = list(set(codes))
    paths: dict[str, str] = {}
    pg = is_postgresql(session)
    for chunk in chunks(wanted, pg):
        rows = session.execute(select(Unit.code, Unit.path).where(one_of(Unit.code, chunk, String, pg)))
        paths.update((code, path) for code, path in rows)
    return paths


def _visible(session: Session, actor: Actor, unit_code: str) -> bool:
    unit = session.get(Unit, unit_code)
    return unit is not None and actor.sees_path(unit.path)


# --- writes ---------------------------------------------------------------------------------------------------


def create_entity(session: Session, *, actor: Actor, registry: Registry, data: EntityCreate) -> Entity:
    """Create one entity of a declared type inside a unit of the actor's scope."""
    actor.require("entities:write")
    definition = _definition(registry, data.type, ["body", "type"])
    _require_may_write(actor, data.type)
    unit = require_unit_in_scope(session, actor=actor, code=data.unit_code, loc=["body", "unit_code"])
    errors: list[FieldError] = []
    geometry, bbox = _checked_geometry(
        definition, _geometry_of(data.geometry), ["body", "geometry"], errors
    )
    if data.agency_id and data.agency_id not in _agencies_in_scope(session, actor, [data.agency_id]):
        errors.append(FieldError(["body", "agency_id"], "unknown agency"))
    if errors:
        raise ValidationFailed("invalid entity", errors)
    if data.external_id is not None and session.scalar(
        select(Entity.id).where(Entity.type == data.type, Entity.external_id == data.external_id)
    ):
        raise Conflict(f"an entity of type {data.type!r} with external_id {data.external_id!r} already exists")
    entity = Entity(type=data.type, name=data.name, search_name=fold(data.name)[:255], unit_code=unit.code,
                    external_id=data.external_id, geometry=geometry, attributes=dict(data.attributes),
                    source_id=actor.source_id, agency_id=data.agency_id, **_bbox_columns(bbox))
    session.add(entity)
    session.flush()
    audit(session, actor=actor, action="entity.create", target_type="entity", target_id=str(entity.id),
          detail={"type": entity.type, "name": entity.name, "unit": unit.code})
    record_change(session, topic="entities.created", aggregate_type="entity", aggregate_id=str(entity.id),
                  payload={"type": entity.type, "unit_code": unit.code})
    return entity


def upsert_entities(
    session: Session, *, actor: Actor, registry: Registry, items: Sequence[EntityCreate]
) -> EntityBatchResult:
    """Create or replace entities by (type, external_id), all or nothing; errors name ['body', 'items', i, ...]."""
    actor.require("entities:write")
    if not items or len(items) > MAX_BATCH:
        raise ValidationFailed(f"a batch holds 1 to {MAX_BATCH} items",
                               [FieldError(["body", "items"], f"expected 1 to {MAX_BATCH} items")])
    errors: list[FieldError] = []
    refused_types = sorted({it.type for it in items if it.type in registry.entity_types
                            and not actor.may_write("entities", it.type)})
    if refused_types:
        raise Forbidden(f"{actor.kind} {actor.name!r} may not write entities of type {', '.join(refused_types)}")
    normalized = {code: normalize_code(code) for code in {it.unit_code for it in items}}  # a few units, many times
    codes = [normalized[it.unit_code] for it in items]
    paths = _unit_paths(session, codes)
    agencies = _agencies_in_scope(session, actor, [it.agency_id for it in items if it.agency_id])
    definitions = registry.entity_types
    outside: set[str] = set()
    seen: dict[tuple[str, str], int] = {}
    rows: list[dict[str, Any]] = []
    for i, (item, code) in enumerate(zip(items, codes, strict=True)):
        definition = definitions.get(item.type)
        if definition is None:
            errors.append(FieldError(["body", "items", i, "type"],
                                     f"entity type {item.type!r} is not declared by any loaded pack"))
        if item.external_id is None:
            errors.append(FieldError(["body", "items", i, "external_id"], "a batch item needs an external_id"))
        elif (key := (item.type, item.external_id)) in seen:
            errors.append(FieldError(["body", "items", i, "external_id"], f"repeats item {seen[key]} of this batch"))
        else:
            seen[key] = i
        path = paths.get(code)
        if path is None:
            errors.append(FieldError(["body", "items", i, "unit_code"], f"unknown unit {item.unit_code!r}"))
        elif not actor.sees_path(path):
            outside.add(code)
        if item.agency_id and item.agency_id not in agencies:
            errors.append(FieldError(["body", "items", i, "agency_id"], "unknown agency"))
        geometry, bbox = _checked_geometry(definition, _geometry_of(item.geometry), ["body", "items", i, "geometry"],
                                           errors)
        min_lon, min_lat, max_lon, max_lat = bbox or _NO_BBOX
        rows.append({"type": item.type, "name": item.name, "search_name": fold(item.name)[:255], "unit_code": code,
                     "external_id": item.external_id, "geometry": geometry, "attributes": item.attributes,
                     "agency_id": item.agency_id, "min_lon": min_lon, "min_lat": min_lat, "max_lon": max_lon,
                     "max_lat": max_lat})
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise ValidationFailed(f"{len(errors)} problem(s) in the batch; nothing was written", errors[:MAX_ERRORS])
    if outside:
        raise Forbidden(f"units {', '.join(sorted(outside))} are outside the scope of {actor.kind} {actor.name!r}")

    by_type: dict[str, list[str]] = {}
    for entity_type, external_id in seen:
        by_type.setdefault(entity_type, []).append(external_id)
    existing = _existing(session, actor, by_type)
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    moved: dict[uuid.UUID, str] = {}
    ids: list[uuid.UUID] = []
    for row in rows:
        found = existing.get((row["type"], row["external_id"]))
        if found is None:
            row["id"] = entity_id = new_id()
            inserts.append(row)
        else:
            row["id"] = entity_id = found[0]
            updates.append(row)
            if found[1] != row["unit_code"]:
                moved[entity_id] = row["unit_code"]
        ids.append(entity_id)
    now = utcnow()
    if inserts:
        _insert_rows(session, inserts, source_id=actor.source_id, now=now)
    if updates:
        _replace_rows(session, updates, source_id=actor.source_id, now=now)
    if moved:
        _move_subjects(session, moved)
    result = EntityBatchResult(created=len(inserts), updated=len(updates), ids=ids)
    summary = {"created": result.created, "updated": result.updated,
               "types": sorted(by_type), "units": sorted(set(codes))}
    audit(session, actor=actor, action="entity.upsert_batch", target_type="entity",
          target_id=str(ids[0]) if len(ids) == 1 else f"batch:{len(ids)}", detail=summary)
    record_change(session, topic="entities.upserted", aggregate_type="entity", aggregate_id=str(ids[0]),
                  payload=summary)
    return result


# --- bulk writes of upsert_entities ---------------------------------------------------------------------------
#
# The ORM's bulk INSERT and UPDATE by primary key go row by row through SQLAlchemy and, on PostgreSQL, one
# pipelined statement per row through psycopg: most of a batch's time. On SQLite, where the driver loops over the
# rows in C, a batch is one executemany of a plain Core statement. On PostgreSQL it is one statement reading its
# rows from a single JSON parameter (json_to_recordset): one document serialised in C by the engine's JSON
# serializer, the same SQL text whatever the batch size. (Arrays per column, unnest, cost more: psycopg dumps
# arrays of text in Python, quoting each element by regular expression.)

_NO_BBOX: tuple[None, None, None, None] = (None, None, None, None)
_INSERTED = ("id", "type", "name", "search_name", "unit_code", "external_id", "geometry", "attributes",
             "min_lon", "min_lat", "max_lon", "max_lat", "agency_id")
# type and external_id are what a row was found by, so a replace leaves them as they are.
_REPLACED = ("id", "name", "search_name", "unit_code", "geometry", "attributes", "min_lon", "min_lat", "max_lon",
             "max_lat", "agency_id")
_PG_TYPES = {"id": "uuid", "agency_id": "uuid", "geometry": "jsonb", "attributes": "jsonb", "min_lon": "float8",
             "min_lat": "float8", "max_lon": "float8", "max_lat": "float8"}


def _pg_value(column: str) -> str:
    # json_to_recordset reads a JSON null as SQL NULL; the ORM stored a missing geometry as JSON null.
    return "COALESCE(v.geometry, 'null'::jsonb)" if column == "geometry" else f"v.{column}"


def _pg_statement(sql: str, columns: Sequence[str]) -> TextClause:
    record = ", ".join(f"{c} {_PG_TYPES.get(c, 'text')}" for c in columns)
    sql = sql.replace("{rows}", f"json_to_recordset(CAST(:rows AS json)) AS v({record})")
    # The rows go through the dialect's JSON type, so the engine's serializer writes them; times through
    # UTCDateTime.
    params = [bindparam(name, type_=kind) for name, kind in (
        ("rows", PG_JSON()), ("now", UTCDateTime()), ("source_id", Integer()), ("node", String())) if f":{name}" in sql]
    return text(sql).bindparams(*params)


_PG_INSERT = _pg_statement(
    f"INSERT INTO entities ({', '.join(_INSERTED)}, source_id, origin_node, created_at, updated_at) "
    f"SELECT {', '.join(_pg_value(c) for c in _INSERTED)}, CAST(:source_id AS integer), CAST(:node AS text), "
    "CAST(:now AS timestamptz), CAST(:now AS timestamptz) FROM {rows}", _INSERTED)
_PG_REPLACE = _pg_statement(
    f"UPDATE entities AS e SET {', '.join(f'{c} = {_pg_value(c)}' for c in _REPLACED if c != 'id')}, "
    "source_id = CAST(:source_id AS integer), updated_at = CAST(:now AS timestamptz) FROM {rows} WHERE e.id = v.id",
    _REPLACED)


def _pg_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    # Ids as text: the engine's serializer falls back to the standard library's, which knows no UUIDs.
    out = []
    for row in rows:
        record = {c: row[c] for c in columns}
        record["id"] = str(record["id"])
        if record["agency_id"] is not None:
            record["agency_id"] = str(record["agency_id"])
        out.append(record)
    return out


def _insert_rows(session: Session, rows: list[dict[str, Any]], *, source_id: int | None, now: datetime) -> None:
    if is_postgresql(session):
        session.execute(_PG_INSERT, {"rows": _pg_rows(rows, _INSERTED), "source_id": source_id,
                                     "node": current_node(), "now": now})
        return
    common = {"source_id": source_id, "origin_node": current_node(), "created_at": now, "updated_at": now}
    session.execute(insert(Entity.__table__), [{**row, **common} for row in rows])


def _replace_rows(session: Session, rows: list[dict[str, Any]], *, source_id: int | None, now: datetime) -> None:
    if is_postgresql(session):
        result = session.execute(_PG_REPLACE, {"rows": _pg_rows(rows, _REPLACED), "source_id": source_id,
                                               "now": now})
    else:
        table = Entity.__table__
        result = session.execute(
            update(table).where(table.c.id == bindparam("b_id")),
            [{"b_id": row["id"], **{c: row[c] for c in _REPLACED if c != "id"}, "source_id": source_id,
              "updated_at": now} for row in rows],
        )
    if result.rowcount != len(rows):  # type: ignore[attr-defined]
        # An entity found a moment ago was deleted by another transaction in between.
        raise Conflict("entities of this batch were deleted while it was written; send it again")


def _existing(session: Session, actor: Actor, by_type: Mapping[str, list[str]]
              ) -> dict[tuple[str, str], tuple[uuid.UUID, str]]:
    """(id, unit) of the stored entities by (type, external_id); Forbidden when one lies outside the scope."""
    found: dict[tuple[str, str], tuple[uuid.UUID, str]] = {}
    stmt = select(Entity.id, Entity.external_id, Entity.unit_code, Unit.path).join(Unit, Unit.code == Entity.unit_code)
    pg = is_postgresql(session)
    for entity_type, external_ids in by_type.items():
        for chunk in chunks(external_ids, pg):
            where = one_of(Entity.external_id, chunk, String, pg)
            rows = session.execute(stmt.where(Entity.type == entity_type, where))
            for entity_id, external_id, unit_code, path in rows:
                if not actor.sees_path(path):
                    raise Forbidden(f"entity {entity_type}/{external_id} lies outside the scope of "
                                    f"{actor.kind} {actor.name!r}")
                found[(entity_type, external_id)] = (entity_id, unit_code)
    return found


def update_entity(
    session: Session, *, actor: Actor, registry: Registry, entity_id: uuid.UUID, data: EntityUpdate
) -> Entity:
    """Change name, unit, geometry, agency or attributes (merged; a null value removes the key)."""
    actor.require("entities:write")
    entity = get_entity(session, actor=actor, entity_id=entity_id)
    _require_may_write(actor, entity.type)
    given = data.model_fields_set
    errors: list[FieldError] = []
    changed: list[str] = []
    if data.name is not None and data.name != entity.name:
        entity.name, entity.search_name = data.name, fold(data.name)[:255]
        changed.append("name")
    if data.unit_code is not None:
        unit = require_unit_in_scope(session, actor=actor, code=data.unit_code, loc=["body", "unit_code"])
        if unit.code != entity.unit_code:
            entity.unit_code = unit.code
            changed.append("unit_code")
            _move_subjects(session, {entity.id: unit.code})
    if "geometry" in given:
        geometry, bbox = _checked_geometry(
            registry.entity_types.get(entity.type), _geometry_of(data.geometry),
            ["body", "geometry"], errors,
        )
        if not errors:
            entity.geometry = geometry
            for column, value in _bbox_columns(bbox).items():
                setattr(entity, column, value)
            changed.append("geometry")
    if "agency_id" in given and data.agency_id != entity.agency_id:
        if data.agency_id and data.agency_id not in _agencies_in_scope(session, actor, [data.agency_id]):
            errors.append(FieldError(["body", "agency_id"], "unknown agency"))
        else:
            entity.agency_id = data.agency_id
            changed.append("agency_id")
    if errors:
        raise ValidationFailed("invalid change", errors)
    if data.attributes:
        merged = dict(entity.attributes or {})
        for key, value in data.attributes.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        if merged != entity.attributes:
            entity.attributes = merged
            changed.append("attributes")
    if changed:
        session.flush()
        audit(session, actor=actor, action="entity.update", target_type="entity", target_id=str(entity.id),
              detail={"fields": changed})
        record_change(session, topic="entities.updated", aggregate_type="entity", aggregate_id=str(entity.id),
                      payload={"type": entity.type, "unit_code": entity.unit_code, "fields": changed})
    return entity


def delete_entity(session: Session, *, actor: Actor, entity_id: uuid.UUID) -> None:
    """Delete an entity that nothing refers to any more (events are append-only, so theirs stay)."""
    actor.require("entities:write")
    entity = get_entity(session, actor=actor, entity_id=entity_id)
    _require_may_write(actor, entity.type)
    if session.scalar(select(Event.id).where(Event.entity_id == entity.id).limit(1)) is not None:
        raise Conflict(f"entity {entity_id} has events, which are append-only; it cannot be deleted")
    detail = {"type": entity.type, "name": entity.name, "external_id": entity.external_id,
              "unit": entity.unit_code}
    try:
        with session.begin_nested():
            session.delete(entity)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"entity {entity_id} is still referred to (observations, cases ...)") from exc
    audit(session, actor=actor, action="entity.delete", target_type="entity", target_id=str(entity_id),
          detail=detail)
    record_change(session, topic="entities.deleted", aggregate_type="entity", aggregate_id=str(entity_id),
                  payload={"type": detail["type"], "unit_code": detail["unit"]})


# --- reads ----------------------------------------------------------------------------------------------------


def get_entity(session: Session, *, actor: Actor, entity_id: uuid.UUID) -> Entity:
    """One entity inside the actor's scope; NotFound otherwise."""
    actor.require("entities:read")
    entity = session.get(Entity, entity_id)
    if entity is None or not _visible(session, actor, entity.unit_code):
        raise NotFound(f"entity {entity_id} not found")
    return entity


def _subtree(path_column: ColumnElement[str], path: str) -> ColumnElement[bool]:
    return or_(path_column == path, path_column.startswith(path + ".", autoescape=True))


def _filtered(
    session: Session, actor: Actor, entity_type: str | None, unit: str | None, q: str | None, bbox: BBox | None
) -> Select[tuple[Entity]]:
    stmt = select(Entity).join(Unit, Unit.code == Entity.unit_code).where(scope_condition(actor, Unit.path))
    if entity_type:
        stmt = stmt.where(Entity.type == entity_type)
    if unit:
        stmt = stmt.where(_subtree(Unit.path, get_unit(session, actor=actor, code=unit).path))
    if q:
        for word in fold(q).split():
            stmt = stmt.where(Entity.search_name.contains(word, autoescape=True))
    if bbox:
        min_lon, min_lat, max_lon, max_lat = bbox
        stmt = stmt.where(Entity.min_lon <= max_lon, Entity.max_lon >= min_lon,
                          Entity.min_lat <= max_lat, Entity.max_lat >= min_lat)
    return stmt


def list_entities(
    session: Session, *, actor: Actor, entity_type: str | None = None, unit: str | None = None,
    q: str | None = None, bbox: BBox | None = None, limit: int = 100, offset: int = 0,
) -> tuple[int, list[Entity]]:
    """Entities in the actor's scope by type, unit subtree, diacritic-insensitive text and bounding box."""
    actor.require("entities:read")
    stmt = _filtered(session, actor, entity_type, unit, q, bbox)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    items = session.scalars(stmt.order_by(Entity.search_name, Entity.id).limit(limit).offset(offset)).all()
    return total, list(items)


def _move_subjects(session: Session, units_by_entity: dict[uuid.UUID, str]) -> None:
    # Observations are scoped by the unit stored on their subject; keep it in step with the entity's unit. A
    # subject is found by its key ('e:<entity id>', unique and indexed; subjects.entity_id has no index).
    keys = [f"e:{eid}" for eid in units_by_entity]
    units = list(units_by_entity.values())
    if is_postgresql(session):
        session.execute(_PG_MOVE_SUBJECTS, {"keys": keys, "units": units})
        return
    table = Subject.__table__
    session.execute(update(table).where(table.c.key == bindparam("k")).values(unit_code=bindparam("u")),
                    [{"k": k, "u": u} for k, u in zip(keys, units, strict=True)])


_PG_MOVE_SUBJECTS = text("UPDATE subjects AS s SET unit_code = v.unit FROM unnest(CAST(:keys AS text[]), "
                         "CAST(:units AS text[])) AS v(key, unit) WHERE s.key = v.key")
