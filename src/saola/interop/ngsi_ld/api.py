"""Routes of the NGSI-LD door under /ngsi-ld/v1: thin wrappers that read the request's @context, call the service
and answer in the representation the client accepts. Errors are ProblemDetails with the ETSI type URIs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response, Security
from fastapi.routing import APIRoute
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.types import Receive, Scope, Send

from saola.core.auth.context import Actor
from saola.core.entities.models import Entity
from saola.core.units.models import Unit
from saola.core.units.service import scope_condition
from saola.db.types import utcnow
from saola.deps import (
    ActorDep,
    RegistryDep,
    SessionDep,
    SettingsDep,
    api_key_scheme,
    get_actor,
    oauth2_scheme,
)
from saola.interop.ngsi_ld import service, subscriptions, typemap
from saola.interop.ngsi_ld.context import (
    JSON,
    LD_JSON,
    LdContext,
    context_of,
    core_document,
    link_context_url,
    link_header,
    media_type,
    wants_ld,
)
from saola.interop.ngsi_ld.convert import (
    EntityView,
    is_uri,
    iso,
    normalized,
    parse_attribute,
    parse_fragment,
    render,
)
from saola.interop.ngsi_ld.errors import EXCEPTION_HANDLERS, NgsiError, bad_request
from saola.interop.ngsi_ld.query import parse_geo, parse_q
from saola.interop.ngsi_ld.schemas import (
    ERRORS,
    NO_BODY,
    BatchOperationResult,
    EntityTypeList,
    NgsiEntity,
    ProblemDetails,
    Subscription,
    TemporalEntity,
    UpdateResult,
)

PREFIX = "/ngsi-ld/v1"
_MAIN_MEMBERS = ("value", "object", "languageMap", "json", "vocab", "valueList", "objectList")


class NgsiRoute(APIRoute):
    """A route whose errors come out as NGSI-LD ProblemDetails.

    The handlers are swapped in the request scope, so an error still unwinds through the route's dependencies
    first (rolling the transaction back) before the handler answers.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer with NGSI-LD's handlers in place of the application's."""
        handlers, status_handlers = scope.get("starlette.exception_handlers", ({}, {}))
        scope["starlette.exception_handlers"] = ({**handlers, **EXCEPTION_HANDLERS}, status_handlers)
        await super().handle(scope, receive, send)


router = APIRouter(prefix=PREFIX, tags=["ngsi-ld"], route_class=NgsiRoute)


def _both(method: Callable[..., Any], path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a route with and without a trailing slash (ngsildclient sends both forms)."""

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        method(path + "/", include_in_schema=False, **kwargs)(func)
        return method(path, **kwargs)(func)

    return wrap


async def _raw_body(request: Request) -> bytes:
    return await request.body()


BodyDep = Annotated[bytes, Depends(_raw_body)]


def _write_session(request: Request) -> Iterator[Session]:
    """A session that takes SQLite's write lock at BEGIN, so a write never fails on a snapshot another writer moved."""
    with request.app.state.session_factory() as session, session.begin():
        session.connection(execution_options={"sqlite_immediate": True})
        yield session


WriteSessionDep = Annotated[Session, Depends(_write_session, scope="function")]


def _write_actor(request: Request, session: WriteSessionDep, settings: SettingsDep, registry: RegistryDep,
                 token: Annotated[str | None, Security(oauth2_scheme)] = None,
                 api_key: Annotated[str | None, Security(api_key_scheme)] = None) -> Actor:
    return get_actor(request, session, settings, registry, token, api_key)


WriteActorDep = Annotated[Actor, Depends(_write_actor)]


# --- request and answer helpers ----------------------------------------------------------------------------------


