"""Fixtures of the citizen reports tests: agencies of Lâm Đồng, people per role, photos, clients with their own IP.

Every public submission goes through a client with an IP address of its own (the per-IP limit is real), and at
a random place in Lâm Đồng (so reports of different tests are never linked as duplicates of each other).
"""

from __future__ import annotations

import io
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from saola.app import create_app
from saola.config import Settings
from saola.core.auth.context import Actor
from saola.core.auth.models import User
from saola.core.auth.service import actor_for_user, issue_token
from saola.core.units.service import ensure_agency
from saola.db.engine import transaction
from tests.conftest import unique
from tests.live import serve_in_thread

PROVINCE = "68"
WARD = "24781"  # Phường Xuân Hương - Đà Lạt
OTHER_WARD = "24787"  # Phường Cam Ly - Đà Lạt
NAME = "Nguyễn Thị Bímật"
PHONE = "0912 345 678"
EMAIL = "bimat.nguyen@example.vn"


@dataclass
class Person:
    """A test user: headers for the API and the Actor for services."""

    headers: dict[str, str]
    actor: Actor
    user_id: uuid.UUID


@dataclass(frozen=True)
class Agencies:
    """The agencies reports are routed to."""

    construction: uuid.UUID  # Sở Xây dựng (province): default for lighting, traffic, drainage
    province_committee: uuid.UUID
    ward_committee: uuid.UUID
    other_ward_committee: uuid.UUID


@pytest.fixture(scope="session")
def agencies(session_factory: sessionmaker[Session]) -> Agencies:
    """Sở Xây dựng and People's Committees of the province and two wards (created once, shared)."""
    with transaction(session_factory) as session:
        xd = ensure_agency(session, unit_code=PROVINCE, code="so-xd", name="Sở Xây dựng")
        ubnd = ensure_agency(session, unit_code=PROVINCE, code="ubnd", name="UBND tỉnh Lâm Đồng",
                             kind="people_committee")
        ward = ensure_agency(session, unit_code=WARD, code="ubnd", name="UBND phường Xuân Hương",
                             kind="people_committee")
        other = ensure_agency(session, unit_code=OTHER_WARD, code="ubnd", name="UBND phường Cam Ly",
                              kind="people_committee")
        return Agencies(xd.id, ubnd.id, ward.id, other.id)


@pytest.fixture
def person(app: Any, session_factory: sessionmaker[Session]) -> Callable[..., Person]:
    """Make a user with a role, scope and optional agency, with a bearer token (no password hashing)."""

    def _make(role: str, scope: str = PROVINCE, agency_id: uuid.UUID | None = None) -> Person:
        with transaction(session_factory) as session:
            user = User(username=unique("u"), password_hash="!unusable", role=role, scope_code=scope,
                        agency_id=agency_id)
            session.add(user)
            session.flush()
            actor = actor_for_user(session, user, app.state.registry.permissions)
            token, _ = issue_token(app.state.settings, user)
            return Person({"Authorization": f"Bearer {token}"}, actor, user.id)

    return _make


def new_ip() -> str:
    """An IP address no other test uses."""
    n = uuid.uuid4().int
    return f"10.{n % 250 + 1}.{(n >> 8) % 250 + 1}.{(n >> 16) % 250 + 1}"


@pytest.fixture
def citizen(app: Any) -> Callable[..., TestClient]:
    """A client calling from an IP of its own (optionally against another app over the same database)."""

    def _make(target: Any = None, ip: str | None = None) -> TestClient:
        return TestClient(target or app, client=(ip or new_ip(), 40000))

    return _make


@pytest.fixture
def variant(settings: Settings) -> Callable[..., Any]:
    """Another application over the same database with some settings changed (limits, captcha ...)."""

    def _make(**changes: Any) -> Any:
        return create_app(settings.model_copy(update={"run_jobs": False, **changes}))

    return _make


def place() -> tuple[float, float]:
    """A random point in Lâm Đồng, far from other tests' points."""
    rng = random.Random(uuid.uuid4().int)
    return round(108.0 + rng.random() * 0.9, 6), round(11.5 + rng.random() * 0.6, 6)


def phone() -> str:
    """A phone number no other test uses."""
    return "09" + str(uuid.uuid4().int % 100_000_000).zfill(8)


def report(**changes: Any) -> dict[str, Any]:
    """Form fields of a valid report at a fresh place."""
    lon, lat = place()
    return {"description": "Đèn đường hỏng trước nhà số 12, tối không thấy đường.", "category": "lighting",
            "lon": str(lon), "lat": str(lat), "address": "12 Trần Phú", "unit_code": WARD, **changes}


def jpeg_with_gps(size: tuple[int, int] = (64, 32), artist: str = NAME, orientation: int = 6) -> bytes:
    """A JPEG carrying a GPS position, the owner's name and a rotation in its EXIF, as phones write them."""
    image = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    exif[0x013B] = artist  # Artist
    exif[0x0112] = orientation  # Orientation: 6 = rotate 90° clockwise to view
    exif[0x8825] = {1: "N", 2: (11.0, 56.0, 30.0), 3: "E", 4: (108.0, 26.0, 31.0)}  # GPS IFD
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


def png(size: tuple[int, int] = (16, 16)) -> bytes:
    """A small PNG."""
    out = io.BytesIO()
    Image.new("RGB", size, (30, 200, 30)).save(out, format="PNG")
    return out.getvalue()


def submit(client: TestClient, photos: list[tuple[str, bytes, str]] | None = None, **changes: Any) -> Any:
    """POST a multipart report; returns the response."""
    files = [("photos", p) for p in photos or []]
    return client.post("/api/public/citizen-reports", data=report(**changes), files=files or None)


@pytest.fixture(scope="session")
def live_url(app: Any) -> Iterator[str]:
    """The test application served by uvicorn on a free local port (for the georeport client, which uses requests).

    Without lifespan: its scheduled jobs would write to the database while other modules' tests run.
    """
    with serve_in_thread(app, lifespan="off") as url:
        yield url
