"""Entities: declared types, GeoJSON checks, bulk upsert, scope on every read and write, audit and outbox."""

from __future__ import annotations

import json
import math
import re
import unicodedata
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from saola.core.audit.models import AuditEntry
from saola.core.auth.context import Actor, system_actor
from saola.core.entities import service as entity_service
from saola.core.entities.models import Entity
from saola.core.entities.schemas import EntityBatchResult, EntityCreate, Geometry
from saola.core.entities.service import parse_bbox, upsert_entities, validate_geometry
from saola.core.errors import Conflict, Forbidden, ValidationFailed
from saola.core.observations.models import Subject
from saola.core.text import fold
from saola.db.engine import transaction
from saola.db.outbox import OutboxEntry
from saola.packs.definitions import EntityTypeDefinition
from saola.packs.manager import Registry
from tests.conftest import unique

DALAT_WARD, OTHER_DALAT_WARD, VUNG_TAU_WARD = "24781", "24787", "26506"
DALAT = [108.44, 11.94]

TEST_ENTITY_TYPES = [
    EntityTypeDefinition(type="test.station", name_vi="Trạm thử", name_en="Test station", domain="test",
                         geometry="Point"),
    EntityTypeDefinition(type="test.parcel", name_vi="Thửa thử", name_en="Test parcel", domain="test"),
    EntityTypeDefinition(type="test.endpoint", name_vi="Điểm cuối thử", name_en="Test endpoint", domain="test",
                         geometry="none"),
]


@pytest.fixture(scope="module", autouse=True)
def declared_entity_types(app) -> Iterator[Registry]:  # type: ignore[no-untyped-def]
    """Declare the entity types these tests use, for this module only.

    The registry is built once from the installed packs when the app is created (saola.packs.manager.get_registry,
    cached) and app.state.registry is that very object, so adding definitions here is what a test pack would do
    through the saola_entity_types hook, without installing one. They are removed again afterwards.
    """
    registry: Registry = app.state.registry
    added = [d for d in TEST_ENTITY_TYPES if d.type not in registry.entity_types]
    for definition in added:
        registry.entity_types[definition.type] = definition
    yield registry
    for definition in added:
        registry.entity_types.pop(definition.type, None)


def point(lon: float = DALAT[0], lat: float = DALAT[1]) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


def square(lon: float, lat: float, size: float = 0.01) -> dict[str, Any]:
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    return {"type": "Polygon", "coordinates": [ring]}


def station(**over: Any) -> dict[str, Any]:
    body = {"type": "test.station", "name": f"Trạm quan trắc Đà Lạt {unique('n')}", "unit_code": DALAT_WARD,
            "geometry": point(), "attributes": {"operator": "Sở NN&MT"}}
    return {**body, **over}


def create(client: TestClient, headers: dict[str, str], **over: Any) -> dict[str, Any]:
    r = client.post("/api/entities", json=station(**over), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def locs(response: Any) -> list[list[Any]]:
    return [e["loc"] for e in response.json()["errors"]]


# --- create and read ----------------------------------------------------------------------------------------


def test_create_and_read_back(client: TestClient, admin_headers) -> None:
    made = create(client, admin_headers, external_id=unique("ext"))
    assert made["bbox"] == [DALAT[0], DALAT[1], DALAT[0], DALAT[1]]
    assert made["geometry"] == point() and made["unit_code"] == DALAT_WARD and made["source_id"] is None
    got = client.get(f"/api/entities/{made['id']}", headers=admin_headers)
    assert got.status_code == 200 and got.json() == made


def test_create_is_audited_and_announced_in_the_same_transaction(client: TestClient, make_user,
                                                                 session_factory) -> None:
    headers = make_user("integrator", "68")
    made = create(client, headers)
    me = client.get("/api/auth/me", headers=headers).json()["name"]
    with session_factory() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.target_id == made["id"]))
        change = session.scalar(select(OutboxEntry).where(OutboxEntry.aggregate_id == made["id"]))
    assert entry is not None and entry.action == "entity.create" and entry.actor_name == me
    assert change is not None and change.topic == "entities.created" and change.payload["type"] == "test.station"


def test_undeclared_type_is_refused(client: TestClient, admin_headers) -> None:
    r = client.post("/api/entities", json=station(type="test.nobody-declared-this"), headers=admin_headers)
    assert r.status_code == 422 and locs(r) == [["body", "type"]]


def test_unknown_unit_is_422_naming_the_field(client: TestClient, admin_headers) -> None:
    r = client.post("/api/entities", json=station(unit_code="99999"), headers=admin_headers)
    assert r.status_code == 422 and locs(r) == [["body", "unit_code"]]


