"""Routes of events: record in bulk, list and read. There is no update or delete: events are append-only."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from saola.core.entities.schemas import TYPE_PATTERN, UNIT_PATTERN
from saola.core.events import service
from saola.core.events.schemas import EventBatch, EventBatchResult, EventPage, EventRead, Severity
from saola.deps import ActorDep, RegistryDep, SessionDep

router = APIRouter(prefix="/api", tags=["events"])


@router.post("/events", response_model=EventBatchResult, summary="Record events (up to 10,000)")
def emit(body: EventBatch, session: SessionDep, actor: ActorDep, registry: RegistryDep) -> EventBatchResult:
    """Record a batch of events; a bad item rejects the whole batch, re-sent external_ids count as duplicates."""
    return service.emit(session, actor=actor, registry=registry, items=body.items)


@router.get("/events", response_model=EventPage, summary="List events, newest first")
def list_events(
    session: SessionDep,
    actor: ActorDep,
    type: Annotated[str | None, Query(max_length=60, pattern=TYPE_PATTERN)] = None,
    severity: Annotated[list[Severity] | None, Query(description="One or more severities")] = None,
    unit: Annotated[str | None, Query(max_length=16, pattern=UNIT_PATTERN,
                                      description="Unit code: events in it or below it")] = None,
    entity: uuid.UUID | None = None,
    since: Annotated[AwareDatetime | None, Query(description="occurred_at >= since")] = None,
    until: Annotated[AwareDatetime | None, Query(description="occurred_at < until")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> EventPage:
    """Events in the caller's scope."""
    total, items = service.list_events(session, actor=actor, event_type=type, severity=severity, unit=unit,
                                       entity_id=entity, since=since, until=until, limit=limit, offset=offset)
    return EventPage(total=total, items=[EventRead.model_validate(e) for e in items])


@router.get("/events/{event_id}", response_model=EventRead, summary="One event")
def get_event(event_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> EventRead:
    """An event inside the caller's scope."""
    return EventRead.model_validate(service.get_event(session, actor=actor, event_id=event_id))