def _json(body: bytes) -> Any:
    if not body:
        raise NgsiError("InvalidRequest", "the request needs a JSON body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise NgsiError("InvalidRequest", f"the body is not valid JSON: {exc}") from None


def _content_type(request: Request) -> str:
    kind = media_type(request.headers.get("content-type"))
    if kind in ("application/merge-patch+json", ""):
        return JSON
    return kind


def _link_ctx(request: Request) -> LdContext:
    """The context of a request without body: the Link header's, or the core context."""
    return context_of(link_context_url(request.headers.get("link")))


def _write_ctx(request: Request) -> tuple[str, LdContext | None]:
    """(content type, Link context) of a write, checked before the body is read."""
    content_type = _content_type(request)
    return content_type, service.request_context(content_type, link_context_url(request.headers.get("link")))


def _body_and_ctx(request: Request, raw: bytes) -> tuple[Any, LdContext]:
    content_type, link_ctx = _write_ctx(request)
    body = _json(raw)
    return body, service.body_context(body, content_type, link_ctx)


def _answer(data: Any, request: Request, ctx: LdContext, *, status: int = 200,
            headers: dict[str, str] | None = None) -> Response:
    """JSON for application/json (context in a Link header) or application/ld+json (@context in the body)."""
    headers = dict(headers or {})
    if wants_ld(request.headers.get("accept")):
        if isinstance(data, dict):
            data = {**data, "@context": ctx.value}
        elif isinstance(data, list):
            data = [{**item, "@context": ctx.value} if isinstance(item, dict) else item for item in data]
        media = LD_JSON
    else:
        headers["Link"] = link_header(ctx)
        media = JSON
    return Response(orjson.dumps(data), status_code=status, media_type=media, headers=headers)


def _options(request: Request) -> tuple[bool, bool]:
    """(keyValues, sysAttrs) from options= and format=."""
    opts = {o.strip() for o in request.query_params.get("options", "").split(",") if o.strip()}
    fmt = request.query_params.get("format")
    key_values = bool({"keyValues", "simplified"} & opts) or fmt in ("keyValues", "simplified")
    return key_values, "sysAttrs" in opts


def _int_param(request: Request, name: str, default: int, *, low: int = 0, high: int = 1_000_000_000) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer", ["query", name]) from None
    if not low <= value <= high:
        raise bad_request(f"{name} must lie between {low} and {high}", ["query", name])
    return value


def _list_param(request: Request, name: str) -> list[str] | None:
    raw = request.query_params.getlist(name)
    if not raw:
        return None
    items = [part.strip() for value in raw for part in value.split(",") if part.strip()]
    if len(items) > 1000:
        raise bad_request(f"{name} lists at most 1000 items", ["query", name])
    return items


def _attrs(request: Request, ctx: LdContext) -> set[str] | None:
    names = _list_param(request, "attrs")
    return {ctx.expand(n) for n in names} if names else None


def _entity_id(entity_id: str) -> str:
    if not is_uri(entity_id):
        raise bad_request(f"{entity_id!r} is not a valid entity id (a URI)", ["path", "entityId"])
    return entity_id


def _render(view: EntityView, request: Request, ctx: LdContext, attrs: set[str] | None = None) -> dict[str, Any]:
    key_values, sys_attrs = _options(request)
    return render(view, ctx, key_values=key_values, sys_attrs=sys_attrs, only=attrs)


# --- entities ----------------------------------------------------------------------------------------------------


@_both(router.get, "/entities", summary="Query entities",
       responses={200: {"model": list[NgsiEntity]}, **ERRORS})
def query_entities(request: Request, session: SessionDep, actor: ActorDep, registry: RegistryDep) -> Response:
    """Entities by type, id, idPattern, q, attrs and geo-query (georel, geometry, coordinates); paged."""
    ctx = _link_ctx(request)
    params = request.query_params
    types = _list_param(request, "type")
    ids = _list_param(request, "id")
    id_pattern = params.get("idPattern")
    q_text = params.get("q")
    attrs = _attrs(request, ctx)
    geo = parse_geo(params.get("georel"), params.get("geometry"), params.get("coordinates"), params.get("geoproperty"))
    if not (types or ids or id_pattern or q_text or attrs or geo):
        raise bad_request("give at least one of type, id, idPattern, q, attrs or a geo-query")
    for entity_id in ids or []:
        _entity_id(entity_id)
    limit = _int_param(request, "limit", 20, high=10**9)
    if limit > service.MAX_LIMIT:
        raise NgsiError("TooManyResults", f"limit is at most {service.MAX_LIMIT}")
    count = params.get("count", "false").lower() == "true"
    if limit == 0 and not count:
        raise bad_request("limit=0 only goes with count=true", ["query", "limit"])
    query = service.EntityQuery(
        types=[ctx.expand(t) for t in types] if types else None, ids=ids, id_pattern=id_pattern,
        q=parse_q(q_text, ctx) if q_text else None, attrs=attrs, geo=geo, limit=limit,
        offset=_int_param(request, "offset", 0), count=count)
    total, views = service.query_entities(session, actor=actor, registry=registry, query=query)
    headers = {"NGSILD-Results-Count": str(total)} if total is not None else None
    return _answer([_render(v, request, ctx, attrs) for v in views], request, ctx, headers=headers)


@_both(router.post, "/entities", status_code=201, summary="Create an entity",
       responses={201: NO_BODY, 409: {"model": ProblemDetails, "description": "AlreadyExists"}, **ERRORS})
def create_entity(request: Request, raw: BodyDep, session: WriteSessionDep, actor: WriteActorDep,
                  registry: RegistryDep) -> Response:
    """201 with Location; 409 AlreadyExists when the id is taken; 400 BadRequestData for a bad entity."""
    content_type, link_ctx = _write_ctx(request)
    body = _json(raw)
    entity = service.parse_one(body, content_type=content_type, link_ctx=link_ctx, now=iso(utcnow()))
    service.create_entity(session, actor=actor, registry=registry, entity=entity)
    return Response(status_code=201, headers={"Location": f"{PREFIX}/entities/{entity.id}"})


@router.get("/entities/{entity_id}", summary="Retrieve an entity", responses={200: {"model": NgsiEntity}, **ERRORS})
def retrieve_entity(entity_id: str, request: Request, session: SessionDep, actor: ActorDep,
                    registry: RegistryDep) -> Response:
    """One entity in normalized form (options=keyValues for values only, sysAttrs for timestamps)."""
    ctx = _link_ctx(request)
    type_name = request.query_params.get("type")
    view = service.retrieve(session, actor=actor, registry=registry, entity_id=_entity_id(entity_id),
                            type_iri=ctx.expand(type_name) if type_name else None)
    return _answer(_render(view, request, ctx, _attrs(request, ctx)), request, ctx)


@router.delete("/entities/{entity_id}", status_code=204, summary="Delete an entity", responses=ERRORS)
def delete_entity(entity_id: str, session: WriteSessionDep, actor: WriteActorDep) -> Response:
    """204; 404 when there is no such entity in the caller's scope."""
    service.delete_entity(session, actor=actor, entity_id=_entity_id(entity_id))
    return Response(status_code=204)


def _update_answer(updated: list[str], skipped: list[tuple[str, str]]) -> Response:
    if not skipped:
        return Response(status_code=204)
    body = {"updated": updated, "notUpdated": [{"attributeName": n, "reason": r} for n, r in skipped]}
    return Response(orjson.dumps(body), status_code=207, media_type=JSON)


@_both(router.post, "/entities/{entity_id}/attrs", status_code=204, summary="Append attributes",
       responses={207: {"model": UpdateResult}, **ERRORS})
def append_attributes(entity_id: str, request: Request, raw: BodyDep, session: WriteSessionDep,
                      actor: WriteActorDep, registry: RegistryDep) -> Response:
    """Add attributes (replacing same-named ones unless options=noOverwrite); 207 lists those left alone."""
    body, ctx = _body_and_ctx(request, raw)
    errors: list[Any] = []
    fragment = parse_fragment(body, ctx, loc=["body"], errors=errors, now=iso(utcnow()))
    if errors:
        raise NgsiError("BadRequestData", "; ".join(e.msg for e in errors[:10]), errors=errors)
    no_overwrite = "noOverwrite" in request.query_params.get("options", "")
    updated, skipped = service.update_attributes(session, actor=actor, registry=registry,
                                                 entity_id=_entity_id(entity_id), fragment=fragment, append=True,
                                                 no_overwrite=no_overwrite)
    return _update_answer(updated, skipped)


@_both(router.patch, "/entities/{entity_id}/attrs", status_code=204, summary="Update attributes",
       responses={207: {"model": UpdateResult}, **ERRORS})
def update_attributes(entity_id: str, request: Request, raw: BodyDep, session: WriteSessionDep,
                      actor: WriteActorDep, registry: RegistryDep) -> Response:
    """Replace existing attributes; 207 lists attributes the entity does not have (they are not added)."""
    body, ctx = _body_and_ctx(request, raw)
    errors: list[Any] = []
    fragment = parse_fragment(body, ctx, loc=["body"], errors=errors, now=iso(utcnow()))
    if errors:
        raise NgsiError("BadRequestData", "; ".join(e.msg for e in errors[:10]), errors=errors)
    updated, skipped = service.update_attributes(session, actor=actor, registry=registry,
                                                 entity_id=_entity_id(entity_id), fragment=fragment, append=False)
    return _update_answer(updated, skipped)


@router.patch("/entities/{entity_id}/attrs/{attr_id}", status_code=204, summary="Partially update an attribute",
              responses=ERRORS)
def patch_attribute(entity_id: str, attr_id: str, request: Request, raw: BodyDep, session: WriteSessionDep,
                    actor: WriteActorDep, registry: RegistryDep) -> Response:
    """Change members of one attribute (value, observedAt, unitCode, sub-attributes); 404 when it is missing."""
    body, ctx = _body_and_ctx(request, raw)
    if not isinstance(body, dict) or not body:
        raise bad_request("send the attribute's members to change as a JSON object")
    partial = {k: v for k, v in body.items() if k != "@context"}
    has_main = any(m in partial for m in _MAIN_MEMBERS)
    # Members alone (observedAt, unitCode, sub-attributes) keep the stored value: check them on a stand-in.
    probe = partial if has_main else {**{k: v for k, v in partial.items() if k != "type"}, "value": 0}
    errors: list[Any] = []
    attr = parse_attribute(attr_id, probe, ctx, loc=["body"], errors=errors, now=iso(utcnow()))
    if attr is None:
        raise NgsiError("BadRequestData", "; ".join(e.msg for e in errors[:10]) or "invalid attribute",
                        errors=errors)
    service.patch_attribute(session, actor=actor, registry=registry, entity_id=_entity_id(entity_id), attr=attr,
                            partial=partial)
    return Response(status_code=204)


@router.delete("/entities/{entity_id}/attrs/{attr_id}", status_code=204, summary="Delete an attribute",
               responses=ERRORS)
def delete_attribute(entity_id: str, attr_id: str, request: Request, session: WriteSessionDep,
                     actor: WriteActorDep, registry: RegistryDep) -> Response:
    """204; 404 when the entity or the attribute does not exist."""
    ctx = _link_ctx(request)
    from saola.interop.ngsi_ld.context import core_context

    key = core_context().compact(ctx.expand(attr_id))
    service.delete_attribute(session, actor=actor, registry=registry, entity_id=_entity_id(entity_id), key=key)
    return Response(status_code=204)


# --- batch operations --------------------------------------------------------------------------------------------


def _batch_answer(outcome: service.BatchOutcome, *, ok_status: int, ok_body: Any = None) -> Response:
    if outcome.errors:
        body = {"success": outcome.success, "errors": outcome.errors}
        return Response(orjson.dumps(body), status_code=207, media_type=JSON)
    if ok_status == 204:
        return Response(status_code=204)
    return Response(orjson.dumps(ok_body), status_code=ok_status, media_type=JSON)


def _batch(request: Request, raw: bytes) -> list[Any]:
    content_type, link_ctx = _write_ctx(request)
    body = _json(raw)
    return service.parse_entities(body, content_type=content_type, link_ctx=link_ctx, now=iso(utcnow()))


@_both(router.post, "/entityOperations/create", status_code=201, summary="Batch create",
       responses={201: {"model": list[str]}, 207: {"model": BatchOperationResult}, **ERRORS})
def batch_create(request: Request, raw: BodyDep, session: WriteSessionDep, actor: WriteActorDep,
                 registry: RegistryDep) -> Response:
    """201 with the ids; 207 when some ids already exist (the others are created); 400 for any bad entity."""
    entities = _batch(request, raw)
    outcome = service.write_entities(session, actor=actor, registry=registry, entities_in=entities,
                                     operation="create")
    return _batch_answer(outcome, ok_status=201, ok_body=outcome.success)


@_both(router.post, "/entityOperations/upsert", status_code=201, summary="Batch upsert",
       responses={201: {"model": list[str]}, 204: {"description": "Every entity existed and was replaced"},
                  207: {"model": BatchOperationResult}, **ERRORS})
def batch_upsert(request: Request, raw: BodyDep, session: WriteSessionDep, actor: WriteActorDep,
                 registry: RegistryDep) -> Response:
    """Create or replace (options=replace, the default) or merge (options=update); 201 with created ids, else
    204; 400 for any bad entity."""
    mode = request.query_params.get("options", "replace") or "replace"
    if mode not in ("replace", "update"):
        raise bad_request("options must be replace or update", ["query", "options"])
    entities = _batch(request, raw)
    outcome = service.write_entities(session, actor=actor, registry=registry, entities_in=entities,
                                     operation="upsert", mode=mode)  # type: ignore[arg-type]
    if outcome.created:
        return _batch_answer(outcome, ok_status=201, ok_body=outcome.created)
    return _batch_answer(outcome, ok_status=204)


@_both(router.post, "/entityOperations/update", status_code=204, summary="Batch update",
       responses={207: {"model": BatchOperationResult}, **ERRORS})
def batch_update(request: Request, raw: BodyDep, session: WriteSessionDep, actor: WriteActorDep,
                 registry: RegistryDep) -> Response:
    """Append attributes to existing entities (options=noOverwrite keeps existing ones); 207 for missing ids."""
    entities = _batch(request, raw)
    no_overwrite = request.query_params.get("options") == "noOverwrite"
    outcome = service.write_entities(session, actor=actor, registry=registry, entities_in=entities,
                                     operation="update", no_overwrite=no_overwrite)
    return _batch_answer(outcome, ok_status=204)


@_both(router.post, "/entityOperations/delete", status_code=204, summary="Batch delete",
       responses={207: {"model": BatchOperationResult}, 409: {"model": ProblemDetails}, **ERRORS})
def batch_delete(request: Request, raw: BodyDep, session: WriteSessionDep, actor: WriteActorDep) -> Response:
    """Delete by ids (a JSON array of ids); 207 for missing ids; nothing is deleted when any deletion is refused."""
    body = _json(raw)
    if not isinstance(body, list) or not body or len(body) > service.MAX_BATCH:
        raise bad_request(f"send a JSON array of 1 to {service.MAX_BATCH} entity ids")
    bad = [i for i, v in enumerate(body) if not is_uri(v)]
    if bad:
        raise NgsiError("BadRequestData", "every item must be an entity id (a URI)",
                        problems=[{"index": i, "entityId": body[i] if isinstance(body[i], str) else None}
                                  for i in bad[:100]])
    outcome = service.delete_entities(session, actor=actor, ids=body)
    return _batch_answer(outcome, ok_status=204)


# --- types -------------------------------------------------------------------------------------------------------


@_both(router.get, "/types", summary="Entity types", responses={200: {"model": EntityTypeList}, **ERRORS})
def list_types(request: Request, session: SessionDep, actor: ActorDep, registry: RegistryDep) -> Response:
    """The types of the entities in the caller's scope, as an EntityTypeList."""
    actor.require("entities:read")
    ctx = _link_ctx(request)
    kernel_types = session.scalars(select(Entity.type).distinct().join(Unit, Unit.code == Entity.unit_code)
                                   .where(scope_condition(actor, Unit.path)).order_by(Entity.type))
    names = sorted({ctx.compact(typemap.iri_of(session, registry, t)) for t in kernel_types})
    body = {"id": "urn:ngsi-ld:EntityTypeList:saola", "type": "EntityTypeList", "typeList": names}
    return _answer(body, request, ctx)


# --- temporal ----------------------------------------------------------------------------------------------------


@router.get("/temporal/entities/{entity_id}", summary="Temporal evolution of an entity",
            responses={200: {"model": TemporalEntity}, **ERRORS})
def temporal_entity(entity_id: str, request: Request, session: SessionDep, actor: ActorDep,
                    registry: RegistryDep) -> Response:
    """Instances of the entity's attributes over time (timerel, timeAt, endTimeAt, lastN, attrs);
    options=temporalValues gives [[value, observedAt], ...] per attribute."""
    ctx = _link_ctx(request)
    params = request.query_params
    last_n = _int_param(request, "lastN", 0, low=0, high=service.MAX_INSTANCES) or None
    time = service.time_filter(params.get("timerel"), params.get("timeAt"), params.get("endTimeAt"), last_n)
    opts = {o.strip() for o in params.get("options", "").split(",")}
    values_only = "temporalValues" in opts or params.get("format") == "temporalValues"
    view, instances = service.temporal_instances(session, actor=actor, registry=registry,
                                                 entity_id=_entity_id(entity_id), attrs=_attrs(request, ctx),
                                                 time=time)
    from saola.interop.ngsi_ld.context import core_context

    core = core_context()
    out: dict[str, Any] = {"id": view.ngsi_id, "type": ctx.compact(view.type_iri)}
    for key, items in instances.items():
        name = ctx.compact(core.expand(key))
        if values_only:
            kind = items[0][0]
            out[name] = {"type": kind, "values": [[value, meta.get("observedAt")] for _, value, meta in items]}
        else:
            out[name] = [normalized(kind, value, meta, ctx, sys_attrs=False, created=view.created_at,
                                    modified=view.updated_at) for kind, value, meta in items]
    return _answer(out, request, ctx)


# --- subscriptions -----------------------------------------------------------------------------------------------


@_both(router.post, "/subscriptions", status_code=201, summary="Create a subscription",
       responses={201: NO_BODY, 409: {"model": ProblemDetails, "description": "AlreadyExists"}, **ERRORS})
def create_subscription(request: Request, raw: BodyDep, session: WriteSessionDep, actor: WriteActorDep) -> Response:
    """201 with Location; notifications are POSTed to notification.endpoint.uri after each matching change."""
    body, ctx = _body_and_ctx(request, raw)
    sub_id = subscriptions.create_subscription(session, actor=actor, body=body, ctx=ctx)
    return Response(status_code=201, headers={"Location": f"{PREFIX}/subscriptions/{sub_id}"})


@_both(router.get, "/subscriptions", summary="List subscriptions",
       responses={200: {"model": list[Subscription]}, **ERRORS})
def list_subscriptions(request: Request, session: SessionDep, actor: ActorDep) -> Response:
    """Subscriptions created inside the caller's scope (limit, offset, count)."""
    limit = _int_param(request, "limit", 100, high=service.MAX_LIMIT)
    total, rows = subscriptions.list_subscriptions(session, actor=actor, limit=limit,
                                                   offset=_int_param(request, "offset", 0))
    count = request.query_params.get("count", "false").lower() == "true"
    headers = {"NGSILD-Results-Count": str(total)} if count else None
    ld = wants_ld(request.headers.get("accept"))
    items = [{**subscriptions.render_subscription(r), **({"@context": r.context} if ld else {})} for r in rows]
    return Response(orjson.dumps(items), media_type=LD_JSON if ld else JSON, headers=headers)


@router.get("/subscriptions/{sub_id}", summary="Retrieve a subscription",
            responses={200: {"model": Subscription}, **ERRORS})
def get_subscription(sub_id: str, request: Request, session: SessionDep, actor: ActorDep) -> Response:
    """The subscription as created, with its status and notification figures."""
    row = subscriptions.get_subscription(session, actor=actor, sub_id=sub_id)
    return _answer(subscriptions.render_subscription(row), request, context_of(row.context))


@router.patch("/subscriptions/{sub_id}", status_code=204, summary="Update a subscription", responses=ERRORS)
def update_subscription(sub_id: str, request: Request, raw: BodyDep, session: WriteSessionDep,
                        actor: WriteActorDep) -> Response:
    """Replace the members given (isActive, q, notification ...); 204."""
    body, ctx = _body_and_ctx(request, raw)
    subscriptions.update_subscription(session, actor=actor, sub_id=sub_id, changes=body, ctx=ctx)
    return Response(status_code=204)


@router.delete("/subscriptions/{sub_id}", status_code=204, summary="Delete a subscription", responses=ERRORS)
def delete_subscription(sub_id: str, session: WriteSessionDep, actor: WriteActorDep) -> Response:
    """204; 404 when there is no such subscription in the caller's scope."""
    subscriptions.delete_subscription(session, actor=actor, sub_id=sub_id)
    return Response(status_code=204)


# --- the core context --------------------------------------------------------------------------------------------


@router.get("/contexts/ngsi-ld-core-context.jsonld", summary="The bundled NGSI-LD core context",
            responses={200: {"model": dict[str, Any], "content": {"application/ld+json": {}}}})
def core_context_document() -> Response:
    """The core @context this server uses (bundled; nothing is fetched from the internet)."""
    return Response(orjson.dumps(core_document()), media_type=LD_JSON)
