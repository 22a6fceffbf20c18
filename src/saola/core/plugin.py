"""The kernel's own plugin: it contributes its routers and role grants through the same hooks as packs."""

from __future__ import annotations

from fastapi import APIRouter

from saola import __version__
from saola.config import Settings
from saola.core.audit.api import router as audit_router
from saola.core.auth.api import router as auth_router
from saola.core.auth.roles import KERNEL_PERMISSIONS
from saola.core.entities.api import router as entities_router
from saola.core.events.api import router as events_router
from saola.core.health.api import router as health_router
from saola.core.indicators.api import router as indicators_router
from saola.core.observations.api import router as observations_router
from saola.core.sources.api import router as sources_router
from saola.core.units.api import router as units_router
from saola.packs import hookimpl
from saola.packs.definitions import PackInfo


@hookimpl
def saola_pack_info() -> PackInfo:
    """The kernel, as a pack."""
    return PackInfo(slug="core", version=__version__, name_vi="Lõi hệ thống", name_en="Kernel")


@hookimpl
def saola_routers(settings: Settings) -> list[APIRouter]:
    """The kernel's API."""
    return [health_router, auth_router, units_router, sources_router, indicators_router, observations_router,
            entities_router, events_router, audit_router]


@hookimpl
def saola_permissions() -> dict[str, list[str]]:
    """The kernel's role grants."""
    return KERNEL_PERMISSIONS
