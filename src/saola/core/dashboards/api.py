"""GET /api/dashboards/overview (tiles, KPIs, layers for one unit) and the kernel's incident map layer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from saola.core.dashboards import service
from saola.core.dashboards.schemas import Overview
from saola.deps import ActorDep, RegistryDep, SessionDep
from saola.packs.definitions import DashboardPanel, MapLayer

router = APIRouter(prefix="/api/dashboards", tags=["dashboards"])

UnitQuery = Annotated[str | None, Query(max_length=16, pattern=r"^[A-Za-z0-9]{1,16}$",
                                        description="Unit code (default: the caller's own unit)")]


def contributed(request: Request, registry: RegistryDep) -> tuple[list[DashboardPanel], list[MapLayer]]:
    """The panels and map layers every loaded pack contributes through the hooks (read once per application)."""
    state = request.app.state
    cached = getattr(state, "dashboard_contributions", None)
    if cached is None:
        pm = state.plugin_manager
        panels = [p for group in pm.hook.saola_dashboard_panels() for p in group or []]
        layers = [m for group in pm.hook.saola_map_layers() for m in group or []]
        layers += service.kernel_layers(list(registry.entity_types))
        cached = state.dashboard_contributions = (panels, layers)
    return cached


@router.get("/overview", response_model=Overview, summary="Wallboard overview of a unit: tiles, KPIs, map layers")
def overview(request: Request, session: SessionDep, actor: ActorDep, registry: RegistryDep,
             unit: UnitQuery = None) -> Overview:
    """Each pack's tiles with KPI values, targets, status, trend and data age (rollups and latest values only)."""
    panels, layers = contributed(request, registry)
    return service.overview(session, actor=actor, panels=panels, layers=layers, unit=unit)


@router.get("/incidents.geojson", summary="Open incidents with a place, as GeoJSON")
def incidents(session: SessionDep, actor: ActorDep, unit: UnitQuery = None) -> dict[str, Any]:
    """Open incident cases in the caller's scope (and the unit's subtree), located by entity or lon/lat."""
    return service.incidents_geojson(session, actor=actor, unit=unit)
