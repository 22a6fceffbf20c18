"""Events: declared types, time and place checks, idempotent bulk ingestion, scope, and append-only storage."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from saola.core.audit.models import AuditEntry
from saola.core.auth.context import Actor
from saola.core.errors import ValidationFailed
from saola.core.events.models import Event
from saola.core.events.service import emit
from saola.db.engine import transaction
from saola.db.outbox import OutboxEntry
from saola.packs.definitions import EntityTypeDefinition, EventTypeDefinition
from saola.packs.manager import Registry
from tests.conftest import unique

DALAT_WARD, OTHER_DALAT_WARD, VUNG_TAU_WARD = "24781", "24787", "26506"

TEST_EVENT_TYPES = [
    EventTypeDefinition(type="test.alarm", name_vi="Báo động thử", name_en="Test alarm", domain="test",
                        default_severity="high"),
    EventTypeDefinition(type="test.notice", name_vi="Thông báo thử", name_en="Test notice", domain="test"),
]
TEST_ENTITY_TYPES = [
    EntityTypeDefinition(type="test.sensor", name_vi="Cảm biến thử", name_en="Test sensor", domain="test",
                         geometry="Point"),
]


@pytest.fixture(scope="module", autouse=True)
def declared_types(app) -> Iterator[Registry]:  # type: ignore[no-untyped-def]
    """Declare the event and entity types these tests use, for this module only.

    The registry is built once from the installed packs when the app is created (saola.packs.manager.get_registry,
    cached) and app.state.registry is that very object, so adding definitions here does what a test pack would do
    through the saola_event_types and saola_entity_types hooks, without installing one. Removed afterwards.
    """
    registry: Registry = app.state.registry
    added_events = [d for d in TEST_EVENT_TYPES if d.type not in registry.event_types]
    added_entities = [d for d in TEST_ENTITY_TYPES if d.type not in registry.entity_types]
    for d in added_events:
        registry.event_types[d.type] = d
    for e in added_entities:
        registry.entity_types[e.type] = e
    yield registry
    for d in added_events:
        registry.event_types.pop(d.type, None)
    for e in added_entities:
        registry.entity_types.pop(e.type, None)


def ago(minutes: float = 0) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


def event(**over: Any) -> dict[str, Any]:
    return {"type": "test.alarm", "occurred_at": ago(1), "unit_code": DALAT_WARD, "title": "Xâm nhập trái phép",
            **over}


def post(client: TestClient, headers: dict[str, str], *items: dict[str, Any]) -> Any:
    return client.post("/api/events", json={"items": list(items)}, headers=headers)


def locs(response: Any) -> list[list[Any]]:
    return [e["loc"] for e in response.json()["errors"]]


def sensor(client: TestClient, headers: dict[str, str], unit: str = DALAT_WARD,
           coords: tuple[float, float] = (108.44, 11.94)) -> str:
    r = client.post("/api/entities", headers=headers, json={
        "type": "test.sensor", "name": f"Cảm biến {unique()}", "unit_code": unit,
        "geometry": {"type": "Point", "coordinates": list(coords)}})
    assert r.status_code == 201, r.text
    return r.json()["id"]


# --- recording ------------------------------------------------------------------------------------------------


def test_emit_and_read_back(client: TestClient, admin_headers) -> None:
    r = post(client, admin_headers, event(data={"camera": "C-01", "confidence": 0.93}),
             event(type="test.notice"), event(severity="low"))
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["accepted"] == 3 and result["duplicates"] == 0 and len(result["ids"]) == 3
    alarm, notice, low = (client.get(f"/api/events/{i}", headers=admin_headers).json() for i in result["ids"])
    assert alarm["severity"] == "high"  # the type's default
    assert notice["severity"] == "info" and low["severity"] == "low"
    assert alarm["data"] == {"camera": "C-01", "confidence": 0.93} and alarm["unit_code"] == DALAT_WARD
    assert alarm["source_id"] is None and alarm["received_at"] >= alarm["occurred_at"]


def test_occurred_at_is_stored_in_utc(client: TestClient, admin_headers) -> None:
    local = (datetime.now(UTC) - timedelta(hours=2)).astimezone(ZoneInfo("Asia/Ho_Chi_Minh"))
    ids = post(client, admin_headers, event(occurred_at=local.isoformat())).json()["ids"]
    got = client.get(f"/api/events/{ids[0]}", headers=admin_headers).json()
    assert datetime.fromisoformat(got["occurred_at"]) == local


def test_one_outbox_row_per_batch_and_the_metric(client: TestClient, admin_headers, session_factory) -> None:
    before = REGISTRY.get_sample_value("saola_events_ingested_total") or 0
    ids = post(client, admin_headers, *[event(title=f"e{i}") for i in range(5)]).json()["ids"]
    with session_factory() as session:
        rows = session.scalars(select(OutboxEntry).where(OutboxEntry.topic == "events.ingested",
                                                         OutboxEntry.aggregate_id.in_(ids))).all()
    assert len(rows) == 1
    assert rows[0].payload["count"] == 5 and rows[0].payload["ids"] == ids
    assert rows[0].payload["units"] == [DALAT_WARD] and rows[0].payload["max_severity"] == "high"
    assert (REGISTRY.get_sample_value("saola_events_ingested_total") or 0) - before == 5


def test_user_emits_are_audited(client: TestClient, make_user, session_factory) -> None:
    headers = make_user("operator", "68")
    name = client.get("/api/auth/me", headers=headers).json()["name"]
    post(client, headers, event(), event())
    with session_factory() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.actor_name == name,
                                                        AuditEntry.action == "event.emit"))
    assert entry is not None and entry.detail["count"] == 2


# --- validation -----------------------------------------------------------------------------------------------


def test_undeclared_type_is_422(client: TestClient, admin_headers) -> None:
    r = post(client, admin_headers, event(), event(type="test.nobody-declared-this"))
    assert r.status_code == 422 and locs(r) == [["body", "items", 1, "type"]]


@pytest.mark.parametrize(
    "when",
    [
        "1969-12-31T23:59:59+00:00",
        "1900-01-01T00:00:00+07:00",
        "0001-01-01T00:00:00+05:00",
        "tomorrow+5min",  # computed when the test runs, not when it is collected
        "9999-12-31T23:59:59-12:00",
        "2025-01-01T00:00:00",  # no time zone
    ],
)
def test_occurred_at_must_be_sensible(client: TestClient, admin_headers, when: str) -> None:
    if when == "tomorrow+5min":
        when = (datetime.now(UTC) + timedelta(days=1, minutes=5)).isoformat()
    r = post(client, admin_headers, event(occurred_at=when))
    assert r.status_code == 422, r.text
    assert locs(r) == [["body", "items", 0, "occurred_at"]]


def test_a_little_clock_skew_is_fine(client: TestClient, admin_headers) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=23)).isoformat()
    assert post(client, admin_headers, event(occurred_at=soon)).status_code == 200


def test_place_is_checked(client: TestClient, admin_headers, make_user) -> None:
    r = post(client, admin_headers, event(unit_code="99999"))
    assert r.status_code == 422 and locs(r) == [["body", "items", 0, "unit_code"]]
    r = post(client, admin_headers, event(lon=108.4))
    assert r.status_code == 422 and locs(r) == [["body", "items", 0, "lat"]]
    r = post(client, admin_headers, event(lon=200, lat=11))
    assert r.status_code == 422 and locs(r)[0] == ["body", "items", 0, "lon"]
    r = post(client, admin_headers, event(entity_id=str(uuid.uuid4())))
    assert r.status_code == 422 and locs(r) == [["body", "items", 0, "entity_id"]]
    r = post(client, admin_headers, {**event(), "colour": "red"})
    assert r.status_code == 422 and locs(r) == [["body", "items", 0, "colour"]]


def test_entity_must_be_in_scope_and_lends_its_position(client: TestClient, admin_headers, make_user) -> None:
    in_vungtau = sensor(client, admin_headers, VUNG_TAU_WARD, (107.08, 10.35))
    in_dalat = sensor(client, admin_headers)
    headers = make_user("operator", "68")
    r = post(client, headers, event(entity_id=in_vungtau))
    assert r.status_code == 422 and locs(r) == [["body", "items", 0, "entity_id"]]
    ids = post(client, headers, event(entity_id=in_dalat), event(entity_id=in_dalat, lon=108.5, lat=12.0)).json()[
        "ids"]
    first, second = (client.get(f"/api/events/{i}", headers=headers).json() for i in ids)
    assert (first["lon"], first["lat"]) == (108.44, 11.94) and (second["lon"], second["lat"]) == (108.5, 12.0)
    assert first["entity_id"] == in_dalat


def test_batch_is_all_or_nothing(client: TestClient, make_source, session_factory) -> None:
    key = make_source("68")
    marks = [unique("ev") for _ in range(3)]
    r = post(client, key, event(external_id=marks[0]), event(external_id=marks[1], occurred_at="1960-01-01T00:00Z"),
             event(external_id=marks[2]))
    assert r.status_code == 422 and locs(r) == [["body", "items", 1, "occurred_at"]]
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Event).where(Event.external_id.in_(marks))) == 0


def test_batch_size_limits(client: TestClient, admin_headers) -> None:
    assert post(client, admin_headers).status_code == 422
    r = client.post("/api/events", json={"items": [event()] * 10_001}, headers=admin_headers)
    assert r.status_code == 422 and locs(r) == [["body", "items"]]


def test_bulk_of_ten_thousand(client: TestClient, make_source) -> None:
    key = make_source("68")
    tag = unique("bulk")
    items = [event(external_id=f"{tag}-{i}", occurred_at=ago(i / 60)) for i in range(10_000)]
    r = client.post("/api/events", json={"items": items}, headers=key)
    assert r.status_code == 200 and r.json()["accepted"] == 10_000
    again = client.post("/api/events", json={"items": items[:100]}, headers=key).json()
    assert again["accepted"] == 0 and again["duplicates"] == 100


# --- idempotency ----------------------------------------------------------------------------------------------


def test_resending_is_harmless(client: TestClient, make_source, session_factory) -> None:
    key, other = make_source("68"), make_source("68")
    mark = unique("ev")
    first = post(client, key, event(external_id=mark)).json()
    assert first["accepted"] == 1
    again = post(client, key, event(external_id=mark), event(external_id=mark + "-b"), event(external_id=mark + "-b"))
    assert again.status_code == 200
    body = again.json()
    assert body["accepted"] == 1 and body["duplicates"] == 2
    assert body["ids"][0] == first["ids"][0] and body["ids"][1] == body["ids"][2]
    # the key is per sender: another source's event with the same external_id is a different event
    assert post(client, other, event(external_id=mark)).json()["accepted"] == 1
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Event).where(Event.external_id == mark)) == 2


def test_user_resend_is_harmless_too(client: TestClient, admin_headers) -> None:
    mark = unique("ev")
    first = post(client, admin_headers, event(external_id=mark)).json()
    assert first["accepted"] == 1
    assert post(client, admin_headers, event(external_id=mark)).json() == {
        "accepted": 0, "duplicates": 1, "ids": first["ids"]}


# --- rights and scope -----------------------------------------------------------------------------------------


def test_who_may_emit(client: TestClient, make_user, make_source) -> None:
    assert post(client, make_user("viewer", "VN"), event()).status_code == 403
    assert post(client, make_user("leader", "68"), event()).status_code == 403
    staff = make_user("agency_staff", DALAT_WARD)
    assert post(client, staff, event()).status_code == 200
    assert post(client, staff, event(unit_code=OTHER_DALAT_WARD)).status_code == 403
    assert post(client, staff, event(unit_code="68")).status_code == 403
    alarms_only = make_source("68", ["events:test.alarm"])
    assert post(client, alarms_only, event()).status_code == 200
    assert post(client, alarms_only, event(), event(type="test.notice")).status_code == 403
    assert post(client, alarms_only, event(unit_code=VUNG_TAU_WARD)).status_code == 403
    no_events = make_source("68", ["observations:*"])
    assert post(client, no_events, event()).status_code == 403
    assert post(client, {}, event()).status_code == 401


def test_source_events_carry_the_source(client: TestClient, make_source) -> None:
    key = make_source("68")
    ids = post(client, key, event()).json()["ids"]
    # sources may not read events back (no events:read), but the admin sees the source on the event
    assert client.get(f"/api/events/{ids[0]}", headers=key).status_code == 403


def test_there_is_no_update_or_delete_route(client: TestClient, admin_headers) -> None:
    event_id = post(client, admin_headers, event()).json()["ids"][0]
    assert client.patch(f"/api/events/{event_id}", json={"title": "x"}, headers=admin_headers).status_code == 405
    assert client.delete(f"/api/events/{event_id}", headers=admin_headers).status_code == 405
    assert client.put(f"/api/events/{event_id}", json={}, headers=admin_headers).status_code == 405


def test_listing_filters_and_order(client: TestClient, admin_headers) -> None:
    entity = sensor(client, admin_headers)
    post(client, admin_headers,
         event(entity_id=entity, occurred_at=ago(30), title="a"),
         event(entity_id=entity, occurred_at=ago(20), title="b", type="test.notice", unit_code=OTHER_DALAT_WARD),
         event(entity_id=entity, occurred_at=ago(10), title="c", severity="critical", unit_code=VUNG_TAU_WARD))

    def titles(**params: Any) -> list[str]:
        r = client.get("/api/events", params={"entity": entity, **params}, headers=admin_headers)
        assert r.status_code == 200, r.text
        return [e["title"] for e in r.json()["items"]]

    assert titles() == ["c", "b", "a"]  # newest first
    assert titles(type="test.notice") == ["b"]
    assert titles(severity=["high", "critical"]) == ["c", "a"]
    assert titles(unit="68") == ["b", "a"]
    assert titles(unit=DALAT_WARD) == ["a"]
    assert titles(since=ago(25), until=ago(5)) == ["c", "b"]
    assert titles(until=ago(25)) == ["a"]
    page = client.get("/api/events", params={"entity": entity, "limit": 1, "offset": 1}, headers=admin_headers)
    assert page.json()["total"] == 3 and [e["title"] for e in page.json()["items"]] == ["b"]


def test_listing_refuses_bad_times(client: TestClient, admin_headers) -> None:
    for since in ["2025-01-01T00:00:00", "0001-01-01T00:00:00+05:00", "yesterday"]:
        r = client.get("/api/events", params={"since": since}, headers=admin_headers)
        assert r.status_code == 422, since
        assert locs(r)[0][:2] == ["query", "since"]
    assert client.get("/api/events", params={"severity": "urgent"}, headers=admin_headers).status_code == 422


def test_reads_are_limited_to_scope(client: TestClient, admin_headers, make_user) -> None:
    entity = sensor(client, admin_headers)
    ids = post(client, admin_headers, event(entity_id=entity, unit_code=DALAT_WARD),
               event(entity_id=entity, unit_code=VUNG_TAU_WARD)).json()["ids"]
    leader_79 = make_user("leader", "79")
    assert client.get(f"/api/events/{ids[0]}", headers=leader_79).status_code == 404
    assert client.get(f"/api/events/{ids[1]}", headers=leader_79).status_code == 200
    listing = client.get("/api/events", params={"entity": entity}, headers=leader_79).json()
    assert [e["id"] for e in listing["items"]] == [ids[1]] and listing["total"] == 1
    assert client.get("/api/events", params={"unit": "68"}, headers=leader_79).status_code == 404
    ward = make_user("viewer", OTHER_DALAT_WARD)
    assert client.get("/api/events", params={"entity": entity}, headers=ward).json()["total"] == 0
    assert client.get(f"/api/events/{uuid.uuid4()}", headers=admin_headers).status_code == 404


def test_entity_with_events_cannot_be_deleted(client: TestClient, admin_headers) -> None:
    entity = sensor(client, admin_headers)
    post(client, admin_headers, event(entity_id=entity))
    assert client.delete(f"/api/entities/{entity}", headers=admin_headers).status_code == 409
    assert client.get(f"/api/entities/{entity}", headers=admin_headers).status_code == 200


# --- the service, as packs call it --------------------------------------------------------------------------


def test_emit_accepts_plain_mappings(session_factory, system: Actor, declared_types: Registry) -> None:
    mark = unique("ev")
    item = {"type": "test.notice", "occurred_at": datetime.now(UTC), "unit_code": "68", "external_id": mark}
    with transaction(session_factory) as session:
        result = emit(session, actor=system, registry=declared_types, items=[item])
    assert result.accepted == 1
    with transaction(session_factory) as session, pytest.raises(ValidationFailed) as info:
        emit(session, actor=system, registry=declared_types, items=[item, {"type": "test.notice"}])
    assert sorted(e.loc[-1] for e in info.value.errors) == ["occurred_at", "unit_code"]
    assert all(e.loc[:3] == ["body", "items", 1] for e in info.value.errors)


# --- append-only storage --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET title = 'changed' WHERE external_id = :mark",
        "UPDATE events SET severity = 'info', occurred_at = received_at WHERE external_id = :mark",
        "DELETE FROM events WHERE external_id = :mark",
    ],
)
def test_database_refuses_changes_to_events(client: TestClient, admin_headers, session_factory,
                                            statement: str) -> None:
    """The triggers of migration 0002 hold whoever connects; the audit log's are tested in test_audit."""
    mark = unique("ev")
    assert post(client, admin_headers, event(external_id=mark)).status_code == 200
    count = select(func.count()).select_from(Event).where(Event.external_id == mark)
    with session_factory() as session:
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(text(statement), {"mark": mark})
        session.rollback()
        assert session.scalar(count) == 1
        assert session.scalar(select(Event.title).where(Event.external_id == mark)) == "Xâm nhập trái phép"


def test_bus_hears_each_new_event_after_commit(client: TestClient, admin_headers) -> None:
    from saola.bus import Message, get_bus

    heard: list[Message] = []
    unsubscribe = get_bus().subscribe("events.ingested", heard.append)
    try:
        r = post(client, admin_headers, event(title="mưa lớn"), event(title="sạt lở"))
        assert r.status_code == 200, r.text
    finally:
        unsubscribe()
    assert len(heard) == 1  # one message per batch, not per row
    items = heard[0].data["items"]
    assert [i["title"] for i in items] == ["mưa lớn", "sạt lở"]
    assert {i["id"] for i in items} == set(map(str, r.json()["ids"]))
    assert all(i["type"] == "test.alarm" and i["unit"] for i in items)
