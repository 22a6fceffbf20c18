"""Routes of entities: create, batch upsert, read, change, delete, list and GeoJSON for maps."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import JSONResponse

from saola.core.entities import service
from saola.core.entities.schemas import (
    TYPE_PATTERN,
    UNIT_PATTERN,
    EntityBatch,
    EntityBatchResult,
    EntityCreate,
    EntityPage,
    EntityRead,
    EntityUpdate,
    Feature,
    FeatureCollection,
    SafeStr,
)
from saola.deps import ActorDep, RegistryDep, SessionDep

router = APIRouter(prefix="/api", tags=["entities"])

TypeQuery = Annotated[str | None, Query(max_length=60, pattern=TYPE_PATTERN, description="Entity type")]
UnitQuery = Annotated[str | None, Query(max_length=16, pattern=UNIT_PATTERN,
                                        description="Unit code: entities in it or below it")]
TextQuery = Annotated[SafeStr | None, Query(max_length=100, description="Name; diacritics and case ignored")]
BBoxQuery = Annotated[str | None, Query(max_length=200, description="minLon,minLat,maxLon,maxLat")]
OffsetQuery = Annotated[int, Query(ge=0, le=1_000_000_000)]


class GeoJSONResponse(JSONResponse):
    """JSON served as application/geo+json."""

    media_type = "application/geo+json"


@router.post("/entities", response_model=EntityRead, status_code=status.HTTP_201_CREATED,
             summary="Create an entity")
def create_entity(body: EntityCreate, session: SessionDep, actor: ActorDep, registry: RegistryDep) -> EntityRead:
    """Create an entity of a declared type inside a unit of the caller's scope."""
    return EntityRead.of(service.create_entity(session, actor=actor, registry=registry, data=body))


@router.post("/entities/batch", response_model=EntityBatchResult, summary="Create or replace entities in bulk")
def upsert_entities(body: EntityBatch, session: SessionDep, actor: ActorDep,
                    registry: RegistryDep) -> EntityBatchResult:
    """Create or replace up to 10,000 entities by (type, external_id); a bad item rejects the whole batch."""
    return service.upsert_entities(session, actor=actor, registry=registry, items=body.items)


@router.get("/entities", response_model=EntityPage, summary="List entities")
def list_entities(
    session: SessionDep,
    actor: ActorDep,
    type: TypeQuery = None,
    unit: UnitQuery = None,
    q: TextQuery = None,
    bbox: BBoxQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: OffsetQuery = 0,
) -> EntityPage:
    """Entities in the caller's scope, by type, unit subtree, text and bounding box."""
    box = service.parse_bbox(bbox) if bbox else None
    total, items = service.list_entities(session, actor=actor, entity_type=type, unit=unit, q=q, bbox=box,
                                         limit=limit, offset=offset)
    return EntityPage(total=total, items=[EntityRead.of(e) for e in items])


@router.get("/entities.geojson", response_model=FeatureCollection, response_class=GeoJSONResponse,
            summary="Entities as a GeoJSON FeatureCollection")
def entities_geojson(
    session: SessionDep,
    actor: ActorDep,
    type: TypeQuery = None,
    unit: UnitQuery = None,
    q: TextQuery = None,
    bbox: BBoxQuery = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: OffsetQuery = 0,
) -> FeatureCollection:
    """The same filters as the list, shaped for map libraries."""
    box = service.parse_bbox(bbox) if bbox else None
    total, items = service.list_entities(session, actor=actor, entity_type=type, unit=unit, q=q, bbox=box,
                                         limit=limit, offset=offset)
    return FeatureCollection(numberMatched=total, numberReturned=len(items),
                             features=[Feature.of(e) for e in items])


@router.get("/entities/{entity_id}", response_model=EntityRead, summary="One entity")
def get_entity(entity_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> EntityRead:
    """An entity inside the caller's scope."""
    return EntityRead.of(service.get_entity(session, actor=actor, entity_id=entity_id))


@router.patch("/entities/{entity_id}", response_model=EntityRead, summary="Change an entity")
def update_entity(entity_id: uuid.UUID, body: EntityUpdate, session: SessionDep, actor: ActorDep,
                  registry: RegistryDep) -> EntityRead:
    """Change name, unit, geometry, agency; attributes are merged and a null value removes a key."""
    return EntityRead.of(service.update_entity(session, actor=actor, registry=registry, entity_id=entity_id,
                                               data=body))


@router.delete("/entities/{entity_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               summary="Delete an entity")
def delete_entity(entity_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> Response:
    """Delete an entity nothing refers to; 409 when events or observations still do."""
    service.delete_entity(session, actor=actor, entity_id=entity_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
