"""The unit tree: loading from the official list, lookups, text search and scope."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from saola.core.units.models import Unit
from saola.core.units.service import load_official_units
from saola.db.engine import transaction


def test_tree_has_official_counts(session_factory) -> None:
    with session_factory() as session:
        counts = dict(session.execute(select(Unit.level, func.count()).group_by(Unit.level)).all())
    assert counts == {"nation": 1, "province": 34, "commune": 3321}


def test_loading_twice_changes_nothing(session_factory) -> None:
    with transaction(session_factory) as session:
        result = load_official_units(session)
    assert result["created"] == 0
    assert result["total"] == 1 + 34 + 3321


def test_search_ignores_diacritics_and_case(client: TestClient, admin_headers) -> None:
    r = client.get("/api/units", params={"q": "da lat"}, headers=admin_headers)
    assert r.status_code == 200
    names = [u["name"] for u in r.json()["items"]]
    assert names and all("Đà Lạt" in n for n in names)
    r2 = client.get("/api/units", params={"q": "ĐÀ LẠT"}, headers=admin_headers)
    assert [u["code"] for u in r2.json()["items"]] == [u["code"] for u in r.json()["items"]]


def test_children_and_ancestors(client: TestClient, admin_headers) -> None:
    r = client.get("/api/units/68/children", headers=admin_headers)
    assert r.status_code == 200
    kids = r.json()
    assert len(kids) == 124 and all(k["parent_code"] == "68" for k in kids)
    ward = next(k for k in kids if "Xuân Hương" in k["name"])
    anc = client.get(f"/api/units/{ward['code']}/ancestors", headers=admin_headers).json()
    assert [a["code"] for a in anc] == ["VN", "68"]


def test_filter_by_parent_and_level(client: TestClient, admin_headers) -> None:
    r = client.get("/api/units", params={"level": "province", "limit": 100}, headers=admin_headers)
    assert r.json()["total"] == 34
    r = client.get("/api/units", params={"parent": "68", "level": "commune", "limit": 1}, headers=admin_headers)
    assert r.json()["total"] == 124 and len(r.json()["items"]) == 1


def test_short_province_code_is_normalised(client: TestClient, admin_headers) -> None:
    r = client.get("/api/units/1", headers=admin_headers)
    assert r.status_code == 200 and r.json()["code"] == "01"


def test_commune_staff_cannot_see_other_units(client: TestClient, make_user) -> None:
    headers = make_user("agency_staff", "24781")  # a ward of Đà Lạt
    assert client.get("/api/units/24781", headers=headers).status_code == 200
    assert client.get("/api/units/68", headers=headers).status_code == 404
    assert client.get("/api/units/79", headers=headers).status_code == 404
    listing = client.get("/api/units", params={"limit": 5000}, headers=headers).json()
    assert [u["code"] for u in listing["items"]] == ["24781"]
    # ancestors stop at the edge of the scope
    assert client.get("/api/units/24781/ancestors", headers=headers).json() == []


def test_province_leader_sees_only_their_province(client: TestClient, make_user) -> None:
    headers = make_user("leader", "68")
    listing = client.get("/api/units", params={"limit": 5000}, headers=headers).json()
    assert listing["total"] == 125
    assert client.get("/api/units/79", headers=headers).status_code == 404


def test_units_need_credentials(client: TestClient) -> None:
    assert client.get("/api/units").status_code == 401
    assert client.get("/api/units", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    wrong_key = {"X-API-Key": "sk_000000000000_wrongwrongwrongwrongwrong"}
    assert client.get("/api/units", headers=wrong_key).status_code == 401


def test_search_text_and_offset_are_bounded(client: TestClient, admin_headers) -> None:
    r = client.get("/api/units", params={"q": "da\x00lat"}, headers=admin_headers)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "q"]
    r = client.get("/api/units", params={"offset": 10**20}, headers=admin_headers)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "offset"]
