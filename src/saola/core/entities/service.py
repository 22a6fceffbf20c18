"""Entities: typed assets and features with checked GeoJSON geometry, each inside a unit of the tree."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from saola.core.audit.service import audit
from saola.core.auth.context import Actor
from saola.core.entities.models import Entity
from saola.core.entities.schemas import MAX_BATCH, EntityBatchResult, EntityCreate, EntityUpdate
from saola.core.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from saola.core.events.models import Event
from saola.core.observations.models import Subject
from saola.core.text import fold
from saola.core.units.models import Agency, Unit
from saola.core.units.service import get_unit, normalize_code, require_unit_in_scope, scope_condition
from saola.db.base import current_node
from saola.db.ids import new_id
from saola.db.outbox import record_change
from saola.db.types import utcnow
from saola.packs.definitions import EntityTypeDefinition
from saola.packs.manager import Registry

Loc = list[str | int]
BBox = tuple[float, float, float, float]
MAX_GEOMETRY_ERRORS = 20
MAX_ERRORS = 200
_CHUNK = 500


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
    problems, bbox = validate_geometry(geometry, loc=loc)
    errors.extend(problems)
    return {"type": geometry["type"], "coordinates": geometry["coordinates"]}, bbox


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
    for start in range(0, len(wanted), _CHUNK):
        rows = session.execute(
            select(Agency.id).join(Unit, Unit.code == Agency.unit_code)
            .where(Agency.id.in_(wanted[start : start + _CHUNK]), scope_condition(actor, Unit.path))
        )
        found.update(r[0] for r in rows)
    return found


def _unit_paths(session: Session, codes: Iterable[str]) -> dict[str, str]:
    wanted = list(set(codes))
    paths: dict[str, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        rows = session.execute(select(Unit.code, Unit.path).where(Unit.code.in_(wanted[start : start + _CHUNK])))
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
        definition, data.geometry.model_dump() if data.geometry else None, ["body", "geometry"], errors
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
    codes = [normalize_code(it.unit_code) for it in items]
    paths = _unit_paths(session, codes)
    agencies = _agencies_in_scope(session, actor, [it.agency_id for it in items if it.agency_id])
    outside: set[str] = set()
    seen: dict[tuple[str, str], int] = {}
    rows: list[dict[str, Any]] = []
    for i, (item, code) in enumerate(zip(items, codes, strict=True)):
        loc: Loc = ["body", "items", i]
        definition = registry.entity_types.get(item.type)
        if definition is None:
            errors.append(FieldError([*loc, "type"], f"entity type {item.type!r} is not declared by any loaded pack"))
        if item.external_id is None:
            errors.append(FieldError([*loc, "external_id"], "a batch item needs an external_id"))
        elif (item.type, item.external_id) in seen:
            errors.append(FieldError([*loc, "external_id"],
                                     f"repeats item {seen[(item.type, item.external_id)]} of this batch"))
        else:
            seen[(item.type, item.external_id)] = i
        if code not in paths:
            errors.append(FieldError([*loc, "unit_code"], f"unknown unit {item.unit_code!r}"))
        elif not actor.sees_path(paths[code]):
            outside.add(code)
        if item.agency_id and item.agency_id not in agencies:
            errors.append(FieldError([*loc, "agency_id"], "unknown agency"))
        geometry, bbox = _checked_geometry(
            definition, item.geometry.model_dump() if item.geometry else None, [*loc, "geometry"], errors
        )
        rows.append({"type": item.type, "name": item.name, "search_name": fold(item.name)[:255], "unit_code": code,
                     "external_id": item.external_id, "geometry": geometry, "attributes": dict(item.attributes),
                     "source_id": actor.source_id, "agency_id": item.agency_id, **_bbox_columns(bbox)})
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise ValidationFailed(f"{len(errors)} problem(s) in the batch; nothing was written", errors[:MAX_ERRORS])
    if outside:
        raise Forbidden(f"units {', '.join(sorted(outside))} are outside the scope of {actor.kind} {actor.name!r}")

    existing: dict[tuple[str, str], uuid.UUID] = {}
    by_type: dict[str, list[str]] = {}
    for entity_type, external_id in seen:
        by_type.setdefault(entity_type, []).append(external_id)
    for entity_type, external_ids in by_type.items():
        for start in range(0, len(external_ids), _CHUNK):
            found = session.execute(
                select(Entity.id, Entity.external_id, Unit.path).join(Unit, Unit.code == Entity.unit_code)
                .where(Entity.type == entity_type, Entity.external_id.in_(external_ids[start : start + _CHUNK]))
            )
            for entity_id, external_id, path in found:
                if not actor.sees_path(path):
                    raise Forbidden(f"entity {entity_type}/{external_id} lies outside the scope of "
                                    f"{actor.kind} {actor.name!r}")
                existing[(entity_type, external_id)] = entity_id

    now = utcnow()
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    ids: list[uuid.UUID] = []
    for row in rows:
        entity_id = existing.get((row["type"], row["external_id"]))
        if entity_id is None:
            entity_id = new_id()
            inserts.append({**row, "id": entity_id, "created_at": now, "updated_at": now,
                            "origin_node": current_node()})
        else:
            updates.append({**row, "id": entity_id, "updated_at": now})
        ids.append(entity_id)
    if inserts:
        session.execute(insert(Entity), inserts)
    if updates:
        session.execute(update(Entity), updates)
        _move_subjects(session, {u["id"]: u["unit_code"] for u in updates})
    result = EntityBatchResult(created=len(inserts), updated=len(updates), ids=ids)
    summary = {"created": result.created, "updated": result.updated,
               "types": sorted(by_type), "units": sorted(set(codes))}
    audit(session, actor=actor, action="entity.upsert_batch", target_type="entity",
          target_id=str(ids[0]) if len(ids) == 1 else f"batch:{len(ids)}", detail=summary)
    record_change(session, topic="entities.upserted", aggregate_type="entity", aggregate_id=str(ids[0]),
                  payload=summary)
    return result


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
            registry.entity_types.get(entity.type), data.geometry.model_dump() if data.geometry else None,
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
    # Observations are scoped by the unit stored on their subject; keep it in step with the entity's unit.
    table = Subject.__table__
    session.execute(
        update(table).where(table.c.entity_id == bindparam("eid")).values(unit_code=bindparam("unit")),
        [{"eid": eid, "unit": unit} for eid, unit in units_by_entity.items()],
    )
