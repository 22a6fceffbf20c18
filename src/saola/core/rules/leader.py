"""Which worker evaluates the rules when several share a Redis bus: the one holding a Redis lock.

Every worker on the shared bus runs a `Leadership`: every few seconds it tries to take the lock (SET NX with a
time-to-live) or, holding it, to extend it (only while the value is still its own token). The holder runs the rules
engine, which sees every worker's batches through the bus; the others wait. When the holder stops or dies, its lock
expires after `ttl` seconds and the next worker to try takes over: its engine restores open alerts and silence from
the database as after a restart, and first evaluates the batches committed since the last one the old holder
finished (its id is kept beside the lock, `<key>:done`, for DONE_SECONDS; the bus's stream still holds the batches).
A holder that cannot reach Redis stops its engine once the lock may have expired, so that two engines never run
for longer than that.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis

if TYPE_CHECKING:
    from saola.core.rules.engine import RulesEngine

log = logging.getLogger(__name__)

TTL_SECONDS = 15.0
RENEW_SECONDS = 5.0
TICK_SECONDS = 15.0
DONE_SECONDS = 600  # a takeover replays the batches missed for at most this long after the last holder's last round
# Extend / release the lock only while it still holds our token (a lock that expired and was taken is not ours).
_RENEW = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) "
          "else return 0 end")
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class Leadership:
    """Holds (or waits for) the rules lock, starting the engine when it takes it and stopping it when it loses it.

    `step()` is one round (the thread calls it every `renew` seconds); `tick` makes the leader run the rules' clock
    itself (when this process does not run the scheduled jobs, whose `rules.tick` would otherwise do it).
    """

    def __init__(self, url: str, key: str, *, start: Callable[[str | None], RulesEngine],
                 stop: Callable[[RulesEngine], None],
                 ttl: float = TTL_SECONDS, renew: float = RENEW_SECONDS, tick: bool = False) -> None:
        self.client = redis.Redis.from_url(url)
        self.key = key
        self.done_key = f"{key}:done"
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.ttl_ms = int(ttl * 1000)
        self.renew = renew
        self.tick = tick
        self.engine: RulesEngine | None = None
        self._start, self._stop_engine = start, stop
        self._held_since = 0.0  # monotonic time of the last successful take or extension
        self._last_tick = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def leading(self) -> bool:
        """True while this worker holds the lock and runs the engine."""
        return self.engine is not None

    def step(self) -> bool:
        """Take the lock when free or keep it when held, starting or stopping the engine; True while leading."""
        with self._lock:
            try:
                if self.engine is None:
                    if self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
                        self._held_since = time.monotonic()
                        done = self.client.get(self.done_key)
                        log.info("rules: this worker (%s) evaluates the rules now", self.token)
                        self.engine = self._start(done.decode() if done else None)
                        self.engine.after_round = self._note_done
                elif self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms):
                    self._held_since = time.monotonic()
                else:
                    log.warning("rules: the lock passed to another worker; this one stops evaluating")
                    self._give_up()
            except redis.RedisError:
                log.exception("rules: the lock cannot be read or extended")
                if self.engine is not None and time.monotonic() - self._held_since >= self.ttl_ms / 1000:
                    self._give_up()  # the lock may have expired and been taken elsewhere: never two engines
            return self.engine is not None

    def _note_done(self, message_id: str) -> None:
        """The engine finished the batches up to this bus id: where a successor would start replaying."""
        if self.engine is not None:
            self.client.set(self.done_key, message_id, ex=DONE_SECONDS)

    def _give_up(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            self._stop_engine(engine)

    def run_clock(self, now: float | None = None) -> None:
        """The leader's clock of the rules (silence, event-count expiry), every TICK_SECONDS when `tick`."""
        now = time.monotonic() if now is None else now
        engine = self.engine
        if self.tick and engine is not None and now - self._last_tick >= TICK_SECONDS:
            self._last_tick = now
            engine.tick()

    def start(self) -> Leadership:
        """Try at once, then every `renew` seconds in a background thread."""
        self.step()
        self._thread = threading.Thread(target=self._loop, name="saola-rules-leader", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.renew):
            self.step()
            try:
                self.run_clock()
            except Exception:  # the clock failing once must not end the leadership
                log.exception("rules: the clock failed")

    def close(self) -> None:
        """Stop trying, stop the engine and hand the lock over at once (it would expire anyway)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.renew + 5)
        with self._lock:
            held = self.engine is not None
            self._give_up()
            if held:
                try:
                    self.client.eval(_RELEASE, 1, self.key, self.token)
                except redis.RedisError:
                    log.warning("rules: the lock could not be released; it expires by itself")
        self.client.close()
