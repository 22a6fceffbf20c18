"""Shared helpers and fixtures of the rule, alert and CAP tests (no tests here).

A test module uses the fixtures by naming them at module level: `engine = test_rules_helpers.engine`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from saola.bus import Message, get_bus
from saola.config import Settings
from saola.core.alerts.models import Alert
from saola.core.auth.context import system_actor
from saola.core.entities.models import Entity
from saola.core.errors import NotFound
from saola.core.indicators.schemas import IndicatorCreate
from saola.core.indicators.service import create_indicator
from saola.core.observations import service as observations
from saola.core.rules.engine import RulesEngine, get_engine, wait_idle
from saola.core.rules.schemas import RuleCreate
from saola.core.rules.service import create_rule, delete_rule
from saola.db.engine import transaction
from saola.packs.definitions import EntityTypeDefinition, EventTypeDefinition
from saola.packs.manager import Registry
from tests.conftest import unique
from tests.ops.test_cases_helpers import new_person

WARD = "24781"  # Phường Xuân Hương - Đà Lạt (Lâm Đồng, 68)
WARD2 = "24787"  # Phường Cam Ly - Đà Lạt (68)
OTHER = "26506"  # Phường Vũng Tàu (Hồ Chí Minh, 79)
T0 = datetime(2026, 10, 1, tzinfo=UTC)
EVENT_TYPE = "test.ops_alarm"
ENTITY_TYPE = "station.ops_test"


# ---------------------------------------------------------------------------------------------------------------
# fixtures and helpers


CREATED_RULES: list[uuid.UUID] = []


@pytest.fixture(autouse=True)
def declared_types(app, session_factory) -> Iterator[Registry]:  # type: ignore[no-untyped-def]
    """Declare the event and entity types these tests use (what a test pack would do through hooks); afterwards,
    remove the rules the test made, so that no silence or event-count rule of theirs wakes up during later tests
    (the server's clock job would resolve or fire them in the background)."""
    registry: Registry = app.state.registry
    event = EventTypeDefinition(type=EVENT_TYPE, name_vi="Báo động thử", name_en="Test alarm", domain="test",
                                default_severity="medium")
    entity = EntityTypeDefinition(type=ENTITY_TYPE, name_vi="Trạm thử", name_en="Test station", domain="test")
    added_event = registry.event_types.setdefault(EVENT_TYPE, event) is event
    added_entity = registry.entity_types.setdefault(ENTITY_TYPE, entity) is entity
    yield registry
    while CREATED_RULES:
        rule_id = CREATED_RULES.pop()
        with contextlib.suppress(NotFound), transaction(session_factory) as session:
            delete_rule(session, actor=system_actor("test"), rule_id=rule_id)
    if added_event:
        registry.event_types.pop(EVENT_TYPE, None)
    if added_entity:
        registry.entity_types.pop(ENTITY_TYPE, None)


@pytest.fixture(scope="module")
def headers_for(app, settings: Settings, session_factory: sessionmaker[Session]) -> Callable[..., dict[str, str]]:  # type: ignore[no-untyped-def]
    """Authorization headers of a user with a role and scope, created once per module (through the operations
    tests' one user factory, test_cases_helpers.new_person)."""
    cache: dict[tuple[str, str], dict[str, str]] = {}

    def make(role: str = "admin", scope: str = "VN") -> dict[str, str]:
        if (role, scope) not in cache:
            cache[(role, scope)] = new_person(settings, session_factory, app.state.registry.permissions, role,
                                              scope).headers
        return cache[(role, scope)]

    return make


@pytest.fixture
def engine(client: TestClient) -> RulesEngine:
    """The rules engine the application started (the client's lifespan runs saola_startup)."""
    running = get_engine()
    assert running is not None and running.session_factory is client.app.state.session_factory  # type: ignore[attr-defined]
    return running


def make_indicator(session_factory: sessionmaker[Session], **fields: Any) -> str:
    """A fresh indicator only this test writes to."""
    code = f"test.{unique('r')}"
    data = IndicatorCreate(code=code, name_vi="Chỉ số thử", name_en="Test indicator", domain="test", **fields)
    with transaction(session_factory) as session:
        create_indicator(session, actor=system_actor("test"), data=data)
    return code


def make_entity(session_factory: sessionmaker[Session], unit_code: str = WARD, *, kind: str = ENTITY_TYPE,
                geometry: dict[str, Any] | None = None) -> uuid.UUID:
    """A station in a unit, written straight to its table."""
    with transaction(session_factory) as session:
        entity = Entity(type=kind, name=f"Trạm {unique('s')}", unit_code=unit_code, external_id=unique("st"),
                        geometry=geometry)
        session.add(entity)
        session.flush()
        return entity.id


def feed(session_factory: sessionmaker[Session], code: str, points: list[tuple[datetime | float, float]],
         unit: str | None = WARD, entity: uuid.UUID | None = None, *, batch: bool = False) -> None:
    """Ingest readings (one batch per reading unless batch): what a source system would send.

    A point's time may be a number of seconds after T0.
    """
    rows = []
    for ts, value in points:
        moment = T0 + timedelta(seconds=ts) if isinstance(ts, int | float) else ts
        row: dict[str, Any] = {"indicator": code, "ts": moment.isoformat(), "value": float(value)}
        row.update({"entity": entity} if entity else {"unit": unit})
        rows.append(row)
    groups = [rows] if batch else [[r] for r in rows]
    for group in groups:
        with transaction(session_factory) as session:
            observations.ingest(session, actor=system_actor("test"), items=group)
    assert wait_idle()  # the engine evaluates on its own thread: let it finish these readings


def make_rule(session_factory: sessionmaker[Session], registry: Registry, *, kind: str, params: dict[str, Any],
              unit_code: str = WARD, severity: str = "high", **fields: Any) -> uuid.UUID:
    """A rule created through the service, as the system."""
    data = RuleCreate(name=f"Quy tắc {unique('q')}", kind=kind, params=params, unit_code=unit_code,  # type: ignore[arg-type]
                      severity=severity, **fields)
    with transaction(session_factory) as session:
        rule_id = create_rule(session, actor=system_actor("test"), data=data, registry=registry).id
    CREATED_RULES.append(rule_id)
    return rule_id


def alerts_of(session_factory: sessionmaker[Session], rule_id: uuid.UUID) -> list[Alert]:
    """Every alert of a rule, oldest first."""
    assert wait_idle()
    with session_factory() as session:
        return list(session.scalars(select(Alert).where(Alert.rule_id == rule_id).order_by(Alert.fired_at, Alert.id)))


def open_alerts(session_factory: sessionmaker[Session], rule_id: uuid.UUID) -> list[Alert]:
    """The open alerts of a rule."""
    return [a for a in alerts_of(session_factory, rule_id) if a.status != "resolved"]


class Heard:
    """Collects the bus messages of some topics while in use."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.messages: list[Message] = []

    def __enter__(self) -> Heard:
        self._stop = get_bus().subscribe(self.pattern, self.messages.append)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop()

    def topics(self) -> list[str]:
        """Topics heard, in order."""
        return [m.topic for m in self.messages]
