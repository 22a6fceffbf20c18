"""The transactional outbox: every change writes a row here in the same transaction.

The bus publishes these rows after commit, and federation reads them in order by id to push
changes to a parent node; a change that rolls back leaves no outbox row, so nothing is announced
that did not happen.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, event
from sqlalchemy.orm import Mapped, Session, mapped_column

from saola.db.base import Base, current_node
from saola.db.types import JSONType, UTCDateTime, utcnow

# BigInteger autoincrement is not a rowid alias on SQLite; use INTEGER there.
OutboxId = BigInteger().with_variant(Integer(), "sqlite")


class OutboxEntry(Base):
    """One announced change: topic, the changed record, and a JSON payload."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(OutboxId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(120), index=True)
    aggregate_type: Mapped[str] = mapped_column(String(60))
    aggregate_id: Mapped[str] = mapped_column(String(80))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    origin_node: Mapped[str] = mapped_column(String(64), default=current_node)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def record_change(
    session: Session, *, topic: str, aggregate_type: str, aggregate_id: str, payload: dict[str, Any],
    live: dict[str, Any] | None = None,
) -> OutboxEntry:
    """Add an outbox row to the session's transaction and queue it for the bus after commit.

    `live` carries bulky data that subscribers on this node need right away (for example the rows of an
    ingested batch, for the rules and the stream) but that the outbox need not keep.
    """
    entry = OutboxEntry(
        topic=topic, aggregate_type=aggregate_type, aggregate_id=aggregate_id, payload=payload
    )
    session.add(entry)
    session.info.setdefault("outbox_pending", []).append((entry, live or {}))
    return entry


@event.listens_for(Session, "after_commit")
def _publish_after_commit(session: Session) -> None:
    pending = session.info.pop("outbox_pending", None)
    if not pending:
        return
    from saola.bus import get_bus  # local import: the bus is optional for storage users

    bus = get_bus()
    for entry, live in pending:
        bus.publish(entry.topic, {"topic": entry.topic, "id": entry.aggregate_id, "outbox_id": entry.id,
                                  **entry.payload, **live})


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    session.info.pop("outbox_pending", None)