def test_duplicate_external_id_is_a_conflict(client: TestClient, admin_headers) -> None:
    ext = unique("ext")
    create(client, admin_headers, external_id=ext)
    r = client.post("/api/entities", json=station(external_id=ext), headers=admin_headers)
    assert r.status_code == 409


def test_extra_fields_are_refused(client: TestClient, admin_headers) -> None:
    r = client.post("/api/entities", json={**station(), "colour": "red"}, headers=admin_headers)
    assert r.status_code == 422 and locs(r) == [["body", "colour"]]


def test_attributes_must_store_on_every_backend(client: TestClient, admin_headers) -> None:
    body = json.dumps(station(attributes={"x": math.nan}))  # NaN is not JSON, but Python's parser accepts it
    r = client.post("/api/entities", content=body, headers={**admin_headers, "Content-Type": "application/json"})
    assert r.status_code == 422 and locs(r)[0][:2] == ["body", "attributes"]
    r = client.post("/api/entities", json=station(name="bad\x00name"), headers=admin_headers)
    assert r.status_code == 422 and locs(r)[0][:2] == ["body", "name"]


# --- geometry -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("geometry", "loc"),
    [
        ({"type": "Point", "coordinates": [181, 11]}, ["body", "geometry", "coordinates", 0]),
        ({"type": "Point", "coordinates": [108, -91]}, ["body", "geometry", "coordinates", 1]),
        ({"type": "Point", "coordinates": [108]}, ["body", "geometry", "coordinates"]),
        ({"type": "Point", "coordinates": [[108, 11]]}, ["body", "geometry", "coordinates"]),
        ({"type": "Point", "coordinates": ["108", 11]}, ["body", "geometry", "coordinates", 0]),
        ({"type": "Point", "coordinates": [108, 11, 5, 6]}, ["body", "geometry", "coordinates"]),
        ({"type": "Point", "coordinates": [True, 11]}, ["body", "geometry", "coordinates", 0]),
        ({"type": "Point", "coordinates": [10**400, 11]}, ["body", "geometry", "coordinates", 0]),
    ],
)
def test_bad_point_is_422_with_the_path(client: TestClient, admin_headers, geometry, loc) -> None:
    r = client.post("/api/entities", json=station(geometry=geometry), headers=admin_headers)
    assert r.status_code == 422, r.text
    assert locs(r) == [loc]


@pytest.mark.parametrize(
    ("geometry", "loc"),
    [
        ({"type": "Polygon", "coordinates": [[[108, 11], [108.1, 11], [108.1, 11.1], [108, 11.1]]]},
         ["body", "geometry", "coordinates", 0]),  # not closed
        ({"type": "Polygon", "coordinates": [[[108, 11], [108.1, 11], [108, 11]]]},
         ["body", "geometry", "coordinates", 0]),  # too few positions
        ({"type": "Polygon", "coordinates": []}, ["body", "geometry", "coordinates"]),
        ({"type": "Polygon", "coordinates": [[[108, 11], [108.1, 11], [200, 11.1], [108, 11]]]},
         ["body", "geometry", "coordinates", 0, 2, 0]),
        ({"type": "LineString", "coordinates": [[108, 11]]}, ["body", "geometry", "coordinates"]),
        ({"type": "MultiPolygon", "coordinates": [[[[108, 11], [108.1, 11], [108.1, 11.1], [108, 11.2]]]]},
         ["body", "geometry", "coordinates", 0, 0]),
        ({"type": "MultiLineString", "coordinates": [[[108, 11], [108, 91]]]},
         ["body", "geometry", "coordinates", 0, 1, 1]),
        ({"type": "MultiPoint", "coordinates": [5]}, ["body", "geometry", "coordinates", 0]),
    ],
)
def test_bad_shapes_are_422_with_the_path(client: TestClient, admin_headers, geometry, loc) -> None:
    r = client.post("/api/entities", json=station(type="test.parcel", geometry=geometry), headers=admin_headers)
    assert r.status_code == 422, r.text
    assert locs(r) == [loc]


def test_unknown_geometry_type_is_refused_by_the_schema(client: TestClient, admin_headers) -> None:
    bad = {"type": "GeometryCollection", "coordinates": []}
    r = client.post("/api/entities", json=station(type="test.parcel", geometry=bad), headers=admin_headers)
    assert r.status_code == 422 and locs(r)[0][:3] == ["body", "geometry", "type"]


def test_non_finite_coordinates_are_refused(client: TestClient, admin_headers) -> None:
    body = json.dumps(station(geometry={"type": "Point", "coordinates": [math.inf, 11]}))
    r = client.post("/api/entities", content=body, headers={**admin_headers, "Content-Type": "application/json"})
    assert r.status_code == 422 and locs(r) == [["body", "geometry", "coordinates", 0]]


