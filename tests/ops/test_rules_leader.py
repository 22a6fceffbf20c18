"""Several workers on a shared bus: only the holder of the Redis lock evaluates the rules (real Redis).

Two `Leadership`s stand for two workers; each round is driven by calling `step()`, so nothing here waits on a
clock except for Redis expiring a key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from saola.bus import get_bus, set_bus
from saola.bus.redis_stream import RedisBus
from saola.core.rules.engine import RulesEngine, get_engine, start_engine, stop_engine
from saola.core.rules.leader import Leadership
from tests.ingest.conftest import wait_for
from tests.ops import test_rules_helpers as shared
from tests.ops.test_rules_helpers import alerts_of, feed, make_indicator, make_rule

REDIS_URL = "redis://127.0.0.1:6379/0"
declared_types = shared.declared_types


@pytest.fixture
def key() -> Iterator[str]:
    """A lock of this test only."""
    name = f"saola:test:{uuid.uuid4().hex[:8]}:rules-leader"
    yield name
    redis.Redis.from_url(REDIS_URL).delete(name)


@pytest.fixture
def workers(app, session_factory: sessionmaker[Session], key: str) -> Iterator[tuple[Leadership, Leadership]]:  # type: ignore[no-untyped-def]
    """Two workers' leaderships over the application's database, its own engine stopped meanwhile (a third engine
    evaluating the same readings would hide which worker did)."""
    stop_engine()

    def make() -> Leadership:
        return Leadership(REDIS_URL, key, start=lambda after: RulesEngine(session_factory).start(after),
                          stop=lambda engine: engine.stop(), ttl=30, renew=3600)

    a, b = make(), make()
    try:
        yield a, b
    finally:
        a.close()
        b.close()
        start_engine(session_factory, app.state.settings)


def test_one_worker_evaluates_and_the_next_takes_over(workers, session_factory, declared_types, key) -> None:
    a, b = workers
    code = make_indicator(session_factory)
    rule_id = make_rule(session_factory, declared_types, kind="threshold",
                        params={"indicator": code, "threshold": 50, "clear_threshold": 40})
    assert a.step() and not b.step()
    assert a.leading and not b.leading and a.step() and not b.step()  # renewing keeps it where it is
    assert redis.Redis.from_url(REDIS_URL).get(key) == a.token.encode()
    feed(session_factory, code, [(0, 60)])
    a.engine.wait()  # type: ignore[union-attr]
    [alert] = alerts_of(session_factory, rule_id)
    assert alert.status == "firing"

    a.close()  # a worker shutting down hands the lock over at once
    assert not a.leading and b.step() and b.leading
    feed(session_factory, code, [(60, 30)])
    b.engine.wait()  # type: ignore[union-attr]
    # b's engine restored the open alert from the database and clears it
    assert [x.status for x in alerts_of(session_factory, rule_id)] == ["resolved"]


def test_a_dead_leader_is_replaced_when_its_lock_expires(workers, key) -> None:
    a, b = workers
    assert a.step() and not b.step()
    redis.Redis.from_url(REDIS_URL).pexpire(key, 50)  # what a worker that stopped renewing comes to
    wait_for(lambda: not redis.Redis.from_url(REDIS_URL).exists(key))
    assert b.step() and b.leading
    # the old leader, back, finds the lock in other hands and stops its engine rather than run a second one
    engine = a.engine
    assert not a.step() and not a.leading and engine is not None and not engine._unsubscribe


def test_without_redis_no_worker_evaluates(session_factory) -> None:
    def refuse(_after: str | None) -> RulesEngine:
        raise AssertionError("an engine started without the lock")

    nowhere = Leadership("redis://127.0.0.1:1/0", "saola:test:none", start=refuse, stop=lambda _engine: None)
    try:
        assert not nowhere.step() and not nowhere.leading
    finally:
        nowhere.client.close()
    assert get_engine() is not None  # the application's own engine is untouched by this test


def test_a_new_leader_first_evaluates_what_was_committed_while_none_ran(workers, session_factory, declared_types,
                                                                        key) -> None:
    a, b = workers
    original, bus = get_bus(), RedisBus(REDIS_URL, stream=f"{key}:bus", block_ms=100)
    set_bus(bus)  # the shared bus of several workers
    try:
        code = make_indicator(session_factory)
        rule_id = make_rule(session_factory, declared_types, kind="threshold",
                            params={"indicator": code, "threshold": 50, "clear_threshold": 40})

        def statuses() -> list[str]:
            return [x.status for x in alerts_of(session_factory, rule_id)]

        def statuses_when(expected: list[str]) -> list[str]:
            return wait_for(lambda: statuses() if statuses() == expected else None)

        assert a.step()
        feed(session_factory, code, [(0, 60)])
        assert statuses_when(["firing"]) == ["firing"]
        wait_for(lambda: redis.Redis.from_url(REDIS_URL).get(f"{key}:done"))  # where a successor would start
        dead = a.engine  # a crashes: no more rounds, no hand-over
        a.engine = None
        assert dead is not None
        dead.stop()
        feed(session_factory, code, [(60, 30), (120, 70)])  # committed while no engine runs
        assert statuses() == ["firing"]
        redis.Redis.from_url(REDIS_URL).pexpire(key, 50)
        wait_for(lambda: not redis.Redis.from_url(REDIS_URL).exists(key))
        assert b.step()  # takes over, and first evaluates the two batches it missed, in order
        assert statuses() == ["resolved", "firing"]
        feed(session_factory, code, [(180, 30)])  # and follows the bus from there
        assert statuses_when(["resolved", "resolved"]) == ["resolved", "resolved"]
        assert b.engine is not None and b.engine.stats["items"] == 3  # nothing evaluated twice
    finally:
        b.close()
        set_bus(original)
        bus.close()
