"""The public services pack, declared through the kernel's hooks."""

from __future__ import annotations

from saola import __version__
from saola.domains.admin_services import demo
from saola.domains.admin_services.indicators import ALL
from saola.packs import hookimpl
from saola.packs.context import PackContext
from saola.packs.definitions import DashboardPanel, IndicatorDefinition, PackInfo, Simulator


@hookimpl
def saola_pack_info() -> PackInfo:
    """Who this pack is."""
    return PackInfo(slug="admin_services", version=__version__, name_vi="Dịch vụ công",
                    name_en="Public administrative services")


@hookimpl
def saola_indicators() -> list[IndicatorDefinition]:
    """Dossier counts and rates."""
    return ALL


@hookimpl
def saola_dashboard_panels() -> list[DashboardPanel]:
    """One tile: dossiers today and the on-time rate."""
    return [DashboardPanel(key="admin_services", title_vi="Dịch vụ công", title_en="Public services",
                           domain="admin_services",
                           indicator_codes=("hcc.on_time_rate", "hcc.dossiers_received", "hcc.online_rate"),
                           order=20)]


@hookimpl
def saola_demo_seed(context: PackContext) -> None:
    """30 days of dossier history per commune."""
    demo.seed(context)


@hookimpl
def saola_demo_simulators(context: PackContext) -> list[Simulator]:
    """Dossiers arriving live every few seconds."""
    return [Simulator(name="admin_services.dossiers", interval_seconds=5, tick=demo.tick)]
