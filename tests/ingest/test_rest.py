"""The native REST doors: gzip, limits, malformed bodies, row errors, idempotent re-sends, scope and permissions."""

from __future__ import annotations

import gzip
from datetime import timedelta
from typing import Any

import orjson
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from saola.core.events.models import Event
from tests.ingest.conftest import OTHER, T0, WARD, WARD2, make_indicator, new_source, stored

OBS = "/api/ingest/observations"
EVENTS = "/api/ingest/events"


def readings(code: str, n: int, unit: str = WARD, start: int = 0) -> list[dict[str, Any]]:
    return [{"indicator": code, "unit": unit, "ts": (T0 + timedelta(minutes=start + k)).isoformat(), "value": k / 2}
            for k in range(n)]


def post(client: TestClient, path: str, body: Any, headers: dict[str, str], *, gz: bool = False,
         raw: bytes | None = None) -> Any:
    data = raw if raw is not None else orjson.dumps(body)
    hdrs = {"Content-Type": "application/json", **headers}
    if gz:
        data = gzip.compress(data)
        hdrs["Content-Encoding"] = "gzip"
    return client.post(path, content=data, headers=hdrs)


def test_gzip_batch_is_ingested(client: TestClient, session_factory) -> None:
    code = make_indicator(session_factory)
    source = new_source(session_factory)
    r = post(client, OBS, {"items": readings(code, 500)}, source.headers, gz=True)
    assert r.status_code == 200, r.text
    assert (r.json()["accepted"], r.json()["duplicates"]) == (500, 0)
    assert stored(session_factory, code) == 500
    # A bare JSON array is a batch too.
    r = post(client, OBS, readings(code, 3, start=1000), source.headers)
    assert r.status_code == 200 and r.json()["accepted"] == 3


def test_resending_the_same_batch_or_item_creates_no_duplicate(client: TestClient, session_factory) -> None:
    code = make_indicator(session_factory)
    source = new_source(session_factory)
    batch = {"items": readings(code, 50)}
    first = post(client, OBS, batch, source.headers).json()
    again = post(client, OBS, batch, source.headers, gz=True).json()
    assert (first["accepted"], first["duplicates"]) == (50, 0)
    assert (again["accepted"], again["duplicates"]) == (0, 50)
    # One old item inside a new batch: only the new ones are stored.
    mixed = post(client, OBS, {"items": [*readings(code, 1), *readings(code, 5, start=100)]}, source.headers).json()
    assert (mixed["accepted"], mixed["duplicates"]) == (5, 1)
    assert stored(session_factory, code) == 55


def test_oversized_body_and_gzip_bomb_get_413(client: TestClient, session_factory, settings) -> None:
    source = new_source(session_factory)
    limit = settings.max_body_bytes
    r = client.post(OBS, content=b"[" + b" " * limit + b"]", headers={**source.headers,
                                                                       "Content-Type": "application/json"})
    assert r.status_code == 413
    bomb = gzip.compress(b"[" + b" " * (limit + 1024) + b"]", compresslevel=9)
    assert len(bomb) < limit // 100
    r = client.post(OBS, content=bomb, headers={**source.headers, "Content-Type": "application/json",
                                                "Content-Encoding": "gzip"})
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"


def test_too_many_items_malformed_json_and_nan_get_422(client: TestClient, session_factory) -> None:
    code = make_indicator(session_factory)
    source = new_source(session_factory)
    r = post(client, OBS, {"items": readings(code, 10_001)}, source.headers, gz=True)
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "items"] and "10001" in r.json()["detail"]
    for raw in (b'{"items": [', b'{"items": [{"indicator": "x", "value": NaN}]}', b"", b'{"items": 1e999}'):
        r = post(client, OBS, None, source.headers, raw=raw)
        assert r.status_code == 422, raw
        assert r.json()["errors"][0]["loc"] == ["body"] and "JSON" in r.json()["detail"]
    for body, loc in (({"items": []}, ["body", "items"]), ({"rows": []}, ["body", "rows"]),
                      ({"items": {"a": 1}}, ["body", "items"]), ({}, ["body", "items"])):
        r = post(client, OBS, body, source.headers)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == loc, body
    assert stored(session_factory, code) == 0


def test_a_batch_with_bad_rows_is_refused_whole_with_row_paths(client: TestClient, session_factory) -> None:
    code = make_indicator(session_factory)
    source = new_source(session_factory)
    items = readings(code, 10)
    items[2]["value"] = "high"
    items[5]["unit"] = "99999"
    items[7]["ts"] = "2026-09-01T00:00:00"  # no time zone
    del items[8]["indicator"]
    r = post(client, OBS, {"items": items}, source.headers)
    assert r.status_code == 422
    locs = {tuple(e["loc"]) for e in r.json()["errors"]}
    assert {("body", "items", 2, "value"), ("body", "items", 5, "unit"), ("body", "items", 7, "ts"),
            ("body", "items", 8, "indicator")} <= locs
    assert all(e["loc"][:2] == ["body", "items"] for e in r.json()["errors"])
    assert stored(session_factory, code) == 0


