"""The land pack, declared through the kernel's hooks."""

from __future__ import annotations

import logging
from typing import Any

import typer
from fastapi import APIRouter

from saola import __version__
from saola.config import Settings
from saola.packs import hookimpl
from saola.packs.context import PackContext
from saola.packs.definitions import (
    DashboardPanel,
    FeatureCollectionProvider,
    IndicatorDefinition,
    MapLayer,
    PackInfo,
)

log = logging.getLogger(__name__)

READ = "land:read"
WRITE = "land:write"
PRIVATE_READ = "land:private:read"


@hookimpl
def saola_pack_info() -> PackInfo:
    """Who this pack is."""
    return PackInfo(slug="land", version=__version__, name_vi="Đất đai", name_en="Land")


@hookimpl
def saola_permissions() -> dict[str, list[str]]:
    """Everyone signed in reads parcels in scope; integrators import; only leaders see holders (admins have '*')."""
    return {
        "leader": [READ, PRIVATE_READ],
        "operator": [READ],
        "agency_staff": [READ],
        "integrator": [READ, WRITE],
        "viewer": [READ],
    }


@hookimpl
def saola_routers(settings: Settings) -> list[APIRouter]:
    """Scoped lookups and imports, and the citizen-facing lookups."""
    from saola.domains.land.api import public_router, router

    return [router, public_router]


@hookimpl
def saola_indicators() -> list[IndicatorDefinition]:
    """The number of parcels per commune (for the wallboard tile)."""
    return [IndicatorDefinition(code="land.parcels", name_vi="Số thửa đất", name_en="Cadastral parcels",
                                unit="thửa", domain="land", aggregation="last", periodicity="day",
                                subject_kind="unit", min_value=0)]


@hookimpl
def saola_dashboard_panels() -> list[DashboardPanel]:
    """One tile: how many parcels are digitised."""
    return [DashboardPanel(key="land", title_vi="Đất đai", title_en="Land", domain="land",
                           indicator_codes=("land.parcels",), order=60)]


@hookimpl
def saola_map_layers() -> list[MapLayer]:
    """Cadastral parcels coloured by land use, from zoom 15."""
    return [MapLayer(key="land.parcels", title_vi="Thửa đất", title_en="Cadastral parcels",
                     url="/api/public/land/map", min_zoom=15,
                     style={"property": "land_use", "stroke": "#555555", "weight": 0.5,
                            "fill": {"ODT": "#e6786e", "TMD": "#c850a0", "CLN": "#96c878", "HNK": "#dce68c",
                                     "RSX": "#3c8c46", "RPH": "#286e3c", "DGT": "#fafafa", "MNC": "#5a96e6",
                                     "default": "#a0a0c8"}})]


@hookimpl
def saola_feature_collections() -> list[FeatureCollectionProvider]:
    """The public parcels collection for the OGC API – Features door."""
    from saola.domains.land.ogc import PARCELS

    return [PARCELS]


@hookimpl
def saola_cli(app: typer.Typer) -> None:
    """`saola import parcels FILE --crs ...`."""
    from saola.domains.land.cli import register

    register(app)


@hookimpl
def saola_demo_seed(context: PackContext) -> None:
    """97,751 parcels around Đà Lạt."""
    from saola.domains.land.demo import seed

    seconds = seed(context)
    log.info("land: demo parcels written in %.1f s", seconds)


@hookimpl
def saola_startup(app: Any) -> None:
    """Add the PostGIS column when PostGIS appeared after the migration, and warm the in-process index."""
    from saola.domains.land.spatial import engine_for, ensure_postgis, parcel_index

    engine = app.state.engine
    try:
        ensure_postgis(engine)
        with app.state.session_factory() as session:
            if engine_for(session).name == "strtree":
                parcel_index(session)
    except Exception:  # the pack must never keep the server from starting; lookups retry lazily
        log.exception("land: startup preparation failed; the spatial index will be built at first use")
