"""What the doors share: source-only access, idempotency keys for events, and dead letters."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import false, func, insert, or_, select
from sqlalchemy.orm import Session

from saola.core.auth.context import Actor
from saola.core.errors import FieldError, Forbidden, ValidationFailed
from saola.core.ingest.models import DeadLetter
from saola.core.sources.models import Source
from saola.core.units.models import Unit
from saola.core.units.service import NATION_CODE, scope_condition
from saola.db.base import current_node
from saola.db.ids import new_id
from saola.db.types import utcnow

MAX_PAYLOAD_CHARS = 64 * 1024  # a dead letter keeps at most this much of the message
MAX_ERRORS = 1000  # row errors returned (and kept) for one refused batch
EVENT_KEY_PREFIX = "h:"
_SECRET = re.compile(r"(sk_[0-9a-f]{12}_)[A-Za-z0-9_-]+")


@dataclass
class DeadLetterIn:
    """A message to keep as refused."""

    channel: str
    reason: str
    payload: bytes | str = b""
    topic: str = ""
    source_name: str | None = None
    source_id: int | None = None
    authenticated: bool = False
    errors: list[dict[str, Any]] = field(default_factory=list)
    received_at: datetime | None = None


def require_source(actor: Actor) -> Actor:
    """The actor when it is a source system; Forbidden for people (they write through the kernel routes)."""
    if actor.kind != "source":
        raise Forbidden("the ingest doors take a source system's X-API-Key; people write readings through "
                        "POST /api/observations and events through POST /api/events")
    return actor


def with_body_loc(exc: ValidationFailed) -> ValidationFailed:
    """The same error with every path under ['body', ...] and at most MAX_ERRORS of them."""
    errors = [e if e.loc[:1] == ["body"] else FieldError(["body", *e.loc], e.msg, e.type)
              for e in exc.errors[:MAX_ERRORS]]
    message = exc.message if len(exc.errors) <= MAX_ERRORS else f"{exc.message} (first {MAX_ERRORS} errors shown)"
    return ValidationFailed(message, errors)


def event_key(item: Mapping[str, Any]) -> str:
    """A stable idempotency key for an event sent without external_id: a hash of what it says."""
    digest = hashlib.sha256(orjson.dumps(dict(item), option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()
    return EVENT_KEY_PREFIX + digest[:40]


def with_event_keys(items: Sequence[Any]) -> list[Any]:
    """Events with an external_id each: the one sent, or a hash of the event, so a re-send records nothing new."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, dict) and item.get("external_id") is None:
            item = {**item, "external_id": event_key(item)}
        out.append(item)
    return out


def _text(payload: bytes | str) -> tuple[str, int]:
    raw = payload.encode("utf-8", "replace") if isinstance(payload, str) else payload
    text = raw[:MAX_PAYLOAD_CHARS].decode("utf-8", "replace").replace("\x00", "\\u0000")
    # Keys travel inside MQTT payloads: keep their public prefix (which source) and hide the secret.
    return _SECRET.sub(r"\1***", text), len(raw)


def record_dead_letters(session: Session, *, letters: Sequence[DeadLetterIn]) -> int:
    """Keep refused messages with their reason (payload cut to a bounded size); returns how many were kept."""
    if not letters:
        return 0
    now = utcnow()
    rows = []
    for letter in letters:
        text, size = _text(letter.payload)
        rows.append({
            "id": new_id(), "origin_node": current_node(), "received_at": letter.received_at or now,
            "channel": letter.channel[:16], "topic": letter.topic[:255], "source_name": (letter.source_name or None)
            and letter.source_name[:80], "source_id": letter.source_id, "authenticated": letter.authenticated,
            "payload": text, "payload_bytes": size, "reason": letter.reason[:500],
            "errors": _plain_errors(letter.errors[:MAX_ERRORS]),
        })
    session.execute(insert(DeadLetter), rows)
    return len(rows)


def _plain_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Round-trip through JSON so that nothing a driver cannot store (NUL bytes, odd types) reaches the column.
    return orjson.loads(orjson.dumps(errors, default=str).replace(b"\\u0000", b"\\\\u0000"))


def list_dead_letters(
    session: Session, *, actor: Actor, channel: str | None = None, source: str | None = None,
    since: datetime | None = None, limit: int = 100, offset: int = 0,
) -> tuple[int, list[DeadLetter]]:
    """Dead letters newest first: of sources inside the actor's scope, and unattributed ones for national users."""
    actor.require("dead_letters:read")
    if since is not None and since.tzinfo is None:
        raise ValidationFailed("since needs a time zone", [FieldError(["query", "since"], "aware time expected")])
    national = actor.scope_code == NATION_CODE
    stmt = (select(DeadLetter).outerjoin(Source, Source.id == DeadLetter.source_id)
            .outerjoin(Unit, Unit.code == Source.scope_code)
            .where(or_(scope_condition(actor, Unit.path),
                       DeadLetter.source_id.is_(None) if national else false())))
    if channel:
        stmt = stmt.where(DeadLetter.channel == channel)
    if source:
        stmt = stmt.where(DeadLetter.source_name == source)
    if since is not None:
        stmt = stmt.where(DeadLetter.received_at >= since)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(DeadLetter.received_at.desc(), DeadLetter.id.desc())
                           .limit(limit).offset(offset))
    return total, list(rows)
