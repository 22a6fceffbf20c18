"""An in-process bus: subscribers get every message whose topic matches their pattern."""

from __future__ import annotations

import fnmatch
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """A published change: its topic and JSON-ready data."""

    topic: str
    data: dict[str, Any]


Handler = Callable[[Message], None]


class InProcessBus:
    """Synchronous fan-out inside one process; a failing subscriber is logged, never propagated."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[str, Handler]] = []
        self._lock = threading.Lock()

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

    def publish(self, topic: str, data: dict[str, Any]) -> None:
        """Deliver a message to every matching subscriber."""
        message = Message(topic, data)
        with self._lock:
            targets = [h for p, h in self._subscribers if fnmatch.fnmatchcase(topic, p)]
        for handler in targets:
            try:
                handler(message)
            except Exception:  # a broken subscriber must not break the writer
                log.exception("bus subscriber failed on %s", topic)


_bus: InProcessBus = InProcessBus()


def get_bus() -> InProcessBus:
    """The process-wide bus."""
    return _bus


def set_bus(bus: InProcessBus) -> None:
    """Replace the process-wide bus (for another adapter, or a test)."""
    global _bus
    _bus = bus
