"""Demo stations around Lâm Đồng: 30 days of hourly history and a live network, written through kernel services.

The story: daily cycles with a morning traffic peak, weather that varies day to day (rainy days are cleaner),
a smoke episode from a forest fire near Đức Trọng that pushes four stations to Kém or Xấu for some hours around
now, one station (Gia Nghĩa) silent for two hours, and one PM2.5 sensor (Di Linh) stuck on 37.0.

To keep seeding to a few seconds, the 30-day history carries PM2.5 and PM10 (what the index needs most);
gases, weather and hydrology have the last two days; water samples are daily.
"""

from __future__ import annotations

import math
import random
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from saola.core.entities.schemas import EntityCreate
from saola.core.entities.service import upsert_entities
from saola.core.observations.service import ingest
from saola.db.engine import transaction
from saola.domains.environment import aqi
from saola.domains.environment.params import AQI_US_DAY, AQI_VN_DAY, ENTITY_TYPE
from saola.packs.context import PackContext
from saola.packs.definitions import Simulator
from saola.packs.manager import get_registry

SLUG = "environment"
HISTORY_DAYS = 30
DETAIL_HOURS = 48
SIM_INTERVAL = 60.0
SMOKE_START_H, SMOKE_END_H = -7.0, 5.0  # hours around the seeding time
ENGINE_DAYS = 2
SILENT_CODE, SILENT_FOR = "GN18", timedelta(hours=2)
STUCK_CODE, STUCK_VALUE, STUCK_FOR = "DL12", 37.0, timedelta(hours=8)


@dataclass(frozen=True)
class DemoStation:
    """A demo station: code, name, kind, commune, position, base PM2.5 and extra PM2.5 at the smoke's peak."""

    code: str
    name: str
    kind: str
    unit: str
    lon: float
    lat: float
    base: float = 15.0
    smoke: float = 0.0


STATIONS: tuple[DemoStation, ...] = (
    DemoStation("DL1", "Đà Lạt - Hòa Bình", "air", "24781", 108.4383, 11.9404, 18),
    DemoStation("DL2", "Đà Lạt - Hồ Xuân Hương", "air", "24781", 108.4465, 11.9418, 14),
    DemoStation("DL3", "Đà Lạt - Cam Ly", "air", "24787", 108.4220, 11.9460, 15),
    DemoStation("DL4", "Đà Lạt - Lâm Viên", "air", "24778", 108.4580, 11.9550, 13),
    DemoStation("DL5", "Đà Lạt - Xuân Trường", "air", "24805", 108.5200, 11.8900, 12),
    DemoStation("DL6", "Đà Lạt - Lang Biang", "air", "24846", 108.4300, 12.0300, 10),
    DemoStation("LD7", "Lạc Dương", "air", "24848", 108.4210, 12.0080, 9),
    DemoStation("DT8", "Đức Trọng - Liên Nghĩa", "air", "24958", 108.3700, 11.7370, 22, 112),
    DemoStation("DT9", "Hiệp Thạnh", "air", "24967", 108.3900, 11.7750, 20, 85),
    DemoStation("DD10", "Đơn Dương", "air", "24931", 108.5400, 11.7600, 16, 75),
    DemoStation("LH11", "Nam Ban - Lâm Hà", "air", "24868", 108.3300, 11.8300, 15, 65),
    DemoStation("DL12", "Di Linh", "air", "25000", 108.0700, 11.5800, 19),
    DemoStation("BL13", "Bảo Lộc - Phường 1", "air", "24823", 107.8050, 11.5480, 24),
    DemoStation("BL14", "Bảo Lộc - B'Lao", "air", "24829", 107.8200, 11.5300, 21),
    DemoStation("PT15", "Phan Thiết", "air", "22945", 108.1000, 10.9300, 20),
    DemoStation("PT16", "Mũi Né", "air", "22918", 108.2800, 10.9500, 13),
    DemoStation("LG17", "La Gi", "air", "23235", 107.7700, 10.6600, 17),
    DemoStation("GN18", "Gia Nghĩa", "air", "24611", 107.6900, 12.0100, 18),
    DemoStation("DM19", "Đắk Mil", "air", "24670", 107.6200, 12.4500, 16),
    DemoStation("TP20", "Tuy Phong - Liên Hương", "air", "22969", 108.7300, 11.2300, 14),
    DemoStation("NXH", "Hồ Xuân Hương", "water", "24781", 108.4470, 11.9425),
    DemoStation("NDN", "Sông Đa Nhim - Đơn Dương", "water", "24931", 108.5500, 11.7700),
    DemoStation("NTL", "Hồ Tuyền Lâm", "water", "24805", 108.4300, 11.8950),
    DemoStation("TVDH", "Sông Đồng Nai - Đạ Huoai", "hydro", "25099", 107.6300, 11.4100),
    DemoStation("TVDT", "Sông Đa Nhim - Đức Trọng", "hydro", "24958", 108.3800, 11.7200),
    DemoStation("KTDL", "Khí tượng Đà Lạt", "weather", "24778", 108.4450, 11.9500),
    DemoStation("KTBL", "Khí tượng Bảo Lộc", "weather", "24823", 107.8100, 11.5500),
    DemoStation("KTPT", "Khí tượng Phan Thiết", "weather", "22945", 108.1000, 10.9300),
)
PARAMS_OF = {"air": ("pm25", "pm10", "o3", "no2", "so2", "co", "temperature", "humidity"),
             "water": ("ph", "do", "bod5", "cod", "tss", "nh4_n", "coliform", "water_temperature"),
             "hydro": ("water_level", "discharge", "rainfall"),
             "weather": ("temperature", "humidity", "rainfall", "wind_speed", "wind_direction", "pressure")}