def test_type_definition_limits_the_geometry(client: TestClient, admin_headers) -> None:
    r = client.post("/api/entities", json=station(geometry=square(108.4, 11.9)), headers=admin_headers)
    assert r.status_code == 422 and locs(r) == [["body", "geometry", "type"]]
    r = client.post("/api/entities", json=station(type="test.endpoint"), headers=admin_headers)
    assert r.status_code == 422 and locs(r) == [["body", "geometry"]]
    made = create(client, admin_headers, type="test.endpoint", geometry=None)
    assert made["geometry"] is None and made["bbox"] is None


def test_polygons_with_holes_and_multipolygons_get_a_bbox(client: TestClient, admin_headers) -> None:
    outer = [[108.0, 11.0], [108.4, 11.0], [108.4, 11.4], [108.0, 11.4], [108.0, 11.0]]
    hole = [[108.1, 11.1], [108.2, 11.1], [108.2, 11.2], [108.1, 11.1]]
    multi = {"type": "MultiPolygon", "coordinates": [[outer, hole], square(108.5, 11.5, 0.5)["coordinates"]]}
    made = create(client, admin_headers, type="test.parcel", geometry=multi)
    assert made["bbox"] == [108.0, 11.0, 109.0, 12.0]


def test_validate_geometry_is_usable_without_http() -> None:
    errors, bbox = validate_geometry({"type": "LineString", "coordinates": [[1, 2, 30], [3, -4]]}, loc=["g"])
    assert errors == [] and bbox == (1, -4, 3, 2)
    errors, bbox = validate_geometry({"type": "Circle", "coordinates": [1, 2]}, loc=["g"])
    assert bbox is None and errors[0].loc == ["g", "type"]
    errors, _ = validate_geometry({"type": "Point"}, loc=["g"])
    assert errors[0].loc == ["g", "coordinates"]


def test_parse_bbox() -> None:
    assert parse_bbox("108,11,109,12.5") == (108, 11, 109, 12.5)
    for bad in ["1,2,3", "a,b,c,d", "109,11,108,12", "0,0,0,nan", "-181,0,0,0", "0,-91,0,0", "1,2,3,4,5"]:
        with pytest.raises(ValidationFailed) as info:
            parse_bbox(bad)
        assert info.value.errors[0].loc == ["query", "bbox"]


# --- scope and rights -----------------------------------------------------------------------------------------


def test_viewer_cannot_write(client: TestClient, make_user, admin_headers) -> None:
    viewer = make_user("viewer", "VN")
    assert client.post("/api/entities", json=station(), headers=viewer).status_code == 403
    made = create(client, admin_headers)
    assert client.patch(f"/api/entities/{made['id']}", json={"name": "x"}, headers=viewer).status_code == 403
    assert client.delete(f"/api/entities/{made['id']}", headers=viewer).status_code == 403
    batch = {"items": [station(external_id=unique())]}
    assert client.post("/api/entities/batch", json=batch, headers=viewer).status_code == 403
    assert client.get(f"/api/entities/{made['id']}", headers=viewer).status_code == 200


def test_cannot_create_outside_scope(client: TestClient, make_user) -> None:
    headers = make_user("integrator", "68")
    r = client.post("/api/entities", json=station(unit_code=VUNG_TAU_WARD), headers=headers)
    assert r.status_code == 403
    r = client.post("/api/entities", json=station(unit_code="VN"), headers=headers)
    assert r.status_code == 403


def test_reads_are_limited_to_scope(client: TestClient, make_user, admin_headers) -> None:
    tag = unique("scope")
    dalat = create(client, admin_headers, name=f"Trạm {tag} a", unit_code=DALAT_WARD)
    other = create(client, admin_headers, name=f"Trạm {tag} b", unit_code=OTHER_DALAT_WARD)
    vungtau = create(client, admin_headers, name=f"Trạm {tag} c", unit_code=VUNG_TAU_WARD,
                     geometry=point(107.08, 10.35))
    leader_79 = make_user("leader", "79")
    assert client.get(f"/api/entities/{dalat['id']}", headers=leader_79).status_code == 404
    listing = client.get("/api/entities", params={"q": tag}, headers=leader_79).json()
    assert [e["id"] for e in listing["items"]] == [vungtau["id"]] and listing["total"] == 1
    ward_staff = make_user("agency_staff", DALAT_WARD)
    listing = client.get("/api/entities", params={"q": tag}, headers=ward_staff).json()
    assert [e["id"] for e in listing["items"]] == [dalat["id"]]
    assert client.get(f"/api/entities/{other['id']}", headers=ward_staff).status_code == 404
    # filtering by a unit outside the scope does not widen it
    assert client.get("/api/entities", params={"unit": "68"}, headers=ward_staff).status_code == 404
    geo = client.get("/api/entities.geojson", params={"q": tag}, headers=ward_staff).json()
    assert [f["id"] for f in geo["features"]] == [dalat["id"]]