def test_scope_and_allowed_writes_are_enforced(client: TestClient, session_factory) -> None:
    code = make_indicator(session_factory)
    ward_source = new_source(session_factory, scope=WARD)
    r = post(client, OBS, {"items": [*readings(code, 2), *readings(code, 2, unit=WARD2)]}, ward_source.headers)
    assert r.status_code == 403 and WARD2 in r.json()["detail"]
    env_only = new_source(session_factory, allowed_writes=["observations:env.*"])
    r = post(client, OBS, {"items": readings(code, 2)}, env_only.headers)
    assert r.status_code == 403 and code in r.json()["detail"]
    other_province = new_source(session_factory, scope="79")
    assert post(client, OBS, {"items": readings(code, 1)}, other_province.headers).status_code == 403
    assert post(client, OBS, {"items": readings(code, 1, unit=OTHER)}, other_province.headers).status_code == 200
    assert stored(session_factory, code) == 1


def test_people_and_strangers_are_turned_away(client: TestClient, session_factory, admin_headers) -> None:
    code = make_indicator(session_factory)
    r = post(client, OBS, {"items": readings(code, 1)}, admin_headers)
    assert r.status_code == 403 and "POST /api/observations" in r.json()["detail"]
    assert post(client, OBS, {"items": readings(code, 1)}, {}).status_code == 401
    assert post(client, OBS, {"items": readings(code, 1)}, {"X-API-Key": "sk_000000000000_nope-nope-nope-nope-nope"}
                ).status_code == 401
    # The key is checked before the body is read: a stranger's garbage is a 401, not a parse error.
    assert post(client, OBS, None, {}, raw=b"{{{").status_code == 401


def test_wrong_media_type_and_broken_gzip(client: TestClient, session_factory) -> None:
    source = new_source(session_factory)
    r = client.post(OBS, content=b"a,b\n1,2\n", headers={**source.headers, "Content-Type": "text/csv"})
    assert r.status_code == 415
    r = client.post(OBS, content=b"[]", headers={**source.headers, "Content-Encoding": "br"})
    assert r.status_code == 415
    r = client.post(OBS, content=b"not gzip at all", headers={**source.headers, "Content-Encoding": "gzip"})
    assert r.status_code == 400 and "gzip" in r.json()["detail"]
    r = client.post(OBS, content=gzip.compress(b'{"items": []}')[:-6],
                    headers={**source.headers, "Content-Encoding": "gzip"})
    assert r.status_code == 400


def events(n: int, unit: str = WARD, **extra: Any) -> list[dict[str, Any]]:
    return [{"type": "test.ping", "occurred_at": (T0 + timedelta(seconds=k)).isoformat(), "unit_code": unit,
             "title": f"ping {k}", **extra} for k in range(n)]


def count_events(session_factory, source_id: int) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(Event).where(Event.source_id == source_id)) or 0


def test_events_door_is_idempotent_with_or_without_external_ids(client: TestClient, session_factory,
                                                                 monkeypatch) -> None:
    from saola.packs.definitions import EventTypeDefinition

    registry = client.app.state.registry  # type: ignore[attr-defined]
    monkeypatch.setitem(registry.event_types, "test.ping", EventTypeDefinition(
        type="test.ping", name_vi="Thử", name_en="Ping", domain="test"))
    source = new_source(session_factory)
    body = {"items": [*events(3), *[{**e, "external_id": f"x{k}"} for k, e in enumerate(events(2, unit=WARD2))]]}
    first = post(client, EVENTS, body, source.headers, gz=True)
    assert first.status_code == 200, first.text
    assert (first.json()["accepted"], first.json()["duplicates"]) == (5, 0)
    again = post(client, EVENTS, body, source.headers).json()
    assert (again["accepted"], again["duplicates"]) == (0, 5) and again["ids"] == first.json()["ids"]
    assert count_events(session_factory, source.id) == 5
    bad = events(3)
    bad[1]["occurred_at"] = "yesterday"
    bad[2]["type"] = "test.unknown"
    r = post(client, EVENTS, {"items": bad}, source.headers)
    assert r.status_code == 422
    assert {tuple(e["loc"][:3]) for e in r.json()["errors"]} == {("body", "items", 1), ("body", "items", 2)}
    assert count_events(session_factory, source.id) == 5
