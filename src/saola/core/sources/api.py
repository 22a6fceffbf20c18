"""Routes of source systems."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from saola.core.limits import MAX_OFFSET
from saola.core.sources import service
from saola.core.sources.schemas import SourceCreate, SourceCreated, SourceRead
from saola.deps import ActorDep, SessionDep

router = APIRouter(prefix="/api/sources", tags=["sources"])


@router.get("", response_model=list[SourceRead], summary="List source systems")
def list_sources(
    session: SessionDep, actor: ActorDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[SourceRead]:
    """Sources registered inside the caller's scope."""
    _, items = service.list_sources(session, actor=actor, limit=limit, offset=offset)
    return [SourceRead.model_validate(s) for s in items]


@router.post("", response_model=SourceCreated, status_code=status.HTTP_201_CREATED,
             summary="Register a source system (the API key is shown once)")
def create_source(body: SourceCreate, session: SessionDep, actor: ActorDep) -> SourceCreated:
    """Register a source system and return its new API key."""
    source, key = service.create_source(session, actor=actor, **body.model_dump())
    return SourceCreated(**SourceRead.model_validate(source).model_dump(), api_key=key)


@router.get("/{source_id}", response_model=SourceRead, summary="One source system")
def get_source(source_id: int, session: SessionDep, actor: ActorDep) -> SourceRead:
    """A source inside the caller's scope."""
    return SourceRead.model_validate(service.get_source(session, actor=actor, source_id=source_id))


@router.post("/{source_id}/rotate-key", response_model=SourceCreated, summary="Replace a source's API key")
def rotate_key(source_id: int, session: SessionDep, actor: ActorDep) -> SourceCreated:
    """Issue a new key; the old one stops working."""
    source, key = service.rotate_key(session, actor=actor, source_id=source_id)
    return SourceCreated(**SourceRead.model_validate(source).model_dump(), api_key=key)


@router.post("/{source_id}/disable", response_model=SourceRead, summary="Disable a source")
def disable(source_id: int, session: SessionDep, actor: ActorDep) -> SourceRead:
    """Refuse the source's key from now on."""
    return SourceRead.model_validate(service.set_active(session, actor=actor, source_id=source_id, active=False))


@router.post("/{source_id}/enable", response_model=SourceRead, summary="Enable a source")
def enable(source_id: int, session: SessionDep, actor: ActorDep) -> SourceRead:
    """Accept the source's key again."""
    return SourceRead.model_validate(service.set_active(session, actor=actor, source_id=source_id, active=True))