def test_cannot_patch_or_delete_outside_scope(client: TestClient, make_user, admin_headers) -> None:
    made = create(client, admin_headers, unit_code=VUNG_TAU_WARD, geometry=point(107.08, 10.35))
    headers = make_user("integrator", "68")
    assert client.patch(f"/api/entities/{made['id']}", json={"name": "x"}, headers=headers).status_code == 404
    assert client.delete(f"/api/entities/{made['id']}", headers=headers).status_code == 404
    mine = create(client, headers)
    r = client.patch(f"/api/entities/{mine['id']}", json={"unit_code": VUNG_TAU_WARD}, headers=headers)
    assert r.status_code == 403
    r = client.patch(f"/api/entities/{mine['id']}", json={"unit_code": "99999"}, headers=headers)
    assert r.status_code == 422 and locs(r) == [["body", "unit_code"]]


def test_source_writes_only_allowed_types_in_scope(client: TestClient, make_source, admin_headers) -> None:
    key = make_source("68", ["entities:test.station"])
    made = create(client, key)
    assert made["source_id"] is not None
    assert client.post("/api/entities", json=station(type="test.parcel", geometry=square(108.4, 11.9)),
                       headers=key).status_code == 403
    assert client.post("/api/entities", json=station(unit_code=VUNG_TAU_WARD), headers=key).status_code == 403
    parcel = create(client, admin_headers, type="test.parcel", geometry=square(108.4, 11.9))
    assert client.patch(f"/api/entities/{parcel['id']}", json={"name": "x"}, headers=key).status_code == 403
    assert client.delete(f"/api/entities/{parcel['id']}", headers=key).status_code == 403
    batch = {"items": [station(type="test.parcel", external_id=unique(), geometry=square(108.4, 11.9))]}
    assert client.post("/api/entities/batch", json=batch, headers=key).status_code == 403
    assert client.patch(f"/api/entities/{made['id']}", json={"name": "Trạm mới"}, headers=key).status_code == 200


def test_agency_must_exist_in_scope(client: TestClient, admin_headers, make_user) -> None:
    code = unique("ag").lower()
    r = client.post("/api/agencies", json={"unit_code": "79", "code": code, "name": "Sở thử"}, headers=admin_headers)
    assert r.status_code == 201
    agency_79 = r.json()["id"]
    headers = make_user("integrator", "68")
    r = client.post("/api/entities", json=station(agency_id=agency_79), headers=headers)
    assert r.status_code == 422 and locs(r) == [["body", "agency_id"]]
    made = create(client, admin_headers, unit_code=VUNG_TAU_WARD, geometry=point(107.08, 10.35),
                  agency_id=agency_79)
    assert made["agency_id"] == agency_79


# --- change and delete ----------------------------------------------------------------------------------------


def test_patch_merges_attributes_and_recomputes_bbox(client: TestClient, admin_headers) -> None:
    made = create(client, admin_headers, type="test.parcel", attributes={"a": 1, "b": {"c": 2}})
    new_geometry = square(108.0, 11.0, 0.5)
    r = client.patch(f"/api/entities/{made['id']}", headers=admin_headers,
                     json={"attributes": {"a": None, "d": "mới"}, "geometry": new_geometry, "name": "Thửa Số 1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["attributes"] == {"b": {"c": 2}, "d": "mới"}
    assert body["bbox"] == [108.0, 11.0, 108.5, 11.5] and body["name"] == "Thửa Số 1"
    assert body["updated_at"] >= made["updated_at"]
    cleared = client.patch(f"/api/entities/{made['id']}", json={"geometry": None}, headers=admin_headers).json()
    assert cleared["geometry"] is None and cleared["bbox"] is None and cleared["name"] == "Thửa Số 1"


def test_patch_checks_geometry_and_is_audited(client: TestClient, admin_headers, session_factory) -> None:
    made = create(client, admin_headers)
    r = client.patch(f"/api/entities/{made['id']}", json={"geometry": square(108, 11)}, headers=admin_headers)
    assert r.status_code == 422 and locs(r) == [["body", "geometry", "type"]]
    r = client.patch(f"/api/entities/{made['id']}", json={"geometry": point(500, 1)}, headers=admin_headers)
    assert r.status_code == 422 and locs(r) == [["body", "geometry", "coordinates", 0]]
    assert client.patch(f"/api/entities/{made['id']}", json={"name": "Trạm B"}, headers=admin_headers).json()[
        "name"] == "Trạm B"
    with session_factory() as session:
        actions = session.scalars(select(AuditEntry.action).where(AuditEntry.target_id == made["id"])).all()
    assert sorted(actions) == ["entity.create", "entity.update"]


def test_delete_is_audited(client: TestClient, admin_headers, session_factory) -> None:
    made = create(client, admin_headers)
    assert client.delete(f"/api/entities/{made['id']}", headers=admin_headers).status_code == 204
    assert client.get(f"/api/entities/{made['id']}", headers=admin_headers).status_code == 404
    assert client.delete(f"/api/entities/{made['id']}", headers=admin_headers).status_code == 404
    with session_factory() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.target_id == made["id"],
                                                        AuditEntry.action == "entity.delete"))
        topics = session.scalars(select(OutboxEntry.topic).where(OutboxEntry.aggregate_id == made["id"])).all()
    assert entry is not None and entry.detail["name"] == made["name"]
    assert "entities.deleted" in topics


