"""An in-process bus: subscribers get every message whose topic matches their pattern.

Every message gets an id, `<epoch ms of this bus>-<sequence>`, and the bus keeps the recent ones in a bounded
ring (by count, age and number of items), so that a client of the live stream that reconnects with the last id it
saw gets what it missed (`replay`). Ids of one bus compare as the integer pairs they spell; an id from an older bus
(a previous run of the server) sorts before every id of this one.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sized
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

REPLAY_MESSAGES = 10_000
REPLAY_SECONDS = 600.0
REPLAY_ITEMS = 200_000


@dataclass(frozen=True)
class Message:
    """A published change: its topic, JSON-ready data and the id the bus gave it (empty before publishing)."""

    topic: str
    data: dict[str, Any]
    id: str = ""


Handler = Callable[[Message], None]


def item_count(data: dict[str, Any]) -> int:
    """How many items a message carries (an ingested batch's rows), for the replay window's bound."""
    items = data.get("items")
    return len(items) if isinstance(items, Sized) and not isinstance(items, (str, bytes, dict)) else 0


def parse_id(message_id: str | None) -> tuple[int, int] | None:
    """'1700000000000-5' -> (1700000000000, 5); None for anything else."""
    if not message_id:
        return None
    head, sep, tail = message_id.partition("-")
    if not (head.isdigit() and (not sep or tail.isdigit())) or len(message_id) > 40:
        return None
    return int(head), int(tail or 0)


@dataclass
class Replay:
    """Messages after an id, oldest first; `complete` is False when some may have left the window already."""

    messages: list[Message] = field(default_factory=list)
    complete: bool = True


class ReplayRing:
    """The recent messages in id order, bounded by count, age and items; thread-safe."""

    def __init__(self, max_messages: int = REPLAY_MESSAGES, max_seconds: float = REPLAY_SECONDS,
                 max_items: int = REPLAY_ITEMS) -> None:
        self.max_messages, self.max_seconds, self.max_items = max_messages, max_seconds, max_items
        self._ring: deque[tuple[tuple[int, int], float, int, Message]] = deque()
        self._items = 0
        self._lock = threading.Lock()
        self.evicted_through: tuple[int, int] | None = None  # newest id that left the ring

    def append(self, key: tuple[int, int], message: Message) -> None:
        """Keep a message (keys must grow); evict what falls out of the window."""
        n = item_count(message.data)
        now = time.monotonic()
        with self._lock:
            ring = self._ring
            ring.append((key, now, n, message))
            self._items += n
            horizon = now - self.max_seconds
            while ring and (len(ring) > self.max_messages or self._items > self.max_items or ring[0][1] < horizon):
                old = ring.popleft()
                self._items -= old[2]
                self.evicted_through = old[0]

    def last_key(self) -> tuple[int, int] | None:
        """The newest key kept, if any."""
        with self._lock:
            return self._ring[-1][0] if self._ring else None

    def first_key(self) -> tuple[int, int] | None:
        """The oldest key kept, if any."""
        with self._lock:
            return self._ring[0][0] if self._ring else None

    def after(self, key: tuple[int, int] | None, limit: int) -> Replay:
        """Up to `limit` messages with keys above `key` (all kept ones when None), oldest first."""
        with self._lock:
            ring = self._ring
            if key is None:
                picked = [m for *_, m in list(ring)[:limit]]
                return Replay(picked, self.evicted_through is None)
            # Walk back from the newest: a client that keeps up asks for the last few only.
            start = len(ring)
            while start > 0 and ring[start - 1][0] > key:
                start -= 1
            picked = [ring[i][3] for i in range(start, min(len(ring), start + limit))]
            complete = self.evicted_through is None or key >= self.evicted_through
            return Replay(picked, complete)


class Bus(Protocol):
    """What every bus adapter offers: the in-process one and the Redis one."""

    def subscribe(self, pattern: str, handler: Handler) -> Callable[[], None]:
        """Call handler for each message whose topic matches the glob pattern; returns an unsubscribe."""

    def publish(self, topic: str, data: dict[str, Any]) -> Message:
        """Publish a message; returns it with its id."""

    def last_id(self) -> str:
        """The id of the newest message known here."""

    def replay(self, after: str | None, limit: int = 1000) -> Replay:
        """Messages after an id, oldest first, from the bus's bounded window."""

    def close(self) -> None:
        """Release connections and threads."""


class InProcessBus:
    """Synchronous fan-out inside one process; a failing subscriber is logged, never propagated."""

    def __init__(self, *, replay_messages: int = REPLAY_MESSAGES, replay_seconds: float = REPLAY_SECONDS,
                 replay_items: int = REPLAY_ITEMS) -> None:
        self._subscribers: list[tuple[str, Handler]] = []
        self._lock = threading.Lock()
        self.epoch = int(time.time() * 1000)
        self._seq = 0
        self.ring = ReplayRing(replay_messages, replay_seconds, replay_items)

    def subscribe(self, pattern: str, handler: Handler) -> Callable[[], None]:
        """Call handler for each message whose topic matches the glob pattern; returns an unsubscribe."""
        item = (pattern, handler)
        with self._lock:
            self._subscribers.append(item)

        def unsubscribe() -> None:
            with self._lock:
                if item in self._subscribers:
                    self._subscribers.remove(item)

        return unsubscribe

    def publish(self, topic: str, data: dict[str, Any]) -> Message:
        """Deliver a message to every matching subscriber, in the publisher's thread; returns it with its id."""
        with self._lock:
            self._seq += 1
            key = (self.epoch, self._seq)
            message = Message(topic, data, f"{key[0]}-{key[1]}")
            # Appending under the same lock keeps the ring in id order whatever threads publish.
            self.ring.append(key, message)
            targets = [h for p, h in self._subscribers if fnmatch.fnmatchcase(topic, p)]
        for handler in targets:
            try:
                handler(message)
            except Exception:  # a broken subscriber must not break the writer
                log.exception("bus subscriber failed on %s", topic)
        return message

    def last_id(self) -> str:
        """The id of the newest message published so far (the bus's start when none)."""
        key = self.ring.last_key()
        return f"{key[0]}-{key[1]}" if key else f"{self.epoch}-0"

    def replay(self, after: str | None, limit: int = 1000) -> Replay:
        """Messages published after the id `after`, oldest first, from the bounded window."""
        key = parse_id(after)
        if key is None:
            return Replay(self.ring.after(None, limit).messages, False)
        if key[0] != self.epoch:
            # An id from another run of the server: everything kept is newer, but some may be missing.
            return Replay(self.ring.after(None, limit).messages, False)
        return self.ring.after(key, limit)

    def close(self) -> None:
        """Nothing to release; here for the same interface as the Redis bus."""


_bus: Bus = InProcessBus()


def get_bus() -> Bus:
    """The process-wide bus (an InProcessBus unless configure_bus chose Redis)."""
    return _bus


def set_bus(bus: Bus) -> None:
    """Replace the process-wide bus (for another adapter, or a test)."""
    global _bus
    _bus = bus
