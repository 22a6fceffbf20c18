"""NGSI-LD queries over plain HTTP: type, id, idPattern, q, attrs, paging, count and geo-queries."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.ngsi_ld.conftest import BASE, ld, new_type, problem, station

# Four stations around Đà Lạt's centre (108.44, 11.94): distances about 0, 1.1 km, 5.5 km and 55 km.
PLACES = {"centre": (108.44, 11.94), "near": (108.45, 11.94), "town": (108.49, 11.94), "far": (108.94, 11.94)}


@pytest.fixture(scope="module")
def town(client_module: TestClient, headers_module: dict[str, str]) -> dict[str, Any]:
    """One type with four stations, written once for the module."""
    kind = new_type("Q")
    ids: dict[str, str] = {}
    batch = []
    for n, (label, (lon, lat)) in enumerate(PLACES.items()):
        body = station(kind, f"urn:ngsi-ld:{kind}:{label}", lon=lon, lat=lat,
                       temperature={"type": "Property", "value": 20 + n, "observedAt": f"2026-11-25T0{n}:00:00Z",
                                    "accuracy": {"type": "Property", "value": 0.5 * n}},
                       status={"type": "Property", "value": "ok" if n % 2 == 0 else "down"},
                       address={"type": "Property", "value": {"city": "Đà Lạt" if n < 3 else "Bảo Lộc"}})
        ids[label] = body["id"]
        batch.append(body)
    r = client_module.post(f"{BASE}/entityOperations/create", json=batch, headers=ld(headers_module))
    assert r.status_code == 201, r.text
    return {"type": kind, "ids": ids}


@pytest.fixture(scope="module")
def client_module(app):  # type: ignore[no-untyped-def]
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def headers_module(client_module: TestClient, session_factory) -> dict[str, str]:
    from saola.core.auth.context import system_actor
    from saola.core.auth.service import create_user
    from saola.db.engine import transaction
    from tests.conftest import unique

    username, password = unique("u"), "password-" + unique()
    with transaction(session_factory) as session:
        create_user(session, actor=system_actor("test"), username=username, password=password, role="admin",
                    scope="VN")
    r = client_module.post("/api/auth/token", data={"username": username, "password": password})
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def ids(client: TestClient, headers: dict[str, str], town: dict[str, Any], **params: Any) -> list[str]:
    r = client.get(f"{BASE}/entities", params={"type": town["type"], **params}, headers=ld(headers))
    assert r.status_code == 200, r.text
    back = {v: k for k, v in town["ids"].items()}
    return [back[e["id"]] for e in r.json()]


def test_query_by_type_pages_in_a_stable_order(client_module, headers_module, town) -> None:
    assert ids(client_module, headers_module, town) == ["centre", "near", "town", "far"]
    assert ids(client_module, headers_module, town, limit=2, offset=1) == ["near", "town"]
    r = client_module.get(f"{BASE}/entities", params={"type": town["type"], "count": "true", "limit": 1},
                          headers=ld(headers_module))
    assert r.headers["NGSILD-Results-Count"] == "4" and len(r.json()) == 1


def test_query_by_ids_and_pattern(client_module, headers_module, town) -> None:
    wanted = f"{town['ids']['near']},{town['ids']['far']}"
    assert ids(client_module, headers_module, town, id=wanted) == ["near", "far"]
    assert ids(client_module, headers_module, town, idPattern=f".*:{town['type']}:(near|town)") == ["near", "town"]
    r = client_module.get(f"{BASE}/entities", params={"idPattern": f"urn:ngsi-ld:{town['type']}:.*", "count": "true"},
                          headers=ld(headers_module))
    assert r.headers["NGSILD-Results-Count"] == "4"


@pytest.mark.parametrize(("q", "expected"), [
    ("temperature>21", ["town", "far"]),
    ("temperature>=21;temperature<23", ["near", "town"]),
    ("temperature==20|temperature==23", ["centre", "far"]),
    ("temperature==21,22", ["near", "town"]),
    ("temperature==21..22", ["near", "town"]),
    ("temperature!=20", ["near", "town", "far"]),
    ('status=="down"', ["near", "far"]),
    ("status==ok", ["centre", "town"]),
    ('status~="^d"', ["near", "far"]),
    ("(status==ok|temperature==23);temperature>20", ["town", "far"]),
    ("temperature.accuracy>0.6", ["town", "far"]),
    ("temperature.observedAt>=2026-11-25T02:00:00Z", ["town", "far"]),
    ('address[city]=="Bảo Lộc"', ["far"]),
    ("humidity", []),
    ("refDevice==urn:ngsi-ld:Device:dl-01;temperature<21", ["centre"]),
    ("administrativeUnit==24781;temperature==20", ["centre"]),
])
def test_q_language(client_module, headers_module, town, q: str, expected: list[str]) -> None:
    assert ids(client_module, headers_module, town, q=q) == expected


@pytest.mark.parametrize("q", ["temperature>>1", "(temperature==1", "temperature==", '"x"==1',
                               'status~="(a+)+$"', "temperature==1..2..3x" + "x" * 2000])
def test_bad_q_is_400(client_module, headers_module, town, q: str) -> None:
    r = client_module.get(f"{BASE}/entities", params={"type": town["type"], "q": q}, headers=ld(headers_module))
    problem(r, "BadRequestData", 400)


def test_attrs_projects_and_selects(client_module, headers_module, town) -> None:
    r = client_module.get(f"{BASE}/entities", params={"type": town["type"], "attrs": "status,humidity"},
                          headers=ld(headers_module))
    assert r.status_code == 200 and all(set(e) == {"id", "type", "status", "@context"} for e in r.json())
    r = client_module.get(f"{BASE}/entities", params={"type": town["type"], "attrs": "humidity"},
                          headers=ld(headers_module))
    assert r.json() == []
    simple = client_module.get(f"{BASE}/entities", params={"type": town["type"], "options": "keyValues",
                                                          "attrs": "temperature", "limit": 1},
                               headers=ld(headers_module)).json()
    assert simple[0]["temperature"] == 20


@pytest.mark.parametrize(("params", "expected"), [
    ({"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": "[108.44,11.94]"},
     ["centre", "near"]),
    ({"georel": "near;maxDistance==10000", "geometry": "Point", "coordinates": "[108.44,11.94]"},
     ["centre", "near", "town"]),
    ({"georel": "near;minDistance==2000", "geometry": "Point", "coordinates": "[108.44,11.94]"}, ["town", "far"]),
    ({"georel": "within", "geometry": "Polygon",
      "coordinates": "[[[108.43,11.9],[108.5,11.9],[108.5,12.0],[108.43,12.0],[108.43,11.9]]]"},
     ["centre", "near", "town"]),
    ({"georel": "intersects", "geometry": "Polygon",
      "coordinates": "[[[108.9,11.9],[109.0,11.9],[109.0,12.0],[108.9,12.0],[108.9,11.9]]]"}, ["far"]),
    ({"georel": "disjoint", "geometry": "Polygon",
      "coordinates": "[[[108.9,11.9],[109.0,11.9],[109.0,12.0],[108.9,12.0],[108.9,11.9]]]"},
     ["centre", "near", "town"]),
    ({"georel": "equals", "geometry": "Point", "coordinates": "[108.49,11.94]"}, ["town"]),
])
def test_geo_queries(client_module, headers_module, town, params: dict[str, str], expected: list[str]) -> None:
    assert ids(client_module, headers_module, town, **params) == expected


def test_geo_query_combines_with_q_and_count(client_module, headers_module, town) -> None:
    r = client_module.get(f"{BASE}/entities", params={
        "type": town["type"], "georel": "near;maxDistance==10000", "geometry": "Point",
        "coordinates": "[108.44,11.94]", "q": "temperature>20", "count": "true"}, headers=ld(headers_module))
    assert r.headers["NGSILD-Results-Count"] == "2" and len(r.json()) == 2


@pytest.mark.parametrize("params", [
    {"georel": "near", "geometry": "Point", "coordinates": "[108.44,11.94]"},
    {"georel": "near;maxDistance==10", "geometry": "Polygon",
     "coordinates": "[[[108.43,11.9],[108.5,11.9],[108.5,12.0],[108.43,11.9]]]"},
    {"georel": "inside", "geometry": "Point", "coordinates": "[108.44,11.94]"},
    {"georel": "within", "geometry": "Point", "coordinates": "[200,11.94]"},
    {"georel": "within", "geometry": "Point", "coordinates": "not json"},
    {"georel": "within", "geometry": "Point"},
])
def test_bad_geo_queries_are_400(client_module, headers_module, town, params: dict[str, str]) -> None:
    r = client_module.get(f"{BASE}/entities", params={"type": town["type"], **params}, headers=ld(headers_module))
    problem(r, "BadRequestData", 400)


def test_query_parameter_errors(client_module, headers_module, town) -> None:
    problem(client_module.get(f"{BASE}/entities", headers=ld(headers_module)), "BadRequestData", 400)
    problem(client_module.get(f"{BASE}/entities", params={"type": town["type"], "limit": 1001},
                              headers=ld(headers_module)), "TooManyResults", 403)
    problem(client_module.get(f"{BASE}/entities", params={"type": town["type"], "limit": 0},
                              headers=ld(headers_module)), "BadRequestData", 400)
    problem(client_module.get(f"{BASE}/entities", params={"type": town["type"], "limit": "x"},
                              headers=ld(headers_module)), "BadRequestData", 400)
    problem(client_module.get(f"{BASE}/entities", params={"idPattern": "(a*)*b"}, headers=ld(headers_module)),
            "BadRequestData", 400)