# --- listing --------------------------------------------------------------------------------------------------


def test_list_filters(client: TestClient, admin_headers) -> None:
    tag = unique("list")
    a = create(client, admin_headers, name=f"Trạm Hồ Xuân Hương {tag}", geometry=point(108.44, 11.94))
    b = create(client, admin_headers, name=f"Trạm Cam Ly {tag}", unit_code=OTHER_DALAT_WARD,
               geometry=point(108.42, 11.95))
    c = create(client, admin_headers, type="test.parcel", name=f"Thửa Vũng Tàu {tag}", unit_code=VUNG_TAU_WARD,
               geometry=square(107.08, 10.35))

    def ids(**params: Any) -> list[str]:
        r = client.get("/api/entities", params={"q": tag, **params}, headers=admin_headers)
        assert r.status_code == 200, r.text
        return sorted(e["id"] for e in r.json()["items"])

    assert ids() == sorted([a["id"], b["id"], c["id"]])
    assert ids(type="test.station") == sorted([a["id"], b["id"]])
    assert ids(unit="68") == sorted([a["id"], b["id"]])
    assert ids(unit=DALAT_WARD) == [a["id"]]
    assert ids(unit="79") == [c["id"]]
    assert ids(q=f"HO XUAN huong {tag}") == [a["id"]]  # diacritics and case ignored
    assert ids(bbox="108.43,11.93,108.45,11.945") == [a["id"]]
    assert ids(bbox="107.085,10.355,107.2,10.4") == [c["id"]]  # overlaps the square's corner
    assert ids(bbox="100,20,101,21") == []
    page = client.get("/api/entities", params={"q": tag, "limit": 2, "offset": 2}, headers=admin_headers).json()
    assert page["total"] == 3 and len(page["items"]) == 1
    r = client.get("/api/entities", params={"bbox": "1,2,3"}, headers=admin_headers)
    assert r.status_code == 422 and locs(r) == [["query", "bbox"]]


def test_geojson_for_maps(client: TestClient, admin_headers) -> None:
    tag = unique("geo")
    a = create(client, admin_headers, name=f"Trạm {tag}", attributes={"pm25": 12.5})
    create(client, admin_headers, type="test.endpoint", name=f"Điểm {tag}", geometry=None)
    r = client.get("/api/entities.geojson", params={"q": tag, "type": "test.station"}, headers=admin_headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and fc["numberMatched"] == 1 and fc["numberReturned"] == 1
    feature = fc["features"][0]
    assert feature == {"type": "Feature", "id": a["id"], "geometry": point(),
                       "properties": {"type": "test.station", "name": a["name"], "unit_code": DALAT_WARD,
                                      "external_id": None, "attributes": {"pm25": 12.5}}}


def test_reads_need_credentials(client: TestClient) -> None:
    assert client.get("/api/entities").status_code == 401
    assert client.get("/api/entities.geojson").status_code == 401


# --- batch upsert ---------------------------------------------------------------------------------------------


def test_batch_creates_then_replaces(client: TestClient, make_user, session_factory) -> None:
    headers = make_user("integrator", "68")
    keys = [unique("ext") for _ in range(3)]
    items = [station(external_id=k, name=f"Trạm {k}") for k in keys]
    r = client.post("/api/entities/batch", json={"items": items}, headers=headers)
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["created"] == 3 and first["updated"] == 0 and len(first["ids"]) == 3
    items[1] = {**items[1], "name": "Trạm đổi tên", "geometry": point(108.5, 12.0), "attributes": {"v": 2}}
    second = client.post("/api/entities/batch", json={"items": items}, headers=headers).json()
    assert second == {"created": 0, "updated": 3, "ids": first["ids"]}
    got = client.get(f"/api/entities/{first['ids'][1]}", headers=headers).json()
    assert got["name"] == "Trạm đổi tên" and got["bbox"] == [108.5, 12.0, 108.5, 12.0] and got["attributes"] == {
        "v": 2}
    with session_factory() as session:
        count = session.scalar(select(func.count()).select_from(Entity).where(Entity.external_id.in_(keys)))
        audits = session.scalars(select(AuditEntry.action).where(AuditEntry.action == "entity.upsert_batch",
                                                                 AuditEntry.target_id == "batch:3")).all()
    assert count == 3 and len(audits) >= 2


def test_batch_is_all_or_nothing_with_row_errors(client: TestClient, admin_headers, session_factory) -> None:
    keys = [unique("ext") for _ in range(4)]
    items = [
        station(external_id=keys[0]),
        station(external_id=keys[1], geometry=point(108, 95)),
        station(external_id=keys[2], type="test.undeclared"),
        station(external_id=keys[0]),
        station(external_id=None),
        station(external_id=keys[3], unit_code="99999"),
    ]
    r = client.post("/api/entities/batch", json={"items": items}, headers=admin_headers)
    assert r.status_code == 422
    assert sorted(map(str, locs(r))) == sorted(map(str, [
        ["body", "items", 1, "geometry", "coordinates", 1],
        ["body", "items", 2, "type"],
        ["body", "items", 3, "external_id"],
        ["body", "items", 4, "external_id"],
        ["body", "items", 5, "unit_code"],
    ]))
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Entity).where(Entity.external_id.in_(keys))) == 0