_RNG = random.Random(68)
_GAUSS = [_RNG.gauss(0.0, 1.0) for _ in range(8192)]


def _noise(seed: str, ts: float, scale: float) -> float:
    """Reproducible noise for a station, parameter and minute (a table lookup: seeding a generator per reading
    would cost more than the rest of the seed)."""
    return _GAUSS[(zlib.crc32(seed.encode()) + int(ts // 60) * 7919) % 8191] * scale


def _weather(day: int) -> float:
    """A day's dispersion factor: rainy, windy days are cleaner (0.55) than still, dry ones (1.2)."""
    return 0.55 + 0.65 * random.Random(f"wx:{day}").random()


def value(st: DemoStation, param: str, ts: float, smoke_center: float) -> float:
    """The simulated value of a parameter at a station at an instant (epoch seconds)."""
    local_h = ((ts / 3600.0) + 7) % 24
    day = int((ts + 7 * 3600) // 86400)
    seed = f"{st.code}:{param}"
    traffic = 1.0 + 0.75 * math.exp(-((local_h - 7.5) ** 2) / 2.0) + 0.35 * math.exp(-((local_h - 18.5) ** 2) / 2.5)
    night = 0.85 + 0.15 * math.cos((local_h - 3) / 24 * 2 * math.pi)
    wx = _weather(day)
    if param in ("pm25", "pm10"):
        pm = st.base * traffic * night * wx + _noise(seed, ts, st.base * 0.08)
        if st.smoke:
            hours = (ts - smoke_center) / 3600.0
            if SMOKE_START_H <= hours <= SMOKE_END_H:
                pm += st.smoke * math.exp(-(hours ** 2) / 10.0)
        pm = max(2.0, pm)
        return round(pm * (1.75 if param == "pm10" else 1.0), 1)
    if param == "o3":
        sun = max(0.0, math.sin((local_h - 6) / 12 * math.pi))
        return round(max(5.0, 35 + 70 * sun * (1.4 - wx * 0.5) + _noise(seed, ts, 4)), 1)
    if param == "no2":
        return round(max(3.0, st.base * 1.6 * traffic * wx + _noise(seed, ts, 3)), 1)
    if param == "so2":
        return round(max(1.0, 8 + 4 * wx + _noise(seed, ts, 1.5)), 1)
    if param == "co":
        return round(max(100.0, 500 * traffic * wx + _noise(seed, ts, 40)), 0)
    if param in ("temperature", "water_temperature"):
        base = 18.0 if st.lat > 11.5 else 27.0
        t = base + 5 * math.sin((local_h - 9) / 24 * 2 * math.pi) + _noise(seed, ts, 0.4)
        return round(t - (3 if param == "water_temperature" else 0), 1)
    if param == "humidity":
        return round(min(100.0, max(30.0, 80 - 15 * math.sin((local_h - 9) / 24 * 2 * math.pi) + 10 * (1.2 - wx)
                                    + _noise(seed, ts, 2))), 1)
    if param == "rainfall":
        wet = wx < 0.75 and 13 <= local_h <= 18
        return round(max(0.0, 4 + _noise(seed, ts, 2)), 1) if wet else 0.0
    if param == "wind_speed":
        return round(max(0.0, 2 + 3 * (wx - 0.5) + _noise(seed, ts, 0.5)), 1)
    if param == "wind_direction":
        return round((200 + 40 * math.sin(day) + _noise(seed, ts, 10)) % 360, 0)
    if param == "pressure":
        return round((850 if st.lat > 11.5 else 1008) + 2 * math.sin(day / 3) + _noise(seed, ts, 0.3), 1)
    if param == "water_level":
        return round(320 + 40 * (1.2 - wx) + 15 * math.sin(day / 5) + _noise(seed, ts, 2), 1)
    if param == "discharge":
        return round(max(5.0, 180 + 90 * (1.2 - wx) + _noise(seed, ts, 5)), 1)
    water = {"ph": (7.1, 0.2), "do": (6.2, 0.4), "bod5": (5.0, 0.8), "cod": (13.0, 1.5), "tss": (28.0, 5.0),
             "nh4_n": (0.35, 0.08), "coliform": (3200.0, 500.0)}
    mean, sd = water[param]
    if st.code == "NXH" and param in ("bod5", "cod", "nh4_n", "coliform"):
        mean *= 1.6  # the city lake takes run-off: worse than the reservoirs
    return round(max(0.0, mean + _noise(seed, ts, sd)), 2)


def _reading(st: DemoStation, entity: str, param: str, ts: float, smoke_center: float) -> dict[str, Any]:
    if st.code == STUCK_CODE and param == "pm25" and ts >= smoke_center - STUCK_FOR.total_seconds():
        v = STUCK_VALUE
    else:
        v = value(st, param, ts, smoke_center)
    return {"indicator": f"env.{param}", "entity": entity, "ts": datetime.fromtimestamp(ts, UTC), "value": float(v)}


def _stations(context: PackContext) -> dict[str, str]:
    """Create or update the demo stations; returns code -> entity id."""
    registry = get_registry(tuple(context.settings.disabled_packs))
    items = [EntityCreate(type=ENTITY_TYPE[s.kind], name=f"Trạm {s.name}", unit_code=s.unit, external_id=s.code,
                          geometry={"type": "Point", "coordinates": [s.lon, s.lat]},  # type: ignore[arg-type]
                          attributes={"code": s.code, "operator": "Sở Nông nghiệp và Môi trường (demo)",
                                      "parameters": [f"env.{p}" for p in PARAMS_OF[s.kind]], "public": True})
             for s in STATIONS]
    with transaction(context.session_factory) as session:
        result = upsert_entities(session, actor=context.source_actor(session, SLUG), registry=registry, items=items)
    return {s.code: str(i) for s, i in zip(STATIONS, result.ids, strict=True)}


def _install_rules(context: PackContext) -> None:
    """Install the default rules now that the unit tree exists (at `db upgrade` time it may not yet; by key, once)."""
    from saola.core.auth.context import system_actor
    from saola.core.rules.service import install_default_rules
    from saola.packs.manager import get_plugin_manager

    disabled = tuple(context.settings.disabled_packs)
    with transaction(context.session_factory) as session:
        install_default_rules(session, actor=system_actor("demo"), registry=get_registry(disabled),
                              plugin_manager=get_plugin_manager(disabled))


def seed(context: PackContext) -> float:
    """Stations and their history, written through the kernel's ingest with the AQI engine following."""
    from saola.domains.environment.engine import AqiEngine

    started = time.perf_counter()
    label = "Môi trường / environment"
    context.progress(label, 0.02)
    ids = _stations(context)
    _install_rules(context)
    context.state["environment.ids"] = ids
    now = context.now.timestamp()
    context.state["environment.smoke_center"] = now
    last_hour = int(now // 3600) * 3600
    first = last_hour - HISTORY_DAYS * 86400
    detail_from = last_hour - DETAIL_HOURS * 3600
    silent_after = now - SILENT_FOR.total_seconds()
    engine = AqiEngine(context.session_factory)
    try:
        # One batch per local day, in order, as a live network would send them. The AQI engine follows the last
        # ENGINE_DAYS days (hourly and daily indices, flags); older days get their daily index computed here from
        # the same readings, so the 30-day trend exists without evaluating 15,000 station-hours at start-up.
        hours = list(range(int(first), int(last_hour) + 1, 3600))
        day_of = [int((h + 7 * 3600) // 86400) for h in hours]
        chunks: dict[int, list[int]] = {}
        for h, d in zip(hours, day_of, strict=True):
            chunks.setdefault(d, []).append(h)
        for n, chunk in enumerate(chunks.values()):
            following = n >= len(chunks) - ENGINE_DAYS
            if following and engine.bus is None:
                engine.start(restore=False, threaded=False)
            items: list[dict[str, Any]] = []
            for st in STATIONS:
                entity = ids[st.code]
                for h in chunk:
                    if st.code == SILENT_CODE and h > silent_after:
                        continue
                    if st.kind == "air":
                        params = PARAMS_OF["air"] if h >= detail_from else ("pm25", "pm10")
                    elif st.kind == "water":
                        params = PARAMS_OF["water"] if (h + 7 * 3600) % 86400 == 9 * 3600 else ()
                    else:
                        params = PARAMS_OF[st.kind] if h >= detail_from else ()
                    items.extend(_reading(st, entity, p, h, now) for p in params)
                if not following and st.kind == "air":
                    items.extend(_daily_index(entity, [i for i in items if i["entity"] == entity]))
            with transaction(context.session_factory) as session:
                ingest(session, actor=context.source_actor(session, SLUG), items=items)
            context.progress(label, 0.05 + 0.95 * (n + 1) / len(chunks))
    finally:
        engine.stop()
    return time.perf_counter() - started


def _daily_index(entity: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A past day's VN_AQI and US AQI (PM 24-hour means) for one station, at the time of its last reading."""
    if not items:
        return []
    values = {}
    for p in ("pm25", "pm10"):
        series = [i["value"] for i in items if i["indicator"] == f"env.{p}"]
        if series:
            values[p] = aqi.DayValues(mean_24h=sum(series) / len(series))
    last = max(i["ts"] for i in items)
    out = []
    for code, result in ((AQI_VN_DAY, aqi.vn_daily(values)), (AQI_US_DAY, aqi.us_daily(values))):
        if result.aqi is not None:
            out.append({"indicator": code, "entity": entity, "ts": last, "value": float(result.aqi)})
    return out


def simulator() -> Simulator:
    """A reading a minute from every station but the silent one, through the kernel's ingest."""

    def tick(context: PackContext) -> None:
        ids = context.state.get("environment.ids")
        if ids is None:
            ids = context.state["environment.ids"] = _stations(context)
        center = context.state.get("environment.smoke_center")
        if center is None:
            center = context.state["environment.smoke_center"] = _smoke_center(context)
        ts = float(int(context.now.timestamp() // 60) * 60)
        items = [_reading(st, ids[st.code], p, ts, center) for st in STATIONS if st.code != SILENT_CODE
                 for p in PARAMS_OF[st.kind]]
        with transaction(context.session_factory) as session:
            ingest(session, actor=context.source_actor(session, SLUG), items=items)

    return Simulator(name="environment.stations", interval_seconds=SIM_INTERVAL, tick=tick)


def _smoke_center(context: PackContext) -> float:
    """The smoke episode is centred on the demo's seeding time (kept in the data folder's marker)."""
    import json

    marker = context.settings.data_dir / "demo-seeded.json"
    try:
        return datetime.fromisoformat(json.loads(marker.read_text(encoding="utf-8"))["seeded_at"]).timestamp()
    except (OSError, ValueError, KeyError):
        return context.now.timestamp()
