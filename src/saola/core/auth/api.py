"""Routes for tokens and users."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from fastapi.security import OAuth2PasswordRequestForm

from saola.core.audit.service import audit
from saola.core.auth import service
from saola.core.auth.schemas import Me, Token, UserCreate, UserRead
from saola.core.errors import Unauthorized
from saola.core.limits import MAX_OFFSET
from saola.deps import ActorDep, RegistryDep, SessionDep, SettingsDep

router = APIRouter(prefix="/api", tags=["auth"])


@router.post("/auth/token", response_model=Token, summary="Log in (OAuth2 password form)")
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep, settings: SettingsDep,
    registry: RegistryDep,
) -> Token:
    """Exchange a username and password for a bearer token."""
    user = service.authenticate(session, username=form.username, password=form.password)
    if user.is_demo and not settings.demo_mode:
        raise Unauthorized("demo accounts are refused outside demo mode")
    token, ttl = service.issue_token(settings, user)
    actor = service.actor_for_user(session, user, registry.permissions)
    audit(session, actor=actor, action="auth.login", target_type="user", target_id=str(user.id))
    return Token(access_token=token, expires_in=ttl)


@router.get("/auth/me", response_model=Me, summary="Who am I")
def me(actor: ActorDep) -> Me:
    """The caller's identity, role, scope and permissions."""
    return Me(kind=actor.kind, name=actor.name, role=actor.role, scope_code=actor.scope_code,
              permissions=sorted(actor.permissions))


@router.get("/users", response_model=list[UserRead], summary="List users")
def list_users(
    session: SessionDep, actor: ActorDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[UserRead]:
    """Users whose scope lies inside the caller's scope."""
    _, items = service.list_users(session, actor=actor, limit=limit, offset=offset)
    return [UserRead.model_validate(u) for u in items]


@router.post("/users", response_model=UserRead, status_code=status.HTTP_201_CREATED, summary="Create a user")
def create_user(body: UserCreate, session: SessionDep, actor: ActorDep) -> UserRead:
    """Create a user with a role and a scope inside the caller's scope."""
    user = service.create_user(session, actor=actor, username=body.username, password=body.password,
                               role=body.role, scope=body.scope, full_name=body.full_name,
                               agency_id=body.agency_id)
    return UserRead.model_validate(user)


@router.get("/users/{user_id}", response_model=UserRead, summary="One user")
def get_user(user_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> UserRead:
    """A user inside the caller's scope."""
    return UserRead.model_validate(service.get_user(session, actor=actor, user_id=user_id))
