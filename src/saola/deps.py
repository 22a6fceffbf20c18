"""FastAPI dependencies shared by every router: settings, database session, registry and the caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy.orm import Session

from saola.config import Settings
from saola.core.auth.context import Actor
from saola.core.auth.service import actor_for_user, user_from_token
from saola.core.errors import Unauthorized
from saola.core.sources.service import authenticate_key
from saola.packs.manager import Registry

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False)


# Dependencies that only read app.state are coroutines: FastAPI runs a plain function in its thread pool, a
# hand-off that costs more than the function itself.
async def get_settings_dep(request: Request) -> Settings:
    """The application's settings."""
    return request.app.state.settings


async def get_registry_dep(request: Request) -> Registry:
    """What the loaded packs declared."""
    return request.app.state.registry


def get_session(request: Request) -> Iterator[Session]:
    """A session in one transaction around the route: committed before the answer, rolled back on error.

    On SQLite a request that may write takes the write lock when it begins: a deferred transaction that
    reads, then writes after another writer committed, would be refused outright instead of waiting.
    """
    with request.app.state.session_factory() as session, session.begin():
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            session.connection(execution_options={"sqlite_immediate": True})
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
RegistryDep = Annotated[Registry, Depends(get_registry_dep)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_actor(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: RegistryDep,
    token: Annotated[str | None, Security(oauth2_scheme)] = None,
    api_key: Annotated[str | None, Security(api_key_scheme)] = None,
) -> Actor:
    """The caller: a user by bearer token, or a source system by X-API-Key; 401 for anything else."""
    if token:
        user = user_from_token(session, settings, token)
        if user.is_demo and not settings.demo_mode:
            raise Unauthorized("demo accounts are refused outside demo mode")
        actor = actor_for_user(session, user, registry.permissions)
    elif api_key:
        identity = authenticate_key(session, api_key, demo_mode=settings.demo_mode)
        assert identity.actor is not None  # refused keys raised above
        actor = identity.actor
    else:
        raise Unauthorized("send a bearer token (Authorization: Bearer ...) or an X-API-Key header")
    request.state.actor_name = actor.name
    return actor


ActorDep = Annotated[Actor, Depends(get_actor)]
