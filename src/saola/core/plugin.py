"""The kernel's own plugin: it contributes its routers and role grants through the same hooks as packs."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter

from saola import __version__
from saola.config import Settings
from saola.core.alerts.api import router as alerts_router
from saola.core.audit.api import router as audit_router
from saola.core.auth.api import router as auth_router
from saola.core.auth.roles import KERNEL_PERMISSIONS
from saola.core.cases.api import directives_router, sops_router
from saola.core.cases.api import router as cases_router
from saola.core.cases.flows import KERNEL_CASE_TYPES
from saola.core.cases.sla import SLA_JOB
from saola.core.dashboards.api import router as dashboards_router
from saola.core.entities.api import router as entities_router
from saola.core.events.api import router as events_router
from saola.core.health.api import router as health_router
from saola.core.indicators.api import router as indicators_router
from saola.core.ingest.api import router as ingest_router
from saola.core.observations.api import router as observations_router
from saola.core.observations.export import router as observations_export_router
from saola.core.rules.api import router as rules_router
from saola.core.sources.api import router as sources_router
from saola.core.spreadsheets.api import router as spreadsheets_router
from saola.core.stream.api import router as stream_router
from saola.core.units.api import router as units_router
from saola.packs import hookimpl
from saola.packs.definitions import CaseTypeDefinition, PackInfo, ScheduledJob

log = logging.getLogger(__name__)


@hookimpl
def saola_pack_info() -> PackInfo:
    """The kernel, as a pack."""
    return PackInfo(slug="core", version=__version__, name_vi="Lõi hệ thống", name_en="Kernel")


@hookimpl
def saola_routers(settings: Settings) -> list[APIRouter]:
    """The kernel's API."""
    return [health_router, auth_router, units_router, sources_router, indicators_router, observations_router,
            entities_router, events_router, audit_router, cases_router, directives_router, sops_router,
            rules_router, alerts_router, ingest_router, stream_router, spreadsheets_router, observations_export_router,
            dashboards_router]


@hookimpl
def saola_permissions() -> dict[str, list[str]]:
    """The kernel's role grants (and integrators read the doors' dead letters)."""
    return {**KERNEL_PERMISSIONS, "integrator": [*KERNEL_PERMISSIONS["integrator"], "dead_letters:read"]}


@hookimpl
def saola_case_types() -> list[CaseTypeDefinition]:
    """The kernel's case types: incident, citizen report (basic), directive and task."""
    return KERNEL_CASE_TYPES


@hookimpl
def saola_scheduled_jobs(settings: Settings) -> list[ScheduledJob]:
    """The kernel's periodic work: case escalations, response breaches and deadline reminders; the rules' clock
    (silence, event-count expiry) and alert deliveries."""
    from saola.core.alerts.notify import scheduled_jobs as delivery_jobs
    from saola.core.rules.engine import scheduled_jobs as rule_jobs

    return [SLA_JOB, *rule_jobs(), *delivery_jobs()]


@hookimpl
def saola_startup(app: Any) -> None:
    """Fold rollup deltas a stopped process left queued, then start the rules engine on the application's database."""
    from saola.bus import configure_bus
    from saola.core.observations.rollups import settle
    from saola.core.rules.engine import start_for_server

    try:
        settle(app.state.engine)  # a crash between an ingest and its fold leaves deltas only a fold makes visible
    except Exception:  # the server still starts; the next ingest's fold takes the queue
        log.exception("folding queued rollup deltas at start-up failed")
    configure_bus(app.state.settings)  # before anything subscribes: SAOLA_BUS_URL may ask for Redis
    start_for_server(app.state.session_factory, app.state.settings)


@hookimpl
def saola_cli(app: Any) -> None:
    """`saola import indicators FILE` (values and plan targets from XLSX or CSV)."""
    from saola.core.spreadsheets.cli import register

    register(app)
