"""Routes of the SensorThings door under /sta/v1.1: the service root and every resource path.

Resource paths (Things(1)/Datastreams, Observations('3-1764032400000000')/Datastream/Thing ...) are parsed
here and answered by the query and service modules. Errors are STA-style JSON {code, type, message, errors};
when one is raised, everything the request wrote is rolled back before the answer goes out.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from saola.core.auth.context import Actor
from saola.core.errors import DomainError
from saola.db.types import utcnow
from saola.deps import ActorDep, RegistryDep, SessionDep
from saola.interop.sensorthings import query, service
from saola.interop.sensorthings.odata import BadRequest, parse_options, parse_path
from saola.interop.sensorthings.schemas import CREATED_LINKS, EMPTY, ERRORS, ServiceRoot, StaDocument
from saola.interop.sensorthings.sets import SETS, Ctx
from saola.packs.manager import Registry

PREFIX = "/sta/v1.1"
CONFORMANCE = [
    "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path/resource-path-to-entities",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/create-update-delete",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/data-array/data-array",
]


class JSON(Response):
    """JSON rendered with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(exc: DomainError) -> JSON:
    """A domain error as STA error JSON; the kernel's 422 is SensorThings' 400."""
    status = 400 if exc.status_code == 422 else exc.status_code
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSON({"code": status, "type": "error", "message": exc.message,
                 "errors": [e.as_dict() for e in exc.errors]}, status_code=status, headers=headers)


class StaRoute(APIRoute):
    """Answers domain errors in STA form, after rolling back the request's session."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except DomainError as exc:
                # The session dependency closes after this answer without seeing the error: roll back now so
                # that half a deep insert or half a batch is never committed.
                session = getattr(request.state, "sta_session", None)
                if session is not None:
                    await run_in_threadpool(session.rollback)
                return error_response(exc)

        return route


def sta_session(request: Request, session: SessionDep) -> Session:
    """The request's session, remembered so that an error can roll it back."""
    request.state.sta_session = session
    return session


StaSessionDep = Annotated[Session, Depends(sta_session)]
router = APIRouter(prefix=PREFIX, tags=["sensorthings"], route_class=StaRoute)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


@router.get("", summary="SensorThings service root: entity sets and conformance", response_model=ServiceRoot)
def service_root(request: Request) -> JSON:
    """The eight entity sets with their URLs and the conformance classes served."""
    base = _base(request)
    return JSON({"value": [{"name": name, "url": f"{base}/{name}"} for name in SETS],
                 "serverSettings": {"conformance": CONFORMANCE}})


@router.get("/", include_in_schema=False, response_model=ServiceRoot)
def service_root_slash(request: Request) -> JSON:
    """The service root, also with a trailing slash."""
    return service_root(request)


def _json(body: bytes) -> Any:
    if not body.strip():
        raise BadRequest("the request body is empty; send a JSON document")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from exc


def _handle(request: Request, path: str, body: bytes, session: Session, actor: Actor, registry: Registry) -> Response:
    ctx = Ctx(session=session, actor=actor, base=_base(request), now=utcnow(), registry=registry)
    segments = parse_path(path)
    method = request.method
    if not segments:
        raise service.MethodNotAllowed("the service root is read-only; write to an entity set, e.g. POST /Things")
    if segments and segments[0].name == "CreateObservations":
        if method != "POST" or len(segments) != 1:
            raise service.MethodNotAllowed("CreateObservations takes POST only")
        return JSON(service.create_observations(ctx, registry=registry, body=_json(body)), status_code=201)
    if method == "GET":
        opts = parse_options(list(request.query_params.multi_items()))
        answer = query.read(ctx, segments, opts, url=f"{ctx.base}/{path}")
        if isinstance(answer, str):
            return Response(answer, media_type="text/plain; charset=utf-8")
        return JSON(answer)
    target = query.resolve(ctx, segments)
    if method == "POST":
        spec, obj = service.create(ctx, registry=registry, target=target, body=_json(body))
        link = spec.self_link(ctx, obj)
        return JSON(service.created_body(ctx, spec, obj), status_code=201, headers={"Location": link})
    if method in ("PATCH", "PUT"):
        patch = request.headers.get("content-type", "").startswith("application/json-patch+json")
        spec, obj = service.update(ctx, registry=registry, target=target, body=_json(body), json_patch=patch)
        return JSON(service.created_body(ctx, spec, obj))
    service.remove(ctx, registry=registry, target=target)
    return Response(status_code=200, media_type="text/plain")


async def _serve(path: str, request: Request, session: Session, actor: Actor, registry: Registry) -> Response:
    body = await request.body() if request.method in ("POST", "PATCH", "PUT") else b""
    return await run_in_threadpool(_handle, request, path, body, session, actor, registry)


@router.get("/{path:path}", summary="Read an entity, a collection, a property or links",
            response_model=StaDocument, responses=ERRORS)
async def read_resource(path: str, request: Request, session: StaSessionDep, actor: ActorDep,
                        registry: RegistryDep) -> Response:
    """Things(1), Datastreams(1)/Observations ... with $filter, $expand, $select, $orderby, $top, $skip, $count."""
    return await _serve(path, request, session, actor, registry)


@router.post("/{path:path}", summary="Create entities (deep insert), or Observations in bulk with CreateObservations",
             status_code=201, response_model=None, responses={**CREATED_LINKS, **ERRORS})
async def create_resource(path: str, request: Request, session: StaSessionDep, actor: ActorDep,
                          registry: RegistryDep) -> Response:
    """201 with a Location header; a bad part anywhere rejects the whole request."""
    return await _serve(path, request, session, actor, registry)


@router.patch("/{path:path}", summary="Change an entity (JSON merge or application/json-patch+json)",
              response_model=StaDocument, responses=ERRORS)
async def change_resource(path: str, request: Request, session: StaSessionDep, actor: ActorDep,
                          registry: RegistryDep) -> Response:
    """Fields left out stay as they are."""
    return await _serve(path, request, session, actor, registry)


@router.put("/{path:path}", summary="Change an entity with its full representation", response_model=StaDocument,
            responses=ERRORS)
async def replace_resource(path: str, request: Request, session: StaSessionDep, actor: ActorDep,
                           registry: RegistryDep) -> Response:
    """Treated like PATCH: the fields sent are written."""
    return await _serve(path, request, session, actor, registry)


@router.delete("/{path:path}", summary="Delete an entity", response_model=None, response_class=PlainTextResponse,
               responses={**EMPTY, **ERRORS})
async def delete_resource(path: str, request: Request, session: StaSessionDep, actor: ActorDep,
                          registry: RegistryDep) -> Response:
    """Entities that carry readings stay (409): readings are never deleted."""
    return await _serve(path, request, session, actor, registry)
