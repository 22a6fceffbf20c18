"""Password hashing (argon2), bearer tokens (signed JWT), users, and the Actor a request acts as."""

from __future__ import annotations

import uuid
from datetime import timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from saola.config import Settings
from saola.core.audit.service import audit
from saola.core.auth.context import Actor
from saola.core.auth.models import User
from saola.core.auth.roles import ROLES
from saola.core.errors import Conflict, FieldError, NotFound, Unauthorized, ValidationFailed
from saola.core.units.models import Unit
from saola.core.units.service import normalize_code, require_unit_in_scope, units_in_scope
from saola.db.outbox import record_change
from saola.db.types import utcnow

_hasher = PasswordHasher()
# Verifying against this keeps the time of "no such user" close to "wrong password".
_DUMMY_HASH = _hasher.hash("saola-timing-equaliser")
TOKEN_ALGORITHM = "HS256"


def hash_password(password: str) -> str:
    """An argon2id hash of the password."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when the password matches the hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def permissions_for(role: str, grants: dict[str, set[str]]) -> frozenset[str]:
    """The merged permissions of a role (kernel and packs)."""
    return frozenset(grants.get(role, set()))


def actor_for_user(session: Session, user: User, grants: dict[str, set[str]]) -> Actor:
    """The Actor a user acts as, with the path of their scope unit."""
    unit = session.get(Unit, user.scope_code)
    if unit is None:
        raise Unauthorized("the user's scope unit no longer exists")
    return Actor(kind="user", id=user.id, name=user.username, role=user.role, scope_code=unit.code,
                 scope_path=unit.path, permissions=permissions_for(user.role, grants))


def authenticate(session: Session, *, username: str, password: str) -> User:
    """The active user with these credentials; Unauthorized otherwise (same answer for every failure)."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        verify_password(_DUMMY_HASH, password)
        raise Unauthorized("wrong username or password")
    if not verify_password(user.password_hash, password) or not user.is_active:
        raise Unauthorized("wrong username or password")
    return user


def issue_token(settings: Settings, user: User) -> tuple[str, int]:
    """A signed bearer token for the user and its lifetime in seconds."""
    ttl = settings.token_ttl_minutes * 60
    now = utcnow()
    claims = {"sub": str(user.id), "role": user.role, "iat": now, "exp": now + timedelta(seconds=ttl),
              "iss": settings.node_id}
    return jwt.encode(claims, settings.secret_key, algorithm=TOKEN_ALGORITHM), ttl


def user_from_token(session: Session, settings: Settings, token: str) -> User:
    """The active user a bearer token names; Unauthorized when forged, expired or revoked."""
    try:
        claims = jwt.decode(token, settings.secret_key, algorithms=[TOKEN_ALGORITHM],
                            options={"require": ["sub", "exp"]})
        user_id = uuid.UUID(claims["sub"])
    except (jwt.PyJWTError, ValueError) as exc:
        raise Unauthorized("invalid or expired token") from exc
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise Unauthorized("invalid or expired token")
    return user


def create_user(
    session: Session, *, actor: Actor, username: str, password: str, role: str, scope: str,
    full_name: str = "", agency_id: uuid.UUID | None = None, is_demo: bool = False,
) -> User:
    """Create a user whose scope lies inside the creator's scope."""
    actor.require("users:write")
    if role not in ROLES:
        raise ValidationFailed(f"unknown role {role!r}", [FieldError(["body", "role"], f"unknown role {role!r}")])
    unit = require_unit_in_scope(session, actor=actor, code=scope, loc=["body", "scope"])
    if session.scalar(select(User.id).where(User.username == username)):
        raise Conflict(f"username {username!r} is taken")
    user = User(username=username, password_hash=hash_password(password), role=role, scope_code=unit.code,
                full_name=full_name, agency_id=agency_id, is_demo=is_demo)
    session.add(user)
    session.flush()
    audit(session, actor=actor, action="user.create", target_type="user", target_id=str(user.id),
          detail={"username": username, "role": role, "scope": unit.code})
    record_change(session, topic="users.created", aggregate_type="user", aggregate_id=str(user.id),
                  payload={"role": role, "scope": unit.code})
    return user


def list_users(session: Session, *, actor: Actor, limit: int = 100, offset: int = 0) -> tuple[int, list[User]]:
    """Users whose scope lies inside the actor's scope."""
    actor.require("users:read")
    stmt = select(User).where(User.scope_code.in_(units_in_scope(actor)))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    return total, list(session.scalars(stmt.order_by(User.username).limit(limit).offset(offset)))


def get_user(session: Session, *, actor: Actor, user_id: uuid.UUID) -> User:
    """One user inside the actor's scope."""
    actor.require("users:read")
    user = session.get(User, user_id)
    if user is None or user.scope_code not in set(session.scalars(units_in_scope(actor).where(
            Unit.code == user.scope_code))):
        raise NotFound(f"user {user_id} not found")
    return user


def set_password(session: Session, *, actor: Actor, username: str, password: str) -> User:
    """Replace a user's password (CLI and admin)."""
    actor.require("users:write")
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"user {username!r} not found")
    require_unit_in_scope(session, actor=actor, code=normalize_code(user.scope_code), loc=["username"])
    user.password_hash = hash_password(password)
    audit(session, actor=actor, action="user.set_password", target_type="user", target_id=str(user.id))
    return user
