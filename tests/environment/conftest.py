"""Environment fixtures: stations made through the entities service, readings through the kernel's ingest, and
the AQI engine following the bus as it does in the server."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from saola.core.auth.context import system_actor
from saola.core.entities.schemas import EntityCreate
from saola.core.entities.service import upsert_entities
from saola.core.observations.service import ingest
from saola.db.engine import transaction
from saola.domains.environment.engine import AqiEngine, start_engine, wait_idle
from saola.domains.environment.params import ENTITY_TYPE
from saola.packs.manager import get_registry
from tests.conftest import unique

XUAN_HUONG, CAM_LY = "24781", "24787"  # two wards of Đà Lạt (province 68)


@pytest.fixture
def engine(client: TestClient, session_factory: sessionmaker[Session]) -> AqiEngine:
    """The process's AQI engine on the test database (started by the app's startup hook)."""
    return start_engine(session_factory)


@pytest.fixture
def default_rules(session_factory: sessionmaker[Session]) -> None:
    """The packs' default rules, installed once the unit tree exists (idempotent by key)."""
    from saola.core.rules.service import install_default_rules
    from saola.packs.manager import get_plugin_manager

    with transaction(session_factory) as session:
        install_default_rules(session, actor=system_actor("test"), registry=get_registry(),
                              plugin_manager=get_plugin_manager())
    # Make sure the running rules engine has them before readings arrive (it reloads on `rules.*` messages, but
    # an engine started earlier in the session may have missed rules installed in a nested transaction).
    from saola.core.rules import engine as rules_engine

    running = rules_engine.get_engine()
    if running is not None:
        running.reload()


@pytest.fixture
def make_station(session_factory: sessionmaker[Session]) -> Callable[..., str]:
    """Create a station of a kind in a commune; returns its entity id."""

    def _make(kind: str = "air", unit: str = XUAN_HUONG, lon: float = 108.44, lat: float = 11.94) -> str:
        item = EntityCreate(type=ENTITY_TYPE[kind], name=f"Trạm {unique('st')}", unit_code=unit,
                            external_id=unique("env"),
                            geometry={"type": "Point", "coordinates": [lon, lat]})  # type: ignore[arg-type]
        # Write-first (SQLite's lock at BEGIN): a deferred transaction that reads first is refused outright, not
        # made to wait, when a background writer (the AQI or rules engine) commits in between.
        with transaction(session_factory) as session:
            result = upsert_entities(session, actor=system_actor("test"), registry=get_registry(), items=[item])
        return str(result.ids[0])

    return _make


@pytest.fixture
def send(session_factory: sessionmaker[Session]) -> Callable[..., Any]:
    """Ingest readings [(indicator, entity, time, value), ...] in one batch through the kernel's ingest."""

    def _send(rows: Sequence[tuple[str, str, datetime, float]]) -> Any:
        items = [{"indicator": i, "entity": e, "ts": t, "value": float(v)} for i, e, t, v in rows]
        with transaction(session_factory) as session:
            result = ingest(session, actor=system_actor("test"), items=items)
        assert wait_idle()  # the AQI engine evaluates on its own thread: let it catch up with this batch
        return result

    return _send


@pytest.fixture
def base_hour() -> Iterator[datetime]:
    """The start of the UTC hour 14 hours ago: room for 12 hours of history that ends in the past."""
    now = datetime.now(UTC)
    yield now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=14)


def new_id() -> str:
    """A random entity id (for 404 checks)."""
    return str(uuid.uuid4())
