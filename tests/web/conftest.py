"""Browser tests: a real server on a free port over a fresh SQLite store seeded like a small demo, and Chromium.

The store is written through the kernel's and the packs' services (and HTTP routes), never straight into tables.
Screenshots of each step go to $SAOLA_TEST_ARTIFACTS/web (default test-artifacts/web, ignored by git).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select

from saola.config import Settings
from saola.core.alerts.service import fire
from saola.core.auth.context import system_actor
from saola.core.auth.service import create_user
from saola.core.indicators.schemas import TargetIn
from saola.core.indicators.service import upsert_targets
from saola.core.observations.service import ingest
from saola.core.rules.models import Rule
from saola.core.rules.schemas import RuleCreate
from saola.core.rules.service import create_rule
from saola.db.engine import make_engine, make_session_factory, transaction
from saola.db.types import utcnow
from tests.conftest import ARTIFACTS, TEST_SECRET
from tests.live import serve_in_thread

CHROMIUM = "/usr/bin/chromium"
PROVINCE = "68"
WARD = "24781"  # Phường Xuân Hương - Đà Lạt
WARD2 = "24787"  # Phường Cam Ly - Đà Lạt
PASSWORD = "browser-test-password-1"
PARCEL_LON, PARCEL_LAT, STEP = 108.4380, 11.9400, 1 / 4096
SHEET = 42


@dataclass(frozen=True)
class LiveServer:
    """The running server and what was seeded into it."""

    url: str
    settings: Settings
    alert_title: str

    def token(self, username: str) -> str:
        """A bearer token for a seeded user."""
        r = httpx.post(f"{self.url}/api/auth/token", data={"username": username, "password": PASSWORD})
        r.raise_for_status()
        return r.json()["access_token"]

    def parcel_centre(self, parcel_no: int) -> tuple[float, float]:
        """lon, lat of the middle of a seeded parcel (1..12, row by row from the south-west)."""
        col, row = (parcel_no - 1) % 4, (parcel_no - 1) // 4
        return PARCEL_LON + (col + 0.5) * STEP, PARCEL_LAT + (row + 0.5) * STEP


def _months_back(n: int) -> list[Any]:
    """The UTC instants of the first local midnight of the last n months, oldest first."""
    from saola.core.indicators.service import local_to_utc

    now = utcnow() + timedelta(hours=7)
    y, m = now.year, now.month
    out = []
    for _ in range(n):
        out.append(local_to_utc(y, m))
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    return out[::-1]


def _parcels_file(folder: Path) -> Path:
    features = []
    for i in range(12):
        col, row = i % 4, i // 4
        x, y = PARCEL_LON + col * STEP, PARCEL_LAT + row * STEP
        ring = [[x, y], [x + STEP, y], [x + STEP, y + STEP], [x, y + STEP], [x, y]]
        features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": {
            "commune": WARD, "sheet_no": SHEET, "parcel_no": i + 1, "land_use": "ODT" if i % 2 else "CLN",
            "allowed_use": "ODT", "building_density_pct": 70.0, "floors": "2-5", "land_use_coefficient": 3.5,
            "setback_m": 3.0}})
    path = folder / "parcels.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    return path


def seed(settings: Settings, folder: Path) -> str:
    """Users, indicators with targets, parcels and one firing alert; returns the alert's title."""
    from saola.cli import upgrade_database
    from saola.core.units.service import load_official_units
    from saola.domains.land.importer import import_parcels

    upgrade_database(settings)
    engine = make_engine(settings)
    factory = make_session_factory(engine)
    actor = system_actor("browser-test")
    with transaction(factory) as session:
        load_official_units(session)
        for username, role, scope in (("lanhdao", "leader", PROVINCE), ("dieuhanh", "operator", PROVINCE),
                                      ("quantri", "admin", "VN"), ("xuanhuong", "agency_staff", WARD)):
            create_user(session, actor=actor, username=username, password=PASSWORD, role=role, scope=scope,
                        full_name=username)
    months = _months_back(6)
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for i, ts in enumerate(months):
        for code, base, step in (("kt.grdp_growth", 6.0, 0.3), ("ns.budget_revenue", 900.0, 40.0),
                                 ("dl.tourist_arrivals", 700.0, 25.0), ("kt.export_value", 80.0, 3.0),
                                 ("kt.retail_sales", 5200.0, 90.0), ("ns.public_investment_disbursed", 30.0, 8.0)):
            rows.append({"indicator": code, "unit": PROVINCE, "ts": ts.isoformat(), "value": base + step * i})
    for h in range(24):
        ts = now - timedelta(hours=23 - h, minutes=5)
        rows += [{"indicator": "hcc.on_time_rate", "unit": PROVINCE, "ts": ts.isoformat(), "value": 96.0 - h * 0.1},
                 {"indicator": "hcc.dossiers_received", "unit": PROVINCE, "ts": ts.isoformat(), "value": 40.0 + h},
                 {"indicator": "hcc.online_rate", "unit": PROVINCE, "ts": ts.isoformat(), "value": 60.0 + h * 0.5}]
    for unit, parcels in ((WARD, 4100.0), (WARD2, 3900.0)):
        rows.append({"indicator": "land.parcels", "unit": unit, "ts": (now - timedelta(hours=3)).isoformat(),
                     "value": parcels})
    with transaction(factory) as session:
        ingest(session, actor=actor, items=rows)
        year = str((now + timedelta(hours=7)).year)
        upsert_targets(session, actor=actor, code="kt.grdp_growth",
                       items=[TargetIn(unit=PROVINCE, period=year, target_value=8.0)])
        upsert_targets(session, actor=actor, code="ns.public_investment_disbursed",
                       items=[TargetIn(unit=PROVINCE, period=year, target_value=60.0)])
    with transaction(factory) as session:
        report = import_parcels(session, actor=actor, path=_parcels_file(folder))
        assert not report.rejected, report.rejected
    title = "Ngập úng cục bộ"
    with transaction(factory) as session:
        rule = create_rule(session, actor=actor, data=RuleCreate(
            name=title, name_en="Local flooding", kind="threshold", severity="high", unit_code=PROVINCE,
            params={"indicator": "hcc.dossiers_received", "direction": "above", "threshold": 1000}))
        rule = session.scalar(select(Rule).where(Rule.id == rule.id))
        fire(session, rule=rule, subject=f"u:{WARD}", unit_code=WARD, value=1234.0, threshold=1000.0,
             started_at=now, label="Phường Xuân Hương - Đà Lạt")
    engine.dispose()
    return title


