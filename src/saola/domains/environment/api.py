"""Routes of the environment pack: /api/environment (signed in, scoped) and /api/public/air-quality (open)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from saola.deps import ActorDep, SessionDep
from saola.domains.environment import aqi, service
from saola.domains.environment.schemas import AqiCalculateIn, WaterValuesIn

router = APIRouter(prefix="/api/environment", tags=["environment"])
public_router = APIRouter(prefix="/api/public", tags=["environment (public)"])

Kind = Literal["air", "water", "weather", "hydro"]
Within = Annotated[str | None, Query(max_length=16, description="Only stations within this unit (code)")]


@router.get("/stations.geojson", summary="Stations with latest readings and VN_AQI (GeoJSON, caller's scope)")
def stations_geojson(session: SessionDep, actor: ActorDep, kind: Kind | None = None,
                     within: Within = None) -> dict[str, Any]:
    """A FeatureCollection of stations with their latest readings, VN_AQI (hourly) and status."""
    return service.stations_geojson(session, actor=actor, kind=kind, within=within)


@router.get("/stations/{station_id}/aqi", summary="Hourly or daily VN_AQI and US AQI of a station")
def station_aqi(station_id: uuid.UUID, session: SessionDep, actor: ActorDep,
                period: Literal["hour", "day"] = "hour", start: AwareDatetime | None = None,
                end: AwareDatetime | None = None) -> dict[str, Any]:
    """The index at the end of each hour (or local day) between start and end."""
    return service.aqi_series(session, actor=actor, station_id=station_id, period=period, start=start, end=end)


@router.get("/stations/{station_id}/series", summary="A parameter's series at a station (hourly or daily means)")
def station_series(station_id: uuid.UUID, session: SessionDep, actor: ActorDep,
                   indicator: Annotated[str, Query(min_length=3, max_length=80, pattern=r"^env\.[a-z0-9_]+$")],
                   bucket: Literal["raw", "hour", "day"] = "hour", start: AwareDatetime | None = None,
                   end: AwareDatetime | None = None) -> Any:
    """Good readings aggregated per hour or local day (or raw), from the kernel's rollups."""
    from saola.core.observations import service as observations

    entity = service.station(session, actor=actor, station_id=station_id)
    return observations.query_series(session, actor=actor, indicator=indicator, entity=entity.id, start=start,
                                     end=end, bucket=bucket)


@router.get("/stations/{station_id}/qcvn05", summary="QCVN 05:2023 exceedances per averaging period")
def station_qcvn05(station_id: uuid.UUID, session: SessionDep, actor: ActorDep, start: AwareDatetime,
                   end: AwareDatetime) -> dict[str, Any]:
    """How often each parameter exceeded its 1 h, 8 h, 24 h and yearly limit between start and end."""
    return service.qcvn05_report(session, actor=actor, station_id=station_id, start=start, end=end)


@router.get("/stations/{station_id}/water-quality", summary="QCVN 08 class and VN_WQI from the latest readings")
def station_water_quality(station_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> dict[str, Any]:
    """Water class and index where the inputs exist (tables marked unverified say so)."""
    return service.water_quality(session, actor=actor, station_id=station_id)


@router.get("/stations/{station_id}/flags", summary="Data-quality flags of a station (stuck, gap, range)")
def station_flags(station_id: uuid.UUID, session: SessionDep, actor: ActorDep,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[dict[str, Any]]:
    """The newest flags first."""
    return [{"indicator": f.indicator, "kind": f.kind, "started_at": f.started_at, "ended_at": f.ended_at,
             "value": f.value} for f in service.quality_flags(session, actor=actor, station_id=station_id,
                                                               limit=limit)]


@router.get("/ranking", summary="Air stations or communes from the worst VN_AQI to the best")
def ranking(session: SessionDep, actor: ActorDep, by: Literal["station", "commune"] = "station",
            period: Literal["hour", "day"] = "hour", within: Within = None,
            limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict[str, Any]]:
    """Ranked by the current hourly (or today's) VN_AQI; a commune by its worst station."""
    return service.ranking(session, actor=actor, by=by, period=period, within=within, limit=limit)


@router.post("/aqi/calculate", summary="VN_AQI and US AQI with sub-indices from concentrations")
def calculate(body: AqiCalculateIn, actor: ActorDep) -> dict[str, Any]:
    """Check your own numbers: hourly (NowCast) and daily indices, both schemes, with sub-indices."""
    actor.require(service.READ)
    values = {p: aqi.DayValues(v.mean_24h, v.max_1h, v.max_8h) for p, v in (body.daily_values or {}).items()}
    return service.calculate(hourly=body.hourly, daily=body.daily, daily_values=values,
                             epa_edition=body.epa_edition)


@router.post("/water/calculate", summary="QCVN 08 class and VN_WQI from parameter values")
def water_calculate(body: WaterValuesIn, actor: ActorDep) -> dict[str, Any]:
    """Water class and index from values you give (tables marked unverified say so)."""
    actor.require(service.READ)
    return service.water_from_values(body.values)


@public_router.get("/air-quality", summary="Public air quality: air stations and their VN_AQI (no sign-in)")
def public_air_quality(session: SessionDep) -> dict[str, Any]:
    """Read-only, for citizens: air stations with VN_AQI, level, colour and the latest air readings."""
    return service.public_air_quality(session)


