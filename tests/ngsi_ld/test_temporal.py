"""Numeric Properties with observedAt become kernel observations; the temporal API reads them back."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from saola.core.auth.context import system_actor
from saola.core.entities.models import Entity
from saola.core.indicators.schemas import IndicatorCreate
from saola.core.indicators.service import create_indicator
from saola.db.engine import transaction
from tests.conftest import unique
from tests.ngsi_ld.conftest import BASE, CORE, ld, new_type, problem, station

DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"


def indicator(session_factory: sessionmaker[Session], subject_kind: str = "entity") -> str:
    code = f"test.{unique('n')}"
    with transaction(session_factory) as session:
        create_indicator(session, actor=system_actor("test"), data=IndicatorCreate(
            code=code, name_vi="Bụi mịn thử", name_en="Test PM2.5", domain="test", unit="µg/m³",
            subject_kind=subject_kind, min_value=0, max_value=1000))  # type: ignore[arg-type]
    return code


def kernel_id(session_factory: sessionmaker[Session], entity_id: str) -> uuid.UUID:
    with session_factory() as session:
        found = session.scalar(select(Entity.id).where(Entity.external_id == entity_id))
    assert found is not None
    return found


def reading(code: str, value: float, hour: int) -> dict[str, object]:
    return {code: {"type": "Property", "value": value, "unitCode": "GQ", "observedAt": f"2026-11-25T0{hour}:00:00Z"}}


def test_observed_values_reach_the_kernel_and_the_temporal_api(client: TestClient, admin_headers,
                                                               session_factory) -> None:
    code = indicator(session_factory)
    body = station(new_type(), **reading(code, 12.0, 1))
    assert client.post(f"{BASE}/entities", json=body, headers=ld(admin_headers)).status_code == 201
    url = f"{BASE}/entities/{body['id']}/attrs"
    r = client.patch(url, json={**reading(code, 15.0, 2), "@context": CORE}, headers=ld(admin_headers))
    assert r.status_code == 204, r.text
    batch = [{"id": body["id"], "type": body["type"], **reading(code, 18.0, 3), "@context": CORE}]
    r = client.post(f"{BASE}/entityOperations/upsert", params={"options": "update"}, json=batch,
                    headers=ld(admin_headers))
    assert r.status_code == 204, r.text

    # The kernel's own API sees the three readings of this entity.
    entity = kernel_id(session_factory, body["id"])
    r = client.get("/api/observations", params={"indicator": code, "entity": str(entity), "bucket": "raw",
                                               "start": "2026-11-25T00:00:00Z", "end": "2026-11-25T06:00:00Z"},
                   headers=admin_headers)
    assert r.status_code == 200, r.text
    assert [(p["ts"], p["value"]) for p in r.json()["points"]] == [
        ("2026-11-25T01:00:00Z", 12.0), ("2026-11-25T02:00:00Z", 15.0), ("2026-11-25T03:00:00Z", 18.0)]

    temporal = f"{BASE}/temporal/entities/{body['id']}"
    r = client.get(temporal, params={"attrs": code}, headers=ld(admin_headers))
    assert r.status_code == 200, r.text
    instances = r.json()[code]
    assert [(i["value"], i["observedAt"]) for i in instances] == [
        (12.0, "2026-11-25T01:00:00Z"), (15.0, "2026-11-25T02:00:00Z"), (18.0, "2026-11-25T03:00:00Z")]
    assert instances[0]["type"] == "Property" and instances[0]["unitCode"] == "GQ"

    r = client.get(temporal, params={"attrs": code, "lastN": 2, "options": "temporalValues"},
                   headers=ld(admin_headers))
    assert r.json()[code] == {"type": "Property",
                              "values": [[15.0, "2026-11-25T02:00:00Z"], [18.0, "2026-11-25T03:00:00Z"]]}
    r = client.get(temporal, params={"attrs": code, "timerel": "after", "timeAt": "2026-11-25T01:30:00Z"},
                   headers=ld(admin_headers))
    assert [i["value"] for i in r.json()[code]] == [15.0, 18.0]
    r = client.get(temporal, params={"attrs": code, "timerel": "between", "timeAt": "2026-11-25T01:00:00Z",
                                     "endTimeAt": "2026-11-25T03:00:00Z"}, headers=ld(admin_headers))
    assert [i["value"] for i in r.json()[code]] == [12.0, 15.0]
    r = client.get(temporal, params={"timerel": "before", "timeAt": "2026-11-25T02:00:00Z"},
                   headers=ld(admin_headers))
    # Attributes without an indicator give their current instance when its observedAt passes the filter.
    assert [i["value"] for i in r.json()[code]] == [12.0] and r.json()["temperature"][0]["value"] == 21.5


def test_a_context_term_can_name_an_indicator(client: TestClient, admin_headers, session_factory) -> None:
    code = indicator(session_factory, subject_kind="any")
    context = [{"pm25": DEFAULT + code}, CORE]
    body = {"id": f"urn:ngsi-ld:AirQualityObserved:{unique('a')}", "type": "AirQualityObserved",
            "pm25": {"type": "Property", "value": 33, "observedAt": "2026-11-25T04:00:00Z"}, "@context": context}
    assert client.post(f"{BASE}/entities", json=body, headers=ld(admin_headers)).status_code == 201
    entity = kernel_id(session_factory, body["id"])
    r = client.get("/api/observations", params={"indicator": code, "entity": str(entity), "bucket": "raw",
                                               "start": "2026-11-25T00:00:00Z", "end": "2026-11-25T06:00:00Z"},
                   headers=admin_headers)
    assert [p["value"] for p in r.json()["points"]] == [33.0]


def test_bad_observations_reject_the_write(client: TestClient, admin_headers, session_factory) -> None:
    code = indicator(session_factory)
    kind = new_type()
    text_value = station(kind, **{code: {"type": "Property", "value": "high", "observedAt": "2026-11-25T01:00:00Z"}})
    future = station(kind, **{code: {"type": "Property", "value": 1, "observedAt": "2099-01-01T00:00:00Z"}})
    for body in (text_value, future):
        found = problem(client.post(f"{BASE}/entityOperations/upsert", json=[body], headers=ld(admin_headers)),
                        "BadRequestData", 400)
        assert found["errors"][0]["entityId"] == body["id"]
    r = client.get(f"{BASE}/entities", params={"type": kind, "count": "true", "limit": 0}, headers=ld(admin_headers))
    assert r.headers["NGSILD-Results-Count"] == "0"


def test_unit_indicators_are_left_alone(client: TestClient, admin_headers, session_factory) -> None:
    code = indicator(session_factory, subject_kind="unit")
    body = station(new_type(), **reading(code, 5.0, 1))
    assert client.post(f"{BASE}/entities", json=body, headers=ld(admin_headers)).status_code == 201
    r = client.get(f"{BASE}/temporal/entities/{body['id']}", params={"attrs": code}, headers=ld(admin_headers))
    assert r.json()[code][0]["value"] == 5.0  # the current instance only


def test_temporal_parameter_errors(client: TestClient, admin_headers) -> None:
    body = station(new_type())
    client.post(f"{BASE}/entities", json=body, headers=ld(admin_headers))
    url = f"{BASE}/temporal/entities/{body['id']}"
    for params in ({"timerel": "during", "timeAt": "2026-11-25T00:00:00Z"}, {"timerel": "after"},
                   {"timerel": "between", "timeAt": "2026-11-25T00:00:00Z"},
                   {"timerel": "after", "timeAt": "yesterday"}, {"lastN": "-1"}):
        problem(client.get(url, params=params, headers=ld(admin_headers)), "BadRequestData", 400)
    problem(client.get(f"{BASE}/temporal/entities/urn:ngsi-ld:X:none", headers=ld(admin_headers)),
            "ResourceNotFound", 404)


def test_entities_with_readings_are_kept(client: TestClient, admin_headers, session_factory) -> None:
    code = indicator(session_factory)
    body = station(new_type(), **reading(code, 12.0, 1))
    other = station(body["type"])
    r = client.post(f"{BASE}/entityOperations/create", json=[body, other], headers=ld(admin_headers))
    assert r.status_code == 201, r.text
    found = client.delete(f"{BASE}/entities/{body['id']}", headers=admin_headers)
    assert found.status_code == 409 and found.json()["type"] == "urn:saola:errors:Conflict"
    r = client.post(f"{BASE}/entityOperations/delete", json=[other["id"], body["id"]], headers=ld(admin_headers))
    assert r.status_code == 409 and [e["entityId"] for e in r.json()["errors"]] == [body["id"]]
    assert client.get(f"{BASE}/entities/{other['id']}", headers=ld(admin_headers)).status_code == 200
