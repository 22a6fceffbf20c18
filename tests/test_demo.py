"""`saola demo` on the embedded default: seeding, reuse, demo-only accounts, and live simulators."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from rich.console import Console
from sqlalchemy import func, select

from saola.app import create_app
from saola.config import Settings
from saola.core.observations.models import Observation
from saola.db.outbox import OutboxEntry
from saola.demo.people import DEMO_USERS
from saola.demo.runner import build_context, run_demo
from saola.packs.manager import get_plugin_manager
from tests.conftest import TEST_SECRET


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder seeded once by the demo for this module."""
    data_dir = tmp_path_factory.mktemp("demo")
    console = Console(record=True, width=120)
    run_demo(Settings(data_dir=data_dir, demo_mode=True), host="127.0.0.1", port=0, seed_only=True,
             console=console)
    assert "demo data created" in console.export_text()
    return data_dir


def _count(app, model) -> int:  # type: ignore[no-untyped-def]
    with app.state.session_factory() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_demo_seeds_history_and_reuses_it(demo_dir: Path) -> None:
    assert (demo_dir / "saola.db").exists() and (demo_dir / "demo-seeded.json").exists()
    app = create_app(Settings(data_dir=demo_dir, demo_mode=True))
    seeded = _count(app, Observation)
    assert seeded > 50_000  # 30 days of hourly history for 124 communes
    console = Console(record=True, width=120)
    run_demo(Settings(data_dir=demo_dir, demo_mode=True), host="127.0.0.1", port=0, seed_only=True,
             console=console)
    assert "reusing" in console.export_text()
    assert _count(app, Observation) == seeded


def test_every_demo_account_logs_in_in_demo_mode(demo_dir: Path) -> None:
    with TestClient(create_app(Settings(data_dir=demo_dir, demo_mode=True))) as client:
        for person in DEMO_USERS:
            r = client.post("/api/auth/token", data={"username": person.username, "password": person.password})
            assert r.status_code == 200, person.username
            me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
            assert me.json()["role"] == person.role and me.json()["scope_code"] == person.scope


def test_demo_accounts_are_refused_outside_demo_mode(demo_dir: Path) -> None:
    person = DEMO_USERS[1]
    demo_app = create_app(Settings(data_dir=demo_dir, demo_mode=True))
    with TestClient(demo_app) as client:
        token = client.post("/api/auth/token", data={"username": person.username,
                                                     "password": person.password}).json()["access_token"]
    prod_app = create_app(Settings(data_dir=demo_dir, demo_mode=False, secret_key=TEST_SECRET))
    with TestClient(prod_app) as client:
        r = client.post("/api/auth/token", data={"username": person.username, "password": person.password})
        assert r.status_code == 401 and "demo" in r.json()["detail"]
        # a token minted with the demo secret is not valid under a real secret either
        assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_simulators_write_through_the_ingestion_service(demo_dir: Path) -> None:
    settings = Settings(data_dir=demo_dir, demo_mode=True)
    app = create_app(settings)
    before, outbox_before = _count(app, Observation), _count(app, OutboxEntry)
    context = build_context(settings, app.state.session_factory)
    simulators = [s for group in get_plugin_manager(()).hook.saola_demo_simulators(context=context) for s in group]
    assert simulators
    for sim in simulators:
        sim.tick(context)
    assert _count(app, Observation) > before
    assert _count(app, OutboxEntry) > outbox_before
