"""NGSI-LD operations on kernel entities and observations: create, retrieve, query, update, delete, batches and
temporal retrieval. Writes go through the kernel's entity and observation services (scope, allowed writes,
audit, outbox); subscriptions matching a change are queued in the same transaction (see notify).

Batches are all or nothing for content: every entity is checked first, and one bad entity rejects the batch
with 400 and the errors of every bad entity. The only partial answer (207) is about existence, which a client
cannot check beforehand without a race: on create, entities that already exist are reported and left as they
are while the others are created; on update and delete, entities that do not exist are reported while the
others are changed. Either way the write is one transaction.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import ARRAY, Select, String, any_, bindparam, func, or_, select
from sqlalchemy.orm import Session

from saola.core.auth.context import Actor
from saola.core.entities import service as entities
from saola.core.entities.models import Entity
from saola.core.entities.schemas import MAX_BATCH, EntityCreate, EntityUpdate, Geometry
from saola.core.errors import DomainError, FieldError, ValidationFailed
from saola.core.indicators.service import indicators_by_code
from saola.core.observations import service as observations
from saola.core.observations.models import Observation, Subject
from saola.core.units.models import Unit
from saola.core.units.service import scope_condition
from saola.db.types import utcnow
from saola.interop.ngsi_ld import notify, typemap
from saola.interop.ngsi_ld.context import JSON, LD_JSON, LdContext, context_of, core_context
from saola.interop.ngsi_ld.convert import (
    LOCATION,
    META,
    SAOLA_ID_PREFIX,
    UNIT,
    Attr,
    EntityView,
    Fragment,
    ParsedEntity,
    is_uri,
    iso,
    ngsi_id,
    parse_entity,
    parse_time,
    parser_for,
    stamped_meta,
    store_attrs,
)
from saola.interop.ngsi_ld.errors import NgsiError, bad_request, problem_body
from saola.interop.ngsi_ld.query import GeoQuery, Node, geo_matches, has_any_attribute, q_matches, safe_regex
from saola.packs.manager import Registry

MAX_LIMIT = 1_000
MAX_SCAN = 200_000
MAX_INSTANCES = 1_000
_CHUNK = 500
_INDICATOR_CODE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
MAX_AHEAD = timedelta(days=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

UpsertMode = Literal["replace", "update"]


# --- parsing -----------------------------------------------------------------------------------------------------


def request_context(content_type: str, link_url: str | None) -> LdContext | None:
    """The context of a JSON request (from the Link header), or None for application/ld+json (each body carries
    its own @context)."""
    if content_type == LD_JSON:
        return None
    if content_type != JSON:
        raise NgsiError("UnsupportedMediaType", "send application/json (context in a Link header) or "
                                                "application/ld+json (context in the body)")
    return context_of(link_url)


def _context_for(item: Any, content_type: str, link_ctx: LdContext | None, loc: list[str | int]) -> LdContext:
    has = isinstance(item, dict) and "@context" in item
    if content_type == LD_JSON:
        if not has:
            raise NgsiError("BadRequestData", "application/ld+json needs an @context in the body",
                            errors=[FieldError([*loc, "@context"], "missing")])
        return context_of(item["@context"])
    if has:
        raise NgsiError("BadRequestData", "application/json takes its @context from the Link header, not the body",
                        errors=[FieldError([*loc, "@context"], "not allowed with application/json")])
    assert link_ctx is not None
    return link_ctx


def body_context(body: Any, content_type: str, link_ctx: LdContext | None) -> LdContext:
    """The context a single-object body is read with."""
    return _context_for(body, content_type, link_ctx, ["body"])


def _row_problem(entity_id: Any, index: int, errors: list[FieldError], kind: str = "BadRequestData"
                 ) -> dict[str, Any]:
    detail = "; ".join(f"{'.'.join(str(p) for p in e.loc[2:]) or 'entity'}: {e.msg}" for e in errors[:10])
    return {"entityId": entity_id if isinstance(entity_id, str) else None, "index": index,
            "error": problem_body(kind, detail), "errors": [e.as_dict() for e in errors]}


def parse_entities(body: Any, *, content_type: str, link_ctx: LdContext | None, now: str) -> list[ParsedEntity]:
    """Every entity of a batch body, or one 400 naming each bad entity (nothing is half-read)."""
    if not isinstance(body, list) or not body:
        raise bad_request("a batch is a non-empty JSON array of entities")
    if len(body) > MAX_BATCH:
        raise bad_request(f"a batch holds at most {MAX_BATCH} entities")
    parsed: list[ParsedEntity] = []
    problems: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    parser = None
    for i, item in enumerate(body):
        errors: list[FieldError] = []
        loc: list[str | int] = ["body", i]
        try:
            ctx = _context_for(item, content_type, link_ctx, loc)
        except NgsiError as exc:
            if exc.kind == "LdContextNotAvailable":
                raise
            errors.extend(exc.errors or [FieldError(loc, exc.message)])
            ctx = None
        if ctx is not None and (parser is None or parser.ctx is not ctx):
            parser = parser_for(ctx, now)
        entity = parse_entity(item, ctx, loc=loc, errors=errors, now=now, parser=parser) if ctx else None
        entity_id = item.get("id") if isinstance(item, dict) else None
        if entity is not None and entity.id in seen:
            errors.append(FieldError([*loc, "id"], f"repeats entity {seen[entity.id]} of this batch"))
        if errors or entity is None:
            problems.append(_row_problem(entity_id, i, errors or [FieldError(loc, "invalid entity")]))
        else:
            seen[entity.id] = i
            parsed.append(entity)
    if problems:
        raise NgsiError("BadRequestData", f"{len(problems)} of {len(body)} entities are bad; nothing was written",
                        problems=problems)
    return parsed


def parse_one(body: Any, *, content_type: str, link_ctx: LdContext | None, now: str) -> ParsedEntity:
    """The entity of a single-entity body, or 400."""
    ctx = body_context(body, content_type, link_ctx)
    errors: list[FieldError] = []
    entity = parse_entity(body, ctx, loc=["body"], errors=errors, now=now)
    if entity is None:
        raise NgsiError("BadRequestData", "; ".join(f"{'.'.join(str(p) for p in e.loc[1:]) or 'body'}: {e.msg}"
                                                    for e in errors[:10]) or "invalid entity", errors=errors)
    return entity


# --- lookups -----------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Stored:
    """A stored kernel entity as NGSI-LD writes need it."""

    uuid: uuid.UUID
    external_id: str | None
    kernel_type: str
    unit_code: str
    unit_path: str
    name: str
    agency_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    attributes: dict[str, Any] | None = None
    geometry: dict[str, Any] | None = None


def _saola_uuid(entity_id: str) -> uuid.UUID | None:
    if not entity_id.startswith(SAOLA_ID_PREFIX):
        return None
    try:
        return uuid.UUID(entity_id[len(SAOLA_ID_PREFIX):])
    except ValueError:
        return None


def lookup(session: Session, ids: Iterable[str], *, full: bool = False) -> dict[str, Stored]:
    """Stored entities by NGSI-LD id, whatever their type and scope (callers check scope)."""
    wanted = list(dict.fromkeys(ids))
    columns = [Entity.id, Entity.external_id, Entity.type, Entity.unit_code, Unit.path, Entity.name, Entity.agency_id,
               Entity.created_at, Entity.updated_at]
    if full:
        columns += [Entity.attributes, Entity.geometry]
    base = select(*columns).join(Unit, Unit.code == Entity.unit_code)
    found: dict[str, Stored] = {}
    external = [i for i in wanted if not i.startswith(SAOLA_ID_PREFIX)]
    for start in range(0, len(external), _CHUNK):
        # No ORDER BY: PostgreSQL would answer it by walking the whole primary key in order. An id used under two
        # types (possible only through the kernel's API) resolves to the older entity (UUIDv7 ids sort by time).
        for row in session.execute(base.where(Entity.external_id.in_(external[start:start + _CHUNK]))):
            seen = found.get(row[1])
            if seen is None or row[0] < seen.uuid:
                found[row[1]] = Stored(*row)
    own = {u: i for i in wanted if (u := _saola_uuid(i)) is not None}
    for start in range(0, len(own), _CHUNK):
        chunk = list(own)[start:start + _CHUNK]
        for row in session.execute(base.where(Entity.id.in_(chunk))):
            if ngsi_id(row[1], row[0]) == own[row[0]]:
                found[own[row[0]]] = Stored(*row)
    return found


@dataclass(slots=True)
class Existing:
    """What replacing an entity needs to know of it: its kernel type, unit and agency."""

    kernel_type: str
    unit_code: str
    agency_id: uuid.UUID | None
    created_at: None = None  # not read: the views a replacing upsert builds never show it


def lookup_lean(session: Session, ids: Sequence[str]) -> dict[str, Existing]:
    """Existing entities by NGSI-LD id, reading only what a replacing upsert needs (the batch's hot path)."""
    found: dict[str, Existing] = {}
    external = [i for i in dict.fromkeys(ids) if not i.startswith(SAOLA_ID_PREFIX)]
    stmt = select(Entity.external_id, Entity.id, Entity.type, Entity.unit_code, Entity.agency_id)
    first: dict[str, uuid.UUID] = {}
    # PostgreSQL takes the ids as one array parameter: the same SQL text every batch, where an IN list of a
    # thousand placeholders is new text for SQLAlchemy and psycopg to build and parse each time.
    pg = session.get_bind().dialect.name == "postgresql"
    step = max(1, len(external)) if pg else _CHUNK
    for start in range(0, len(external), step):
        chunk = external[start:start + step]
        where = Entity.external_id == any_(bindparam("ids", chunk, type_=ARRAY(String))) if pg else \
            Entity.external_id.in_(chunk)
        for external_id, entity_id, *rest in session.execute(stmt.where(where)):
            if external_id not in first or entity_id < first[external_id]:  # the older one, as lookup does
                first[external_id] = entity_id
                found[external_id] = Existing(*rest)
    own = [i for i in ids if i.startswith(SAOLA_ID_PREFIX)]
    if own:
        for entity_id, stored in lookup(session, own).items():
            found[entity_id] = Existing(stored.kernel_type, stored.unit_code, stored.agency_id)
    return found


def _view(session: Session, registry: Registry, stored: Stored | Entity) -> EntityView:
    kernel_type = stored.kernel_type if isinstance(stored, Stored) else stored.type
    entity_uuid = stored.uuid if isinstance(stored, Stored) else stored.id
    return EntityView(
        uuid=entity_uuid, ngsi_id=ngsi_id(stored.external_id, entity_uuid), kernel_type=kernel_type,
        type_iri=typemap.iri_of(session, registry, kernel_type), name=stored.name, unit_code=stored.unit_code,
        geometry=stored.geometry, attributes=stored.attributes or {},
        created_at=stored.created_at, updated_at=stored.updated_at,
    )


def _visible(actor: Actor, stored: Stored | None) -> Stored | None:
    return stored if stored is not None and actor.sees_path(stored.unit_path) else None


def retrieve(session: Session, *, actor: Actor, registry: Registry, entity_id: str,
             type_iri: str | None = None) -> EntityView:
    """One entity by id inside the caller's scope (and of the given type, when one is given); 404 otherwise."""
    actor.require("entities:read")
    stored = _visible(actor, lookup(session, [entity_id], full=True).get(entity_id))
    view = _view(session, registry, stored) if stored else None
    if view is None or (type_iri is not None and view.type_iri != type_iri):
        raise NgsiError("ResourceNotFound", f"entity {entity_id} not found")
    return view


# --- writes ------------------------------------------------------------------------------------------------------


def _name(entity: Fragment, default: str) -> str:
    attr = entity.attrs.get("name")
    if attr is not None and attr.kind == "Property" and isinstance(attr.value, str) and attr.value.strip():
        return attr.value.strip()[:255]
    return default[:255]


def _meta_for(fragment: Fragment, stamp: str | None, previous: Mapping[str, Any] | None = None
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Values and members of a fragment's attributes (and its location's members); stamped when `stamp` is given."""
    previous = previous or {}
    values, metas = store_attrs(fragment.attrs, now=stamp, previous=previous)
    if fragment.location is not None:
        if stamp is None:
            if fragment.location.meta:
                metas["location"] = fragment.location.meta
        else:
            created = (previous.get("location") or {}).get("createdAt")
            metas["location"] = {**fragment.location.meta, "createdAt": created or stamp, "modifiedAt": stamp}
    return values, metas


def _geometry(attr: Attr | None) -> Geometry | None:
    if attr is None:
        return None
    return Geometry(type=attr.value["type"], coordinates=attr.value["coordinates"])


_ENTITY_FIELDS = ("type", "name", "unit_code", "external_id", "geometry", "attributes", "agency_id")


def _plain_construct(cls: type[Any], values: dict[str, Any]) -> Any:
    """What pydantic's model_construct does for a model without aliases, defaults left out, extras or
    post-init, in a quarter of the time (a batch builds a thousand of them)."""
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", values)
    object.__setattr__(model, "__pydantic_fields_set__", set(values))
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


def _check_plain_construct() -> bool:
    """Use the short cut only while it builds exactly what model_construct builds (checked once, at import)."""
    try:
        if EntityCreate.__pydantic_post_init__ or Geometry.__pydantic_post_init__:
            return False
        if set(EntityCreate.model_fields) != set(_ENTITY_FIELDS):
            return False
        values = {"type": "a.b", "name": "n", "unit_code": "68", "external_id": "urn:x", "geometry": None,
                  "attributes": {"k": 1}, "agency_id": None}
        fast, slow = _plain_construct(EntityCreate, dict(values)), EntityCreate.model_construct(**values)
        point = {"type": "Point", "coordinates": [1.0, 2.0]}
        fast_point, slow_point = _plain_construct(Geometry, dict(point)), Geometry.model_construct(**point)
        return (fast == slow and fast.model_fields_set == slow.model_fields_set and fast_point == slow_point
                and fast_point.model_dump() == slow_point.model_dump() == point)
    except Exception:  # a pydantic whose internals moved: take the documented way
        return False


_FAST_CONSTRUCT = _check_plain_construct()


def _kernel_items(items: list[dict[str, Any]]) -> list[EntityCreate]:
    """EntityCreate models of the batch, built without validating again what the parser already checked.

    Every field was checked on the way in (URIs, unit codes, GeoJSON, JSON-storable values and names) or comes
    from the database or the type map; pydantic would walk each attribute tree a second time for nothing.
    """
    built: list[EntityCreate] = []
    for item in items:
        geometry = item["geometry"]
        if _FAST_CONSTRUCT:
            item["geometry"] = (_plain_construct(Geometry, {"type": geometry["type"],
                                                            "coordinates": geometry["coordinates"]})
                                if geometry else None)
            built.append(_plain_construct(EntityCreate, {f: item[f] for f in _ENTITY_FIELDS}))
            item["geometry"] = geometry
        else:
            built.append(EntityCreate.model_construct(
                type=item["type"], name=item["name"], unit_code=item["unit_code"], external_id=item["external_id"],
                geometry=Geometry.model_construct(type=geometry["type"], coordinates=geometry["coordinates"])
                if geometry else None, attributes=item["attributes"], agency_id=item["agency_id"]))
    return built


def _kernel_errors(exc: ValidationFailed, ids: Sequence[str], positions: Sequence[int]) -> NgsiError:
    """A kernel batch refusal (errors at ['body', 'items', k, ...]) as problems of the request's entities."""
    by_row: dict[int, list[FieldError]] = {}
    other: list[FieldError] = []
    for e in exc.errors:
        k = e.loc[2] if len(e.loc) > 2 and e.loc[:2] == ["body", "items"] else None
        if isinstance(k, int) and k < len(positions):
            by_row.setdefault(k, []).append(FieldError(["body", positions[k], *e.loc[3:]], e.msg))
        else:
            other.append(e)
    problems = [_row_problem(ids[k], positions[k], errs) for k, errs in sorted(by_row.items())]
    return NgsiError("BadRequestData", exc.message, problems=problems, errors=other)


@dataclass
class BatchOutcome:
    """What a batch did: ids written (created ones apart) and the entities left alone, with why."""

    success: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def _not_there(entity_id: str, kind: str, detail: str) -> dict[str, Any]:
    return {"entityId": entity_id, "error": problem_body(kind, detail)}


def write_entities(session: Session, *, actor: Actor, registry: Registry, entities_in: Sequence[ParsedEntity],
                   operation: Literal["create", "upsert", "update"], mode: UpsertMode = "replace",
                   no_overwrite: bool = False) -> BatchOutcome:
    """Create, upsert (replace or update) or update entities as one kernel batch; see the module docstring."""
    actor.require("entities:write")
    now = utcnow()
    stamp = iso(now)
    merge = operation == "update" or mode == "update"
    ids = [e.id for e in entities_in]
    existing: Mapping[str, Stored | Existing] = lookup(session, ids, full=True) if merge else lookup_lean(session, ids)
    outcome = BatchOutcome()
    todo: list[tuple[int, ParsedEntity]] = []
    for i, entity in enumerate(entities_in):
        found = existing.get(entity.id)
        if operation == "create" and found is not None:
            outcome.errors.append(_not_there(entity.id, "AlreadyExists", f"entity {entity.id} already exists"))
        elif operation == "update" and (not isinstance(found, Stored) or _visible(actor, found) is None):
            outcome.errors.append(_not_there(entity.id, "ResourceNotFound", f"entity {entity.id} not found"))
        else:
            todo.append((i, entity))
    if not todo:
        return outcome
    kernel_types = typemap.allot(session, registry, {e.type_iri for _, e in todo if e.type_iri})
    items: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    written: list[tuple[ParsedEntity, Stored | Existing | None, dict[str, Any], dict[str, Any] | None]] = []
    for i, entity in todo:
        stored = existing.get(entity.id)
        kernel_type = kernel_types[entity.type_iri]
        if stored is not None and stored.kernel_type != kernel_type:
            problems.append(_row_problem(entity.id, i, [FieldError(["body", i, "type"], (
                f"entity {entity.id} exists with type {typemap.iri_of(session, registry, stored.kernel_type)}"))]))
            continue
        if merge and isinstance(stored, Stored):
            old_attrs = dict(stored.attributes or {})
            old_meta = stamped_meta(old_attrs, old_attrs.pop(META, None) or {}, has_location=bool(stored.geometry),
                                    when=iso(stored.updated_at))
            fragment = entity
            if no_overwrite:
                fragment = Fragment(attrs={k: a for k, a in entity.attrs.items() if k not in old_attrs},
                                    location=entity.location if not stored.geometry else None,
                                    unit=None)
            values, metas = _meta_for(fragment, stamp, old_meta)
            attributes = {**old_attrs, **values, META: {**old_meta, **metas}}
            geometry = (fragment.location.value if fragment.location is not None else stored.geometry)
            name = _name(fragment, stored.name) if "name" in fragment.attrs else stored.name
            unit = fragment.unit or stored.unit_code
        else:
            values, metas = _meta_for(entity, None)
            attributes = {**values, META: metas}
            geometry = entity.location.value if entity.location is not None else None
            name = _name(entity, entity.id)
            unit = entity.unit or (stored.unit_code if stored else actor.scope_code)
        items.append({"type": kernel_type, "name": name, "unit_code": unit, "external_id": entity.id,
                      "geometry": {"type": geometry["type"], "coordinates": geometry["coordinates"]} if geometry
                      else None, "attributes": attributes,
                      "agency_id": stored.agency_id if stored else None})
        written.append((entity, stored, attributes, geometry))
    if problems:
        raise NgsiError("BadRequestData", f"{len(problems)} entities are bad; nothing was written", problems=problems)
    ids = [e.id for e, *_ in written]
    models = _kernel_items(items)
    try:
        result = entities.upsert_entities(session, actor=actor, registry=registry, items=models)
    except ValidationFailed as exc:
        raise _kernel_errors(exc, ids, [i for i, _ in todo]) from exc
    # Views of the written entities are only built for what needs them: observations and subscriptions.
    notifying = notify.has_subscriptions(session)
    type_iris: dict[str, str] = {}
    mapped: dict[str, dict[str, str]] = {}
    changes: list[tuple[EntityView, set[str]]] = []
    observed: list[tuple[EntityView, Iterable[Attr]]] = []
    for (entity, stored, attributes, geometry), item, entity_uuid in zip(written, items, result.ids, strict=True):
        outcome.success.append(entity.id)
        if stored is None:
            outcome.created.append(entity.id)
        kernel_type = item["type"]
        timed = [a.key for a in entity.attrs.values() if a.observed_at is not None]
        if timed:
            codes = mapped.get(kernel_type)
            if codes is None:
                codes = mapped[kernel_type] = {}
            for key in timed:
                if key not in codes:
                    codes.update(indicator_codes(registry, kernel_type, [key]) or {key: ""})
            timed = [k for k in timed if codes[k]]
        if not (timed or notifying):
            continue
        type_iri = type_iris.get(kernel_type)
        if type_iri is None:
            type_iri = type_iris[kernel_type] = typemap.iri_of(session, registry, kernel_type)
        view = EntityView(uuid=entity_uuid, ngsi_id=entity.id, kernel_type=kernel_type, type_iri=type_iri,
                          name=item["name"], unit_code=item["unit_code"], geometry=geometry, attributes=attributes,
                          created_at=(stored.created_at if stored else None) or now, updated_at=now)
        if notifying:
            changes.append((view, entity.iris))
        if timed:
            observed.append((view, entity.attrs.values()))
    _observe(session, actor=actor, registry=registry, written=observed, now=now)
    notify.queue_changes(session, registry=registry, changes=changes)
    return outcome


def create_entity(session: Session, *, actor: Actor, registry: Registry, entity: ParsedEntity) -> None:
    """Create one entity; 409 AlreadyExists when its id is taken."""
    outcome = write_entities(session, actor=actor, registry=registry, entities_in=[entity], operation="create")
    if outcome.errors:
        raise NgsiError("AlreadyExists", f"entity {entity.id} already exists")


def _stored_visible(session: Session, actor: Actor, entity_id: str, *, full: bool = True) -> Stored:
    stored = _visible(actor, lookup(session, [entity_id], full=full).get(entity_id))
    if stored is None:
        raise NgsiError("ResourceNotFound", f"entity {entity_id} not found")
    return stored


def update_attributes(session: Session, *, actor: Actor, registry: Registry, entity_id: str, fragment: Fragment,
                      append: bool, no_overwrite: bool = False) -> tuple[list[str], list[tuple[str, str]]]:
    """Append (POST .../attrs) or update (PATCH .../attrs) attributes of one entity.

    Returns the names changed and the names left alone with why: on update, attributes the entity lacks; on
    append with noOverwrite, attributes it already has.
    """
    actor.require("entities:write")
    stored = _stored_visible(session, actor, entity_id)
    view = _view(session, registry, stored)
    old_attrs, old_meta = _old(stored)
    present = set(view.attribute_keys())
    keep: dict[str, Attr] = {}
    skipped: list[tuple[str, str]] = []
    for key, attr in fragment.attrs.items():
        exists = key in present
        if (not append and not exists) or (append and no_overwrite and exists):
            skipped.append((key, "attribute does not exist" if not append else "attribute exists (noOverwrite)"))
        else:
            keep[key] = attr
    location = fragment.location
    if location is not None and ((not append and not stored.geometry) or (append and no_overwrite and stored.geometry)):
        skipped.append(("location", "attribute does not exist" if not append else "attribute exists (noOverwrite)"))
        location = None
    unit = fragment.unit if not (append and no_overwrite) else None
    if fragment.unit is not None and unit is None:
        skipped.append(("administrativeUnit", "attribute exists (noOverwrite)"))
    change = Fragment(attrs=keep, location=location, unit=unit)
    if change.attrs or change.location is not None or change.unit is not None:
        _apply_update(session, actor=actor, registry=registry, stored=stored, change=change, removed=[],
                      old_attrs=old_attrs, old_meta=old_meta)
    updated = [*change.attrs, *(["location"] if change.location is not None else []),
               *(["administrativeUnit"] if change.unit is not None else [])]
    return updated, skipped


def patch_attribute(session: Session, *, actor: Actor, registry: Registry, entity_id: str, attr: Attr,
                    partial: Mapping[str, Any]) -> None:
    """Partial update of one attribute (PATCH .../attrs/{attrId}): the members given replace the stored ones."""
    actor.require("entities:write")
    stored = _stored_visible(session, actor, entity_id)
    view = _view(session, registry, stored)
    old_attrs, old_meta = _old(stored)
    if attr.iri == LOCATION:
        if not stored.geometry:
            raise NgsiError("ResourceNotFound", f"entity {entity_id} has no attribute location")
        change = Fragment(location=attr)
    elif attr.iri == UNIT:
        raise bad_request("administrativeUnit is changed with PATCH .../attrs")
    else:
        if attr.key not in view.attribute_keys():
            raise NgsiError("ResourceNotFound", f"entity {entity_id} has no attribute {attr.key}")
        old = old_meta.get(attr.key) or {}
        kind = old.get("type", "Property")
        given_main = any(m in partial for m in ("value", "object", "languageMap", "json", "vocab", "valueList",
                                                "objectList"))
        if not given_main:
            attr.value = view.value_of(attr.key)
            attr.kind = kind
            attr.meta = {**{k: v for k, v in old.items() if k not in ("createdAt", "modifiedAt")},
                         **{k: v for k, v in attr.meta.items() if k != "type"}}
            if kind != "Property":
                attr.meta["type"] = kind
        else:
            merged = {k: v for k, v in old.items() if k not in ("createdAt", "modifiedAt", "type")}
            merged.update({k: v for k, v in attr.meta.items() if k != "sub"})
            if "sub" in old or "sub" in attr.meta:
                merged["sub"] = {**(old.get("sub") or {}), **(attr.meta.get("sub") or {})}
            attr.meta = merged
        change = Fragment(attrs={attr.key: attr})
    _apply_update(session, actor=actor, registry=registry, stored=stored, change=change, removed=[],
                  old_attrs=old_attrs, old_meta=old_meta)


def delete_attribute(session: Session, *, actor: Actor, registry: Registry, entity_id: str, key: str) -> None:
    """Remove one attribute (location clears the geometry; administrativeUnit cannot be removed)."""
    actor.require("entities:write")
    stored = _stored_visible(session, actor, entity_id)
    old_attrs, old_meta = _old(stored)
    if key == "administrativeUnit":
        raise bad_request("every entity lies in an administrative unit; change it instead of deleting it")
    if key == "location":
        if not stored.geometry:
            raise NgsiError("ResourceNotFound", f"entity {entity_id} has no attribute location")
    elif key not in old_attrs or key.startswith("@"):
        raise NgsiError("ResourceNotFound", f"entity {entity_id} has no attribute {key}")
    _apply_update(session, actor=actor, registry=registry, stored=stored, change=Fragment(), removed=[key],
                  old_attrs=old_attrs, old_meta=old_meta)


def _old(stored: Stored) -> tuple[dict[str, Any], dict[str, Any]]:
    """An entity's stored values and members, with the implicit attribute timestamps written out."""
    attributes = dict(stored.attributes or {})
    meta = stamped_meta(attributes, attributes.pop(META, None) or {}, has_location=bool(stored.geometry),
                        when=iso(stored.updated_at))
    return attributes, meta


def _apply_update(session: Session, *, actor: Actor, registry: Registry, stored: Stored, change: Fragment,
                  removed: list[str], old_attrs: dict[str, Any], old_meta: dict[str, Any]) -> None:
    """One kernel update_entity call for a change to a single entity, then observations and notifications."""
    now = utcnow()
    stamp = iso(now)
    values, metas = _meta_for(change, stamp, old_meta)
    meta = {**old_meta, **metas}
    attributes_change: dict[str, Any] = dict(values)
    for key in removed:
        meta.pop(key, None)
        if key != "location":
            attributes_change[key] = None
    attributes_change[META] = meta
    fields: dict[str, Any] = {"attributes": attributes_change}
    if change.location is not None:
        fields["geometry"] = _geometry(change.location)
    elif "location" in removed:
        fields["geometry"] = None
    if change.unit is not None:
        fields["unit_code"] = change.unit
    if "name" in change.attrs:
        fields["name"] = _name(change, stored.name)
    try:
        data = EntityUpdate(**fields)
    except ValidationError as exc:
        raise NgsiError("BadRequestData", "invalid change",
                        errors=[FieldError(["body", *(str(p) for p in e["loc"])], e["msg"]) for e in exc.errors()]
                        ) from exc
    row = entities.update_entity(session, actor=actor, registry=registry, entity_id=stored.uuid, data=data)
    view = _view(session, registry, row)
    _observe(session, actor=actor, registry=registry, written=[(view, change.attrs.values())], now=now)
    notify.queue_changes(session, registry=registry, changes=[(view, change.iris | {
        core_iri(k) for k in removed})])


def core_iri(key: str) -> str:
    """The IRI of a stored attribute key."""
    return core_context().expand(key)


def delete_entity(session: Session, *, actor: Actor, entity_id: str) -> None:
    """Delete one entity (the kernel refuses when observations or events still refer to it)."""
    actor.require("entities:write")
    stored = _stored_visible(session, actor, entity_id, full=False)
    entities.delete_entity(session, actor=actor, entity_id=stored.uuid)


def delete_entities(session: Session, *, actor: Actor, ids: Sequence[str]) -> BatchOutcome:
    """Delete many entities in one transaction: missing ones are reported (207); any refusal rejects them all."""
    actor.require("entities:write")
    outcome = BatchOutcome()
    found = lookup(session, ids)
    problems: list[dict[str, Any]] = []
    for i, entity_id in enumerate(dict.fromkeys(ids)):
        stored = _visible(actor, found.get(entity_id))
        if stored is None:
            outcome.errors.append(_not_there(entity_id, "ResourceNotFound", f"entity {entity_id} not found"))
            continue
        try:
            entities.delete_entity(session, actor=actor, entity_id=stored.uuid)
        except DomainError as exc:
            problems.append({"entityId": entity_id, "index": i, "error": problem_body(
                "Conflict" if exc.status_code == 409 else "BadRequestData", exc.message)})
            continue
        outcome.success.append(entity_id)
    if problems:
        raise NgsiError("Conflict", f"{len(problems)} entities cannot be deleted; nothing was deleted",
                        problems=problems)
    return outcome


# --- observations ------------------------------------------------------------------------------------------------


def indicator_codes(registry: Registry, kernel_type: str, keys: Iterable[str]) -> dict[str, str]:
    """Attribute key -> indicator code for keys that may name an indicator (checked against the catalog later).

    A pack may map attribute names to indicator codes with an `ngsi_ld_attributes` dict on its
    EntityTypeDefinition; otherwise an attribute whose name is an indicator code (env.pm25) maps to it.
    """
    definition = registry.entity_types.get(kernel_type)
    declared: Any = getattr(definition, "ngsi_ld_attributes", None) if definition else None
    found: dict[str, str] = {}
    for key in keys:
        code = declared.get(key) if isinstance(declared, dict) else None
        if isinstance(code, str):
            found[key] = code
        elif _INDICATOR_CODE.match(key):
            found[key] = key
    return found


def _observe(session: Session, *, actor: Actor, registry: Registry,
             written: Sequence[tuple[EntityView, Iterable[Attr]]], now: datetime) -> int:
    """Write numeric Properties with observedAt as observations when their name maps to an indicator."""
    candidates: list[tuple[EntityView, Attr, str]] = []
    for view, attrs in written:
        timed = [a for a in attrs if a.observed_at is not None and a.kind == "Property"]
        if not timed:
            continue
        codes = indicator_codes(registry, view.kernel_type, [a.key for a in timed])
        candidates.extend((view, a, codes[a.key]) for a in timed if a.key in codes)
    if not candidates:
        return 0
    refs = indicators_by_code(session, {code for *_, code in candidates})
    items: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    latest = now + MAX_AHEAD
    for view, attr, code in candidates:
        ref = refs.get(code)
        if ref is None or not ref.is_active or ref.subject_kind == "unit":
            continue
        value = attr.value
        assert attr.observed_at is not None
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append({"entityId": view.ngsi_id, "error": problem_body(
                "BadRequestData", f"{attr.key} maps to indicator {code}: its value must be a number")})
        elif not EPOCH <= attr.observed_at <= latest:
            problems.append({"entityId": view.ngsi_id, "error": problem_body(
                "BadRequestData", f"{attr.key}.observedAt must lie between 1970 and one day ahead")})
        else:
            items.append({"indicator": code, "entity": view.uuid, "ts": attr.observed_at, "value": float(value)})
    if problems:
        raise NgsiError("BadRequestData", f"{len(problems)} observation(s) are bad; nothing was written",
                        problems=problems)
    for start in range(0, len(items), observations.MAX_BATCH):
        observations.ingest(session, actor=actor, items=items[start:start + observations.MAX_BATCH], now=now)
    return len(items)


# --- queries -----------------------------------------------------------------------------------------------------


@dataclass
class EntityQuery:
    """A checked query: types (IRIs), ids, id pattern, q, attrs (IRIs), geo-query, page."""

    types: list[str] | None = None
    ids: list[str] | None = None
    id_pattern: str | None = None
    q: Node | None = None
    attrs: set[str] | None = None
    geo: GeoQuery | None = None
    limit: int = 20
    offset: int = 0
    count: bool = False


_VIEW_COLUMNS = (Entity.id, Entity.external_id, Entity.type, Entity.unit_code, Unit.path, Entity.name,
                 Entity.agency_id, Entity.created_at, Entity.updated_at, Entity.attributes, Entity.geometry)


def _query_stmt(session: Session, actor: Actor, registry: Registry, query: EntityQuery) -> Select[Any] | None:
    stmt = select(*_VIEW_COLUMNS).join(Unit, Unit.code == Entity.unit_code).where(scope_condition(actor, Unit.path))
    if query.types is not None:
        kernel_types = {t for iri in query.types if (t := typemap.kernel_type_of(session, registry, iri))}
        if not kernel_types:
            return None
        stmt = stmt.where(Entity.type.in_(sorted(kernel_types)))
    if query.ids is not None:
        own = [u for i in query.ids if (u := _saola_uuid(i)) is not None]
        external = [i for i in query.ids if not i.startswith(SAOLA_ID_PREFIX)]
        conditions = []
        if external:
            conditions.append(Entity.external_id.in_(external))
        if own:
            conditions.append(Entity.id.in_(own))
        if not conditions:
            return None
        stmt = stmt.where(or_(*conditions))
    if query.geo is not None and query.geo.box is not None:
        min_lon, min_lat, max_lon, max_lat = query.geo.box
        if query.geo.georel == "within":
            stmt = stmt.where(Entity.min_lon >= min_lon, Entity.max_lon <= max_lon, Entity.min_lat >= min_lat,
                              Entity.max_lat <= max_lat)
        else:
            stmt = stmt.where(Entity.min_lon <= max_lon, Entity.max_lon >= min_lon, Entity.min_lat <= max_lat,
                              Entity.max_lat >= min_lat)
    elif query.geo is not None:
        stmt = stmt.where(Entity.min_lon.is_not(None))
    return stmt


def query_entities(session: Session, *, actor: Actor, registry: Registry, query: EntityQuery
                   ) -> tuple[int | None, list[EntityView]]:
    """Entities in the caller's scope matching the query; (count when asked, the page)."""
    actor.require("entities:read")
    stmt = _query_stmt(session, actor, registry, query)
    if stmt is None:
        return (0 if query.count else None), []
    pattern = safe_regex(query.id_pattern, "idPattern") if query.id_pattern else None
    exact = query.q is None and query.geo is None and pattern is None and not query.attrs
    if exact:
        total = session.scalar(select(func.count()).select_from(stmt.subquery())) if query.count else None
        if query.limit == 0:
            return total, []
        rows = session.execute(stmt.order_by(Entity.id).limit(query.limit).offset(query.offset))
        return total, [_view(session, registry, Stored(*row)) for row in rows]
    matched = 0
    page: list[EntityView] = []
    scanned = 0
    for row in session.execute(stmt.order_by(Entity.id).execution_options(yield_per=500)):
        scanned += 1
        if scanned > MAX_SCAN:
            raise NgsiError("TooManyResults", f"the query would examine more than {MAX_SCAN} entities; narrow it "
                                              "with type, id or a geo-query")
        stored = Stored(*row)
        view = _view(session, registry, stored)
        if pattern is not None and not pattern.fullmatch(view.ngsi_id):
            continue
        if query.attrs and not has_any_attribute(view, query.attrs):
            continue
        if query.q is not None and not q_matches(query.q, view):
            continue
        if query.geo is not None and not geo_matches(query.geo, view.geometry):
            continue
        if query.offset <= matched < query.offset + query.limit:
            page.append(view)
        matched += 1
        if not query.count and matched >= query.offset + query.limit:
            break
    return (matched if query.count else None), page


# --- temporal ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeFilter:
    """timerel before|after|between with timeAt and endTimeAt, and lastN."""

    timerel: str | None = None
    time_at: datetime | None = None
    end_time_at: datetime | None = None
    last_n: int | None = None

    def contains(self, ts: datetime) -> bool:
        """True when a time passes the filter."""
        if self.timerel == "before":
            return ts < self.time_at  # type: ignore[operator]
        if self.timerel == "after":
            return ts > self.time_at  # type: ignore[operator]
        if self.timerel == "between":
            return self.time_at <= ts < self.end_time_at  # type: ignore[operator]
        return True


def temporal_instances(session: Session, *, actor: Actor, registry: Registry, entity_id: str,
                       attrs: set[str] | None, time: TimeFilter
                       ) -> tuple[EntityView, dict[str, list[tuple[str, Any, dict[str, Any]]]]]:
    """An entity and, per attribute key, its instances (kind, value, members incl. observedAt) oldest first.

    Attributes mapped to indicators read the kernel's observations; others give their current instance when its
    observedAt passes the filter.
    """
    actor.require("entities:read")
    actor.require("observations:read")
    view = retrieve(session, actor=actor, registry=registry, entity_id=entity_id)
    meta = view.meta
    core_keys = [k for k in view.attribute_keys() if attrs is None or core_iri(k) in attrs]
    codes = indicator_codes(registry, view.kernel_type, core_keys)
    refs = {code: ref for code, ref in (indicators_by_code(session, set(codes.values())) if codes else {}).items()
            if ref.subject_kind != "unit"}
    subject_id = session.scalar(select(Subject.id).where(Subject.key == f"e:{view.uuid}")) if refs else None
    limit = min(time.last_n or MAX_INSTANCES, MAX_INSTANCES)
    out: dict[str, list[tuple[str, Any, dict[str, Any]]]] = {}
    for key in core_keys:
        m = meta.get(key) or {}
        ref = refs.get(codes.get(key, ""))
        if ref is not None:
            if subject_id is None:
                continue
            stmt = select(Observation.ts, Observation.value).where(
                Observation.indicator_id == ref.id, Observation.subject_id == subject_id)
            if time.timerel == "before":
                stmt = stmt.where(Observation.ts < time.time_at)
            elif time.timerel == "after":
                stmt = stmt.where(Observation.ts > time.time_at)
            elif time.timerel == "between":
                stmt = stmt.where(Observation.ts >= time.time_at, Observation.ts < time.end_time_at)
            rows = list(session.execute(stmt.order_by(Observation.ts.desc()).limit(limit)))
            extra = {k: v for k, v in m.items() if k == "unitCode"}
            instances = [("Property", value, {**extra, "observedAt": iso(ts)}) for ts, value in reversed(rows)]
        else:
            observed = m.get("observedAt")
            when = datetime.fromisoformat(observed) if isinstance(observed, str) else None
            if when is None or not time.contains(when):
                continue
            kind = m.get("type", "Property")
            instances = [(kind, view.value_of(key), {k: v for k, v in m.items() if k not in ("type",)})]
        if instances:
            out[key] = instances
    return view, out


def parse_time_param(value: str | None, name: str) -> datetime | None:
    """A query-string date-time, or 400."""
    if value is None:
        return None
    parsed = parse_time(value)
    if parsed is None:
        raise bad_request(f"{name} must be a date-time with a time zone, e.g. 2026-11-25T08:00:00Z",
                          ["query", name])
    return parsed


def time_filter(timerel: str | None, time_at: str | None, end_time_at: str | None, last_n: int | None
                ) -> TimeFilter:
    """A checked TimeFilter from the temporal query parameters."""
    if timerel not in (None, "before", "after", "between"):
        raise bad_request("timerel must be before, after or between", ["query", "timerel"])
    start = parse_time_param(time_at, "timeAt")
    end = parse_time_param(end_time_at, "endTimeAt")
    if timerel and start is None:
        raise bad_request("timerel needs timeAt", ["query", "timeAt"])
    if timerel == "between" and (end is None or start is None or end <= start):
        raise bad_request("timerel=between needs endTimeAt after timeAt", ["query", "endTimeAt"])
    if last_n is not None and last_n < 1:
        raise bad_request("lastN must be a positive integer", ["query", "lastN"])
    return TimeFilter(timerel, start, end, last_n)


def is_entity_id(value: str) -> bool:
    """True when a path segment can be an entity id."""
    return is_uri(value)