def test_batch_outside_scope_is_refused_whole(client: TestClient, make_user, admin_headers, session_factory) -> None:
    headers = make_user("integrator", "68")
    keys = [unique("ext"), unique("ext")]
    items = [station(external_id=keys[0]), station(external_id=keys[1], unit_code=VUNG_TAU_WARD)]
    assert client.post("/api/entities/batch", json={"items": items}, headers=headers).status_code == 403
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Entity).where(Entity.external_id.in_(keys))) == 0
    # an entity that already exists outside the scope cannot be taken over by re-sending its key
    taken = unique("ext")
    create(client, admin_headers, external_id=taken, unit_code=VUNG_TAU_WARD, geometry=point(107.08, 10.35))
    r = client.post("/api/entities/batch", json={"items": [station(external_id=taken)]}, headers=headers)
    assert r.status_code == 403


def test_batch_size_limits(client: TestClient, admin_headers) -> None:
    assert client.post("/api/entities/batch", json={"items": []}, headers=admin_headers).status_code == 422
    items = [{"type": "test.endpoint", "name": "x", "unit_code": "68", "external_id": str(i)} for i in range(10_001)]
    r = client.post("/api/entities/batch", json={"items": items}, headers=admin_headers)
    assert r.status_code == 422 and locs(r) == [["body", "items"]]


def test_batch_of_ten_thousand(client: TestClient, admin_headers) -> None:
    tag = unique("big")
    items = [{"type": "test.station", "name": f"Trạm {tag} {i}", "unit_code": DALAT_WARD, "external_id": f"{tag}-{i}",
              "geometry": point(108 + i / 100_000, 11.9)} for i in range(10_000)]
    r = client.post("/api/entities/batch", json={"items": items}, headers=admin_headers)
    assert r.status_code == 200 and r.json()["created"] == 10_000
    page = client.get("/api/entities", params={"q": tag, "limit": 1}, headers=admin_headers).json()
    assert page["total"] == 10_000


def test_text_a_database_cannot_store_is_422(client: TestClient, admin_headers) -> None:
    """PostgreSQL refuses NUL characters; they are caught at the door instead of failing as a 500."""
    r = client.get("/api/entities", params={"q": "a\x00b"}, headers=admin_headers)
    assert r.status_code == 422 and locs(r) == [["query", "q"]]
    r = client.post("/api/entities", json=station(external_id="x\x00y"), headers=admin_headers)
    assert r.status_code == 422 and locs(r)[0][:2] == ["body", "external_id"]
    r = client.post("/api/entities", json=station(attributes={"k\x00": 1}), headers=admin_headers)
    assert r.status_code == 422 and locs(r)[0][:2] == ["body", "attributes"]
    r = client.get("/api/entities", params={"offset": 10**20}, headers=admin_headers)
    assert r.status_code == 422


# --- the bulk write path of upsert_entities ---------------------------------------------------------------------


def _upsert(session_factory, registry: Registry, items: list[EntityCreate], actor: Actor | None = None
            ) -> EntityBatchResult:
    with transaction(session_factory) as session:
        return upsert_entities(session, actor=actor or system_actor("test"), registry=registry, items=items)


def _item(external_id: str, **over: Any) -> EntityCreate:
    return EntityCreate(**station(external_id=external_id, **over))


def _stored(session_factory, ids: list[uuid.UUID]) -> dict[uuid.UUID, Entity]:
    with session_factory() as session:
        return {e.id: e for e in session.scalars(select(Entity).where(Entity.id.in_(ids)))}


