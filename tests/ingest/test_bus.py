"""The bus: ids and the replay window in process; the Redis Stream adapter between two 'workers' (real Redis)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from saola.bus import InProcessBus, Message, codec, configure_bus, get_bus, make_bus, parse_id, set_bus
from saola.bus.memory import ReplayRing, item_count
from saola.bus.redis_stream import MIN_KEPT, RedisBus
from saola.config import Settings
from saola.core.observations.live import LiveReadings
from tests.ingest.conftest import wait_for

REDIS_URL = "redis://127.0.0.1:6379/0"


def test_in_process_ids_grow_and_replay_after_an_id() -> None:
    bus = InProcessBus()
    heard: list[Message] = []
    bus.subscribe("obs.*", heard.append)
    sent = [bus.publish("obs.x", {"n": k}) for k in range(5)]
    keys = [parse_id(m.id) for m in sent]
    assert keys == sorted(keys) and len(set(keys)) == 5
    assert [m.id for m in heard] == [m.id for m in sent]
    replay = bus.replay(sent[1].id)
    assert replay.complete and [m.data["n"] for m in replay.messages] == [2, 3, 4]
    assert bus.replay(sent[-1].id).messages == [] and bus.last_id() == sent[-1].id
    assert [m.data["n"] for m in bus.replay(sent[0].id, limit=2).messages] == [1, 2]
    # An id of an earlier run of the server: everything kept comes back, flagged as possibly incomplete.
    earlier = bus.replay(f"{bus.epoch - 1}-99")
    assert not earlier.complete and len(earlier.messages) == 5


def test_the_window_is_bounded_and_says_when_a_client_fell_out_of_it() -> None:
    bus = InProcessBus(replay_messages=3, replay_items=10)
    first = bus.publish("t.a", {})
    for _ in range(4):
        bus.publish("t.a", {})
    late = bus.replay(first.id)
    assert not late.complete and len(late.messages) == 3
    big = bus.publish("t.b", {"items": list(range(9))})
    kept = bus.replay(None).messages
    assert kept[-1].id == big.id and sum(len(m.data.get("items", [])) for m in kept) <= 10
    ring = ReplayRing(max_messages=100, max_seconds=0.0)
    ring.append((1, 1), Message("t", {}, "1-1"))
    ring.append((1, 2), Message("t", {}, "1-2"))
    assert ring.first_key() == (1, 2)  # older than the window's age: dropped on the next append


def test_ring_stays_in_id_order_with_concurrent_publishers() -> None:
    bus = InProcessBus()
    threads = [threading.Thread(target=lambda: [bus.publish("t.c", {}) for _ in range(200)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = [parse_id(m.id) for m in bus.replay(None, limit=10_000).messages]
    assert len(keys) == 800 and keys == sorted(keys)


@pytest.fixture
def stream_name() -> Iterator[str]:
    name = f"saola:test:{uuid.uuid4().hex[:8]}"
    yield name
    redis.Redis.from_url(REDIS_URL).delete(name)


@pytest.fixture
def redis_worker(stream_name: str) -> Iterator[Callable[[], RedisBus]]:
    """Starts a 'worker' (a Redis bus with its reader) on the test's stream; every one is closed afterwards."""
    started: list[RedisBus] = []

    def start() -> RedisBus:
        started.append(RedisBus(REDIS_URL, stream=stream_name, block_ms=200))
        return started[-1]

    yield start
    for bus in started:
        bus.close()


def test_two_redis_workers_see_each_others_messages_once_and_in_order(redis_worker: Callable[[], RedisBus]) -> None:
    a, b = redis_worker(), redis_worker()
    heard_a: list[Message] = []
    heard_b: list[Message] = []
    a.subscribe("obs.*", heard_a.append)
    b.subscribe("*", heard_b.append)
    sent = []
    for k in range(20):
        sent.append((a if k % 2 else b).publish("obs.ingested", {"k": k, "items": [{"unit": "24781"}]}))
    sent.append(a.publish("other.topic", {"k": 99}))
    # a subscribes to obs.* only, so its 20 arrive before its reader has passed "other.topic": wait for that too.
    wait_for(lambda: len(heard_b) == 21 and len(heard_a) == 20 and a.last_id() == sent[-1].id)
    assert [m.data["k"] for m in heard_a] == list(range(20))  # each worker's own messages included
    assert [m.id for m in heard_b] == [m.id for m in sent]  # the stream's order, the stream's ids
    assert heard_a[0].data["items"] == [{"unit": "24781"}]
    # Replay after an id: from memory, then (for a worker that started later) from the stream itself.
    assert [m.data["k"] for m in a.replay(sent[17].id).messages] == [18, 19, 99]
    c = redis_worker()
    replay = c.replay(sent[15].id)
    assert replay.complete and [m.data["k"] for m in replay.messages] == [16, 17, 18, 19, 99]
    assert c.last_id() == sent[-1].id


def test_redis_stream_is_trimmed_and_old_ids_are_flagged(stream_name: str) -> None:
    bus = RedisBus(REDIS_URL, stream=stream_name, max_messages=10, block_ms=200)
    try:
        first = bus.publish("t.x", {"k": 0})
        for k in range(1, 400):
            bus.publish("t.x", {"k": k})
        assert redis.Redis.from_url(REDIS_URL).xlen(stream_name) < 400  # MAXLEN ~ trims in whole nodes
        other = RedisBus(REDIS_URL, stream=stream_name, block_ms=200)
        try:
            replay = other.replay(first.id, limit=1000)
            assert not replay.complete and replay.messages[-1].data["k"] == 399
        finally:
            other.close()
    finally:
        bus.close()


