"""Routes of the indicator catalog and plan targets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from saola.core.indicators import service
from saola.core.indicators.models import IndicatorTarget
from saola.core.indicators.schemas import (
    CODE_PATTERN,
    UNIT_CODE_PATTERN,
    IndicatorCreate,
    IndicatorPage,
    IndicatorRead,
    IndicatorUpdate,
    TargetRead,
    TargetsIn,
)
from saola.core.limits import text_query
from saola.deps import ActorDep, SessionDep

router = APIRouter(prefix="/api", tags=["indicators"])

CodePath = Annotated[str, Path(min_length=3, max_length=80, pattern=CODE_PATTERN, description="Indicator code")]


def _target(t: IndicatorTarget, code: str) -> TargetRead:
    return TargetRead(indicator=code, unit_code=t.unit_code, period=t.period, period_start=t.period_start,
                      period_end=t.period_end, target_value=t.target_value, note=t.note)


@router.get("/indicators", response_model=IndicatorPage, summary="List indicators (filter by domain, text)")
def list_indicators(
    session: SessionDep,
    actor: ActorDep,
    domain: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z0-9_]+$")] = None,
    q: Annotated[str | None, text_query()] = None,
    active: Annotated[bool | None, Query(description="Only active (true) or inactive (false) ones")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> IndicatorPage:
    """The indicator catalog."""
    total, items = service.list_indicators(session, actor=actor, domain=domain, q=q, active=active, limit=limit,
                                           offset=offset)
    return IndicatorPage(total=total, items=[IndicatorRead.model_validate(i) for i in items])


@router.post("/indicators", response_model=IndicatorRead, status_code=status.HTTP_201_CREATED,
             summary="Create an indicator")
def create_indicator(body: IndicatorCreate, session: SessionDep, actor: ActorDep) -> IndicatorRead:
    """Add a local indicator to the catalog."""
    return IndicatorRead.model_validate(service.create_indicator(session, actor=actor, data=body))


@router.get("/indicators/{code}", response_model=IndicatorRead, summary="One indicator")
def get_indicator(code: CodePath, session: SessionDep, actor: ActorDep) -> IndicatorRead:
    """An indicator by its code."""
    return IndicatorRead.model_validate(service.get_indicator(session, actor=actor, code=code))


@router.patch("/indicators/{code}", response_model=IndicatorRead, summary="Change an indicator")
def update_indicator(code: CodePath, body: IndicatorUpdate, session: SessionDep, actor: ActorDep) -> IndicatorRead:
    """Change the fields sent; the others stay as they are."""
    return IndicatorRead.model_validate(service.update_indicator(session, actor=actor, code=code, changes=body))


@router.get("/indicators/{code}/targets", response_model=list[TargetRead], summary="Plan targets of an indicator")
def list_targets(
    code: CodePath,
    session: SessionDep,
    actor: ActorDep,
    unit: Annotated[str | None, Query(pattern=UNIT_CODE_PATTERN, description="Unit code")] = None,
    year: Annotated[int | None, Query(ge=1970, le=2200, description="Periods starting in this year")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[TargetRead]:
    """Targets of units inside the caller's scope."""
    items = service.list_targets(session, actor=actor, code=code, unit=unit, year=year, limit=limit, offset=offset)
    return [_target(t, code) for t in items]


@router.put("/indicators/{code}/targets", response_model=list[TargetRead],
            summary="Create or replace plan targets (one per unit and period)")
def put_targets(code: CodePath, body: TargetsIn, session: SessionDep, actor: ActorDep) -> list[TargetRead]:
    """Set targets for units inside the caller's scope; periods are 2026, 2026-Q4 or 2026-11."""
    items = service.upsert_targets(session, actor=actor, code=code, items=body.items)
    return [_target(t, code) for t in items]
