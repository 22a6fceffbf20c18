"""The socio-economic pack, declared through the kernel's hooks."""

from __future__ import annotations

from saola import __version__
from saola.domains.socioeconomic import demo
from saola.domains.socioeconomic.indicators import ALL
from saola.packs import hookimpl
from saola.packs.context import PackContext
from saola.packs.definitions import DashboardPanel, IndicatorDefinition, PackInfo


@hookimpl
def saola_pack_info() -> PackInfo:
    """Who this pack is."""
    return PackInfo(slug="socioeconomic", version=__version__, name_vi="Kinh tế - xã hội",
                    name_en="Socio-economic indicators")


@hookimpl
def saola_indicators() -> list[IndicatorDefinition]:
    """Monthly indicators against plan."""
    return ALL


@hookimpl
def saola_dashboard_panels() -> list[DashboardPanel]:
    """One tile with the main figures against plan."""
    return [DashboardPanel(key="socioeconomic", title_vi="Kinh tế - xã hội", title_en="Socio-economy",
                           domain="socioeconomic", indicator_codes=tuple(i.code for i in ALL), order=10)]


@hookimpl
def saola_demo_seed(context: PackContext) -> None:
    """This year's monthly figures and plan targets."""
    demo.seed(context)
