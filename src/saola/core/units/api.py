"""Routes of the unit tree and agencies."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from saola.core.limits import MAX_OFFSET, text_query
from saola.core.units import service
from saola.core.units.schemas import AgencyCreate, AgencyRead, UnitLevel, UnitPage, UnitRead
from saola.deps import ActorDep, SessionDep

router = APIRouter(prefix="/api", tags=["units"])


@router.get("/units", response_model=UnitPage, summary="List units (filter by parent, level, text)")
def list_units(
    session: SessionDep,
    actor: ActorDep,
    parent: Annotated[str | None, Query(max_length=16, description="Parent unit code")] = None,
    level: UnitLevel | None = None,
    q: Annotated[str | None, text_query()] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> UnitPage:
    """Units inside the caller's scope."""
    actor.require("units:read")
    total, items = service.list_units(session, actor=actor, parent=parent, level=level, q=q, limit=limit,
                                      offset=offset)
    return UnitPage(total=total, items=[UnitRead.model_validate(u) for u in items])


@router.get("/units/{code}", response_model=UnitRead, summary="One unit")
def get_unit(code: str, session: SessionDep, actor: ActorDep) -> UnitRead:
    """A unit by its official code."""
    actor.require("units:read")
    return UnitRead.model_validate(service.get_unit(session, actor=actor, code=code))


@router.get("/units/{code}/children", response_model=list[UnitRead], summary="Direct children of a unit")
def get_children(code: str, session: SessionDep, actor: ActorDep) -> list[UnitRead]:
    """The units directly below this one."""
    actor.require("units:read")
    return [UnitRead.model_validate(u) for u in service.children(session, actor=actor, code=code)]


@router.get("/units/{code}/ancestors", response_model=list[UnitRead], summary="Ancestors of a unit")
def get_ancestors(code: str, session: SessionDep, actor: ActorDep) -> list[UnitRead]:
    """The chain from the nation down to the unit's parent, within the caller's scope."""
    actor.require("units:read")
    return [UnitRead.model_validate(u) for u in service.ancestors(session, actor=actor, code=code)]


@router.get("/agencies", response_model=list[AgencyRead], summary="List agencies")
def list_agencies(
    session: SessionDep,
    actor: ActorDep,
    unit: Annotated[str | None, Query(max_length=16)] = None,
    q: Annotated[str | None, text_query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[AgencyRead]:
    """Agencies in units of the caller's scope."""
    _, items = service.list_agencies(session, actor=actor, unit_code=unit, q=q, limit=limit, offset=offset)
    return [AgencyRead.model_validate(a) for a in items]


@router.post("/agencies", response_model=AgencyRead, status_code=status.HTTP_201_CREATED,
             summary="Create an agency")
def create_agency(body: AgencyCreate, session: SessionDep, actor: ActorDep) -> AgencyRead:
    """Add an agency inside a unit of the caller's scope."""
    return AgencyRead.model_validate(service.create_agency(session, actor=actor, data=body.model_dump()))


@router.get("/agencies/{agency_id}", response_model=AgencyRead, summary="One agency")
def get_agency(agency_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> AgencyRead:
    """An agency by id."""
    return AgencyRead.model_validate(service.get_agency(session, actor=actor, agency_id=agency_id))
