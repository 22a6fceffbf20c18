"""The indicator catalog: declared and local indicators, search, changes, plan targets and their periods."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from saola.core.indicators.models import Indicator
from saola.core.indicators.service import indicators_by_code, parse_period, sync_declared
from saola.db.engine import transaction
from saola.packs.definitions import IndicatorDefinition
from saola.packs.manager import Registry
from tests.conftest import unique


def new_indicator(**fields: Any) -> dict[str, Any]:
    """A body for POST /api/indicators with a code no other test uses."""
    return {"code": f"test.{unique('i')}", "name_vi": "Bụi mịn PM2.5", "name_en": "Fine dust", "unit": "µg/m³",
            "domain": "env", **fields}


def test_create_get_and_list(client: TestClient, make_user) -> None:
    integrator = make_user("integrator", "68")
    body = new_indicator(min_value=0, max_value=1000, thresholds={"unhealthy": 55.5}, aggregation="max")
    r = client.post("/api/indicators", json=body, headers=integrator)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["code"] == body["code"] and created["declared_by"] is None and created["is_active"]
    assert created["thresholds"] == {"unhealthy": 55.5} and created["aggregation"] == "max"
    viewer = make_user("viewer", "79")
    got = client.get(f"/api/indicators/{body['code']}", headers=viewer)
    assert got.status_code == 200 and got.json()["id"] == created["id"]
    # Text search ignores diacritics and case, and matches the code too.
    for q in ("bụi mịn", "BUI MIN", "fine dust", body["code"].split(".")[1]):
        listing = client.get("/api/indicators", params={"q": q, "domain": "env", "limit": 1000}, headers=viewer)
        assert listing.status_code == 200
        assert body["code"] in [i["code"] for i in listing.json()["items"]], q
    other = client.get("/api/indicators", params={"q": "bui min", "domain": "health"}, headers=viewer).json()
    assert body["code"] not in [i["code"] for i in other["items"]]
    assert client.get("/api/indicators/test.missing_one", headers=viewer).status_code == 404


def test_create_refusals(client: TestClient, make_user) -> None:
    integrator = make_user("integrator", "VN")
    body = new_indicator()
    assert client.post("/api/indicators", json=body, headers=integrator).status_code == 201
    assert client.post("/api/indicators", json=body, headers=integrator).status_code == 409
    for bad, field in (({"code": "Env.PM25"}, "code"), ({"code": "nodot"}, "code"),
                       ({"aggregation": "median"}, "aggregation"), ({"min_value": 5, "max_value": 1}, None),
                       ({"extra": 1}, "extra"), ({"name_vi": ""}, "name_vi")):
        r = client.post("/api/indicators", json={**new_indicator(), **bad}, headers=integrator)
        assert r.status_code == 422, bad
        if field:
            assert ["body", field] in [e["loc"] for e in r.json()["errors"]], r.json()
    viewer = make_user("viewer", "VN")
    assert client.post("/api/indicators", json=new_indicator(), headers=viewer).status_code == 403
    assert client.post("/api/indicators", json=new_indicator()).status_code == 401


def test_patch_changes_only_what_is_sent(client: TestClient, make_user) -> None:
    integrator = make_user("integrator", "VN")
    body = new_indicator(min_value=0, max_value=100)
    client.post("/api/indicators", json=body, headers=integrator)
    url = f"/api/indicators/{body['code']}"
    r = client.patch(url, json={"name_vi": "Chất lượng nước", "max_value": 50, "is_active": False}, headers=integrator)
    assert r.status_code == 200, r.text
    changed = r.json()
    assert (changed["name_vi"], changed["max_value"], changed["min_value"], changed["is_active"]) == (
        "Chất lượng nước", 50, 0, False)
    assert changed["name_en"] == "Fine dust"
    found = client.get("/api/indicators", params={"q": "chat luong nuoc", "active": False}, headers=integrator)
    assert body["code"] in [i["code"] for i in found.json()["items"]]
    assert client.patch(url, json={"min_value": 60}, headers=integrator).status_code == 422
    nulled = client.patch(url, json={"name_vi": None}, headers=integrator)
    assert nulled.status_code == 422 and nulled.json()["errors"][0]["loc"] == ["body", "name_vi"]
    assert client.patch(url, json={"max_value": None}, headers=integrator).json()["max_value"] is None
    assert client.patch("/api/indicators/test.not_there", json={}, headers=integrator).status_code == 404
    assert client.patch(url, json={"name_vi": "x"}, headers=make_user("leader", "VN")).status_code == 403


def test_sync_declared_is_idempotent(session_factory) -> None:
    code = f"test.{unique('d')}"
    definition = IndicatorDefinition(code=code, name_vi="Tỷ lệ hồ sơ đúng hạn", name_en="On-time rate", unit="%",
                                     domain="hcc", aggregation="avg", direction="higher_is_better",
                                     periodicity="month", subject_kind="unit", min_value=0, max_value=100)
    registry = Registry(indicators={code: definition})
    with transaction(session_factory) as session:
        assert sync_declared(session, registry=registry) == 1
    with transaction(session_factory) as session:
        assert sync_declared(session, registry=registry) == 0
    changed = Registry(indicators={code: IndicatorDefinition(**{**definition.__dict__, "thresholds": {"low": 80}})})
    with transaction(session_factory) as session:
        assert sync_declared(session, registry=changed) == 1
    with session_factory() as session:
        row = session.scalar(select(Indicator).where(Indicator.code == code))
        assert row is not None and row.declared_by == "hcc" and row.thresholds == {"low": 80}
        assert row.periodicity == "month" and "ty le ho so dung han" in row.search_name
        refs = indicators_by_code(session, [code, "test.unknown"])
    assert list(refs) == [code] and refs[code].id == row.id and refs[code].max_value == 100


@pytest.mark.parametrize(("period", "canonical", "start", "end"), [
    ("2026", "2026", "2025-12-31T17:00:00", "2026-12-31T17:00:00"),
    ("2026-Q1", "2026-Q1", "2025-12-31T17:00:00", "2026-03-31T17:00:00"),
    ("2026-q4", "2026-Q4", "2026-09-30T17:00:00", "2026-12-31T17:00:00"),
    ("2026-11", "2026-11", "2026-10-31T17:00:00", "2026-11-30T17:00:00"),
    ("2026-12", "2026-12", "2026-11-30T17:00:00", "2026-12-31T17:00:00"),
    ("2024-02", "2024-02", "2024-01-31T17:00:00", "2024-02-29T17:00:00"),
])
def test_period_parsing(period: str, canonical: str, start: str, end: str) -> None:
    got = parse_period(period)
    assert got == (canonical, datetime.fromisoformat(start).replace(tzinfo=UTC),
                   datetime.fromisoformat(end).replace(tzinfo=UTC))


@pytest.mark.parametrize("bad", ["", "26", "2026-13", "2026-00", "2026-Q5", "2026-1", "2026/11", "1969", "x2026",
                                 "2026-11-01"])
def test_bad_periods(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_period(bad)


def _make(client: TestClient, headers: dict[str, str]) -> str:
    body = new_indicator(periodicity="year")
    assert client.post("/api/indicators", json=body, headers=headers).status_code == 201
    return body["code"]


def test_targets_upsert_and_list(client: TestClient, make_user) -> None:
    code = _make(client, make_user("integrator", "VN"))
    leader = make_user("leader", "68")
    url = f"/api/indicators/{code}/targets"
    items = [{"unit": "68", "period": "2026", "target_value": 8.5, "note": "GRDP"},
             {"unit": "68", "period": "2026-q4", "target_value": 9.0},
             {"unit": "24781", "period": "2026-11", "target_value": 3.0},
             {"unit": "68", "period": "2027", "target_value": 9.5}]
    r = client.put(url, json={"items": items}, headers=leader)
    assert r.status_code == 200, r.text
    saved = {(t["unit_code"], t["period"]): t for t in r.json()}
    assert set(saved) == {("68", "2026"), ("68", "2026-Q4"), ("24781", "2026-11"), ("68", "2027")}
    assert saved[("68", "2026-Q4")]["period_start"].startswith("2026-09-30T17:00:00")
    assert saved[("68", "2026")]["note"] == "GRDP" and saved[("68", "2026")]["indicator"] == code
    # Sending the same (unit, period) again replaces the value instead of adding a row.
    r = client.put(url, json={"items": [{"unit": "68", "period": "2026", "target_value": 8.0}]}, headers=leader)
    assert [t["target_value"] for t in r.json()] == [8.0]
    listing = client.get(url, params={"year": 2026}, headers=leader).json()
    assert sorted((t["unit_code"], t["period"], t["target_value"]) for t in listing) == [
        ("24781", "2026-11", 3.0), ("68", "2026", 8.0), ("68", "2026-Q4", 9.0)]
    assert [t["period"] for t in client.get(url, params={"unit": "24781"}, headers=leader).json()] == ["2026-11"]


def test_targets_refusals_and_scope(client: TestClient, make_user) -> None:
    admin = make_user("admin", "VN")
    code = _make(client, admin)
    url = f"/api/indicators/{code}/targets"
    assert client.put(url, json={"items": [{"unit": "79", "period": "2026", "target_value": 1.0}]},
                      headers=admin).status_code == 200
    leader = make_user("leader", "68")
    before = client.get(url, headers=admin).json()
    bad = client.put(url, json={"items": [{"unit": "68", "period": "2026", "target_value": 1.0},
                                          {"unit": "68", "period": "2026-Q7", "target_value": 1.0},
                                          {"unit": "99999", "period": "2026", "target_value": 1.0}]},
                     headers=leader)
    assert bad.status_code == 422
    assert [e["loc"] for e in bad.json()["errors"]] == [["body", "items", 1, "period"], ["body", "items", 2, "unit"]]
    outside = client.put(url, json={"items": [{"unit": "79", "period": "2026", "target_value": 2.0}]}, headers=leader)
    assert outside.status_code == 403
    nan = client.put(url, content=b'{"items":[{"unit":"68","period":"2026","target_value":NaN}]}',
                     headers={**leader, "Content-Type": "application/json"})
    assert nan.status_code == 422
    assert client.get(url, headers=admin).json() == before  # nothing was written by any refused request
    # Reads are limited to the caller's scope; naming a unit outside it is 404.
    assert client.get(url, headers=leader).json() == []
    assert client.get(url, params={"unit": "79"}, headers=leader).status_code == 404
    staff = make_user("agency_staff", "24781")
    assert client.put(url, json={"items": [{"unit": "24781", "period": "2026", "target_value": 1.0}]},
                      headers=staff).status_code == 403
    assert client.put("/api/indicators/test.nothing_here/targets",
                      json={"items": [{"unit": "68", "period": "2026", "target_value": 1.0}]},
                      headers=admin).status_code == 404
