"""Shared fixtures: every database test runs on SQLite and on the real PostgreSQL server.

SAOLA_TEST_BACKENDS=sqlite (or postgresql) limits the run to one backend while developing.
SAOLA_TEST_PG_URL points at the PostgreSQL server (default: the local one, trust auth).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from saola.app import create_app
from saola.config import Settings
from saola.core.auth.context import Actor, system_actor
from saola.core.auth.service import create_user
from saola.core.sources.service import create_source
from saola.db.engine import make_engine, make_session_factory, transaction

PG_ADMIN_URL = os.environ.get("SAOLA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = [b for b in os.environ.get("SAOLA_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"


def _pg_database(name: str) -> str:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


def _drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database kind under test: sqlite or postgresql."""
    return request.param


@pytest.fixture(scope="session")
def settings(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of a fresh, migrated database with the unit tree loaded, shared by the session."""
    from saola.cli import upgrade_database
    from saola.core.units.service import load_official_units

    data_dir = tmp_path_factory.mktemp(f"saola-{backend}")
    pg_name = f"saola_test_{os.getpid()}"
    url = _pg_database(pg_name) if backend == "postgresql" else f"sqlite:///{data_dir / 'saola.db'}"
    # No scheduled jobs behind the tests' backs: the SLA pass would escalate one test's overdue cases while another
    # counts rows to prove a refused request wrote nothing. Tests that need a job call it.
    s = Settings(data_dir=data_dir, database_url=url, secret_key=TEST_SECRET, demo_mode=False, run_jobs=False)
    upgrade_database(s)
    engine = make_engine(s)
    with transaction(make_session_factory(engine)) as session:
        load_official_units(session)
    engine.dispose()
    yield s
    if backend == "postgresql":
        _drop_pg_database(pg_name)


@pytest.fixture(scope="session")
def app(settings: Settings):  # type: ignore[no-untyped-def]
    """The application over the session's database."""
    return create_app(settings)


@pytest.fixture(scope="session")
def session_factory(app) -> sessionmaker[Session]:  # type: ignore[no-untyped-def]
    """Sessions on the same engine as the application."""
    return app.state.session_factory


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """An HTTP client for the application."""
    with TestClient(app) as c:
        yield c


@pytest.fixture
def system() -> Actor:
    """The kernel's own actor (whole country, every permission)."""
    return system_actor("test")


def unique(prefix: str = "t") -> str:
    """A name no other test uses."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_user(client: TestClient, session_factory: sessionmaker[Session]) -> Callable[..., dict[str, str]]:
    """Create a user and return Authorization headers for them."""

    def _make(role: str = "admin", scope: str = "VN") -> dict[str, str]:
        username, password = unique("u"), "password-" + unique()
        with transaction(session_factory) as session:
            create_user(session, actor=system_actor("test"), username=username, password=password, role=role,
                        scope=scope)
        r = client.post("/api/auth/token", data={"username": username, "password": password})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    return _make


@pytest.fixture
def make_source(session_factory: sessionmaker[Session]) -> Callable[..., dict[str, str]]:
    """Register a source system and return X-API-Key headers for it."""

    def _make(scope: str = "VN", allowed_writes: list[str] | None = None) -> dict[str, str]:
        with transaction(session_factory) as session:
            _, key = create_source(session, actor=system_actor("test"), name=unique("src"), scope=scope,
                                   allowed_writes=allowed_writes)
        return {"X-API-Key": key}

    return _make


@pytest.fixture
def admin_headers(make_user: Callable[..., dict[str, str]]) -> dict[str, str]:
    """Headers of an admin of the whole country."""
    return make_user("admin", "VN")


ARTIFACTS = Path(os.environ.get("SAOLA_TEST_ARTIFACTS", "test-artifacts"))
