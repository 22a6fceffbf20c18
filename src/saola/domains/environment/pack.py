"""The environment pack, declared through the kernel's hooks."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter

from saola import __version__
from saola.config import Settings
from saola.packs import hookimpl
from saola.packs.context import PackContext
from saola.packs.definitions import (
    DashboardPanel,
    EntityTypeDefinition,
    IndicatorDefinition,
    MapLayer,
    PackInfo,
    RuleDefinition,
    Simulator,
)

log = logging.getLogger(__name__)

READ = "environment:read"
STATION_ATTRIBUTES = {"code": "string", "operator": "string", "parameters": "array", "public": "boolean"}


@hookimpl
def saola_pack_info() -> PackInfo:
    """Who this pack is."""
    return PackInfo(slug="environment", version=__version__, name_vi="Môi trường", name_en="Environment")


@hookimpl
def saola_permissions() -> dict[str, list[str]]:
    """Everyone signed in reads stations and indices in their scope (admins have '*')."""
    return {role: [READ] for role in ("leader", "operator", "agency_staff", "integrator", "viewer")}


@hookimpl
def saola_routers(settings: Settings) -> list[APIRouter]:
    """Scoped station, series, ranking and calculator routes; the public air-quality endpoint."""
    from saola.domains.environment.api import public_router, router

    return [router, public_router]


@hookimpl
def saola_indicators() -> list[IndicatorDefinition]:
    """Every measured parameter (PM2.5, PM10, ..., pH, DO, BOD5, ...) and the indices the pack computes."""
    from saola.domains.environment.params import indicator_definitions

    return indicator_definitions()


@hookimpl
def saola_entity_types() -> list[EntityTypeDefinition]:
    """Air, surface-water, weather and hydrological stations (points)."""
    names = {"air": ("Trạm quan trắc không khí", "Air quality station"),
             "water": ("Trạm quan trắc nước mặt", "Surface water station"),
             "weather": ("Trạm khí tượng", "Weather station"),
             "hydro": ("Trạm thủy văn", "Hydrological station")}
    from saola.domains.environment.params import ENTITY_TYPE

    return [EntityTypeDefinition(type=ENTITY_TYPE[kind], name_vi=vi, name_en=en, domain="environment",
                                 geometry="Point", attributes=STATION_ATTRIBUTES)
            for kind, (vi, en) in names.items()]


@hookimpl
def saola_default_rules() -> list[RuleDefinition]:
    """AQI at Xấu or worse; a QCVN 05 exceedance; an air station silent for 30 minutes; a stuck sensor."""
    from saola.domains.environment.params import AQI_VN, ENTITY_TYPE, QCVN_EXCEEDANCES, SENSORS_STUCK

    air = ENTITY_TYPE["air"]
    return [
        RuleDefinition(key="environment.aqi_bad", name_vi="VN_AQI từ mức Xấu (≥ 151)",
                       name_en="VN_AQI Bad or worse (>= 151)", kind="threshold", severity="high",
                       params={"indicator": AQI_VN, "threshold": 151, "clear_threshold": 140, "entity_type": air,
                               "description": "Quyết định 1459/QĐ-TCMT: 151-200 Xấu, 201-300 Rất xấu, "
                                              "301-500 Nguy hại"}),
        RuleDefinition(key="environment.qcvn05_exceeded", name_vi="Vượt giới hạn QCVN 05:2023/BTNMT",
                       name_en="QCVN 05:2023 limit exceeded", kind="threshold", severity="medium",
                       params={"indicator": QCVN_EXCEEDANCES, "threshold": 1, "entity_type": air}),
        RuleDefinition(key="environment.station_silent", name_vi="Trạm không khí mất tín hiệu 30 phút",
                       name_en="Air station silent for 30 minutes", kind="silence", severity="medium",
                       params={"minutes": 30, "entity_type": air}),
        RuleDefinition(key="environment.sensor_stuck", name_vi="Cảm biến bị treo (giá trị không đổi)",
                       name_en="Stuck sensor (flat-lining)", kind="threshold", severity="low",
                       params={"indicator": SENSORS_STUCK, "threshold": 1, "entity_type": air}),
    ]


@hookimpl
def saola_dashboard_panels() -> list[DashboardPanel]:
    """Air quality now (worst and mean VN_AQI), its trend, and PM2.5."""
    return [
        DashboardPanel(key="environment.aqi", title_vi="Chất lượng không khí (VN_AQI)",
                       title_en="Air quality (VN_AQI)", domain="environment", indicator_codes=("env.aqi_vn",),
                       kind="kpi", order=20),
        DashboardPanel(key="environment.aqi_trend", title_vi="Diễn biến VN_AQI", title_en="VN_AQI trend",
                       domain="environment", indicator_codes=("env.aqi_vn", "env.aqi_vn_day"), kind="trend",
                       order=21),
        DashboardPanel(key="environment.pm25", title_vi="Bụi PM2.5", title_en="PM2.5", domain="environment",
                       indicator_codes=("env.pm25",), kind="trend", order=22),
        DashboardPanel(key="environment.map", title_vi="Trạm quan trắc", title_en="Monitoring stations",
                       domain="environment", indicator_codes=("env.aqi_vn",), kind="map", order=23),
    ]


@hookimpl
def saola_map_layers() -> list[MapLayer]:
    """Stations coloured by VN_AQI level."""
    return [MapLayer(key="environment.stations", title_vi="Trạm quan trắc môi trường",
                     title_en="Environmental monitoring stations", url="/api/environment/stations.geojson",
                     style={"color_property": "aqi_color", "label_property": "aqi", "radius": 9,
                            "legend": [{"label_vi": lv.label_vi, "label_en": lv.label_en, "color": lv.color,
                                        "from": lv.low, "to": lv.high} for lv in _levels()]})]


def _levels() -> tuple[Any, ...]:
    from saola.domains.environment.aqi import VN_LEVELS

    return VN_LEVELS


@hookimpl
def saola_startup(app: Any) -> None:
    """Start the AQI engine on the application's database: it follows the bus from now on."""
    from saola.bus import configure_bus
    from saola.domains.environment.engine import start_for_server

    try:
        configure_bus(app.state.settings)  # the same bus the kernel uses (idempotent)
        start_for_server(app.state.session_factory, app.state.settings.run_jobs)
    except Exception:  # the pack must never keep the server from starting
        log.exception("environment: the AQI engine did not start; indices will not update")


@hookimpl
def saola_demo_seed(context: PackContext) -> None:
    """About 28 stations around Lâm Đồng with 30 days of hourly history, indices computed as it is written."""
    from saola.domains.environment.demo import seed

    seconds = seed(context)
    log.info("environment: demo stations and history written in %.1f s", seconds)


@hookimpl
def saola_demo_simulators(context: PackContext) -> list[Simulator]:
    """The live station network: a reading a minute per station, the smoke episode, one silent, one stuck."""
    from saola.domains.environment.demo import simulator

    return [simulator()]