STATIONS = [  # name, ward, lon, lat, PM2.5 now (µg/m³)
    ("Trạm Hồ Xuân Hương", WARD, 108.4418, 11.9402, 18.0), ("Trạm Chợ Đà Lạt", WARD, 108.4370, 11.9430, 62.0),
    ("Trạm Cam Ly", WARD2, 108.4220, 11.9390, 110.0), ("Trạm Đồi Robin", WARD2, 108.4290, 11.9310, 35.0),
]


def seed_stations(live: LiveServer) -> None:
    """Air stations and an hour of readings, through the HTTP API like a real source would send them."""
    headers = {"Authorization": f"Bearer {live.token('quantri')}"}
    now = utcnow().replace(second=0, microsecond=0)
    with httpx.Client(base_url=live.url, headers=headers, timeout=30) as http:
        rows = []
        for i, (name, ward, lon, lat, pm25) in enumerate(STATIONS):
            r = http.post("/api/entities", json={
                "type": "env.air_station", "name": name, "unit_code": ward, "external_id": f"KK{i + 1:02d}",
                "geometry": {"type": "Point", "coordinates": [lon, lat]}, "attributes": {"code": f"KK{i + 1:02d}"}})
            r.raise_for_status()
            sid = r.json()["id"]
            # Three hours up to this minute, so the current hour has a reading whatever the minute the tests run.
            for m in range(0, 181, 10):
                ts = (now - timedelta(minutes=180 - m)).isoformat()
                rows += [{"indicator": "env.pm25", "entity": sid, "ts": ts, "value": pm25 + (m % 60) / 10},
                         {"indicator": "env.pm10", "entity": sid, "ts": ts, "value": pm25 * 1.6}]
        http.post("/api/observations", json={"items": rows}).raise_for_status()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The application served by uvicorn in a thread on a free port, over its own seeded SQLite store."""
    from saola.app import create_app

    folder = tmp_path_factory.mktemp("web")
    settings = Settings(data_dir=folder, database_url=f"sqlite:///{folder / 'saola.db'}", secret_key=TEST_SECRET,
                        demo_mode=False, run_jobs=False)
    title = seed(settings, folder)
    app = create_app(settings)
    with serve_in_thread(app, lifespan="on") as url:
        live = LiveServer(url=url, settings=settings, alert_title=title)
        seed_stations(live)
        yield live


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (no downloaded browser)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("SAOLA_TEST_BROWSER") == "off":
            pytest.skip("browser tests switched off (SAOLA_TEST_BROWSER=off)")
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does), or set SAOLA_TEST_BROWSER=off")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    """The folder for this run's screenshots."""
    folder = ARTIFACTS / "web"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(browser: Any, live_server: LiveServer) -> Iterator[Any]:
    """A fresh browser page at wallboard size; console errors and failed requests to the server are collected."""
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="vi-VN",
                                  timezone_id="Asia/Ho_Chi_Minh")
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    pg.errors = []  # type: ignore[attr-defined]
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))  # type: ignore[attr-defined]
    yield pg
    context.close()


@pytest.fixture
def phone(browser: Any, live_server: LiveServer) -> Iterator[Any]:
    """A page the size of a phone, with touch, for the citizen portal."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True, locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh")
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    pg.errors = []  # type: ignore[attr-defined]
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))  # type: ignore[attr-defined]
    yield pg
    context.close()


def login(page: Any, live: LiveServer, username: str, next_path: str = "/wallboard") -> None:
    """Sign in through the login form."""
    page.goto(f"{live.url}/login?next={quote(next_path, safe='/')}")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(lambda url: "/login" not in url and next_path.split("#")[0] in url)

