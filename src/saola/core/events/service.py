"""Events: append-only records of what happened, typed, with severity, time and place, ingested in bulk."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from saola.core.audit.service import audit
from saola.core.auth.context import Actor
from saola.core.entities.models import Entity
from saola.core.errors import FieldError, Forbidden, NotFound, ValidationFailed
from saola.core.events.models import Event
from saola.core.events.schemas import MAX_BATCH, SEVERITIES, EventBatchResult, EventCreate
from saola.core.health.metrics import EVENTS_INGESTED
from saola.core.units.models import Unit
from saola.core.units.service import get_unit, normalize_code, scope_condition
from saola.db.base import current_node
from saola.db.ids import new_id
from saola.db.outbox import record_change
from saola.db.types import utcnow
from saola.db.upsert import upsert_rows
from saola.packs.manager import Registry

Loc = list[str | int]
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
MAX_AHEAD = timedelta(days=1)
MAX_ERRORS = 200
_CHUNK = 500


def _coerce(items: Sequence[EventCreate | Mapping[str, Any]], errors: list[FieldError]) -> list[EventCreate | None]:
    """Validate plain mappings (as packs may pass them) into EventCreate, naming ['body', 'items', i, ...]."""
    out: list[EventCreate | None] = []
    for i, item in enumerate(items):
        if isinstance(item, EventCreate):
            out.append(item)
            continue
        try:
            out.append(EventCreate.model_validate(item))
        except ValidationError as exc:
            errors.extend(FieldError(["body", "items", i, *e["loc"]], e["msg"], e["type"]) for e in exc.errors())
            out.append(None)
    return out


def _unit_paths(session: Session, codes: set[str]) -> dict[str, str]:
    wanted = list(codes)
    paths: dict[str, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        rows = session.execute(select(Unit.code, Unit.path).where(Unit.code.in_(wanted[start : start + _CHUNK])))
        paths.update((code, path) for code, path in rows)
    return paths


def _entities_in_scope(session: Session, actor: Actor, ids: set[uuid.UUID]) -> dict[uuid.UUID, dict | None]:
    """Geometry of each entity the actor may see, by id (entities outside the scope are left out)."""
    wanted = list(ids)
    found: dict[uuid.UUID, dict | None] = {}
    for start in range(0, len(wanted), _CHUNK):
        rows = session.execute(
            select(Entity.id, Entity.geometry).join(Unit, Unit.code == Entity.unit_code)
            .where(Entity.id.in_(wanted[start : start + _CHUNK]), scope_condition(actor, Unit.path))
        )
        found.update((entity_id, geometry) for entity_id, geometry in rows)
    return found


def _already_recorded(session: Session, source_id: int | None, external_ids: list[str]) -> dict[str, uuid.UUID]:
    same_sender = Event.source_id == source_id if source_id is not None else Event.source_id.is_(None)
    found: dict[str, uuid.UUID] = {}
    for start in range(0, len(external_ids), _CHUNK):
        rows = session.execute(select(Event.external_id, Event.id).where(
            same_sender, Event.external_id.in_(external_ids[start : start + _CHUNK])))
        found.update((external_id, event_id) for external_id, event_id in rows if external_id is not None)
    return found


def _point_of(geometry: dict | None) -> tuple[float, float] | None:
    if isinstance(geometry, dict) and geometry.get("type") == "Point":
        coords = geometry.get("coordinates") or []
        if len(coords) >= 2:
            return float(coords[0]), float(coords[1])
    return None


def emit(
    session: Session, *, actor: Actor, registry: Registry, items: Sequence[EventCreate | Mapping[str, Any]]
) -> EventBatchResult:
    """Record a batch of events, all or nothing; re-sent external_ids of the same sender are duplicates, not new."""
    actor.require("events:write")
    if not items or len(items) > MAX_BATCH:
        raise ValidationFailed(f"a batch holds 1 to {MAX_BATCH} events",
                               [FieldError(["body", "items"], f"expected 1 to {MAX_BATCH} items")])
    errors: list[FieldError] = []
    events = _coerce(items, errors)
    valid = [e for e in events if e is not None]
    refused = sorted({e.type for e in valid
                      if e.type in registry.event_types and not actor.may_write("events", e.type)})
    if refused:
        raise Forbidden(f"{actor.kind} {actor.name!r} may not write events of type {', '.join(refused)}")
    codes = [normalize_code(e.unit_code) if e else "" for e in events]
    paths = _unit_paths(session, {c for c in codes if c})
    entities = _entities_in_scope(session, actor, {e.entity_id for e in valid if e.entity_id})
    now = utcnow()
    latest = now + MAX_AHEAD
    outside: set[str] = set()
    rows: list[dict[str, Any]] = []
    for i, (event, code) in enumerate(zip(events, codes, strict=True)):
        if event is None:
            continue
        loc: Loc = ["body", "items", i]
        definition = registry.event_types.get(event.type)
        if definition is None:
            errors.append(FieldError([*loc, "type"], f"event type {event.type!r} is not declared by any loaded pack"))
        if event.occurred_at < EARLIEST:
            errors.append(FieldError([*loc, "occurred_at"], "occurred_at is before 1970"))
        elif event.occurred_at > latest:
            errors.append(FieldError([*loc, "occurred_at"], "occurred_at is more than a day in the future"))
        if code not in paths:
            errors.append(FieldError([*loc, "unit_code"], f"unknown unit {event.unit_code!r}"))
        elif not actor.sees_path(paths[code]):
            outside.add(code)
        lon, lat = event.lon, event.lat
        if (lon is None) != (lat is None):
            errors.append(FieldError([*loc, "lat" if lat is None else "lon"], "give both lon and lat, or neither"))
        if event.entity_id is not None:
            if event.entity_id not in entities:
                errors.append(FieldError([*loc, "entity_id"], f"unknown entity {event.entity_id}"))
            elif lon is None and lat is None:
                lon, lat = _point_of(entities[event.entity_id]) or (None, None)
        if len(errors) >= MAX_ERRORS:
            break
        if errors:
            continue
        rows.append({
            "type": event.type,
            "severity": event.severity or (definition.default_severity if definition else "info"),
            "occurred_at": event.occurred_at.astimezone(UTC), "received_at": now, "unit_code": code,
            "entity_id": event.entity_id, "lon": lon, "lat": lat, "title": event.title, "data": dict(event.data),
            "source_id": actor.source_id, "external_id": event.external_id, "origin_node": current_node(),
        })
    if errors:
        raise ValidationFailed(f"{len(errors)} problem(s) in the batch; nothing was recorded", errors[:MAX_ERRORS])
    if outside:
        raise Forbidden(f"units {', '.join(sorted(outside))} are outside the scope of {actor.kind} {actor.name!r}")

    recorded = _already_recorded(session, actor.source_id,
                                 sorted({r["external_id"] for r in rows if r["external_id"] is not None}))
    ids: list[uuid.UUID] = []
    new_rows: list[dict[str, Any]] = []
    for row in rows:
        key = row["external_id"]
        if key is not None and key in recorded:
            ids.append(recorded[key])
            continue
        row["id"] = new_id()
        if key is not None:
            recorded[key] = row["id"]
        new_rows.append(row)
        ids.append(row["id"])
    # ON CONFLICT DO NOTHING: a concurrent batch with the same keys cannot turn a harmless re-send into an error.
    upsert_rows(session, Event.__table__, new_rows, key=["source_id", "external_id"])
    result = EventBatchResult(accepted=len(new_rows), duplicates=len(rows) - len(new_rows), ids=ids)
    if new_rows:
        EVENTS_INGESTED.inc(len(new_rows))
        types = Counter(r["type"] for r in new_rows)
        worst = max((r["severity"] for r in new_rows), key=SEVERITIES.index)
        summary = {"count": len(new_rows), "duplicates": result.duplicates, "types": dict(types),
                   "units": sorted({r["unit_code"] for r in new_rows}), "max_severity": worst,
                   "source_id": actor.source_id}
        record_change(session, topic="events.ingested", aggregate_type="event", aggregate_id=str(new_rows[0]["id"]),
                      payload={**summary, "ids": [str(r["id"]) for r in new_rows]},
                      live={"items": [_live_item(r) for r in new_rows]})
        # Sources are named on each event (source_id); a person's events are traced in the audit log.
        if actor.kind == "user":
            audit(session, actor=actor, action="event.emit", target_type="event",
                  target_id=str(new_rows[0]["id"]) if len(new_rows) == 1 else f"batch:{len(new_rows)}",
                  detail=summary)
    return result


def _utc(value: datetime, loc: Loc) -> datetime:
    try:
        if value.tzinfo is None:
            raise ValueError
        return value.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValidationFailed("a time with a time zone, within the calendar, is required",
                               [FieldError(loc, "expected a timezone-aware time in range")]) from exc


def list_events(
    session: Session, *, actor: Actor, event_type: str | None = None, severity: Sequence[str] | None = None,
    unit: str | None = None, entity_id: uuid.UUID | None = None, since: datetime | None = None,
    until: datetime | None = None, limit: int = 100, offset: int = 0,
) -> tuple[int, list[Event]]:
    """Events in the actor's scope, newest first, by type, severity, unit subtree, entity and time window."""
    actor.require("events:read")
    stmt = select(Event).join(Unit, Unit.code == Event.unit_code).where(scope_condition(actor, Unit.path))
    if event_type:
        stmt = stmt.where(Event.type == event_type)
    if severity:
        stmt = stmt.where(Event.severity.in_(list(severity)))
    if unit:
        path = get_unit(session, actor=actor, code=unit).path
        stmt = stmt.where(or_(Unit.path == path, Unit.path.startswith(path + ".", autoescape=True)))
    if entity_id:
        stmt = stmt.where(Event.entity_id == entity_id)
    if since:
        stmt = stmt.where(Event.occurred_at >= _utc(since, ["query", "since"]))
    if until:
        stmt = stmt.where(Event.occurred_at < _utc(until, ["query", "until"]))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    items = session.scalars(stmt.order_by(Event.occurred_at.desc(), Event.id.desc()).limit(limit).offset(offset))
    return total, list(items)


def get_event(session: Session, *, actor: Actor, event_id: uuid.UUID) -> Event:
    """One event inside the actor's scope; NotFound otherwise."""
    actor.require("events:read")
    event = session.get(Event, event_id)
    unit = session.get(Unit, event.unit_code) if event else None
    if event is None or unit is None or not actor.sees_path(unit.path):
        raise NotFound(f"event {event_id} not found")
    return event


def _live_item(row: dict[str, Any]) -> dict[str, Any]:
    """What rules and the stream need of a new event, JSON-ready."""
    return {"id": str(row["id"]), "type": row["type"], "severity": row["severity"], "unit": row["unit_code"],
            "entity": str(row["entity_id"]) if row["entity_id"] else None,
            "occurred_at": row["occurred_at"].isoformat(), "title": row["title"], "lon": row["lon"],
            "lat": row["lat"]}