def test_redis_stream_keeps_about_as_many_items_as_the_ring(stream_name: str) -> None:
    # Ingested batches travel with their rows: the stream must not keep max_messages of them.
    bus = RedisBus(REDIS_URL, stream=stream_name, max_messages=1000, replay_items=200, block_ms=200)
    try:
        rows = [{"indicator": "t.level", "unit": "68", "value": float(v), "note": "x" * 80} for v in range(50)]
        for k in range(40):
            bus.publish("observations.ingested", {"k": k, "items": rows})
        kept = redis.Redis.from_url(REDIS_URL).xlen(stream_name)
        assert MIN_KEPT <= kept < 40  # 200 items / 50 per message = 4, but never fewer than MIN_KEPT entries
        for k in range(40, 60):
            bus.publish("alerts.firing", {"k": k})  # messages without items: the message bound only
        assert redis.Redis.from_url(REDIS_URL).xlen(stream_name) >= 20
    finally:
        bus.close()


def test_configure_bus_follows_the_setting(stream_name: str) -> None:
    original = get_bus()
    try:
        bus = configure_bus(Settings(bus_url=REDIS_URL, database_url="sqlite://"))
        assert isinstance(bus, RedisBus) and get_bus() is bus
        assert configure_bus(Settings(bus_url=REDIS_URL, database_url="sqlite://")) is bus
        back = configure_bus(Settings(database_url="sqlite://"))
        assert isinstance(back, InProcessBus) and get_bus() is back
        with pytest.raises(ValueError):
            make_bus("nats://127.0.0.1:4222")
    finally:
        current = get_bus()
        set_bus(original)
        if current is not original:
            current.close()


def _readings() -> LiveReadings:
    # Two series: pm25 at unit 24781 (two readings), temp at a station entity (one reading).
    return LiveReadings([("env.pm25", "24781", None), ("env.temp", "24781", "5d1c0a52-0000-4000-8000-000000000001")],
                        [2, 3], ["2026-12-02T01:00:00+00:00", "2026-12-02T01:01:00+00:00"], [0, 1, 1],
                        [12.5, 13.25, 28.0], [0, 1, 0])


def test_live_readings_read_as_the_item_dictionaries_they_replace() -> None:
    readings = _readings()
    items = list(readings)
    assert len(readings) == 3 and items == [
        {"indicator": "env.pm25", "unit": "24781", "entity": None, "ts": "2026-12-02T01:00:00+00:00",
         "value": 12.5, "quality": 0},
        {"indicator": "env.pm25", "unit": "24781", "entity": None, "ts": "2026-12-02T01:01:00+00:00",
         "value": 13.25, "quality": 1},
        {"indicator": "env.temp", "unit": "24781", "entity": "5d1c0a52-0000-4000-8000-000000000001",
         "ts": "2026-12-02T01:01:00+00:00", "value": 28.0, "quality": 0},
    ]
    assert [readings[k] for k in range(3)] == items and readings[-1] == items[2] and readings[1:] == items[1:]
    with pytest.raises(IndexError):
        readings[3]
    assert [r[:2] + r[3:] for r in readings.runs()] == [("env.pm25", "24781", 0, 2), ("env.temp", "24781", 2, 3)]
    assert readings.as_list() == items and readings.as_list() is readings.as_list()  # made once, shared
    assert readings.where(lambda code, _unit, entity: entity is not None) == items[2:]
    assert readings.where(lambda code, _unit, _entity: code == "env.pm25") == items[:2]


def test_codec_packs_registered_values_and_leaves_the_rest_as_json() -> None:
    data = {"items": _readings(), "when": uuid.UUID(int=7), "n": 1}
    back = codec.decode(codec.encode(data))
    assert isinstance(back["items"], LiveReadings) and list(back["items"]) == list(data["items"])
    assert back["when"] == str(uuid.UUID(int=7)) and back["n"] == 1
    # A packed value of a class this process does not know stays plain JSON rather than failing the message.
    unknown = codec.decode(b'{"items": {"$packed": "nobody", "x": [1]}}')
    assert unknown["items"] == {"$packed": "nobody", "x": [1]}


def test_an_ingested_batch_crosses_redis_as_packed_readings(redis_worker: Callable[[], RedisBus]) -> None:
    a, b = redis_worker(), redis_worker()
    heard: list[Message] = []
    own: list[Message] = []
    b.subscribe("observations.*", heard.append)
    a.subscribe("observations.*", own.append)
    data = {"batch_id": "x", "items": _readings()}
    sent = a.publish("observations.ingested", data)
    wait_for(lambda: len(heard) == 1 and len(own) == 1)
    got = heard[0].data["items"]
    assert isinstance(got, LiveReadings) and list(got) == list(_readings())
    # The publishing worker's subscribers get the data as published (not decoded again), in stream order.
    assert own[0].data is data and own[0].id == sent.id == heard[0].id and not a._own
    assert b.ring.after(None, 10).messages[0].id == sent.id
    # The stream's bound counts the readings, not the one message that carries them.
    assert item_count(heard[0].data) == 3
    # Replayed from the stream itself by a worker that started later: the same readings.
    (again,) = redis_worker().replay("0-1").messages
    assert list(again.data["items"]) == list(_readings())
