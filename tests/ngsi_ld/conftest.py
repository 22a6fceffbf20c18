"""Helpers of the NGSI-LD door tests: entity payloads, request headers and an HTTP receiver for notifications."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from tests.conftest import unique

BASE = "/ngsi-ld/v1"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
LINK_REL = "http://www.w3.org/ns/json-ld#context"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
DALAT_WARD, OTHER_WARD = "24781", "26506"  # a ward of Đà Lạt (68); a ward of Vũng Tàu (79)
DALAT = [108.44, 11.94]


def urn(kind: str = "Station") -> str:
    """A fresh NGSI-LD id."""
    return f"urn:ngsi-ld:{kind}:{unique('e')}"


def new_type(prefix: str = "Station") -> str:
    """A type name no other test uses (so queries by type see only this test's entities)."""
    return f"{prefix}{unique('T')}"


def station(entity_type: str, entity_id: str | None = None, *, lon: float = DALAT[0], lat: float = DALAT[1],
            unit: str = DALAT_WARD, context: Any = CORE, **attrs: Any) -> dict[str, Any]:
    """An NGSI-LD entity in normalized form with a location and a unit (and the core @context)."""
    body: dict[str, Any] = {
        "id": entity_id or urn(entity_type), "type": entity_type,
        "temperature": {"type": "Property", "value": 21.5, "unitCode": "CEL",
                        "observedAt": "2026-11-25T01:00:00Z"},
        "name": {"type": "Property", "value": "Trạm Đà Lạt"},
        "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:dl-01"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
        "administrativeUnit": {"type": "Property", "value": unit},
        **attrs,
    }
    if context is not None:
        body["@context"] = context
    return body


def ld(headers: dict[str, str]) -> dict[str, str]:
    """Headers for an application/ld+json request that wants ld+json back."""
    return {**headers, "Content-Type": "application/ld+json", "Accept": "application/ld+json"}


def js(headers: dict[str, str], context: str | None = None) -> dict[str, str]:
    """Headers for an application/json request (context in a Link header when given)."""
    out = {**headers, "Content-Type": "application/json", "Accept": "application/json"}
    if context:
        out["Link"] = f'<{context}>; rel="{LINK_REL}"; type="application/ld+json"'
    return out


def problem(response: Any, kind: str, status: int) -> dict[str, Any]:
    """Assert a ProblemDetails answer of the given ETSI kind and status; returns its body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == ERRORS + kind, body
    assert body["status"] == status and body["title"] and body["detail"]
    return body


class Receiver:
    """An HTTP endpoint in the test process that records the notifications POSTed to it."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[tuple[dict[str, str], Any]] = []
        self.event = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = orjson.loads(self.rfile.read(length)) if length else None
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.end_headers()
                receiver.event.set()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, test: Callable[[list[tuple[dict[str, str], Any]]], bool], timeout: float = 10.0) -> None:
        """Wait until the received notifications pass the test."""
        deadline = time.monotonic() + timeout
        while not test(self.received):
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching notification within {timeout} s; got {self.received}")
            self.event.wait(0.05)
            self.event.clear()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A notification receiver on a free local port."""
    found = Receiver()
    yield found
    found.close()
