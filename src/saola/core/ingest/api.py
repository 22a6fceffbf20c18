"""Routes of the native ingestion doors (source systems, JSON or gzip batches) and of dead letters."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from saola.core.auth.context import Actor
from saola.core.errors import ValidationFailed
from saola.core.events import service as events_service
from saola.core.events.schemas import EventBatch, EventBatchResult
from saola.core.ingest import service
from saola.core.ingest.body import read_batch
from saola.core.ingest.schemas import DeadLetterPage, DeadLetterRead
from saola.core.limits import MAX_OFFSET
from saola.core.observations import service as observations_service
from saola.core.observations.schemas import MAX_BATCH, IngestResult, ObservationBatch
from saola.deps import ActorDep, RegistryDep, SessionDep, SettingsDep

router = APIRouter(prefix="/api", tags=["ingest"])


async def source_actor(actor: ActorDep) -> Actor:
    """The calling source system (403 for people); a coroutine, as it only looks at the actor."""
    return service.require_source(actor)


async def batch_body(request: Request, settings: SettingsDep) -> list[Any]:
    """The items of the request's JSON (or gzip JSON) batch."""
    return await read_batch(request, max_bytes=settings.max_body_bytes, max_items=MAX_BATCH)


# The source is resolved before the body is read, so an unauthenticated caller never costs a parse.
SourceDep = Annotated[Actor, Depends(source_actor)]
BatchDep = Annotated[list[Any], Depends(batch_body)]


def _body_doc(model: Any) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}},
                            "description": "JSON, optionally with Content-Encoding: gzip"}}


@router.post("/ingest/observations", response_model=IngestResult, openapi_extra=_body_doc(ObservationBatch),
             summary=f"A source system writes a batch of readings (at most {MAX_BATCH:,}; gzip accepted)")
def ingest_observations(actor: SourceDep, items: BatchDep, session: SessionDep) -> IngestResult:
    """All or nothing, with row errors under ['body', 'items', i, field]; a re-sent reading counts as duplicate."""
    try:
        return observations_service.ingest(session, actor=actor, items=items)
    except ValidationFailed as exc:
        raise service.with_body_loc(exc) from None


@router.post("/ingest/events", response_model=EventBatchResult, openapi_extra=_body_doc(EventBatch),
             summary=f"A source system records a batch of events (at most {MAX_BATCH:,}; gzip accepted)")
def ingest_events(actor: SourceDep, items: BatchDep, session: SessionDep, registry: RegistryDep) -> EventBatchResult:
    """All or nothing; an event re-sent (same external_id, or same content when it has none) is a duplicate."""
    try:
        return events_service.emit(session, actor=actor, registry=registry, items=service.with_event_keys(items))
    except ValidationFailed as exc:
        raise service.with_body_loc(exc) from None


@router.get("/dead-letters", response_model=DeadLetterPage, summary="Messages a door refused, with the reason")
def list_dead_letters(
    session: SessionDep, actor: ActorDep,
    channel: Annotated[str | None, Query(max_length=16, pattern=r"^[a-z0-9_]+$", description="mqtt, http ...")] = None,
    source: Annotated[str | None, Query(max_length=80, description="Source name")] = None,
    since: Annotated[datetime | None, Query(description="Received at or after this time")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> DeadLetterPage:
    """Newest first; integrators see their sources' dead letters, national admins also unattributed ones."""
    total, items = service.list_dead_letters(session, actor=actor, channel=channel, source=source, since=since,
                                             limit=limit, offset=offset)
    return DeadLetterPage(total=total, items=[DeadLetterRead.model_validate(d) for d in items])
