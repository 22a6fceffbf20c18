"""Routes of observations: batch ingest, series and latest values."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, StringConstraints

from saola.core.indicators.schemas import CODE_PATTERN
from saola.core.observations import service
from saola.core.observations.schemas import (
    MAX_BATCH,
    Agg,
    Bucket,
    IngestResult,
    LatestRead,
    ObservationBatch,
    Series,
    SubjectKind,
)
from saola.deps import ActorDep, SessionDep

router = APIRouter(prefix="/api", tags=["observations"])

CodeQuery = Annotated[str, Query(min_length=3, max_length=80, pattern=CODE_PATTERN, description="Indicator code")]
UnitQuery = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9]{1,16}$", description="Unit code")]


@router.post("/observations", response_model=IngestResult, summary=f"Write a batch of readings (at most {MAX_BATCH})")
def ingest(body: ObservationBatch, session: SessionDep, actor: ActorDep) -> IngestResult:
    """Validate and write readings all or nothing; re-sending a reading already stored is harmless."""
    return service.ingest(session, actor=actor, items=body.items)


@router.get("/observations", response_model=Series, summary="A time series of one indicator")
def query_series(
    session: SessionDep,
    actor: ActorDep,
    indicator: CodeQuery,
    unit: UnitQuery = None,
    entity: Annotated[uuid.UUID | None, Query(description="Entity id")] = None,
    within: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9]{1,16}$",
                                        description="Unit code: aggregate every subject in its subtree")] = None,
    kind: Annotated[SubjectKind | None, Query(description="With within: only unit or entity subjects")] = None,
    start: Annotated[AwareDatetime | None, Query(description="Default: 24 hours before end")] = None,
    end: Annotated[AwareDatetime | None, Query(description="Default: now")] = None,
    bucket: Bucket = "hour",
    agg: Annotated[Agg | None, Query(description="Default: the indicator's aggregation")] = None,
    max_quality: Annotated[int, Query(ge=0, le=2, description="raw and minute: include suspect (1) or bad (2)")] = 0,
) -> Series:
    """Points {ts, value, count} per bucket; hour, day and month come from rollups."""
    return service.query_series(session, actor=actor, indicator=indicator, unit=unit, entity=entity, within=within,
                                kind=kind, start=start, end=end, bucket=bucket, agg=agg, max_quality=max_quality)


@router.get("/observations/latest", response_model=list[LatestRead], summary="Latest value per subject")
def latest(
    session: SessionDep,
    actor: ActorDep,
    indicator: Annotated[list[Annotated[str, StringConstraints(max_length=80, pattern=CODE_PATTERN)]],
                         Query(min_length=1, max_length=50, description="Indicator code, repeatable")],
    within: UnitQuery = None,
    kind: SubjectKind | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[LatestRead]:
    """The newest reading of each subject inside the caller's scope, with its age."""
    return service.latest(session, actor=actor, indicators=indicator, within=within, kind=kind, limit=limit)
