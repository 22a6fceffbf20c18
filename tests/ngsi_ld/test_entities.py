"""NGSI-LD entities over plain HTTP: create, retrieve, update, delete, @context handling and ProblemDetails."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from saola.core.audit.models import AuditEntry
from saola.core.entities.models import Entity
from saola.interop.ngsi_ld import convert
from saola.interop.ngsi_ld.context import core_context
from tests.conftest import unique
from tests.ngsi_ld.conftest import (
    BASE,
    CORE,
    DALAT,
    DALAT_WARD,
    LINK_REL,
    OTHER_WARD,
    js,
    ld,
    new_type,
    problem,
    station,
    urn,
)


def create(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> str:
    r = client.post(f"{BASE}/entities", json=body, headers=ld(headers))
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"{BASE}/entities/{body['id']}"
    return body["id"]


def get(client: TestClient, headers: dict[str, str], entity_id: str, **params: Any) -> dict[str, Any]:
    r = client.get(f"{BASE}/entities/{entity_id}", params=params, headers=ld(headers))
    assert r.status_code == 200, r.text
    return r.json()


# --- create and retrieve --------------------------------------------------------------------------------------


def test_constructor_probe_of_ngsildclient(client: TestClient, admin_headers) -> None:
    r = client.get(f"{BASE}/entities", params={"type": "None", "limit": 0, "count": "true"},
                   headers={**admin_headers, "Accept": "application/json"})
    assert r.status_code == 200 and r.json() == [] and r.headers["NGSILD-Results-Count"] == "0"


def test_create_and_retrieve_round_trip(client: TestClient, admin_headers) -> None:
    kind = new_type()
    body = station(kind)
    create(client, admin_headers, body)
    got = get(client, admin_headers, body["id"])
    assert got["@context"] == CORE and got["id"] == body["id"] and got["type"] == kind
    for name in ("temperature", "name", "refDevice", "location", "administrativeUnit"):
        assert got[name] == body[name], name
    assert "createdAt" not in got

    simple = get(client, admin_headers, body["id"], options="keyValues")
    assert simple["temperature"] == 21.5 and simple["refDevice"] == "urn:ngsi-ld:Device:dl-01"
    assert simple["location"] == {"type": "Point", "coordinates": DALAT} and simple["administrativeUnit"] == DALAT_WARD

    timed = get(client, admin_headers, body["id"], options="sysAttrs")
    assert timed["createdAt"].endswith("Z") and timed["temperature"]["modifiedAt"].endswith("Z")

    only = get(client, admin_headers, body["id"], attrs="temperature")
    assert set(only) == {"@context", "id", "type", "temperature"}


def test_entities_are_kernel_rows_with_audit(client: TestClient, admin_headers, session_factory) -> None:
    kind = new_type()
    entity_id = create(client, admin_headers, station(kind))
    with session_factory() as session:
        row = session.scalar(select(Entity).where(Entity.external_id == entity_id))
        assert row is not None and row.type == f"ngsi.{kind.lower()}" and row.unit_code == DALAT_WARD
        assert row.name == "Trạm Đà Lạt" and row.attributes["temperature"] == 21.5
        assert row.attributes["@ngsi"]["temperature"]["unitCode"] == "CEL"
        assert row.min_lon == DALAT[0] and row.geometry == {"type": "Point", "coordinates": DALAT}
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "entity.upsert_batch",
                                                        AuditEntry.target_id == str(row.id)))
        assert entry is not None
    kernel = client.get("/api/entities", params={"type": f"ngsi.{kind.lower()}"}, headers=admin_headers)
    assert kernel.status_code == 200 and kernel.json()["total"] == 1


def test_application_json_takes_the_context_from_the_link_header(client: TestClient, admin_headers) -> None:
    kind = new_type()
    body = station(kind, context=None)
    r = client.post(f"{BASE}/entities/", json=body, headers=js(admin_headers, CORE))
    assert r.status_code == 201, r.text
    r = client.get(f"{BASE}/entities/{body['id']}", headers=js(admin_headers))
    assert r.status_code == 200 and "@context" not in r.json()
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["Link"] == f'<{CORE}>; rel="{LINK_REL}"; type="application/ld+json"'


def test_inline_context_expands_and_compacts_terms(client: TestClient, admin_headers) -> None:
    kind = new_type()
    context = [{"pm": "https://example.org/air#pm25", "Sensor": f"https://example.org/air#{kind}"}, CORE]
    body = {"id": urn(kind), "type": "Sensor", "pm": {"type": "Property", "value": 12}, "@context": context}
    create(client, admin_headers, body)
    plain = get(client, admin_headers, body["id"])  # read with the core context: full IRIs
    assert plain["type"] == f"https://example.org/air#{kind}" and plain["https://example.org/air#pm25"]["value"] == 12
    r = client.get(f"{BASE}/entities", params={"type": f"https://example.org/air#{kind}"}, headers=ld(admin_headers))
    assert [e["id"] for e in r.json()] == [body["id"]]


def test_unknown_remote_context_is_503_never_fetched(client: TestClient, admin_headers) -> None:
    remote = "https://example.org/never-fetched/context.jsonld"
    r = client.get(f"{BASE}/entities", params={"type": "X"}, headers=js(admin_headers, remote))
    problem(r, "LdContextNotAvailable", 503)
    body = station(new_type(), context=[remote, CORE])
    problem(client.post(f"{BASE}/entities", json=body, headers=ld(admin_headers)), "LdContextNotAvailable", 503)


def test_ld_json_needs_a_context_in_the_body(client: TestClient, admin_headers) -> None:
    body = station(new_type(), context=None)
    problem(client.post(f"{BASE}/entities", json=body, headers=ld(admin_headers)), "BadRequestData", 400)
    with_context = station(new_type())
    r = client.post(f"{BASE}/entities", json=with_context, headers=js(admin_headers))
    problem(r, "BadRequestData", 400)


def test_unsupported_media_type_and_bad_json(client: TestClient, admin_headers) -> None:
    r = client.post(f"{BASE}/entities", content=b"<xml/>", headers={**admin_headers, "Content-Type": "text/xml"})
    assert r.status_code == 415 and r.json()["type"] == "urn:saola:errors:UnsupportedMediaType"
    r = client.post(f"{BASE}/entities", content=b"{not json", headers=ld(admin_headers))
    problem(r, "InvalidRequest", 400)


def test_duplicate_create_is_already_exists(client: TestClient, admin_headers) -> None:
    body = station(new_type())
    create(client, admin_headers, body)
    problem(client.post(f"{BASE}/entities", json=body, headers=ld(admin_headers)), "AlreadyExists", 409)
    other_type = {**body, "type": new_type()}
    problem(client.post(f"{BASE}/entities", json=other_type, headers=ld(admin_headers)), "AlreadyExists", 409)


def test_bad_entities_are_400_with_the_field(client: TestClient, admin_headers) -> None:
    kind = new_type()
    cases = [
        ({**station(kind), "id": "not a uri"}, "id"),
        ({k: v for k, v in station(kind).items() if k != "type"}, "type"),
        (station(kind, temperature={"type": "Propertyy", "value": 1}), "temperature"),
        (station(kind, temperature={"type": "Property"}), "temperature"),
        (station(kind, temperature={"type": "Property", "value": 1, "observedAt": "yesterday"}), "temperature"),
        (station(kind, refDevice={"type": "Relationship", "object": "no uri"}), "refDevice"),
        (station(kind, location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [200, 1]}}),
         "location"),
        (station(kind, administrativeUnit={"type": "Property", "value": "not a code!"}), "administrativeUnit"),
        (station(kind, temperature=[{"type": "Property", "value": 1, "datasetId": "urn:a"},
                                    {"type": "Property", "value": 2, "datasetId": "urn:b"}]), "temperature"),
        (station(kind, note={"type": "Property", "value": "bad\x00text"}), "note"),
    ]
    for body, field in cases:
        r = client.post(f"{BASE}/entities", json=body, headers=ld(admin_headers))
        found = problem(r, "BadRequestData", 400)
        assert any(field in e["loc"] for e in found["errors"]), (field, found)
    assert client.get(f"{BASE}/entities", params={"type": kind, "count": "true", "limit": 0},
                      headers=ld(admin_headers)).headers["NGSILD-Results-Count"] == "0"


def test_unknown_unit_is_400_and_outside_scope_is_403(client: TestClient, admin_headers, make_user) -> None:
    r = client.post(f"{BASE}/entities", json=station(new_type(), unit="99999"), headers=ld(admin_headers))
    problem(r, "BadRequestData", 400)
    commune = make_user("integrator", DALAT_WARD)
    r = client.post(f"{BASE}/entities", json=station(new_type(), unit=OTHER_WARD), headers=ld(commune))
    assert r.status_code == 403 and r.json()["type"] == "urn:saola:errors:Forbidden"


def test_unit_defaults_to_the_callers_scope(client: TestClient, make_user) -> None:
    commune = make_user("integrator", DALAT_WARD)
    body = station(new_type())
    del body["administrativeUnit"]
    create(client, commune, body)
    assert get(client, commune, body["id"])["administrativeUnit"]["value"] == DALAT_WARD


def test_missing_entity_is_404_resource_not_found(client: TestClient, admin_headers) -> None:
    missing = urn()
    problem(client.get(f"{BASE}/entities/{missing}", headers=ld(admin_headers)), "ResourceNotFound", 404)
    problem(client.delete(f"{BASE}/entities/{missing}", headers=admin_headers), "ResourceNotFound", 404)
    problem(client.get(f"{BASE}/entities/not-a-uri", headers=admin_headers), "BadRequestData", 400)


def test_credentials_and_scope(client: TestClient, admin_headers, make_user, make_source) -> None:
    body = station(new_type(), unit=OTHER_WARD)
    create(client, admin_headers, body)
    r = client.get(f"{BASE}/entities/{body['id']}")
    assert r.status_code == 401 and r.json()["type"] == "urn:saola:errors:Unauthorized"
    other_commune = make_user("viewer", DALAT_WARD)
    problem(client.get(f"{BASE}/entities/{body['id']}", headers=ld(other_commune)), "ResourceNotFound", 404)
    source = make_source(scope="68", allowed_writes=["entities:station.*"])
    r = client.post(f"{BASE}/entities", json=station(new_type()), headers=ld(source))
    assert r.status_code == 403, r.text
    allowed = make_source(scope="68", allowed_writes=["entities:ngsi.*"])
    create(client, allowed, station(new_type()))


def test_kernel_entities_read_as_ngsi_ld(client: TestClient, admin_headers, app) -> None:
    from saola.packs.definitions import EntityTypeDefinition

    kernel_type = f"test.ngsi{unique('k').lower()}"
    app.state.registry.entity_types[kernel_type] = EntityTypeDefinition(
        type=kernel_type, name_vi="Thử", name_en="Test", domain="test", geometry="Point")
    try:
        made = client.post("/api/entities", json={"type": kernel_type, "name": "Trạm cũ", "unit_code": DALAT_WARD,
                                                  "geometry": {"type": "Point", "coordinates": DALAT},
                                                  "attributes": {"operator": "Sở NN&MT"}}, headers=admin_headers)
        assert made.status_code == 201, made.text
        entity_id = f"urn:saola:entity:{made.json()['id']}"
        got = get(client, admin_headers, entity_id)
        assert got["type"] == kernel_type and got["name"]["value"] == "Trạm cũ"
        assert got["operator"] == {"type": "Property", "value": "Sở NN&MT"}
        # A pack's type is addressed by its own name: NGSI-LD writes land on the declared kernel type.
        body = station(kernel_type)
        create(client, admin_headers, body)
        listed = client.get(f"{BASE}/entities", params={"type": kernel_type}, headers=ld(admin_headers)).json()
        assert {e["id"] for e in listed} == {entity_id, body["id"]}
    finally:
        app.state.registry.entity_types.pop(kernel_type, None)


# --- updates --------------------------------------------------------------------------------------------------


def test_patch_attrs_updates_existing_and_reports_missing(client: TestClient, admin_headers) -> None:
    body = station(new_type())
    create(client, admin_headers, body)
    change = {"temperature": {"type": "Property", "value": 25.0, "observedAt": "2026-11-25T02:00:00Z"},
              "humidity": {"type": "Property", "value": 80}, "@context": CORE}
    r = client.patch(f"{BASE}/entities/{body['id']}/attrs", json=change, headers=ld(admin_headers))
    assert r.status_code == 207, r.text
    assert r.json() == {"updated": ["temperature"],
                        "notUpdated": [{"attributeName": "humidity", "reason": "attribute does not exist"}]}
    got = get(client, admin_headers, body["id"])
    assert got["temperature"] == change["temperature"] and "humidity" not in got
    r = client.patch(f"{BASE}/entities/{body['id']}/attrs", json={"temperature": 26.0, "@context": CORE},
                     headers=ld(admin_headers))
    assert r.status_code == 204, r.text
    assert get(client, admin_headers, body["id"], options="keyValues")["temperature"] == 26.0


def test_append_attrs_with_and_without_overwrite(client: TestClient, admin_headers) -> None:
    body = station(new_type())
    create(client, admin_headers, body)
    url = f"{BASE}/entities/{body['id']}/attrs"
    new = {"humidity": {"type": "Property", "value": 80}, "temperature": {"type": "Property", "value": 1},
           "@context": CORE}
    r = client.post(url, json=new, params={"options": "noOverwrite"}, headers=ld(admin_headers))
    assert r.status_code == 207 and r.json()["notUpdated"][0]["attributeName"] == "temperature"
    got = get(client, admin_headers, body["id"], options="keyValues")
    assert got["humidity"] == 80 and got["temperature"] == 21.5
    r = client.post(url + "/", json=new, headers=ld(admin_headers))
    assert r.status_code == 204, r.text
    assert get(client, admin_headers, body["id"], options="keyValues")["temperature"] == 1


def test_patch_one_attribute_keeps_the_other_members(client: TestClient, admin_headers) -> None:
    body = station(new_type())
    create(client, admin_headers, body)
    url = f"{BASE}/entities/{body['id']}/attrs/temperature"
    r = client.patch(url, json={"value": 30.5, "@context": CORE}, headers=ld(admin_headers))
    assert r.status_code == 204, r.text
    got = get(client, admin_headers, body["id"])["temperature"]
    assert got == {"type": "Property", "value": 30.5, "unitCode": "CEL", "observedAt": "2026-11-25T01:00:00Z"}
    r = client.patch(url, json={"observedAt": "2026-11-25T03:00:00Z", "@context": CORE}, headers=ld(admin_headers))
    assert r.status_code == 204, r.text
    assert get(client, admin_headers, body["id"])["temperature"]["observedAt"] == "2026-11-25T03:00:00Z"
    missing = f"{BASE}/entities/{body['id']}/attrs/nothing"
    problem(client.patch(missing, json={"value": 1, "@context": CORE}, headers=ld(admin_headers)),
            "ResourceNotFound", 404)


def test_location_and_unit_changes_reach_the_kernel_columns(client: TestClient, admin_headers,
                                                            session_factory) -> None:
    body = station(new_type())
    create(client, admin_headers, body)
    change = {"location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [107.08, 10.35]}},
              "administrativeUnit": {"type": "Property", "value": OTHER_WARD}, "@context": CORE}
    r = client.patch(f"{BASE}/entities/{body['id']}/attrs", json=change, headers=ld(admin_headers))
    assert r.status_code == 204, r.text
    with session_factory() as session:
        row = session.scalar(select(Entity).where(Entity.external_id == body["id"]))
        assert row is not None and row.unit_code == OTHER_WARD and row.min_lon == 107.08


def test_delete_attribute_and_entity(client: TestClient, admin_headers) -> None:
    body = station(new_type())
    create(client, admin_headers, body)
    r = client.delete(f"{BASE}/entities/{body['id']}/attrs/refDevice", headers=admin_headers)
    assert r.status_code == 204, r.text
    assert "refDevice" not in get(client, admin_headers, body["id"])
    problem(client.delete(f"{BASE}/entities/{body['id']}/attrs/refDevice", headers=admin_headers),
            "ResourceNotFound", 404)
    r = client.delete(f"{BASE}/entities/{body['id']}/attrs/location", headers=admin_headers)
    assert r.status_code == 204 and "location" not in get(client, admin_headers, body["id"])
    problem(client.delete(f"{BASE}/entities/{body['id']}/attrs/administrativeUnit", headers=admin_headers),
            "BadRequestData", 400)
    assert client.delete(f"{BASE}/entities/{body['id']}", headers=admin_headers).status_code == 204
    problem(client.get(f"{BASE}/entities/{body['id']}", headers=ld(admin_headers)), "ResourceNotFound", 404)


def test_types_endpoint_lists_types_in_scope(client: TestClient, admin_headers) -> None:
    kind = new_type()
    create(client, admin_headers, station(kind))
    r = client.get(f"{BASE}/types", headers=ld(admin_headers))
    assert r.status_code == 200 and kind in r.json()["typeList"]


def test_core_context_is_served_from_the_package(client: TestClient) -> None:
    r = client.get(f"{BASE}/contexts/ngsi-ld-core-context.jsonld")
    assert r.status_code == 200 and r.json()["@context"]["@vocab"] == "https://uri.etsi.org/ngsi-ld/default-context/"


def test_attribute_timestamps_follow_their_own_changes(client: TestClient, admin_headers) -> None:
    import time

    body = station(new_type())
    create(client, admin_headers, body)
    before = get(client, admin_headers, body["id"], options="sysAttrs")
    assert before["temperature"]["createdAt"] == before["name"]["modifiedAt"] == before["modifiedAt"]
    time.sleep(0.01)
    change = {"temperature": {"type": "Property", "value": 1}, "@context": CORE}
    assert client.patch(f"{BASE}/entities/{body['id']}/attrs", json=change,
                        headers=ld(admin_headers)).status_code == 204
    after = get(client, admin_headers, body["id"], options="sysAttrs")
    assert after["name"]["modifiedAt"] == before["name"]["modifiedAt"]  # untouched
    assert after["temperature"]["createdAt"] == before["temperature"]["createdAt"]
    assert before["modifiedAt"] < after["temperature"]["modifiedAt"] <= after["modifiedAt"]
    assert after["createdAt"] == before["createdAt"]


def test_shortcut_attributes_read_as_the_general_path_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser's shortcuts (Property with a number or text, Relationship to one URI, GeoProperty Point) give the
    very attributes and errors the general path gives, and leave everything else to it."""
    observed = "2026-11-25T08:00:00+07:00"
    samples: dict[str, Any] = {
        "name": {"type": "Property", "value": "Trạm Đà Lạt"},
        "temperature": {"type": "Property", "value": 21.5, "unitCode": "CEL", "observedAt": observed},
        "count": {"type": "Property", "value": 3},
        "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:dl-01"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [108.44, 11.94, 1500]}},
        "area": {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [
            [[108.4, 11.9], [108.5, 11.9], [108.5, 12.0], [108.4, 11.9]]]}},
        "refTimed": {"type": "Relationship", "object": "urn:ngsi-ld:Device:1", "observedAt": observed},
        "refMany": {"type": "Relationship", "object": ["urn:a:1", "urn:a:2"]},
        "refBad": {"type": "Relationship", "object": "no uri"},
        "refSurrogate": {"type": "Relationship", "object": "urn:a:\ud800"},
        "textSurrogate": {"type": "Property", "value": "Đà \ud800"},
        "textNul": {"type": "Property", "value": "Đà\x00Lạt"},
        "geoFar": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [200, 1]}},
        "geoBool": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [True, 1]}},
        "geoExtra": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 1]}, "datasetId": "urn:d"},
    }

    def parse(name: str, raw: Any) -> tuple[Any, list[tuple[list[str | int], str]]]:
        errors: list[Any] = []
        entity = convert.parse_entity({"id": "urn:ngsi-ld:T:1", "type": "T", name: raw}, core_context(),
                                      loc=["body"], errors=errors, now="2026-11-25T01:00:00Z")
        return entity, [(e.loc, e.msg) for e in errors]

    shortcut = {name: parse(name, raw) for name, raw in samples.items()}
    monkeypatch.setattr(convert, "_plain_attribute", lambda *_args: None)
    general = {name: parse(name, raw) for name, raw in samples.items()}
    assert shortcut == general
    refused = {name for name, (entity, _) in general.items() if entity is None}
    assert refused == {"refBad", "refSurrogate", "textSurrogate", "textNul", "geoFar", "geoBool"}