def test_batch_of_new_and_existing_entities_keeps_ids_order_and_creation_times(
    session_factory, declared_entity_types: Registry
) -> None:
    keys = [unique("ext") for _ in range(4)]
    first = _upsert(session_factory, declared_entity_types, [_item(keys[0]), _item(keys[2])])
    before = _stored(session_factory, first.ids)
    mixed = _upsert(session_factory, declared_entity_types, [_item(k, attributes={"round": 2}) for k in keys])
    assert (mixed.created, mixed.updated) == (2, 2)
    assert mixed.ids[0] == first.ids[0] and mixed.ids[2] == first.ids[1]
    assert len(set(mixed.ids)) == 4 and not set(mixed.ids[1::2]) & set(first.ids)
    after = _stored(session_factory, mixed.ids)
    for entity_id in first.ids:
        assert after[entity_id].created_at == before[entity_id].created_at
        assert after[entity_id].updated_at > before[entity_id].updated_at
        assert after[entity_id].origin_node == before[entity_id].origin_node
    assert [after[i].external_id for i in mixed.ids] == keys
    assert all(after[i].attributes == {"round": 2} and after[i].type == "test.station" for i in mixed.ids)
    assert all(after[i].created_at == after[i].updated_at for i in mixed.ids[1::2])


def test_batch_replace_writes_every_column(session_factory, declared_entity_types: Registry) -> None:
    key = unique("ext")
    created = _upsert(session_factory, declared_entity_types, [EntityCreate(
        type="test.parcel", name="Thửa  Đất   số 1", unit_code=DALAT_WARD, external_id=key,
        geometry=square(108.4, 11.9), attributes={"a": 1, "nested": {"list": [1, 2.5, "é", None, True]}})])
    entity = _stored(session_factory, created.ids)[created.ids[0]]
    assert entity.search_name == "thua dat so 1" == fold("Thửa  Đất   số 1")
    assert (entity.min_lon, entity.min_lat, entity.max_lon, entity.max_lat) == (108.4, 11.9, 108.4 + 0.01, 11.9 + 0.01)
    assert entity.attributes == {"a": 1, "nested": {"list": [1, 2.5, "é", None, True]}}
    # Replaced whole: no geometry (stored as JSON null, as the ORM stored it), no bounding box, attributes not
    # merged, another name and unit.
    replaced = _upsert(session_factory, declared_entity_types, [EntityCreate(
        type="test.parcel", name="Đường Trần Hưng Đạo", unit_code=OTHER_DALAT_WARD, external_id=key,
        attributes={"b": "hai"})])
    assert replaced.ids == created.ids and (replaced.created, replaced.updated) == (0, 1)
    entity = _stored(session_factory, created.ids)[created.ids[0]]
    assert entity.name == "Đường Trần Hưng Đạo" and entity.search_name == "duong tran hung dao"
    assert entity.geometry is None and entity.min_lon is entity.max_lat is None
    assert entity.unit_code == OTHER_DALAT_WARD and entity.attributes == {"b": "hai"}
    with session_factory() as session:
        stored_geometry = session.scalar(select(Entity.geometry.is_(None)).where(Entity.id == entity.id))
    assert stored_geometry is False  # JSON null, not SQL NULL
    # Integer coordinates: the bounding box holds floats, as the general walker gives them.
    again = _upsert(session_factory, declared_entity_types, [EntityCreate(
        type="test.parcel", name="x", unit_code=DALAT_WARD, external_id=key,
        geometry={"type": "Point", "coordinates": [108, 11, 1500]})])
    entity = _stored(session_factory, again.ids)[again.ids[0]]
    assert (entity.min_lon, entity.min_lat, entity.max_lon, entity.max_lat) == (108.0, 11.0, 108.0, 11.0)
    assert entity.geometry == {"type": "Point", "coordinates": [108, 11, 1500]}


def test_batch_moving_an_entity_moves_its_subjects(
    client: TestClient, admin_headers, session_factory, declared_entity_types: Registry
) -> None:
    keys = [unique("ext") for _ in range(3)]
    first = _upsert(session_factory, declared_entity_types, [_item(k) for k in keys])
    with transaction(session_factory) as session:
        session.add_all([Subject(key=f"e:{eid}", kind="entity", unit_code=DALAT_WARD, entity_id=eid)
                         for eid in first.ids])

    def units() -> list[str]:
        with session_factory() as session:
            found = dict(session.execute(select(Subject.entity_id, Subject.unit_code)
                                         .where(Subject.entity_id.in_(first.ids))).all())
        return [found[eid] for eid in first.ids]

    moved = [_item(keys[0], unit_code=OTHER_DALAT_WARD), _item(keys[1]), _item(keys[2], unit_code=VUNG_TAU_WARD,
                                                                          geometry=point(107.08, 10.35))]
    assert _upsert(session_factory, declared_entity_types, moved).ids == first.ids
    assert units() == [OTHER_DALAT_WARD, DALAT_WARD, VUNG_TAU_WARD]
    # One entity changed through the API moves its subject the same way.
    r = client.patch(f"/api/entities/{first.ids[1]}", json={"unit_code": OTHER_DALAT_WARD}, headers=admin_headers)
    assert r.status_code == 200, r.text
    assert units() == [OTHER_DALAT_WARD, OTHER_DALAT_WARD, VUNG_TAU_WARD]


