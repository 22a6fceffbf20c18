"""GET /api/stream through a real uvicorn server and a browser-style EventSource client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest

from saola.bus import get_bus
from saola.core.stream import api as stream_api
from tests.ingest.conftest import T0, WARD, WARD2, SseClient, make_indicator, new_source, wait_for

URL = "/api/stream"


def readings(code: str, units: list[str], minute: int) -> list[dict[str, Any]]:
    return [{"indicator": code, "unit": u, "ts": (T0 + timedelta(minutes=minute, seconds=k)).isoformat(), "value": k}
            for k, u in enumerate(units)]


def post(base: str, source, items: list[dict[str, Any]]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = httpx.post(f"{base}/api/ingest/observations", json={"items": items}, headers=source.headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def streams() -> Iterator[list[SseClient]]:
    opened: list[SseClient] = []
    yield opened
    for s in opened:
        s.close()


def open_stream(streams: list[SseClient], base: str, headers: dict[str, str], query: str = "",
                last_event_id: str | None = None) -> SseClient:
    client = SseClient(f"{base}{URL}{query}", headers)
    streams.append(client)
    return client.open(last_event_id)


def units_of(event) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(i["unit"] for i in orjson.loads(event.data)["items"])


def test_an_observation_batch_arrives_live_as_one_event(live_server, session_factory, user_headers, streams) -> None:
    code = make_indicator(session_factory)
    source = new_source(session_factory)
    sse = open_stream(streams, live_server, user_headers("operator", "68"), "?topics=observations")
    assert sse.status == 200
    result = post(live_server, source, readings(code, [WARD, WARD2, WARD], 0))
    event = sse.next(lambda e: code in e.data)
    data = orjson.loads(event.data)
    assert event.event == "observations" and event.id and data["topic"] == "observations.ingested"
    assert data["id"] == result["batch_id"] and len(data["items"]) == 3
    assert {"indicator", "unit", "entity", "ts", "value", "quality"} <= set(data["items"][0])


def test_items_are_filtered_by_the_users_scope(live_server, session_factory, user_headers, streams) -> None:
    code = make_indicator(session_factory)
    source = new_source(session_factory)
    ward_a = open_stream(streams, live_server, user_headers("agency_staff", WARD), "?topics=observations")
    ward_b = open_stream(streams, live_server, user_headers("agency_staff", WARD2), "?topics=observations")
    nation = open_stream(streams, live_server, user_headers("leader", "VN"), "?topics=observations")
    post(live_server, source, readings(code, [WARD, WARD2, WARD2], 0))
    assert units_of(ward_a.next(lambda e: code in e.data)) == [WARD]
    assert units_of(ward_b.next(lambda e: code in e.data)) == [WARD2, WARD2]
    assert units_of(nation.next(lambda e: code in e.data)) == [WARD, WARD2, WARD2]
    # A batch with nothing of ward A is not sent to ward A at all: the next event it gets is the one after.
    post(live_server, source, readings(code, [WARD2], 10))
    marker = post(live_server, source, readings(code, [WARD], 20))
    nxt = ward_a.next(lambda e: code in e.data)
    assert orjson.loads(nxt.data)["id"] == marker["batch_id"]


def test_topics_filter_and_alerts_by_unit(live_server, session_factory, user_headers, streams) -> None:
    code = make_indicator(session_factory)
    source = new_source(session_factory)
    alerts_a = open_stream(streams, live_server, user_headers("agency_staff", WARD), "?topics=alerts")
    everything = open_stream(streams, live_server, user_headers("admin", "VN"))
    post(live_server, source, readings(code, [WARD], 0))
    bus = get_bus()
    bus.publish("alerts.fired", {"alert_id": "a2", "unit_code": WARD2, "title": code})
    bus.publish("alerts.fired", {"alert_id": "a1", "unit_code": WARD, "title": code})
    bus.publish("cases.opened", {"case_id": "c1", "unit_code": WARD2, "unit_path": "VN.68." + WARD2, "title": code})
    bus.publish("alerts.fired", {"alert_id": "a0", "title": code})  # no unit: national users only
    first = alerts_a.next(lambda e: code in e.data)
    assert first.event == "alerts" and orjson.loads(first.data)["alert_id"] == "a1"
    seen = [everything.next(lambda e: code in e.data) for _ in range(5)]
    assert [e.event for e in seen] == ["observations", "alerts", "alerts", "cases", "alerts"]
    assert "outbox_id" not in orjson.loads(seen[1].data)


def test_reconnecting_with_last_event_id_replays_what_was_missed(live_server, session_factory, user_headers,
                                                                  streams) -> None:
    code = make_indicator(session_factory)
    source = new_source(session_factory)
    headers = user_headers("operator", "68")
    sse = open_stream(streams, live_server, headers, "?topics=observations")
    post(live_server, source, readings(code, [WARD], 0))
    first = sse.next(lambda e: code in e.data)
    sse.close()
    missed = [post(live_server, source, readings(code, [WARD, WARD2], m))["batch_id"] for m in (5, 6, 7)]
    again = open_stream(streams, live_server, headers, "?topics=observations", last_event_id=first.id)
    replayed = [orjson.loads(again.next(lambda e: code in e.data).data)["id"] for _ in missed]
    assert replayed == missed
    live = post(live_server, source, readings(code, [WARD], 9))["batch_id"]
    assert orjson.loads(again.next(lambda e: code in e.data).data)["id"] == live
    # An id from before the window (here: another run of the server) is told as a gap first.
    stale = open_stream(streams, live_server, headers, "?topics=observations", last_event_id="1-1")
    assert stale.next().event == "gap"


def test_heartbeats_move_last_event_id_past_messages_for_others(live_server, session_factory, user_headers, streams,
                                                                monkeypatch) -> None:
    monkeypatch.setattr(stream_api, "HEARTBEAT_SECONDS", 0.2)
    code = make_indicator(session_factory)
    source = new_source(session_factory)
    ward_a = open_stream(streams, live_server, user_headers("agency_staff", WARD), "?topics=observations")
    elsewhere = post(live_server, source, readings(code, [WARD2], 0))
    wait_for(lambda: ward_a.comments >= 3 and ward_a.last_id is not None)
    bus_id = next(m.id for m in get_bus().replay(None, 10_000).messages if m.data.get("id") == elsewhere["batch_id"])
    assert ward_a.events.empty() and ward_a.last_id is not None
    assert tuple(map(int, ward_a.last_id.split("-"))) >= tuple(map(int, bus_id.split("-")))


def test_access_token_in_the_query_and_refusals(live_server, session_factory, user_headers, streams) -> None:
    headers = user_headers("viewer", "68")
    token = headers["Authorization"].split()[1]
    assert open_stream(streams, live_server, {}, f"?access_token={token}").status == 200
    assert open_stream(streams, live_server, {}).status == 401
    assert open_stream(streams, live_server, headers, "?topics=weather").status == 422
    source = new_source(session_factory)
    assert open_stream(streams, live_server, source.headers).status == 403
    assert open_stream(streams, live_server, source.headers, "?topics=observations").status == 403


def test_the_stream_over_the_redis_bus(live_server, session_factory, user_headers, streams) -> None:
    import uuid

    import redis

    from saola.bus import set_bus
    from saola.bus.redis_stream import RedisBus

    code = make_indicator(session_factory)
    source = new_source(session_factory)
    headers = user_headers("operator", "68")
    original = get_bus()
    name = f"saola:test:{uuid.uuid4().hex[:8]}"
    bus = RedisBus("redis://127.0.0.1:6379/0", stream=name, block_ms=200)
    set_bus(bus)
    try:
        sse = open_stream(streams, live_server, headers, "?topics=observations")
        first = post(live_server, source, readings(code, [WARD], 0))
        event = sse.next(lambda e: code in e.data)
        assert orjson.loads(event.data)["id"] == first["batch_id"] and "-" in event.id
        sse.close()
        missed = post(live_server, source, readings(code, [WARD2], 1))
        again = open_stream(streams, live_server, headers, "?topics=observations", last_event_id=event.id)
        assert orjson.loads(again.next(lambda e: code in e.data).data)["id"] == missed["batch_id"]
    finally:
        set_bus(original)
        bus.close()
        redis.Redis.from_url("redis://127.0.0.1:6379/0").delete(name)
