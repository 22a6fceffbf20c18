"""NGSI-LD subscriptions: create, list, retrieve, update and delete, scoped to the creator's unit subtree."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from saola.core.audit.service import audit
from saola.core.auth.context import Actor
from saola.core.entities.schemas import json_problem
from saola.db.types import utcnow
from saola.interop.ngsi_ld import notify
from saola.interop.ngsi_ld.context import JSON, LD_JSON, LdContext
from saola.interop.ngsi_ld.convert import is_uri, iso, parse_time
from saola.interop.ngsi_ld.errors import NgsiError, bad_request
from saola.interop.ngsi_ld.models import NgsiSubscription
from saola.interop.ngsi_ld.query import parse_geo, parse_q, safe_regex

PERMISSION = "subscriptions:write"
FORMATS = ("normalized", "keyValues", "simplified", "concise")
MAX_SELECTORS = 100
MAX_SUBSCRIPTIONS = 1_000


def _owned(actor: Actor, row: NgsiSubscription | None) -> NgsiSubscription | None:
    return row if row is not None and actor.sees_path(row.owner_scope_path) else None


def _checked(body: dict[str, Any], ctx: LdContext) -> dict[str, Any]:
    """The matching columns of a subscription body, or 400 naming the first problem."""
    if body.get("type") != "Subscription":
        raise bad_request('a subscription has "type": "Subscription"', ["body", "type"])
    problem = json_problem(body)
    if problem:
        raise bad_request(f"the subscription cannot be stored: {problem}")
    entities = body.get("entities")
    watched = body.get("watchedAttributes")
    if entities is None and watched is None:
        raise bad_request("a subscription needs entities or watchedAttributes")
    selectors: list[dict[str, Any]] = []
    if entities is not None:
        if not isinstance(entities, list) or not entities or len(entities) > MAX_SELECTORS:
            raise bad_request(f"entities is a list of 1 to {MAX_SELECTORS} selectors", ["body", "entities"])
        for i, item in enumerate(entities):
            loc: list[str | int] = ["body", "entities", i]
            if not isinstance(item, dict) or not ({"type", "id", "idPattern"} & set(item)):
                raise bad_request("an entity selector has a type, an id or an idPattern", loc)
            selector: dict[str, Any] = {}
            if "type" in item:
                if not isinstance(item["type"], str) or not item["type"]:
                    raise bad_request("type must be a name", [*loc, "type"])
                selector["type"] = ctx.expand(item["type"])
            if "id" in item:
                if not is_uri(item["id"]):
                    raise bad_request("id must be a URI", [*loc, "id"])
                selector["id"] = item["id"]
            if "idPattern" in item:
                if not isinstance(item["idPattern"], str):
                    raise bad_request("idPattern must be a regular expression", [*loc, "idPattern"])
                safe_regex(item["idPattern"], "idPattern")
                selector["idPattern"] = item["idPattern"]
            selectors.append(selector)
    if watched is not None and (not isinstance(watched, list) or not watched
                                or not all(isinstance(w, str) and w for w in watched)):
        raise bad_request("watchedAttributes is a non-empty list of attribute names", ["body", "watchedAttributes"])
    q = body.get("q")
    if q is not None:
        if not isinstance(q, str) or not q:
            raise bad_request("q must be a query text", ["body", "q"])
        parse_q(q, ctx)
    geo = body.get("geoQ")
    if geo is not None:
        if not isinstance(geo, dict):
            raise bad_request("geoQ is an object with georel, geometry and coordinates", ["body", "geoQ"])
        parse_geo(geo.get("georel"), geo.get("geometry"), geo.get("coordinates"), geo.get("geoproperty"))
    notification = body.get("notification")
    if not isinstance(notification, dict):
        raise bad_request("a subscription needs a notification object", ["body", "notification"])
    endpoint = notification.get("endpoint")
    if not isinstance(endpoint, dict) or not isinstance(endpoint.get("uri"), str):
        raise bad_request("notification.endpoint.uri is required", ["body", "notification", "endpoint", "uri"])
    uri = endpoint["uri"]
    if not uri.startswith(("http://", "https://")) or len(uri) > 2048 or not is_uri(uri):
        raise bad_request("notification.endpoint.uri must be an http(s) URL",
                          ["body", "notification", "endpoint", "uri"])
    accept = endpoint.get("accept", JSON)
    if accept not in (JSON, LD_JSON):
        raise bad_request(f"notification.endpoint.accept must be {JSON} or {LD_JSON}",
                          ["body", "notification", "endpoint", "accept"])
    receiver = endpoint.get("receiverInfo") or []
    if not isinstance(receiver, list) or not all(
            isinstance(r, dict) and isinstance(r.get("key"), str) and isinstance(r.get("value"), str)
            and "\n" not in r["key"] + r["value"] and "\r" not in r["key"] + r["value"] for r in receiver):
        raise bad_request("receiverInfo is a list of {key, value} headers",
                          ["body", "notification", "endpoint", "receiverInfo"])
    fmt = notification.get("format", "normalized")
    if fmt not in FORMATS:
        raise bad_request(f"notification.format must be one of {', '.join(FORMATS)}", ["body", "notification",
                                                                                         "format"])
    attributes = notification.get("attributes")
    if attributes is not None and (not isinstance(attributes, list)
                                   or not all(isinstance(a, str) and a for a in attributes)):
        raise bad_request("notification.attributes is a list of attribute names",
                          ["body", "notification", "attributes"])
    expires = body.get("expiresAt")
    expires_at: datetime | None = None
    if expires is not None:
        expires_at = parse_time(expires)
        if expires_at is None:
            raise bad_request("expiresAt must be a date-time with a time zone", ["body", "expiresAt"])
    throttling = body.get("throttling")
    if throttling is not None and (isinstance(throttling, bool) or not isinstance(throttling, int | float)
                                   or throttling < 0):
        raise bad_request("throttling is a number of seconds", ["body", "throttling"])
    active = body.get("isActive", True)
    if not isinstance(active, bool):
        raise bad_request("isActive is true or false", ["body", "isActive"])
    return {
        "entities": selectors, "watched": [ctx.expand(w) for w in watched] if watched else None, "q": q,
        "geo": geo, "attributes": [ctx.expand(a) for a in attributes] if attributes else None,
        "format": "keyValues" if fmt in ("keyValues", "simplified") else "normalized", "endpoint_uri": uri,
        "endpoint_accept": accept, "receiver_info": receiver, "is_active": active, "expires_at": expires_at,
        "throttling": int(throttling) if throttling is not None else None,
    }


def create_subscription(session: Session, *, actor: Actor, body: Any, ctx: LdContext) -> str:
    """Store a subscription; returns its id (409 AlreadyExists when the given id is taken)."""
    actor.require("entities:read")
    actor.require(PERMISSION)
    if not isinstance(body, dict):
        raise bad_request("a subscription is a JSON object")
    sub_id = body.get("id") or f"urn:ngsi-ld:Subscription:{uuid.uuid4()}"
    if not is_uri(sub_id) or len(sub_id) > 256:
        raise bad_request("a subscription id is a URI of at most 256 characters", ["body", "id"])
    stored = {k: v for k, v in body.items() if k != "@context"}
    columns = _checked(stored, ctx)
    if session.get(NgsiSubscription, sub_id) is not None:
        raise NgsiError("AlreadyExists", f"subscription {sub_id} already exists")
    count = session.scalar(select(NgsiSubscription.id).offset(MAX_SUBSCRIPTIONS - 1).limit(1))
    if count is not None:
        raise NgsiError("OperationNotSupported", f"at most {MAX_SUBSCRIPTIONS} subscriptions are kept")
    now = utcnow()
    stored["id"] = sub_id
    session.add(NgsiSubscription(id=sub_id, body=stored, context=ctx.value, owner_kind=actor.kind,
                                 owner_name=actor.name, owner_scope_path=actor.scope_path, created_at=now,
                                 modified_at=now, **columns))
    session.flush()
    audit(session, actor=actor, action="ngsi_ld.subscription.create", target_type="ngsi_ld_subscription",
          target_id=sub_id[:80], detail={"endpoint": columns["endpoint_uri"][:200]})
    notify.subscriptions_changed(session)
    return sub_id


def get_subscription(session: Session, *, actor: Actor, sub_id: str) -> NgsiSubscription:
    """One subscription inside the caller's scope; 404 otherwise."""
    actor.require("entities:read")
    row = _owned(actor, session.get(NgsiSubscription, sub_id))
    if row is None:
        raise NgsiError("ResourceNotFound", f"subscription {sub_id} not found")
    return row


