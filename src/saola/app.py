"""The application factory: settings, database, packs, routers, error handling, limits and metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from saola import __version__
from saola.config import Settings, get_settings
from saola.core.errors import DomainError
from saola.core.health.metrics import HTTP_LATENCY, HTTP_REQUESTS
from saola.db.engine import make_engine, make_session_factory
from saola.db.types import utcnow
from saola.packs.context import PackContext
from saola.packs.manager import get_plugin_manager, get_registry
from saola.runtime import settle_garbage_collector
from saola.scheduler import JobRunner

log = structlog.get_logger("saola.http")


class BodySizeLimit:
    """Refuse request bodies over a limit with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(send, self.max_bytes)


class RequestMetrics:
    """Count and time every HTTP request, to the start of its answer (a live stream stays open), and log it.

    A plain ASGI middleware: Starlette's BaseHTTPMiddleware runs each request through a task group and memory
    streams, a cost every request paid.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed = time.perf_counter() - started
                route = getattr(scope.get("route"), "path", "unmatched")
                status = message["status"]
                HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
                HTTP_LATENCY.labels(scope["method"], route).observe(elapsed)
                log.info("request", method=scope["method"], path=scope["path"], status=status,
                         ms=round(elapsed * 1000, 1), actor=scope.get("state", {}).get("actor_name"))
            await send(message)

        await self.app(scope, receive, timed_send)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    body = JSONResponse({"detail": f"request body exceeds {limit} bytes", "code": "body_too_large"}, 413).body
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return JSONResponse(
        {"detail": exc.message, "code": exc.code, "errors": [e.as_dict() for e in exc.errors]},
        status_code=exc.status_code, headers=headers,
    )


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e.get("loc", [])), "msg": e.get("msg", ""), "type": e.get("type", "")}
              for e in exc.errors()]
    where = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors[:5])
    return JSONResponse({"detail": f"invalid request at {where}", "code": "validation_failed", "errors": errors},
                        status_code=422)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the web application for the given settings (read from the environment when omitted)."""
    if settings is None:  # a server's factory (`uvicorn --factory`, `saola serve --workers`): log as the CLI does
        from saola.logging import configure_logging

        settings = get_settings()
        configure_logging(settings.log_level, settings.log_json)
    disabled = tuple(settings.disabled_packs)
    pm = get_plugin_manager(disabled)
    registry = get_registry(disabled)
    engine = make_engine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pm.hook.saola_startup(app=app)
        settle_garbage_collector()
        jobs = [job for group in pm.hook.saola_scheduled_jobs(settings=settings) for job in group or []]
        runner = None
        if jobs and settings.run_jobs:
            context = PackContext(settings=settings, session_factory=app.state.session_factory, now=utcnow())
            runner = JobRunner(context, jobs)
            runner.start()
        yield
        if runner:
            runner.stop()
        pm.hook.saola_shutdown(app=app)
        engine.dispose()

    app = FastAPI(
        title="Saola IOC",
        version=__version__,
        description="Trung tâm giám sát, điều hành thông minh: an open-source Intelligent Operations Center.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.state.plugin_manager = pm
    app.state.registry = registry

    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)

    app.add_middleware(RequestMetrics)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    for routers in pm.hook.saola_routers(settings=settings):
        for router in routers or []:
            app.include_router(router)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        # Routes match in order: the web UI's own "/" (mounted above) wins; without it the API docs are the door.
        return RedirectResponse("/docs")

    return app
