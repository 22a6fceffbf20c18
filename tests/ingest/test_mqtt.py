"""The MQTT door against the real Mosquitto broker: paho publishes, Saola subscribes, stores or dead-letters."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient

from saola.core.sources.service import set_active
from saola.interop.mqtt.door import MqttDoor, parse_url, stop_doors
from tests.ingest.conftest import T0, WARD, WARD2, make_indicator, new_source, stored, wait_for

BROKER = "mqtt://127.0.0.1:1883"


def publish(topic: str, payload: Any, qos: int = 1) -> None:
    """Publish with a fresh paho client and wait until the broker has it."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv311)
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    try:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        info = client.publish(topic, data, qos=qos)
        info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def wipe_session(client_id: str) -> None:
    """Connect once with a clean start so the broker forgets a persistent session."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", 1883, clean_start=True)
    client.disconnect()


def reading(code: str, minute: int, value: Any = 1.5, unit: str = WARD) -> dict[str, Any]:
    return {"indicator": code, "unit": unit, "ts": (T0 + timedelta(minutes=minute)).isoformat(), "value": value}


def start_door(settings, session_factory, **kw: Any) -> MqttDoor:  # type: ignore[no-untyped-def]
    door = MqttDoor(BROKER, session_factory=session_factory, settings=settings,
                    client_id=kw.pop("client_id", f"saola-test-{uuid.uuid4().hex[:8]}"), **kw).start()
    assert door.subscribed.wait(10), "the door did not subscribe on Mosquitto"
    return door


@pytest.fixture(scope="module")
def door(settings, session_factory, user_headers) -> Iterator[MqttDoor]:  # type: ignore[no-untyped-def]
    # People are created before any traffic: on SQLite a read-then-write transaction (creating a user) can find
    # the file changed under it by the door's writes and give up at once ("database is locked").
    for role, scope in (("admin", "VN"), ("integrator", "68"), ("viewer", "VN")):
        user_headers(role, scope)
    d = start_door(settings, session_factory, session_expiry=0)
    yield d
    d.stop()


def dead_letters(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    r = client.get("/api/dead-letters", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_envelopes_and_single_items_are_stored(door: MqttDoor, session_factory) -> None:
    code = make_indicator(session_factory)
    source = new_source(session_factory)
    publish(f"saola/{source.name}/observations", {"api_key": source.key,
                                                   "items": [reading(code, m) for m in range(3)]})
    publish(f"saola/{source.name}/observations", {"api_key": source.key, **reading(code, 10, unit=WARD2)})
    wait_for(lambda: stored(session_factory, code) == 4)


def test_redelivered_messages_are_stored_once(door: MqttDoor, session_factory) -> None:
    code = make_indicator(session_factory)
    source = new_source(session_factory)
    message = {"api_key": source.key, "items": [reading(code, 0), reading(code, 1)]}
    before = door.stats.items_duplicate
    publish(f"saola/{source.name}/observations", message)
    publish(f"saola/{source.name}/observations", message)
    wait_for(lambda: door.stats.items_duplicate >= before + 2)
    assert stored(session_factory, code) == 2


def test_refused_messages_go_to_dead_letters_with_their_reason(door: MqttDoor, session_factory, client,
                                                                 user_headers) -> None:
    admin = user_headers("admin", "VN")
    code = make_indicator(session_factory)
    source = new_source(session_factory)
    other = new_source(session_factory)
    topic = f"saola/{source.name}/observations"
    publish(topic, b'{"api_key": "' + source.key.encode() + b'", "items": [')
    publish(topic, {"api_key": other.key, **reading(code, 0)})
    publish(topic, {"api_key": "sk_000000000000_not-a-real-key-at-all-000", **reading(code, 1)})
    publish(topic, [reading(code, 2)])
    publish(topic, reading(code, 3))
    publish(f"saola/{source.name}/weather", {"api_key": source.key, **reading(code, 4)})
    publish(topic, {"api_key": source.key, "items": [reading(code, 5, value="high"), reading(code, 6)]})
    found = wait_for(lambda: len(dead_letters(client, admin, source=source.name)) >= 7 and
                     dead_letters(client, admin, source=source.name))
    reasons = {d["reason"] for d in found}
    assert any(r.startswith("invalid JSON") for r in reasons)
    assert {"key does not match source", "invalid API key", "missing api_key"} <= reasons
    assert any("unknown kind 'weather'" in r for r in reasons)
    bad_row = next(d for d in found if d["authenticated"])
    assert bad_row["errors"][0]["loc"] == ["items", 0, "value"] and bad_row["source_id"] == source.id
    assert bad_row["channel"] == "mqtt" and bad_row["topic"] == topic and code in bad_row["payload"]
    assert source.key not in str(found) and source.key[:16] + "***" in bad_row["payload"]  # secrets are hidden
    assert all(d["source_id"] == source.id for d in found)  # the topic names a real source
    assert stored(session_factory, code) == 0  # the refused message's good row went with it


def test_one_bad_message_does_not_sink_its_neighbours(door: MqttDoor, session_factory, client,
                                                      user_headers) -> None:
    admin = user_headers("admin", "VN")
    code = make_indicator(session_factory)
    source = new_source(session_factory)
    topic = f"saola/{source.name}/observations"
    for m in range(10):
        value = "broken" if m == 4 else float(m)
        publish(topic, {"api_key": source.key, **reading(code, m, value=value)}, qos=0 if m % 2 else 1)
    wait_for(lambda: stored(session_factory, code) == 9)
    [letter] = wait_for(lambda: dead_letters(client, admin, source=source.name))
    assert letter["errors"][0]["loc"] == ["items", 0, "value"]


def test_dead_letters_follow_the_readers_scope(door: MqttDoor, session_factory, client, user_headers) -> None:
    admin, integrator = user_headers("admin", "VN"), user_headers("integrator", "68")
    viewer = user_headers("viewer", "VN")
    local = new_source(session_factory, scope="68")
    far = new_source(session_factory, scope="79")
    ghost = f"nobody-{uuid.uuid4().hex[:8]}"
    for name in (local.name, far.name, ghost):
        publish(f"saola/{name}/observations", b"not json")
    wait_for(lambda: len(dead_letters(client, admin, channel="mqtt", source=ghost)) == 1)
    assert len(dead_letters(client, integrator, source=local.name)) == 1
    assert dead_letters(client, integrator, source=far.name) == []
    assert dead_letters(client, integrator, source=ghost) == []  # unattributed: national users only
    assert client.get("/api/dead-letters", headers=viewer).status_code == 403


def test_a_disabled_source_is_refused(door: MqttDoor, session_factory, client, user_headers, system) -> None:
    admin = user_headers("admin", "VN")
    code = make_indicator(session_factory)
    source = new_source(session_factory)
    publish(f"saola/{source.name}/observations", {"api_key": source.key, **reading(code, 0)})
    wait_for(lambda: stored(session_factory, code) == 1)  # the key is now known (and cached)
    with session_factory() as session, session.begin():
        session.connection(execution_options={"sqlite_immediate": True})  # wait for the door's writes on SQLite
        set_active(session, actor=system, source_id=source.id, active=False)
    publish(f"saola/{source.name}/observations", {"api_key": source.key, **reading(code, 1)})
    [letter] = wait_for(lambda: dead_letters(client, admin, source=source.name))  # at once, not after a cache's life
    assert letter["reason"] == "invalid API key"
    assert stored(session_factory, code) == 1


def test_events_over_mqtt(door: MqttDoor, session_factory, monkeypatch) -> None:
    from sqlalchemy import func, select

    from saola.core.events.models import Event
    from saola.packs.definitions import EventTypeDefinition

    monkeypatch.setitem(door.registry.event_types, "test.mqtt", EventTypeDefinition(
        type="test.mqtt", name_vi="Thử", name_en="Test", domain="test"))
    source = new_source(session_factory)
    before = door.stats.items_duplicate
    event = {"type": "test.mqtt", "occurred_at": T0.isoformat(), "unit_code": WARD, "title": "cửa mở"}
    for _ in range(2):  # the same event twice, without external_id: recorded once
        publish(f"saola/{source.name}/events", {"api_key": source.key, "items": [event]})

    def count() -> int:
        with session_factory() as session:
            return session.scalar(select(func.count()).select_from(Event).where(Event.source_id == source.id)) or 0

    wait_for(lambda: door.stats.items_duplicate > before and count() == 1)


def test_unacknowledged_messages_come_back_and_are_harmless(settings, session_factory, door: MqttDoor) -> None:
    code = make_indicator(session_factory)
    source = new_source(session_factory)
    client_id = f"saola-test-crash-{uuid.uuid4().hex[:8]}"
    crashing = start_door(settings, session_factory, client_id=client_id, session_expiry=60)
    crashing._ack = lambda mids: None  # dies after commit, before the acknowledgement
    publish(f"saola/{source.name}/observations", {"api_key": source.key, "items": [reading(code, 0)]})
    wait_for(lambda: crashing.stats.rounds and stored(session_factory, code) == 1)
    crashing.stop()
    again = start_door(settings, session_factory, client_id=client_id, session_expiry=1)
    try:
        wait_for(lambda: again.stats.items_duplicate >= 1)  # the broker sent it again; it was a duplicate
        assert stored(session_factory, code) == 1
    finally:
        again.stop()
        wipe_session(client_id)


def test_serve_with_mqtt_starts_the_door(settings, session_factory, monkeypatch) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from saola.app import create_app
    from saola.cli import app as cli_app

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(settings=app.state.settings, **kw))
    env = {"SAOLA_DATABASE_URL": settings.url, "SAOLA_SECRET_KEY": settings.secret_key}
    result = CliRunner().invoke(cli_app, ["serve", "--mqtt", BROKER, "--port", "0"], env=env)
    assert result.exit_code == 0, result.output
    assert seen["settings"].mqtt_url == BROKER and seen["timeout_graceful_shutdown"] == 5

    client_id = f"saola-test-serve-{uuid.uuid4().hex[:8]}"
    app = create_app(settings.model_copy(update={"mqtt_url": BROKER, "mqtt_client_id": client_id}))
    code = make_indicator(session_factory)
    source = new_source(session_factory)
    try:
        with TestClient(app):
            door: MqttDoor = app.state.mqtt_door
            assert door.subscribed.wait(10)
            publish(f"saola/{source.name}/observations", {"api_key": source.key, **reading(code, 0)})
            wait_for(lambda: stored(session_factory, code) == 1)
    finally:
        from saola.core.rules.engine import start_engine

        stop_doors()
        start_engine(session_factory, settings)  # the rules follow the session's application again
        app.state.engine.dispose()
        wipe_session(client_id)


def test_demo_turns_mqtt_on_when_a_broker_answers(settings) -> None:
    from rich.console import Console

    from saola.demo.runner import _demo_mqtt, broker_answers

    assert broker_answers()
    demo = settings.model_copy(update={"mqtt_url": None})
    _demo_mqtt(demo, None, Console(quiet=True))
    assert demo.mqtt_url == "mqtt://127.0.0.1:1883"
    _demo_mqtt(demo, "off", Console(quiet=True))
    assert demo.mqtt_url is None
    assert not broker_answers("mqtt://127.0.0.1:1")


def test_broker_urls() -> None:
    assert parse_url("mqtt://127.0.0.1:1883") == ("127.0.0.1", 1883, None, None, False)
    assert parse_url("mqtts://user:p%40ss@broker.example") == ("broker.example", 8883, "user", "p@ss", True)
    with pytest.raises(ValueError):
        parse_url("http://127.0.0.1")


def test_fast_subscriber_takes_a_burst_whole_across_read_boundaries() -> None:
    """Thousands of QoS 0/1 messages of mixed sizes arrive once each, in order, whatever the socket reads cut."""
    import threading

    from saola.interop.mqtt.client import FastSubscriber

    topic = f"test/fast/{uuid.uuid4().hex[:8]}"
    got: list[tuple[bytes, bytes, int]] = []
    lock = threading.Lock()

    def sink(t: bytes, payload: bytes, mid: int, qos: int) -> None:
        with lock:
            got.append((t, payload, qos))
        if qos:
            sub.ack_many([mid])

    sub = FastSubscriber(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-fast-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5, manual_ack=True, sink=sink)
    subscribed = threading.Event()
    sub.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.connect("127.0.0.1", 1883)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}",
                      protocol=mqtt.MQTTv311)
    pub.max_inflight_messages_set(200)
    try:
        assert subscribed.wait(10)
        pub.connect("127.0.0.1", 1883)
        pub.loop_start()
        # Sizes from a few bytes to past 128 (two-byte lengths) and 16 KiB (three-byte lengths), so that packets
        # straddle the 256 KiB reads at every kind of offset.
        sent = [b"%05d:" % i + b"x" * ((i * 7919) % 20_000 if i % 50 == 0 else (i * 37) % 300) for i in range(3000)]
        # In bursts of 500 (about 300 KiB each, still past one read): Mosquitto drops what a subscriber has not
        # taken once 1,000 messages wait for it (max_queued_messages), which a busy machine reached with all 3,000.
        for start in range(0, len(sent), 500):
            last = None
            for i in range(start, min(start + 500, len(sent))):
                last = pub.publish(topic, sent[i], qos=i % 2)
            assert last is not None
            last.wait_for_publish(30)
            wait_for(lambda end=min(start + 500, len(sent)): len(got) >= end, timeout=30)
    finally:
        pub.disconnect()
        pub.loop_stop()
        sub.disconnect()
        sub.loop_stop()
    assert {t for t, _, _ in got} == {topic.encode()} and len(got) == len(sent)
    # The broker keeps order within a QoS level (it may hold QoS 1 back while QoS 0 goes straight through).
    for qos in (0, 1):
        assert [p for _, p, q in got if q == qos] == sent[qos::2]
