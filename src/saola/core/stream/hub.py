"""Following the bus for stream clients: wake-ups, the unit paths for scope checks, and rendering SSE frames.

Clients do not get messages pushed into queues: each keeps a cursor (the id of the last message it handled) and
reads what follows from the bus's ordered replay window when woken. So a client sees messages in id order whatever
threads published them, a slow client falls behind without holding memory, and a reconnect with Last-Event-ID is
the same code path as keeping up.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from saola.bus import Bus, Message
from saola.core.observations.live import LiveReadings
from saola.core.units.models import Unit
from saola.core.units.service import NATION_CODE

FAMILIES: dict[str, str] = {  # topic family -> permission needed to follow it
    "observations": "observations:read",
    "events": "events:read",
    "alerts": "alerts:read",
    "cases": "cases:read",
}
_BATCHES = ("observations", "events")  # families whose messages carry rows in `items`
_DROPPED_KEYS = ("outbox_id",)


class UnitPaths:
    """Unit code -> materialised path, loaded once and again after `units.loaded`."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory
        self.paths: dict[str, str] = {}
        self.stale = True
        self._lock = threading.Lock()

    def load(self) -> None:
        """Read every unit's path (blocking: call it from a thread)."""
        with self._lock:
            with self.session_factory() as session:
                self.paths = {code: path for code, path in session.execute(select(Unit.code, Unit.path))}
            self.stale = False


@dataclass(eq=False)
class StreamClient:
    """One open stream: the user's scope, the topic prefixes asked for, and where it has read up to."""

    scope_path: str
    prefixes: tuple[str, ...]
    paths: UnitPaths
    loop: asyncio.AbstractEventLoop
    cursor: str = ""
    case_agencies: frozenset[str] | None = None  # agency staff: cases of these agencies (or assigned to user_id)
    user_id: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    _seen: dict[str, bool] = field(default_factory=dict)

    @property
    def national(self) -> bool:
        """True for a user of the whole country: messages without a unit go to them only."""
        return self.scope_path == NATION_CODE

    def wants(self, topic: str) -> bool:
        """True when the topic starts with one of the asked prefixes."""
        return any(topic == p or topic.startswith(p + ".") for p in self.prefixes)

    def sees_unit(self, code: Any) -> bool:
        """True when the unit with this code lies in the client's scope (unknown units: national users only)."""
        if self.national:
            return True
        if not isinstance(code, str):
            return False
        known = self._seen.get(code)
        if known is None:
            path = self.paths.paths.get(code)
            scope = self.scope_path
            known = path is not None and (path == scope or path.startswith(scope + "."))
            if len(self._seen) < 100_000:
                self._seen[code] = known
        return known

    def sees_path(self, path: str) -> bool:
        """True when a unit path lies in the client's scope."""
        return path == self.scope_path or path.startswith(self.scope_path + ".")

    def _sees_case(self, data: dict[str, Any]) -> bool:
        """Agency staff bound to an agency see the cases of their agencies and those assigned to them."""
        if self.case_agencies is None:
            return True
        owner, assignee = data.get("owner_agency_id"), data.get("assignee_user_id")
        return bool((owner and owner in self.case_agencies) or (assignee and assignee == self.user_id))

    def forget_units(self) -> None:
        """Drop remembered scope answers (the unit tree was reloaded)."""
        self._seen.clear()

    def render(self, message: Message) -> bytes | None:
        """The SSE frame of a message for this client, or None when nothing of it is for them."""
        topic = message.topic
        if not self.wants(topic):
            return None
        family = topic.split(".", 1)[0]
        data = message.data
        if family in _BATCHES:
            items = data.get("items")
            if isinstance(items, LiveReadings):  # observations: kept or left out a series at a time
                mine = items.as_list() if self.national else items.where(lambda _i, unit, _e: self.sees_unit(unit))
            elif isinstance(items, list):
                mine = items if self.national else [
                    i for i in items if isinstance(i, dict) and self.sees_unit(i.get("unit"))]
            else:
                return None
            if not mine:
                return None
            body: dict[str, Any] = {"topic": topic, "id": data.get("id"), "items": mine}
        else:
            path = data.get("unit_path")
            if isinstance(path, str):
                visible = self.national or self.sees_path(path)
            else:
                code = data.get("unit_code")
                visible = self.sees_unit(code) if code is not None else self.national
            if not visible or (family == "cases" and not self._sees_case(data)):
                return None
            body = {k: v for k, v in data.items() if k not in _DROPPED_KEYS}
            body["topic"] = topic
        return b"id: %s\nevent: %s\ndata: %s\n\n" % (message.id.encode(), family.encode(),
                                                     orjson.dumps(body, default=str))


class StreamHub:
    """One per application and bus: wakes the open streams when the bus carries something they may want."""

    def __init__(self, session_factory: sessionmaker[Session], bus: Bus) -> None:
        self.bus = bus
        self.paths = UnitPaths(session_factory)
        self.clients: set[StreamClient] = set()
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] = bus.subscribe("*", self._on_message)

    def _on_message(self, message: Message) -> None:
        # Runs in the publisher's (or the Redis reader's) thread: only hand a wake-up to each client's loop.
        if message.topic == "units.loaded":
            self.paths.stale = True
        if message.topic.split(".", 1)[0] not in FAMILIES:
            return
        with self._lock:
            clients = list(self.clients)
        for client in clients:
            if client.wants(message.topic) and not client.wake.is_set():
                with contextlib.suppress(RuntimeError):  # that client's loop has closed
                    client.loop.call_soon_threadsafe(client.wake.set)

    def add(self, client: StreamClient) -> None:
        """Start waking a client."""
        with self._lock:
            self.clients.add(client)

    def remove(self, client: StreamClient) -> None:
        """Stop waking a client."""
        with self._lock:
            self.clients.discard(client)

    def close(self) -> None:
        """Stop following the bus."""
        self._unsubscribe()


_hubs_lock = threading.Lock()


def hub_for(state: Any, session_factory: sessionmaker[Session], bus: Bus) -> StreamHub:
    """The application's hub for the current bus (a new one when the bus was replaced)."""
    with _hubs_lock:
        hub: StreamHub | None = getattr(state, "stream_hub", None)
        if hub is None or hub.bus is not bus:
            if hub is not None:
                hub.close()
            hub = StreamHub(session_factory, bus)
            state.stream_hub = hub
        return hub
