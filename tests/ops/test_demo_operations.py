"""The demo's operations story: an incident with its SOP half done and a directive with mixed progress, seeded
through the case services into a fresh demo database and read back through the API as the demo accounts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from saola.app import create_app
from saola.config import Settings
from saola.core.cases.models import Case
from saola.core.units.service import load_official_units
from saola.db.engine import make_engine, make_session_factory, transaction
from saola.db.migrate import upgrade
from saola.demo.operations import SOP_STEPS, TICKED, WARDS, OperationsSeed, seed_operations
from saola.demo.people import DEMO_PROVINCE
from saola.demo.runner import _seed_people
from saola.packs.context import PackContext

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, OperationsSeed]]:
    """A fresh demo database (SQLite, what `saola demo` uses) with the people and the operations story only."""
    folder: Path = tmp_path_factory.mktemp("demo-ops")
    settings = Settings(data_dir=folder, demo_mode=True)
    upgrade(settings.url)
    engine = make_engine(settings)
    factory = make_session_factory(engine)
    with transaction(factory) as session:
        load_official_units(session)
    with transaction(factory) as session:
        _seed_people(session)
    context = PackContext(settings=settings, session_factory=factory, now=NOW, province_code=DEMO_PROVINCE)
    seeded = seed_operations(context)
    assert seeded is not None
    assert seed_operations(context) is None  # a second run finds the story and writes nothing
    with factory() as session:
        assert len(session.scalars(select(Case.id).where(Case.case_type == "directive")).all()) == 1
    engine.dispose()
    yield settings, seeded


def _login(client: TestClient, username: str) -> dict[str, str]:
    r = client.post("/api/auth/token", data={"username": username, "password": f"demo-{username}"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _case(client: TestClient, headers: dict[str, str], code: str) -> dict:  # type: ignore[type-arg]
    r = client.get("/api/cases", params={"q": code}, headers=headers)
    assert r.status_code == 200, r.text
    [found] = [c for c in r.json()["items"] if c["code"] == code]
    return found


def test_incident_with_its_sop_half_done(demo: tuple[Settings, OperationsSeed]) -> None:
    settings, seeded = demo
    with TestClient(create_app(settings)) as client:
        operator = _login(client, "dieuhanh")
        incident = _case(client, operator, seeded.incident_code)
        assert incident["status"] == "in_progress" and incident["priority"] == "high"
        assert incident["category"] == "env.air_quality"
        sop = client.get(f"/api/cases/{incident['id']}/sop", headers=operator).json()
        steps = sop["steps"] if isinstance(sop, dict) else sop
        assert [s["title"] for s in steps] == [t for t, *_ in SOP_STEPS]
        done = [s for s in steps if s["done_at"]]
        assert len(done) == TICKED and {s["done_by"] for s in done} == {"dieuhanh"}
        assert [s["position"] for s in done] == [1, 2, 3]  # the first three, in order
        # half done: resolving is refused while required steps are open
        r = client.post(f"/api/cases/{incident['id']}/status", json={"status": "resolved"}, headers=operator)
        assert r.status_code == 409 and "sop" in r.text.lower()


def test_directive_from_the_leader_with_mixed_progress(demo: tuple[Settings, OperationsSeed]) -> None:
    settings, seeded = demo
    with TestClient(create_app(settings)) as client:
        leader = _login(client, "lanhdao")
        directive = _case(client, leader, seeded.directive_code)
        assert directive["created_by"] == "lanhdao"
        view = client.get(f"/api/directives/{directive['id']}", headers=leader).json()
        by_unit = {r["unit_code"]: r for r in view["recipients"]}
        assert set(by_unit) == set(WARDS)
        done, late, idle = (by_unit[w] for w in WARDS)
        assert (done["progress_percent"], done["status"], done["overdue"]) == (100, "done", False)
        assert done["resolved_on_time"] is True
        assert (late["progress_percent"], late["status"], late["overdue"]) == (40, "in_progress", True)
        assert (idle["progress_percent"], idle["status"], idle["overdue"]) == (0, "assigned", True)
        assert view["done"] == 1 and view["overdue"] == 2 and view["overall_percent"] == round(140 / 3)
        # the ward's own staff see their ward's task, not the other wards'
        ward = _login(client, "xuanhuong")
        r = client.get("/api/cases", params={"type": "task", "parent": directive["id"]}, headers=ward)
        assert [c["unit_code"] for c in r.json()["items"]] == [WARDS[0]]
