"""Fixtures of the SensorThings tests: a live server per database, frost-sta-client and plain HTTP on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import frost_sta_client as fsc
import httpx
import pytest
import requests
from sqlalchemy.orm import Session, sessionmaker

from saola.config import Settings
from saola.core.auth.context import system_actor
from saola.core.auth.service import create_user, issue_token
from saola.core.sources.service import create_source
from saola.db.engine import transaction
from tests.conftest import unique
from tests.live import serve_in_thread

WARD = "24781"  # Phường Xuân Hương - Đà Lạt (province 68)
OTHER_PROVINCE_WARD = "26506"  # Phường Vũng Tàu (province 79)
OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"


class _Bearer(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.token}"
        return r


class BearerAuth(fsc.AuthHandler):
    """frost-sta-client speaks HTTP Basic only; its AuthHandler may hand requests any auth object instead."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def add_auth_header(self) -> requests.auth.AuthBase:  # type: ignore[override]
        return _Bearer(self.token)


def user_token(session_factory: sessionmaker[Session], settings: Settings, role: str = "admin",
               scope: str = "VN") -> str:
    """A bearer token of a new user."""
    with transaction(session_factory) as session:
        user = create_user(session, actor=system_actor("test"), username=unique("sta"),
                           password="password-" + unique(), role=role, scope=scope)
        token, _ = issue_token(settings, user)
    return token


@pytest.fixture(scope="session")
def live_url(app: Any) -> Iterator[str]:
    """The test application served by uvicorn on a free local port, in a background thread.

    Without lifespan: the server lives for the whole session, and its scheduled jobs would write to the database
    while other modules' tests run (SQLite then answers "database is locked").
    """
    with serve_in_thread(app, lifespan="off") as url:
        yield url


@pytest.fixture(scope="session")
def admin_token(session_factory: sessionmaker[Session], settings: Settings) -> str:
    """A token of an admin of the whole country."""
    return user_token(session_factory, settings)


@pytest.fixture(scope="session")
def sta(live_url: str, admin_token: str) -> fsc.SensorThingsService:
    """frost-sta-client pointed at the door, signed in as the admin."""
    return fsc.SensorThingsService(f"{live_url}/sta/v1.1", auth_handler=BearerAuth(admin_token))


@pytest.fixture(scope="session")
def http(live_url: str, admin_token: str) -> Iterator[httpx.Client]:
    """Plain HTTP on the door as the admin."""
    with httpx.Client(base_url=f"{live_url}/sta/v1.1", headers={"Authorization": f"Bearer {admin_token}"},
                      timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def api(live_url: str, admin_token: str) -> Iterator[httpx.Client]:
    """Plain HTTP on the kernel's REST API as the admin."""
    with httpx.Client(base_url=f"{live_url}/api", headers={"Authorization": f"Bearer {admin_token}"},
                      timeout=60) as client:
        yield client


@pytest.fixture
def as_user(live_url: str, session_factory: sessionmaker[Session], settings: Settings
            ) -> Callable[..., httpx.Client]:
    """An HTTP client on the door as a new user of some role and scope."""
    clients: list[httpx.Client] = []

    def _make(role: str = "admin", scope: str = "VN") -> httpx.Client:
        token = user_token(session_factory, settings, role, scope)
        client = httpx.Client(base_url=f"{live_url}/sta/v1.1", headers={"Authorization": f"Bearer {token}"},
                              timeout=60)
        clients.append(client)
        return client

    yield _make  # type: ignore[misc]
    for c in clients:
        c.close()


@pytest.fixture
def as_source(live_url: str, session_factory: sessionmaker[Session]) -> Callable[..., httpx.Client]:
    """An HTTP client on the door as a source system with an API key."""

    def _make(scope: str = "VN", allowed_writes: list[str] | None = None) -> httpx.Client:
        with transaction(session_factory) as session:
            _, key = create_source(session, actor=system_actor("test"), name=unique("src"), scope=scope,
                                   allowed_writes=allowed_writes)
        return httpx.Client(base_url=f"{live_url}/sta/v1.1", headers={"X-API-Key": key}, timeout=60)

    return _make


def thing_body(name: str | None = None, unit: str = WARD, code: str | None = None,
               observations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A Thing with a Location and one Datastream (new Sensor, ObservedProperty test.<unique>) for deep insert."""
    return {
        "name": name or unique("Trạm "), "description": "Trạm quan trắc không khí",
        "properties": {"saola:unit_code": unit, "owner": "Sở NN&MT"},
        "Locations": [{"name": unique("Vị trí "), "description": "Hồ Xuân Hương",
                       "encodingType": "application/geo+json",
                       "location": {"type": "Point", "coordinates": [108.4419, 11.9404]}}],
        "Datastreams": [{
            "name": "PM2.5", "description": "Bụi mịn PM2.5", "observationType": OM,
            "unitOfMeasurement": {"name": "microgram per cubic metre", "symbol": "µg/m³", "definition": "ucum:ug/m3"},
            "Sensor": {"name": "SDS011", "description": "laser", "encodingType": "application/pdf",
                       "metadata": "https://example.org/sds011.pdf"},
            "ObservedProperty": {"name": "PM2.5", "definition": code or f"test.{unique('pm')}",
                                 "description": "fine particulate matter"},
            "Observations": observations or [],
        }],
    }


def make_thing(http: httpx.Client, **kw: Any) -> dict[str, Any]:
    """Deep-insert a Thing and return it with its Datastream expanded."""
    r = http.post("/Things", json=thing_body(**kw))
    assert r.status_code == 201, r.text
    thing_id = r.json()["@iot.id"]
    r = http.get(f"/Things('{thing_id}')", params={"$expand": "Datastreams($expand=ObservedProperty),Locations"})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]
