"""The citizen reports pack, declared through the kernel's hooks."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from saola import __version__
from saola.config import Settings
from saola.packs import hookimpl
from saola.packs.context import PackContext
from saola.packs.definitions import (
    DashboardPanel,
    IndicatorDefinition,
    MapLayer,
    PackInfo,
    ScheduledJob,
    Simulator,
)

log = logging.getLogger(__name__)

CONFIGURE = "citizen_reports:configure"
CONTACT = "citizen_reports:contact"


@hookimpl
def saola_pack_info() -> PackInfo:
    """Who this pack is."""
    return PackInfo(slug="citizen_reports", version=__version__, name_vi="Phản ánh hiện trường",
                    name_en="Citizen reports")


@hookimpl
def saola_permissions() -> dict[str, list[str]]:
    """IOC operators edit categories and routing and may see reporters' contact; integrators configure too.

    Agency staff get neither: they see a reporter's contact only when the reporter agreed (admins have '*').
    """
    return {"operator": [CONFIGURE, CONTACT], "integrator": [CONFIGURE]}


@hookimpl
def saola_routers(settings: Settings) -> list[APIRouter]:
    """The citizen's doors, staff's doors, and Open311 GeoReport v2."""
    from saola.domains.citizen_reports.api import public_router, router
    from saola.domains.citizen_reports.open311 import router as open311_router

    return [public_router, router, open311_router]


@hookimpl
def saola_indicators() -> list[IndicatorDefinition]:
    """Open reports and the on-time rate per province, for the wallboard tile."""
    from saola.domains.citizen_reports.indicators import ALL

    return ALL


@hookimpl
def saola_dashboard_panels() -> list[DashboardPanel]:
    """One KPI tile: open reports and the on-time rate."""
    return [DashboardPanel(key="citizen_reports", title_vi="Phản ánh hiện trường", title_en="Citizen reports",
                           domain="citizen_reports", indicator_codes=("cr.open_reports", "cr.on_time_rate"),
                           kind="kpi", order=30)]


@hookimpl
def saola_map_layers() -> list[MapLayer]:
    """Reports on the map, anonymised, coloured by status."""
    return [MapLayer(key="citizen_reports.reports", title_vi="Phản ánh hiện trường", title_en="Citizen reports",
                     url="/api/public/citizen-reports/map.geojson",
                     style={"property": "status", "radius": 6,
                            "fill": {"received": "#f0ad4e", "forwarded": "#5bc0de", "in_progress": "#337ab7",
                                     "returned": "#999999", "reopened": "#d9534f", "resolved": "#5cb85c",
                                     "rated": "#3c763d", "default": "#777777"},
                            "overdue_stroke": "#d9534f"})]


@hookimpl
def saola_scheduled_jobs(settings: Settings) -> list[ScheduledJob]:
    """Refresh the wallboard indicators every five minutes."""
    from saola.domains.citizen_reports.indicators import refresh_job

    return [ScheduledJob(name="citizen_reports.indicators", interval_seconds=300, run=refresh_job)]


@hookimpl
def saola_demo_seed(context: PackContext) -> None:
    """A month of reports in Đà Lạt's wards, most handled on time, some overdue, some rated."""
    from saola.domains.citizen_reports.demo import seed
    from saola.domains.citizen_reports.indicators import refresh

    written = seed(context)
    refresh(context.session_factory, now=context.now)
    log.info("citizen_reports: %d demo reports written", written)


@hookimpl
def saola_demo_simulators(context: PackContext) -> list[Simulator]:
    """A new report about every minute, and waiting ones moving along."""
    from saola.domains.citizen_reports.demo import tick

    return [Simulator(name="citizen_reports.reports", interval_seconds=60, tick=tick)]
