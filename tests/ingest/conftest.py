"""Shared helpers of the ingestion tests: indicators, sources, a real HTTP server and an SSE client."""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from saola.core.auth.context import system_actor
from saola.core.indicators.models import Indicator
from saola.core.indicators.schemas import IndicatorCreate
from saola.core.indicators.service import create_indicator
from saola.core.observations.models import Observation
from saola.core.sources.service import create_source
from saola.db.engine import transaction
from tests.conftest import unique

WARD = "24781"  # Phường Xuân Hương - Đà Lạt (68)
WARD2 = "24787"  # Phường Cam Ly - Đà Lạt (68)
OTHER = "26506"  # Phường Vũng Tàu (79)
T0 = datetime(2026, 9, 1, tzinfo=UTC)


def make_indicator(session_factory: sessionmaker[Session], **fields: Any) -> str:
    """A fresh indicator only the calling test writes to."""
    code = f"test.{unique('i')}"
    data = IndicatorCreate(code=code, name_vi="Chỉ số thử", name_en="Test indicator", domain="test", **fields)
    with transaction(session_factory) as session:
        create_indicator(session, actor=system_actor("test"), data=data)
    return code


@dataclass
class SourceInfo:
    """A registered source: its name, id and API key."""

    name: str
    id: int
    key: str

    @property
    def headers(self) -> dict[str, str]:
        """X-API-Key headers."""
        return {"X-API-Key": self.key}


def new_source(session_factory: sessionmaker[Session], scope: str = "68",
               allowed_writes: list[str] | None = None) -> SourceInfo:
    """Register a source system."""
    name = unique("src")
    with transaction(session_factory) as session:
        source, key = create_source(session, actor=system_actor("test"), name=name, scope=scope,
                                    allowed_writes=allowed_writes)
        return SourceInfo(name, source.id, key)


def stored(session_factory: sessionmaker[Session], code: str) -> int:
    """How many readings of an indicator are stored."""
    with session_factory() as session:
        iid = session.scalar(select(Indicator.id).where(Indicator.code == code))
        return session.scalar(select(func.count()).select_from(Observation).where(Observation.indicator_id == iid)) or 0


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, step: float = 0.05) -> Any:
    """Poll until predicate returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    value = predicate()
    assert value, f"condition not met within {timeout} s"
    return value


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def user_headers(session_factory, settings) -> Callable[[str, str], dict[str, str]]:  # type: ignore[no-untyped-def]
    """Authorization headers of a user with a role and scope, created once per session (tokens issued directly)."""
    from saola.core.auth.service import create_user, issue_token

    made: dict[tuple[str, str], dict[str, str]] = {}

    def _get(role: str, scope: str) -> dict[str, str]:
        if (role, scope) not in made:
            with transaction(session_factory) as session:
                user = create_user(session, actor=system_actor("test"), username=unique("u"),
                                   password="password-" + unique(), role=role, scope=scope)
                token, _ttl = issue_token(settings, user)
            made[(role, scope)] = {"Authorization": f"Bearer {token}"}
        return made[(role, scope)]

    return _get


@pytest.fixture(scope="session")
def live_server(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The session's application served by a real uvicorn in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=30)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(15)


@dataclass
class SseEvent:
    """One dispatched Server-Sent Event."""

    event: str
    data: str
    id: str | None


@dataclass
class SseClient:
    """A browser-style EventSource: reads text/event-stream in a thread, remembers the last event id."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    events: queue.Queue[SseEvent] = field(default_factory=queue.Queue)
    last_id: str | None = None
    status: int | None = None
    comments: int = 0
    _client: httpx.Client | None = None
    _response: httpx.Response | None = None
    _thread: threading.Thread | None = None
    _opened: threading.Event = field(default_factory=threading.Event)

    def open(self, last_event_id: str | None = None) -> SseClient:
        """Connect (sending Last-Event-ID when given) and start reading."""
        headers = {"Accept": "text/event-stream", **self.headers}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=None))
        self._thread = threading.Thread(target=self._read, args=(headers,), daemon=True)
        self._thread.start()
        assert self._opened.wait(15), "stream did not open"
        return self

    def _read(self, headers: dict[str, str]) -> None:
        assert self._client is not None
        try:
            with self._client.stream("GET", self.url, headers=headers) as response:
                self._response = response
                self.status = response.status_code
                self._opened.set()
                if response.status_code != 200:
                    return
                kind, data, ident = "message", [], None
                for line in response.iter_lines():
                    if line == "":
                        if ident is not None:
                            self.last_id = ident  # also for id-only frames, as browsers do
                        if data:
                            self.events.put(SseEvent(kind, "\n".join(data), ident))
                        kind, data, ident = "message", [], None
                    elif line.startswith(":"):
                        self.comments += 1
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "data":
                            data.append(value)
                        elif name == "event":
                            kind = value
                        elif name == "id":
                            ident = value
        except (httpx.HTTPError, RuntimeError, ValueError, OSError):
            pass
        finally:
            self._opened.set()

    def next(self, predicate: Callable[[SseEvent], bool] = lambda e: True, timeout: float = 15.0) -> SseEvent:
        """The next event matching predicate (others are skipped); fails after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "no matching event arrived in time"
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                raise AssertionError("no matching event arrived in time") from None
            if predicate(event):
                return event

    def close(self) -> None:
        """Disconnect (shutting the socket down wakes the reading thread at once)."""
        if self._response is not None:
            stream = self._response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if self._client is not None:
            self._client.close()
        if self._thread is not None:
            self._thread.join(5)
