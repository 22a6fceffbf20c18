"""Every change writes an outbox row in its own transaction; the bus hears of it only after commit."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from saola.bus import Message, get_bus
from saola.core.errors import Conflict
from saola.core.units.models import Agency
from saola.core.units.service import create_agency
from saola.db.engine import transaction
from saola.db.outbox import OutboxEntry
from tests.conftest import unique


def test_change_and_outbox_row_commit_together(session_factory, system) -> None:
    heard: list[Message] = []
    unsubscribe = get_bus().subscribe("agencies.*", heard.append)
    try:
        code = unique("ag")
        with transaction(session_factory) as session:
            agency = create_agency(session, actor=system, data={"unit_code": "68", "code": code, "name": "Sở Thử"})
            assert heard == []  # nothing is announced before commit
        with session_factory() as session:
            row = session.scalar(select(OutboxEntry).where(OutboxEntry.aggregate_id == str(agency.id)))
        assert row is not None and row.topic == "agencies.created" and row.payload["code"] == code
        assert [m.data["id"] for m in heard] == [str(agency.id)]
        assert heard[0].data["outbox_id"] == row.id
    finally:
        unsubscribe()


def test_rolled_back_change_leaves_no_outbox_row_and_no_message(session_factory, system) -> None:
    heard: list[Message] = []
    unsubscribe = get_bus().subscribe("agencies.*", heard.append)
    code = unique("ag")
    try:
        with pytest.raises(Conflict), transaction(session_factory) as session:
            create_agency(session, actor=system, data={"unit_code": "68", "code": code, "name": "A"})
            create_agency(session, actor=system, data={"unit_code": "68", "code": code, "name": "A again"})
        with session_factory() as session:
            assert session.scalar(select(Agency).where(Agency.code == code)) is None
            codes = [p.get("code") for p in session.scalars(select(OutboxEntry.payload)
                                                              .where(OutboxEntry.topic == "agencies.created"))]
        assert code not in codes
        assert heard == []
    finally:
        unsubscribe()


def test_outbox_ids_increase_in_commit_order(session_factory, system) -> None:
    ids = []
    for _ in range(3):
        with transaction(session_factory) as session:
            create_agency(session, actor=system, data={"unit_code": "68", "code": unique("ag"), "name": "B"})
        with session_factory() as session:
            ids.append(session.scalar(select(OutboxEntry.id).order_by(OutboxEntry.id.desc()).limit(1)))
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_ids_are_time_sortable_uuid7(session_factory, system) -> None:
    made = []
    for _ in range(3):
        with transaction(session_factory) as session:
            made.append(create_agency(session, actor=system,
                                      data={"unit_code": "68", "code": unique("ag"), "name": "C"}).id)
    assert all(i.version == 7 for i in made)
    assert made == sorted(made)
