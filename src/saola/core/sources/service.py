"""Source systems: registration, API keys (shown once, stored hashed) and the Actor a key acts as."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from saola.core.audit.service import audit
from saola.core.auth.context import Actor
from saola.core.cache import MISSING, LookupCache
from saola.core.errors import Conflict, FieldError, NotFound, Unauthorized, ValidationFailed
from saola.core.sources.models import Source
from saola.core.sources.schemas import WRITE_PATTERN
from saola.core.units.models import Unit
from saola.core.units.service import require_unit_in_scope, units_in_scope
from saola.db.outbox import record_change

SOURCE_PERMISSIONS = frozenset(
    {"units:read", "indicators:read", "entities:read", "observations:write", "events:write", "entities:write"}
)
_KEY = re.compile(r"^sk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})$")
_IDENTITIES = LookupCache("source keys")


@dataclass(frozen=True, slots=True)
class SourceIdentity:
    """What an API key stands for: its source's Actor, or why the key is refused."""

    actor: Actor | None
    source_id: int | None
    name: str | None
    is_demo: bool
    refusal: str | None = None


def _hash_secret(secret: str) -> str:
    # API keys carry 256 bits of randomness, so a fast hash is safe here and keeps each request cheap.
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_key() -> tuple[str, str, str]:
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"sk_{prefix}_{secret}", prefix, _hash_secret(secret)


def create_source(
    session: Session, *, actor: Actor, name: str, scope: str, description: str = "",
    allowed_writes: list[str] | None = None, rate_limit_per_minute: int = 600, is_demo: bool = False,
) -> tuple[Source, str]:
    """Register a source inside the actor's scope; returns it with its API key (shown only now)."""
    actor.require("sources:write")
    writes = allowed_writes if allowed_writes is not None else ["observations:*", "events:*", "entities:*"]
    bad = [i for i, w in enumerate(writes) if not re.match(WRITE_PATTERN, w)]
    if bad:
        raise ValidationFailed("allowed_writes entries must look like kind:pattern",
                               [FieldError(["body", "allowed_writes", i], "expected kind:pattern") for i in bad])
    unit = require_unit_in_scope(session, actor=actor, code=scope, loc=["body", "scope"])
    if session.scalar(select(Source.id).where(Source.name == name)):
        raise Conflict(f"source {name!r} already exists")
    key, prefix, digest = _new_key()
    source = Source(name=name, scope_code=unit.code, description=description, allowed_writes=writes,
                    key_prefix=prefix, key_hash=digest, rate_limit_per_minute=rate_limit_per_minute,
                    is_demo=is_demo)
    session.add(source)
    session.flush()
    audit(session, actor=actor, action="source.create", target_type="source", target_id=str(source.id),
          detail={"name": name, "scope": unit.code, "allowed_writes": writes})
    record_change(session, topic="sources.created", aggregate_type="source", aggregate_id=str(source.id),
                  payload={"name": name, "scope": unit.code})
    return source, key


def rotate_key(session: Session, *, actor: Actor, source_id: int) -> tuple[Source, str]:
    """Replace a source's API key; the old key stops working at once."""
    actor.require("sources:write")
    source = get_source(session, actor=actor, source_id=source_id)
    key, prefix, digest = _new_key()
    source.key_prefix, source.key_hash = prefix, digest
    _IDENTITIES.clear_after_commit(session)
    audit(session, actor=actor, action="source.rotate_key", target_type="source", target_id=str(source.id))
    return source, key


def set_active(session: Session, *, actor: Actor, source_id: int, active: bool) -> Source:
    """Enable or disable a source; a disabled source's key gets 401."""
    actor.require("sources:write")
    source = get_source(session, actor=actor, source_id=source_id)
    source.is_active = active
    _IDENTITIES.clear_after_commit(session)
    audit(session, actor=actor, action="source.enable" if active else "source.disable", target_type="source",
          target_id=str(source.id))
    return source


def get_source(session: Session, *, actor: Actor, source_id: int) -> Source:
    """One source inside the actor's scope."""
    actor.require("sources:read")
    source = session.get(Source, source_id)
    if source is None or source.scope_code not in set(
        session.scalars(units_in_scope(actor).where(Unit.code == source.scope_code))
    ):
        raise NotFound(f"source {source_id} not found")
    return source


def list_sources(session: Session, *, actor: Actor, limit: int = 100, offset: int = 0) -> tuple[int, list[Source]]:
    """Sources registered inside the actor's scope."""
    actor.require("sources:read")
    stmt = select(Source).where(Source.scope_code.in_(units_in_scope(actor)))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    return total, list(session.scalars(stmt.order_by(Source.name).limit(limit).offset(offset)))


DEMO_KEY_REFUSED = "demo source keys are refused outside demo mode"


def source_by_key(session: Session, api_key: str, *, allow_demo: bool) -> Source:
    """The active source owning this API key; Unauthorized for anything else, and for a demo source's key unless
    allow_demo (the server runs in demo mode)."""
    match = _KEY.match(api_key or "")
    if not match:
        raise Unauthorized("invalid API key")
    source = session.scalar(select(Source).where(Source.key_prefix == match.group(1)))
    if source is None or not source.is_active or not hmac.compare_digest(
        source.key_hash, _hash_secret(match.group(2))
    ):
        raise Unauthorized("invalid API key")
    if source.is_demo and not allow_demo:
        raise Unauthorized(DEMO_KEY_REFUSED)
    return source


def authenticate_key(session: Session, api_key: str, *, demo_mode: bool) -> SourceIdentity:
    """Who an API key belongs to, kept for a few seconds (saola.core.cache); refusals are kept too, so a wrong
    key costs no query. Unauthorized when the key is refused, or is a demo source's outside demo mode."""
    cache_key = hashlib.sha256(api_key.encode("utf-8", "replace")).digest()  # no plaintext keys kept in memory
    found = _IDENTITIES.get(session, cache_key)
    if found is MISSING:
        try:
            source = source_by_key(session, api_key, allow_demo=True)  # demo mode is checked below, after the cache
            found = SourceIdentity(actor_for_source(session, source), source.id, source.name, source.is_demo)
        except Unauthorized as exc:
            found = SourceIdentity(None, None, None, False, exc.message)
        _IDENTITIES.put(session, cache_key, found)
    if found.refusal is not None:
        raise Unauthorized(found.refusal)
    if found.is_demo and not demo_mode:
        raise Unauthorized(DEMO_KEY_REFUSED)
    return found


def actor_for_source(session: Session, source: Source) -> Actor:
    """The Actor a source acts as: its scope, source permissions and its allowed writes."""
    unit = session.get(Unit, source.scope_code)
    if unit is None:
        raise Unauthorized("the source's scope unit no longer exists")
    return Actor(kind="source", id=None, name=source.name, role="source", scope_code=unit.code,
                 scope_path=unit.path, permissions=SOURCE_PERMISSIONS, source_id=source.id,
                 allowed_writes=tuple(source.allowed_writes))
