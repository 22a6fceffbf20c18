"""Every extension point of Saola, declared once, each with its docstring.

The kernel uses these same hooks for its own parts (see saola.core.plugin). A test fails when a hook
here is not described in docs/hooks.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import typer
    from fastapi import APIRouter

    from saola.config import Settings
    from saola.packs.context import PackContext
    from saola.packs.definitions import (
        CaseTypeDefinition,
        DashboardPanel,
        EntityTypeDefinition,
        EventTypeDefinition,
        FeatureCollectionProvider,
        IndicatorDefinition,
        MapLayer,
        PackInfo,
        RuleDefinition,
        ScheduledJob,
        Simulator,
    )

hookspec = pluggy.HookspecMarker("saola")


@hookspec
def saola_pack_info() -> PackInfo:
    """Say who this pack is: slug, version, Vietnamese and English names, and the packs it depends on."""


@hookspec
def saola_routers(settings: Settings) -> list[APIRouter]:
    """Return FastAPI routers to mount in the application (each carries its own prefix and tags)."""


@hookspec
def saola_indicators() -> list[IndicatorDefinition]:
    """Declare indicators; the kernel creates or updates their catalog rows on `saola db upgrade`."""


@hookspec
def saola_entity_types() -> list[EntityTypeDefinition]:
    """Declare entity types (station, camera, parcel ...); entities of undeclared types are refused."""


@hookspec
def saola_event_types() -> list[EventTypeDefinition]:
    """Declare event types; events of undeclared types are refused."""


@hookspec
def saola_permissions() -> dict[str, list[str]]:
    """Grant permissions to roles: {role: [permission, ...]}; grants from all packs are merged."""


@hookspec
def saola_default_rules() -> list[RuleDefinition]:
    """Propose rules the operations loop installs by default (editable afterwards)."""


@hookspec
def saola_dashboard_panels() -> list[DashboardPanel]:
    """Contribute wallboard tiles, so a new pack shows up without editing the wallboard."""


@hookspec
def saola_map_layers() -> list[MapLayer]:
    """Contribute map layers (GeoJSON endpoints and their style)."""


@hookspec
def saola_demo_seed(context: PackContext) -> None:
    """Write this pack's demo history (through kernel services) into a fresh demo database."""


@hookspec
def saola_demo_simulators(context: PackContext) -> list[Simulator]:
    """Return live simulated sources for `saola demo`; each writes through the same services as real ones."""


@hookspec
def saola_scheduled_jobs(settings: Settings) -> list[ScheduledJob]:
    """Return periodic jobs the server runs while it is up."""


@hookspec
def saola_cli(app: typer.Typer) -> None:
    """Add commands or command groups to the `saola` command line."""


@hookspec
def saola_startup(app: Any) -> None:
    """Run once when the web application starts (after the database is ready)."""


@hookspec
def saola_shutdown(app: Any) -> None:
    """Run once when the web application stops, before its database engine is closed: stop what startup started."""


@hookspec
def saola_feature_collections() -> list[FeatureCollectionProvider]:
    """Offer feature collections (parcels, stations ...) to the OGC API – Features door under /ogc."""


@hookspec
def saola_case_types() -> list[CaseTypeDefinition]:
    """Declare case types (incident, citizen report ...) with their status flow, SLA policy and labels."""


@hookspec
def saola_verify_captcha(token: str, remote_ip: str, purpose: str) -> bool | None:
    """Check a captcha token sent with an anonymous public submission: True accepts, False refuses, None abstains."""
