"""NGSI-LD batch operations: all or nothing for content, 207 only for entities that do (not) exist."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from saola.core.entities.models import Entity
from tests.ngsi_ld.conftest import BASE, CORE, js, ld, new_type, problem, station, urn


def count(client: TestClient, headers: dict[str, str], kind: str) -> int:
    r = client.get(f"{BASE}/entities", params={"type": kind, "count": "true", "limit": 0}, headers=ld(headers))
    assert r.status_code == 200, r.text
    return int(r.headers["NGSILD-Results-Count"])


def values(client: TestClient, headers: dict[str, str], entity_id: str) -> dict[str, Any]:
    r = client.get(f"{BASE}/entities/{entity_id}", params={"options": "keyValues"}, headers=ld(headers))
    assert r.status_code == 200, r.text
    return r.json()


def test_batch_create_then_207_for_existing_ones(client: TestClient, admin_headers) -> None:
    kind = new_type()
    first = [station(kind) for _ in range(3)]
    r = client.post(f"{BASE}/entityOperations/create/", json=first, headers=ld(admin_headers))
    assert r.status_code == 201 and r.json() == [e["id"] for e in first]
    again = [first[0], station(kind)]
    r = client.post(f"{BASE}/entityOperations/create", json=again, headers=ld(admin_headers))
    assert r.status_code == 207, r.text
    body = r.json()
    assert body["success"] == [again[1]["id"]]
    assert [e["entityId"] for e in body["errors"]] == [first[0]["id"]]
    assert body["errors"][0]["error"]["type"].endswith("/AlreadyExists")
    assert count(client, admin_headers, kind) == 4


def test_one_bad_entity_rejects_the_whole_batch_with_every_row_error(client: TestClient, admin_headers) -> None:
    kind = new_type()
    good = station(kind)
    bad_geo = station(kind, location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1]}})
    bad_id = {**station(kind), "id": "no uri"}
    bad_unit = station(kind, unit="99999")
    for operation in ("create", "upsert"):
        r = client.post(f"{BASE}/entityOperations/{operation}", json=[good, bad_geo, bad_id],
                        headers=ld(admin_headers))
        found = problem(r, "BadRequestData", 400)
        assert [e["index"] for e in found["errors"]] == [1, 2]
        assert found["errors"][0]["entityId"] == bad_geo["id"] and "location" in str(found["errors"][0]["errors"])
        assert count(client, admin_headers, kind) == 0
    # A unit the kernel does not know is found after parsing: still the whole batch, still per entity.
    found = problem(client.post(f"{BASE}/entityOperations/upsert", json=[good, bad_unit], headers=ld(admin_headers)),
                    "BadRequestData", 400)
    assert found["errors"][0]["entityId"] == bad_unit["id"] and count(client, admin_headers, kind) == 0


def test_repeated_ids_and_non_array_bodies(client: TestClient, admin_headers) -> None:
    kind = new_type()
    twice = station(kind)
    found = problem(client.post(f"{BASE}/entityOperations/upsert", json=[twice, twice], headers=ld(admin_headers)),
                    "BadRequestData", 400)
    assert found["errors"][0]["index"] == 1
    problem(client.post(f"{BASE}/entityOperations/upsert", json={"id": "x"}, headers=ld(admin_headers)),
            "BadRequestData", 400)
    problem(client.post(f"{BASE}/entityOperations/upsert", json=[], headers=ld(admin_headers)), "BadRequestData", 400)
    no_context = station(kind, context=None)
    problem(client.post(f"{BASE}/entityOperations/upsert", json=[no_context], headers=ld(admin_headers)),
            "BadRequestData", 400)


def test_upsert_creates_then_replaces_or_merges(client: TestClient, admin_headers) -> None:
    kind = new_type()
    first = [station(kind) for _ in range(2)]
    r = client.post(f"{BASE}/entityOperations/upsert", json=first, headers=ld(admin_headers))
    assert r.status_code == 201 and r.json() == [e["id"] for e in first]
    replaced = {"id": first[0]["id"], "type": kind, "humidity": {"type": "Property", "value": 70}, "@context": CORE}
    r = client.post(f"{BASE}/entityOperations/upsert", json=[replaced], headers=ld(admin_headers))
    assert r.status_code == 204, r.text
    got = values(client, admin_headers, first[0]["id"])
    assert got["humidity"] == 70 and "temperature" not in got and "location" not in got
    assert got["administrativeUnit"] == first[0]["administrativeUnit"]["value"]  # the unit is kept
    merged = {"id": first[1]["id"], "type": kind, "humidity": {"type": "Property", "value": 71}, "@context": CORE}
    new = station(kind)
    r = client.post(f"{BASE}/entityOperations/upsert", params={"options": "update"}, json=[merged, new],
                    headers=ld(admin_headers))
    assert r.status_code == 201 and r.json() == [new["id"]]
    got = values(client, admin_headers, first[1]["id"])
    assert got["humidity"] == 71 and got["temperature"] == 21.5 and got["location"]["type"] == "Point"
    problem(client.post(f"{BASE}/entityOperations/upsert", params={"options": "merge"}, json=[new],
                        headers=ld(admin_headers)), "BadRequestData", 400)


def test_upsert_with_application_json_and_a_link_header(client: TestClient, admin_headers) -> None:
    kind = new_type()
    batch = [station(kind, context=None) for _ in range(3)]
    r = client.post(f"{BASE}/entityOperations/upsert", json=batch, headers=js(admin_headers, CORE))
    assert r.status_code == 201, r.text
    assert count(client, admin_headers, kind) == 3


def test_upsert_refuses_a_changed_type(client: TestClient, admin_headers) -> None:
    body = station(new_type())
    client.post(f"{BASE}/entityOperations/upsert", json=[body], headers=ld(admin_headers))
    changed = {**body, "type": new_type()}
    found = problem(client.post(f"{BASE}/entityOperations/upsert", json=[changed], headers=ld(admin_headers)),
                    "BadRequestData", 400)
    assert found["errors"][0]["entityId"] == body["id"]


def test_batch_update_appends_and_reports_missing(client: TestClient, admin_headers) -> None:
    kind = new_type()
    body = station(kind)
    client.post(f"{BASE}/entityOperations/create", json=[body], headers=ld(admin_headers))
    missing = urn(kind)
    change = [{"id": body["id"], "type": kind, "temperature": {"type": "Property", "value": 5},
               "humidity": {"type": "Property", "value": 60}, "@context": CORE},
              {"id": missing, "type": kind, "humidity": {"type": "Property", "value": 1}, "@context": CORE}]
    r = client.post(f"{BASE}/entityOperations/update", json=change, headers=ld(admin_headers))
    assert r.status_code == 207, r.text
    assert r.json()["success"] == [body["id"]] and r.json()["errors"][0]["entityId"] == missing
    got = values(client, admin_headers, body["id"])
    assert got["temperature"] == 5 and got["humidity"] == 60 and got["name"] == "Trạm Đà Lạt"
    keep = [{**change[0], "temperature": {"type": "Property", "value": 99}}]
    r = client.post(f"{BASE}/entityOperations/update", params={"options": "noOverwrite"}, json=keep,
                    headers=ld(admin_headers))
    assert r.status_code == 204 and values(client, admin_headers, body["id"])["temperature"] == 5
    assert count(client, admin_headers, kind) == 1


def test_batch_delete(client: TestClient, admin_headers, session_factory) -> None:
    kind = new_type()
    batch = [station(kind) for _ in range(3)]
    client.post(f"{BASE}/entityOperations/create", json=batch, headers=ld(admin_headers))
    ids = [batch[0]["id"], batch[1]["id"]]
    r = client.post(f"{BASE}/entityOperations/delete", json=ids, headers=ld(admin_headers))
    assert r.status_code == 204, r.text
    r = client.post(f"{BASE}/entityOperations/delete", json=[batch[2]["id"], urn(kind)], headers=ld(admin_headers))
    assert r.status_code == 207 and r.json()["success"] == [batch[2]["id"]]
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Entity).where(
            Entity.external_id.in_([e["id"] for e in batch]))) == 0
    problem(client.post(f"{BASE}/entityOperations/delete", json=["not a uri"], headers=ld(admin_headers)),
            "BadRequestData", 400)


def test_row_errors_name_the_position_in_the_request(client: TestClient, admin_headers) -> None:
    kind = new_type()
    existing = station(kind)
    client.post(f"{BASE}/entityOperations/create", json=[existing], headers=ld(admin_headers))
    batch = [existing, station(kind), station(kind, unit="99999")]
    found = problem(client.post(f"{BASE}/entityOperations/create", json=batch, headers=ld(admin_headers)),
                    "BadRequestData", 400)
    assert [(e["index"], e["entityId"]) for e in found["errors"]] == [(2, batch[2]["id"])]
    assert count(client, admin_headers, kind) == 1