def test_batch_of_several_types_and_more_ids_than_one_lookup_chunk(
    session_factory, declared_entity_types: Registry
) -> None:
    tag = unique("many")
    items = [EntityCreate(type="test.endpoint" if i % 3 else "test.station", name=f"Điểm {tag} {i}",
                          unit_code=DALAT_WARD, external_id=f"{tag}-{i}",
                          geometry=None if i % 3 else point(108 + i / 10_000, 11.9)) for i in range(1_200)]
    first = _upsert(session_factory, declared_entity_types, items)
    assert (first.created, first.updated) == (1_200, 0)
    # The same external id under another type is another entity.
    items.append(EntityCreate(type="test.endpoint", name="again", unit_code=DALAT_WARD, external_id=f"{tag}-0"))
    second = _upsert(session_factory, declared_entity_types, items)
    assert (second.created, second.updated) == (1, 1_200) and second.ids[:-1] == first.ids


def test_batch_refuses_an_existing_entity_outside_the_scope_before_writing(
    client: TestClient, admin_headers, session_factory, declared_entity_types: Registry
) -> None:
    taken, fresh = unique("ext"), unique("ext")
    create(client, admin_headers, external_id=taken, unit_code=VUNG_TAU_WARD, geometry=point(107.08, 10.35))
    lam_dong = Actor(kind="user", id=None, name="lam-dong", role="integrator", scope_code="68", scope_path="VN.68",
                     permissions=frozenset({"entities:write"}))
    with pytest.raises(Forbidden):
        _upsert(session_factory, declared_entity_types, [_item(fresh), _item(taken)], actor=lam_dong)
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Entity).where(Entity.external_id == fresh)) == 0


def test_batch_point_shortcut_leaves_bad_points_to_the_walker(session_factory, declared_entity_types: Registry
                                                             ) -> None:
    bad = [[10**400, 11], [True, 11], [108, 91], [108, 11, math.inf], [108], "108,11"]
    # Built without validation, as a door that checked its input may build them.
    items = [EntityCreate.model_construct(**{**station(external_id=unique("ext")),
                                             "geometry": Geometry.model_construct(type="Point", coordinates=c)})
             for c in bad]
    with pytest.raises(ValidationFailed) as caught:
        _upsert(session_factory, declared_entity_types, items)
    found = {tuple(e.loc[2:]): e.msg for e in caught.value.errors}
    assert found == {
        (0, "geometry", "coordinates", 0): "coordinates must be finite numbers",
        (1, "geometry", "coordinates", 0): "coordinates must be numbers",
        (2, "geometry", "coordinates", 1): "latitude 91.0 is outside [-90, 90]",
        (3, "geometry", "coordinates", 2): "coordinates must be finite numbers",
        (4, "geometry", "coordinates"): "a position is [longitude, latitude] or [longitude, latitude, altitude]",
        (5, "geometry", "coordinates"): "a position is [longitude, latitude] or [longitude, latitude, altitude]",
    }


def test_batch_replacing_an_entity_deleted_meanwhile_is_a_conflict(
    session_factory, declared_entity_types: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = unique("ext")
    gone = uuid.uuid4()  # what the look-up found, deleted by another transaction before the write
    monkeypatch.setattr(entity_service, "_existing", lambda *_a: {("test.station", key): (gone, DALAT_WARD)})
    with pytest.raises(Conflict):
        _upsert(session_factory, declared_entity_types, [_item(key)])
    monkeypatch.undo()
    assert _upsert(session_factory, declared_entity_types, [_item(key)]).created == 1


def _reference_fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    bare = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return re.sub(r"\s+", " ", bare.casefold()).strip()


def test_search_names_fold_as_the_reference_does() -> None:
    """fold's shortcuts (ASCII, a translate table, str.split) give what the plain definition gives."""
    samples = ["Trạm quan trắc Đà Lạt 1", "  ĐƯỜNG\tTrần\u00a0Hưng  Đạo\n", "Straße İstanbul ǅ ﬁ", "e\u0301\u0308x",
               "plain ASCII  text ", "", "\u2003\u3000", "Ồ Ở Ỡ Ợ ư ứ ừ ử ữ ự", "ﾃｽﾄ \U0001d400 \u0483"]
    samples += [f"x{chr(cp)} Y{chr(cp)}" for cp in range(0, 0x3000)]
    for text in samples:
        assert fold(text) == _reference_fold(text), repr(text)
