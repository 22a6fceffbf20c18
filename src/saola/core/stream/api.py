"""GET /api/stream: Server-Sent Events of new observations, events, alerts and case changes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Security
from fastapi.responses import StreamingResponse

from saola.bus import get_bus, parse_id
from saola.core.auth.context import Actor
from saola.core.cases.service import agency_limit
from saola.core.errors import FieldError, Forbidden, ValidationFailed
from saola.core.stream.hub import FAMILIES, StreamClient, StreamHub, hub_for
from saola.deps import RegistryDep, SessionDep, SettingsDep, api_key_scheme, get_actor, oauth2_scheme

router = APIRouter(prefix="/api", tags=["stream"])

HEARTBEAT_SECONDS = 15.0
RETRY_MS = 3000
PULL = 500  # messages read from the bus window at a time


@dataclass(frozen=True)
class Caller:
    """Who follows the stream, and the agencies whose cases they may see (agency staff bound to one)."""

    actor: Actor
    case_agencies: frozenset[str] | None


def stream_caller(
    request: Request, session: SessionDep, settings: SettingsDep, registry: RegistryDep,
    token: Annotated[str | None, Security(oauth2_scheme)] = None,
    api_key: Annotated[str | None, Security(api_key_scheme)] = None,
    access_token: Annotated[str | None, Query(max_length=4096, description=(
        "Bearer token, for clients that cannot set headers (the browser's EventSource)"))] = None,
) -> Caller:
    """The caller, by bearer token in the header or in ?access_token= (EventSource cannot send headers)."""
    actor = get_actor(request, session, settings, registry, token=token or access_token, api_key=api_key)
    limit = agency_limit(session, actor)
    return Caller(actor, None if limit is None else frozenset(str(a) for a in limit))


def topic_prefixes(actor: Actor, topics: str | None) -> tuple[str, ...]:
    """The topic prefixes to follow: those asked for (each must be allowed), or every family the actor may read."""
    if topics is None or not topics.strip():
        allowed = tuple(f for f, permission in FAMILIES.items() if actor.can(permission))
        if not allowed:
            raise Forbidden(f"{actor.kind} {actor.name!r} may read none of {', '.join(FAMILIES)}")
        return allowed
    prefixes: list[str] = []
    for raw in topics.split(","):
        prefix = raw.strip()
        family = prefix.split(".", 1)[0]
        if family not in FAMILIES or not prefix.replace(".", "").replace("_", "").isalnum() or len(prefix) > 80:
            raise ValidationFailed(f"unknown topic {prefix!r}; choose among {', '.join(FAMILIES)}",
                                   [FieldError(["query", "topics"], f"unknown topic {prefix!r}")])
        actor.require(FAMILIES[family])
        prefixes.append(prefix)
    return tuple(dict.fromkeys(prefixes))


async def _frames(request: Request, hub: StreamHub, client: StreamClient, resume: bool) -> AsyncIterator[bytes]:
    """The stream: a retry hint, missed messages after Last-Event-ID, then live ones and heartbeats."""
    bus = hub.bus
    sent_id = client.cursor
    last_write = time.monotonic()
    try:
        yield b"retry: %d\n: connected\n\n" % RETRY_MS
        if hub.paths.stale:
            await asyncio.to_thread(hub.paths.load)
        gap_told = False
        while True:
            client.wake.clear()
            replay = await asyncio.to_thread(bus.replay, client.cursor, PULL)
            if not replay.complete and resume and not gap_told:
                # Older than the window: say so, so that the client reloads what it shows.
                yield b"event: gap\ndata: {\"after\": \"%s\"}\n\n" % client.cursor.encode()
                gap_told = True
            if hub.paths.stale:
                await asyncio.to_thread(hub.paths.load)
                client.forget_units()
            for message in replay.messages:
                frame = client.render(message)
                client.cursor = message.id
                if frame is not None:
                    sent_id, last_write = message.id, time.monotonic()
                    yield frame
            if len(replay.messages) >= PULL:
                continue
            resume = True
            if client.cursor != sent_id and time.monotonic() - last_write > HEARTBEAT_SECONDS:
                # Busy with messages for others: an id-only frame moves the browser's Last-Event-ID past them.
                sent_id, last_write = client.cursor, time.monotonic()
                yield b"id: %s\n: skipped\n\n" % sent_id.encode()
            try:
                await asyncio.wait_for(client.wake.wait(), HEARTBEAT_SECONDS)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                last_write = time.monotonic()
                if client.cursor != sent_id:
                    sent_id = client.cursor
                    yield b"id: %s\n: ping\n\n" % sent_id.encode()
                else:
                    yield b": ping\n\n"
    finally:
        hub.remove(client)


@router.get("/stream", summary="Live changes as Server-Sent Events (observations, events, alerts, cases)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                             "description": "event: observations|events|alerts|cases; id: the bus message id"}})
async def stream(
    request: Request,
    caller: Annotated[Caller, Depends(stream_caller)],
    topics: Annotated[str | None, Query(max_length=400, description=(
        "Comma-separated topic prefixes: observations, events, alerts, cases (or e.g. alerts.fired)"))] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
    last_id: Annotated[str | None, Query(max_length=64, description="Same as the Last-Event-ID header")] = None,
) -> StreamingResponse:
    """Items of a batch come as one event, only those in the caller's scope; after a reconnect with Last-Event-ID,
    what was published meanwhile (within the bus's window) comes first."""
    actor = caller.actor
    prefixes = topic_prefixes(actor, topics)
    bus = get_bus()
    state = request.app.state
    hub = hub_for(state, state.session_factory, bus)
    resume_from = last_event_id or last_id
    resume = resume_from is not None and parse_id(resume_from) is not None
    client = StreamClient(scope_path=actor.scope_path, prefixes=prefixes, paths=hub.paths,
                          loop=asyncio.get_running_loop(), cursor=resume_from if resume else bus.last_id(),
                          case_agencies=caller.case_agencies, user_id=str(actor.id) if actor.id else None)
    hub.add(client)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(_frames(request, hub, client, bool(resume)), media_type="text/event-stream",
                             headers=headers)
