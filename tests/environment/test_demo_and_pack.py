"""The demo network (through the kernel's ingest, with the AQI engine following), the pack's declarations, the
editable standards file, and a tiny run of the benchmark."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from saola.config import Settings
from saola.core.auth.context import system_actor
from saola.core.entities.models import Entity
from saola.core.sources.service import create_source
from saola.db.engine import transaction
from saola.domains.environment import demo, pack
from saola.domains.environment.models import StationState
from saola.domains.environment.standards import load_standards, water_class
from saola.packs.context import PackContext
from saola.packs.manager import get_registry
from tests.conftest import unique


def test_demo_seed_tells_the_story(settings: Settings, session_factory: sessionmaker[Session],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "HISTORY_DAYS", 2)  # the story needs hours, not the full 30 days, in a test
    with transaction(session_factory) as session:  # write-first: see conftest.make_station
        source, _ = create_source(session, actor=system_actor("test"), name=unique("demo-env"), scope="68")
        source_id = source.id
    context = PackContext(settings=settings, session_factory=session_factory, now=datetime.now(UTC),
                          source_ids={"environment": source_id})
    demo.seed(context)
    ids = context.state["environment.ids"]
    assert len(ids) == len(demo.STATIONS) and sum(s.kind == "air" for s in demo.STATIONS) == 20
    with session_factory() as session:
        states = {str(s.entity_id): s for s in session.scalars(select(StationState))}
        assert session.scalar(select(Entity.type).where(Entity.id == uuid.UUID(ids["DT8"]))) == "env.air_station"
    smoke = [states[ids[c]].aqi_vn for c in ("DT8", "DT9", "DD10", "LH11")]
    assert all(a is not None and a >= 101 for a in smoke), smoke  # Kém or worse
    assert max(smoke) >= 151  # Xấu at the worst station
    clean = states[ids["LD7"]].aqi_vn
    assert clean is not None and clean <= 100
    assert states[ids["DL12"]].stuck == ["env.pm25"]  # the stuck sensor
    silent = states[ids["GN18"]].aqi_ts
    assert silent is not None and (context.now - silent).total_seconds() > 3600  # silent for two hours
    # the simulator writes one minute more through the same ingest path
    sim = demo.simulator()
    context.now = datetime.now(UTC)
    sim.tick(context)


def test_pack_declares_what_the_web_ui_builds_on() -> None:
    registry = get_registry()
    for code in ("env.pm25", "env.pm10", "env.so2", "env.no2", "env.co", "env.o3", "env.tsp", "env.temperature",
                 "env.humidity", "env.rainfall", "env.wind_speed", "env.water_level", "env.ph", "env.do",
                 "env.bod5", "env.cod", "env.tss", "env.nh4_n", "env.coliform", "env.aqi_vn", "env.aqi_us"):
        assert code in registry.indicators, code
    assert registry.indicators["env.pm25"].unit == "µg/m³"
    layer = pack.saola_map_layers()[0]
    assert (layer.key, layer.url) == ("environment.stations", "/api/environment/stations.geojson")
    panels = {p.key: p for p in pack.saola_dashboard_panels()}
    assert panels["environment.aqi"].kind == "kpi" and "env.aqi_vn" in panels["environment.aqi"].indicator_codes
    assert any(p.kind == "trend" for p in panels.values())
    keys = {r.key for r in pack.saola_default_rules()}
    assert keys == {"environment.aqi_bad", "environment.qcvn05_exceeded", "environment.station_silent",
                    "environment.sensor_stuck"}


def test_standards_file_is_data_a_province_can_override(tmp_path: Path) -> None:
    shipped = load_standards()
    assert shipped.air_limit("pm25", "24h", date(2025, 12, 31)) == 50
    assert shipped.air_limit("pm25", "24h", date(2026, 1, 1)) == 45
    assert shipped.air_limit("o3", "8h", date(2026, 1, 1)) == 120
    assert shipped.air_limit("pm10", "1h", date(2026, 1, 1)) is None
    edited = tmp_path / "standards.toml"
    edited.write_text(shipped.path.read_text(encoding="utf-8").replace("B = 6\n", "B = 7\n", 1), encoding="utf-8")
    assert water_class(shipped, {"bod5": 6.5})["class"] == "C"
    assert water_class(load_standards(edited), {"bod5": 6.5})["class"] == "B"


def test_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import environment_aqi

    results = environment_aqi.main(["--backends", "sqlite", "--stations", "3", "--minutes", "3", "--rounds", "1",
                                    "--no-docs"])
    assert results[0]["on"]["rows"] == results[0]["off"]["rows"] > 0
    assert results[0]["derived"] > 0 and results[0]["engine_errors"] == 0
    assert results[0]["per_evaluation"] >= 1 and results[0]["lag_max"] >= results[0]["lag_p50"] > 0
    section = environment_aqi.render(results, 3, 3)
    assert section.startswith(environment_aqi.START) and "on / off" in section and "engine lag" in section