def list_subscriptions(session: Session, *, actor: Actor, limit: int, offset: int
                       ) -> tuple[int, list[NgsiSubscription]]:
    """Subscriptions created inside the caller's scope."""
    actor.require("entities:read")
    rows = [r for r in session.scalars(select(NgsiSubscription).order_by(NgsiSubscription.created_at,
                                                                        NgsiSubscription.id))
            if actor.sees_path(r.owner_scope_path)]
    return len(rows), rows[offset:offset + limit]


def update_subscription(session: Session, *, actor: Actor, sub_id: str, changes: Any, ctx: LdContext) -> None:
    """Change members of a subscription (PATCH): the members given replace the stored ones."""
    actor.require(PERMISSION)
    row = get_subscription(session, actor=actor, sub_id=sub_id)
    if not isinstance(changes, dict) or not changes:
        raise bad_request("send the members to change as a JSON object")
    if "id" in changes and changes["id"] != sub_id:
        raise bad_request("a subscription's id cannot change", ["body", "id"])
    merged = {**row.body, **{k: v for k, v in changes.items() if k != "@context"}}
    if isinstance(changes.get("notification"), dict) and isinstance(row.body.get("notification"), dict):
        merged["notification"] = {**row.body["notification"], **changes["notification"]}
    columns = _checked(merged, ctx)
    row.body = merged
    row.context = ctx.value
    for name, value in columns.items():
        setattr(row, name, value)
    row.modified_at = utcnow()
    notify.subscriptions_changed(session)


def delete_subscription(session: Session, *, actor: Actor, sub_id: str) -> None:
    """Remove a subscription and its undelivered notifications."""
    actor.require(PERMISSION)
    row = get_subscription(session, actor=actor, sub_id=sub_id)
    from saola.interop.ngsi_ld.models import NgsiNotification

    session.query(NgsiNotification).filter(NgsiNotification.subscription_id == sub_id).delete()
    session.delete(row)
    audit(session, actor=actor, action="ngsi_ld.subscription.delete", target_type="ngsi_ld_subscription",
          target_id=sub_id[:80], detail={})
    notify.subscriptions_changed(session)


def render_subscription(row: NgsiSubscription, *, now: datetime | None = None) -> dict[str, Any]:
    """A subscription as its creator wrote it, with its status and delivery figures."""
    now = now or utcnow()
    body = dict(row.body)
    expired = row.expires_at is not None and row.expires_at <= now
    body["isActive"] = row.is_active
    body["status"] = "expired" if expired else "active" if row.is_active else "paused"
    notification = dict(body.get("notification") or {})
    notification["timesSent"] = row.times_sent
    if row.times_failed:
        notification["timesFailed"] = row.times_failed
    if row.last_notification:
        notification["lastNotification"] = iso(row.last_notification)
    if row.last_success:
        notification["lastSuccess"] = iso(row.last_success)
    if row.last_failure:
        notification["lastFailure"] = iso(row.last_failure)
    if row.last_notification:
        ok = row.last_success is not None and (row.last_failure is None or row.last_success >= row.last_failure)
        notification["status"] = "ok" if ok else "failed"
    body["notification"] = notification
    return body
