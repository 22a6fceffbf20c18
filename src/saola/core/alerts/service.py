"""Alerts: opened and cleared by the rules engine, acknowledged and resolved by people, published as CAP.

Every change writes a history row, an outbox row (topic alerts.<action>, published on the bus after commit) and
the outbound deliveries (webhooks, e-mail) in the same transaction, so nothing is announced that did not happen.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from saola.core.alerts import notify
from saola.core.alerts.models import Alert, AlertDelivery, AlertHistory, AlertPublication, WebhookSubscription
from saola.core.alerts.schemas import PublishRequest, WebhookCreate, WebhookUpdate
from saola.core.audit.service import audit
from saola.core.auth.context import Actor, system_actor
from saola.core.entities.models import Entity
from saola.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from saola.core.events.schemas import SEVERITIES
from saola.core.rules.models import Rule
from saola.core.units.models import Unit
from saola.core.units.service import get_unit, require_unit_in_scope, scope_condition
from saola.db.ids import new_id
from saola.db.outbox import record_change
from saola.db.types import utcnow

if TYPE_CHECKING:
    from saola.config import Settings

OPEN = ("firing", "acknowledged")
CAP_SEVERITY = {"critical": "Extreme", "high": "Severe", "medium": "Moderate", "low": "Minor", "info": "Minor"}
POINT_RADIUS_KM = 5.0
VN_TZ = timezone(timedelta(hours=7), "ICT")
_NOT_CAP = re.compile(r"[\s,&<]+")


def severity_rank(severity: str) -> int:
    """Position of a severity from info (0) to critical (4)."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


def open_key(rule_id: uuid.UUID, subject: str) -> str:
    """The value that keeps one open alert per rule and subject."""
    return f"{rule_id}:{subject}"


def alert_payload(alert: Alert) -> dict[str, Any]:
    """What the bus, the stream and webhooks carry about an alert (JSON-ready; scope by unit_code)."""
    return {
        "alert_id": str(alert.id), "rule_id": str(alert.rule_id) if alert.rule_id else None,
        "unit_code": alert.unit_code, "severity": alert.severity, "subject": alert.subject, "title": alert.title,
        "status": alert.status, "kind": alert.kind, "entity_id": str(alert.entity_id) if alert.entity_id else None,
        "indicator": alert.indicator_code, "event_type": alert.event_type, "value": alert.value,
        "threshold": alert.threshold, "flapping": alert.flapping, "started_at": alert.started_at.isoformat(),
        "fired_at": alert.fired_at.isoformat(), "acknowledged_by": alert.acknowledged_by,
        "resolved_by": alert.resolved_by, "resolution": alert.resolution,
        "case_id": str(alert.case_id) if alert.case_id else None,
    }


def _announce(session: Session, alert: Alert, action: str, *, actor: str, note: str = "", value: float | None = None,
              data: dict[str, Any] | None = None, settings: Settings | None = None) -> None:
    """History row, outbox row (alerts.<action>) and outbound deliveries, in the caller's transaction."""
    session.add(AlertHistory(alert_id=alert.id, action=action, actor=actor, note=note, value=value, data=data or {}))
    payload = alert_payload(alert)
    topic = f"alerts.{action}"
    record_change(session, topic=topic, aggregate_type="alert", aggregate_id=str(alert.id), payload=payload)
    notify.queue_deliveries(session, alert=alert, topic=topic, payload=payload, settings=settings)


# ---------------------------------------------------------------------------------------------------------------
# the engine's side


def _subject_label(session: Session, unit_code: str, entity_id: uuid.UUID | None) -> str:
    if entity_id is not None:
        name = session.scalar(select(Entity.name).where(Entity.id == entity_id))
        if name:
            return name
    return session.scalar(select(Unit.name).where(Unit.code == unit_code)) or unit_code


def fire(
    session: Session, *, rule: Rule, subject: str, unit_code: str, entity_id: uuid.UUID | None = None,
    value: float | None = None, threshold: float | None = None, started_at: datetime, flapping: bool = False,
    details: dict[str, Any] | None = None, label: str | None = None, settings: Settings | None = None,
    known_closed: bool = False,
) -> tuple[Alert, bool]:
    """Open an alert for (rule, subject), or return the one already open; the flag says whether it is new.

    `label` names the subject in the title (default: the entity's or the unit's name, looked up). `known_closed`:
    the caller already looked in this transaction and found no open alert (the engine looks once for a whole
    round). Two processes opening the same alert at once: the unique open_key refuses the second, whose
    transaction fails.
    """
    key = open_key(rule.id, subject)
    if not known_closed:
        existing = session.scalar(select(Alert).where(Alert.open_key == key))
        if existing is not None:
            return existing, False
    label = label or _subject_label(session, unit_code, entity_id)
    alert = Alert(id=new_id(), rule_id=rule.id, subject=subject, open_key=key, kind=rule.kind, status="firing",
                  severity=rule.severity, title=f"{rule.name} — {label}"[:400], unit_code=unit_code,
                  entity_id=entity_id, indicator_code=rule.indicator_code, event_type=rule.event_type, value=value,
                  threshold=threshold, started_at=started_at, fired_at=utcnow(), flapping=flapping,
                  details=details or {})
    session.add(alert)
    _announce(session, alert, "firing", actor="rules", value=value, data={"threshold": threshold, **(details or {})},
              settings=settings)
    if rule.open_case_type:
        _open_case(session, alert=alert, rule=rule)
    return alert, True


def _open_case(session: Session, *, alert: Alert, rule: Rule) -> None:
    """Open the incident the rule asks for; a failure is noted on the alert, never lost with it."""
    try:
        from saola.core.cases.service import open_case  # type: ignore[import-not-found]
    except ImportError:  # the cases module is not installed in this build
        return
    try:
        with session.begin_nested():
            case = open_case(session, actor=system_actor("rules"), case_type=rule.open_case_type, title=alert.title,
                             unit_code=alert.unit_code, priority=_case_priority(alert.severity),
                             description=f"Cảnh báo tự động từ quy tắc «{rule.name}».", alert_id=alert.id,
                             entity_id=alert.entity_id)
    except Exception as exc:  # the alert stands even when the incident cannot be opened
        session.add(AlertHistory(alert_id=alert.id, action="case_failed", actor="rules", note=str(exc)[:2000]))
        return
    alert.case_id = case.id
    session.add(AlertHistory(alert_id=alert.id, action="case_opened", actor="rules", data={"case_id": str(case.id)}))


def _case_priority(severity: str) -> str:
    return {"critical": "urgent", "high": "high"}.get(severity, "normal")


def _open_alert(session: Session, rule_id: uuid.UUID, subject: str) -> Alert | None:
    return session.scalar(select(Alert).where(Alert.open_key == open_key(rule_id, subject)))


def open_alerts_by_key(session: Session, keys: Sequence[str]) -> dict[str, Alert]:
    """The open alerts with these open keys, in one query (the engine's round looks up all its subjects at once)."""
    found: dict[str, Alert] = {}
    unique = sorted(set(keys))
    for start in range(0, len(unique), 500):
        for alert in session.scalars(select(Alert).where(Alert.open_key.in_(unique[start:start + 500]))):
            found[alert.open_key or ""] = alert
    return found


_LOOK = object()  # auto_resolve / set_flapping: look the open alert up (the default)


def auto_resolve(
    session: Session, *, rule_id: uuid.UUID, subject: str, value: float | None = None, note: str = "",
    settings: Settings | None = None, alert: Any = _LOOK,
) -> Alert | None:
    """Resolve the open alert of (rule, subject) because the condition cleared; None when none is open.

    `alert`: the open alert (or None) when the caller already looked it up in this transaction."""
    if alert is _LOOK:
        alert = _open_alert(session, rule_id, subject)
    if alert is None:
        return None
    _close(session, alert, by="rules", resolution="auto", note=note or "Điều kiện đã hết / condition cleared",
           value=value, settings=settings)
    return alert


def set_flapping(session: Session, *, rule_id: uuid.UUID, subject: str, flapping: bool,
                 settings: Settings | None = None, alert: Any = _LOOK) -> Alert | None:
    """Mark the open alert of (rule, subject) as flapping (held open) or stable again (`alert`: as for
    auto_resolve)."""
    if alert is _LOOK:
        alert = _open_alert(session, rule_id, subject)
    if alert is None or alert.flapping == flapping:
        return alert
    alert.flapping = flapping
    _announce(session, alert, "flapping" if flapping else "stable", actor="rules", settings=settings)
    return alert


def resolve_rule_alerts(session: Session, *, rule_id: uuid.UUID, note: str, by: str) -> int:
    """Resolve every open alert of a rule (the rule was changed, disabled or deleted); returns how many."""
    alerts = list(session.scalars(select(Alert).where(Alert.rule_id == rule_id, Alert.status.in_(OPEN))))
    for alert in alerts:
        _close(session, alert, by=by, resolution="auto", note=note)
    return len(alerts)


def _close(session: Session, alert: Alert, *, by: str, resolution: str, note: str, value: float | None = None,
           settings: Settings | None = None) -> None:
    alert.status, alert.open_key, alert.resolution = "resolved", None, resolution
    alert.resolved_at, alert.resolved_by, alert.resolve_note = utcnow(), by, note
    if value is not None:
        alert.details = {**alert.details, "last_value": value}
    _announce(session, alert, "resolved", actor=by, note=note, value=value, settings=settings)
    _cancel_publication(session, alert, by=by)


# ---------------------------------------------------------------------------------------------------------------
# people's side


def _scoped(actor: Actor) -> Any:
    return select(Alert).join(Unit, Unit.code == Alert.unit_code).where(scope_condition(actor, Unit.path))


def list_alerts(
    session: Session, *, actor: Actor, status: Sequence[str] | None = None, severity: Sequence[str] | None = None,
    rule_id: uuid.UUID | None = None, unit: str | None = None, subject: str | None = None, limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[Alert]]:
    """Alerts in the actor's scope, newest first, by status, severity, rule and unit subtree."""
    actor.require("alerts:read")
    stmt = _scoped(actor)
    if status:
        stmt = stmt.where(Alert.status.in_(list(status)))
    if severity:
        stmt = stmt.where(Alert.severity.in_(list(severity)))
    if rule_id:
        stmt = stmt.where(Alert.rule_id == rule_id)
    if subject:
        stmt = stmt.where(Alert.subject == subject)
    if unit:
        path = get_unit(session, actor=actor, code=unit).path
        stmt = stmt.where(or_(Unit.path == path, Unit.path.startswith(path + ".", autoescape=True)))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    items = session.scalars(stmt.order_by(Alert.fired_at.desc(), Alert.id.desc()).limit(limit).offset(offset))
    return total, list(items)


def get_alert(session: Session, *, actor: Actor, alert_id: uuid.UUID) -> Alert:
    """One alert inside the actor's scope; NotFound otherwise (never reveals what lies outside)."""
    actor.require("alerts:read")
    alert = session.scalar(_scoped(actor).where(Alert.id == alert_id))
    if alert is None:
        raise NotFound(f"alert {alert_id} not found")
    return alert


def _for_update(session: Session, actor: Actor, alert_id: uuid.UUID) -> Alert:
    actor.require("alerts:write")
    alert = session.scalar(_scoped(actor).where(Alert.id == alert_id).with_for_update(of=Alert))
    if alert is None:
        raise NotFound(f"alert {alert_id} not found")
    return alert


def acknowledge(session: Session, *, actor: Actor, alert_id: uuid.UUID, note: str = "",
                settings: Settings | None = None) -> Alert:
    """Take a firing alert in hand: records who and when."""
    alert = _for_update(session, actor, alert_id)
    if alert.status != "firing":
        raise Conflict(f"alert {alert_id} is {alert.status}; only a firing alert can be acknowledged")
    alert.status, alert.acknowledged_at, alert.acknowledged_by = "acknowledged", utcnow(), actor.name
    _announce(session, alert, "acknowledged", actor=actor.name, note=note, settings=settings)
    audit(session, actor=actor, action="alert.acknowledge", target_type="alert", target_id=str(alert.id),
          detail={"note": note} if note else {})
    return alert


def resolve(session: Session, *, actor: Actor, alert_id: uuid.UUID, note: str,
            settings: Settings | None = None) -> Alert:
    """Close an open alert by hand with a note; a published warning is cancelled with it."""
    alert = _for_update(session, actor, alert_id)
    if alert.status not in OPEN:
        raise Conflict(f"alert {alert_id} is already resolved")
    _close(session, alert, by=actor.name, resolution="manual", note=note, settings=settings)
    audit(session, actor=actor, action="alert.resolve", target_type="alert", target_id=str(alert.id),
          detail={"note": note})
    return alert


def history(session: Session, *, actor: Actor, alert_id: uuid.UUID) -> list[AlertHistory]:
    """The timeline of an alert, oldest first."""
    alert = get_alert(session, actor=actor, alert_id=alert_id)
    stmt = select(AlertHistory).where(AlertHistory.alert_id == alert.id).order_by(AlertHistory.at, AlertHistory.id)
    return list(session.scalars(stmt))


# ---------------------------------------------------------------------------------------------------------------
# public warnings (CAP)


def cap_sender(settings: Settings) -> str:
    """The CAP sender of this node: SAOLA_CAP_SENDER, or saola@<node id>."""
    return _NOT_CAP.sub("-", settings.cap_sender or f"saola@{settings.node_id}")


def _area(session: Session, alert: Alert, data: PublishRequest) -> dict[str, Any]:
    unit = session.get(Unit, alert.unit_code)
    area: dict[str, Any] = {"desc": data.area_desc or (unit.name if unit else alert.unit_code), "polygons": [],
                            "circles": [], "geocodes": [{"valueName": "VN-UNIT", "value": alert.unit_code}]}
    if data.polygon:
        area["polygons"].append([[lat, lon] for lon, lat in data.polygon])
    if data.circle:
        area["circles"].append([data.circle.lat, data.circle.lon, data.circle.radius_km])
    if data.polygon or data.circle or alert.entity_id is None:
        return area
    entity = session.get(Entity, alert.entity_id)
    geometry = entity.geometry if entity else None
    if entity is not None and not data.area_desc:
        area["desc"] = f"{entity.name}, {area['desc']}"
    if isinstance(geometry, dict):
        kind, coords = geometry.get("type"), geometry.get("coordinates")
        if kind == "Point" and coords:
            area["circles"].append([coords[1], coords[0], POINT_RADIUS_KM])
        elif kind == "Polygon" and coords:
            area["polygons"].append([[lat, lon] for lon, lat, *_ in coords[0]])
        elif kind == "MultiPolygon" and coords:
            area["polygons"].extend([[lat, lon] for lon, lat, *_ in poly[0]] for poly in coords)
    return area


def _reference(publication: AlertPublication) -> str:
    return f"{publication.sender},{publication.identifier},{cap_time(publication.sent)}"


def cap_time(moment: datetime) -> str:
    """A CAP date-time: seconds, with Vietnam's +07:00 offset."""
    local = moment.astimezone(VN_TZ).replace(microsecond=0)
    return local.isoformat()


def _latest_publication(session: Session, alert_id: uuid.UUID) -> AlertPublication | None:
    stmt = (select(AlertPublication).where(AlertPublication.alert_id == alert_id)
            .order_by(AlertPublication.sent.desc(), AlertPublication.id.desc()).limit(1))
    return session.scalar(stmt)


def publish(session: Session, *, actor: Actor, alert_id: uuid.UUID, data: PublishRequest,
            settings: Settings) -> AlertPublication:
    """Make an open alert public as a CAP 1.2 message (Alert, or Update when it was published before)."""
    actor.require("alerts:publish")
    alert = _for_update(session, actor, alert_id)
    if alert.status not in OPEN:
        raise Conflict(f"alert {alert_id} is resolved; a resolved alert is not published")
    previous = _latest_publication(session, alert.id)
    sent = utcnow().replace(microsecond=0)
    info = [{"language": "vi-VN", **data.vi.model_dump()}]
    if data.en:
        info.append({"language": "en-US", **data.en.model_dump()})
    if data.web:
        for block in info:
            block["web"] = str(data.web)
    sender = cap_sender(settings)
    publication = AlertPublication(
        identifier=_NOT_CAP.sub("-", f"{settings.node_id}.{uuid.uuid4()}"), alert_id=alert.id, sender=sender,
        sent=sent, msg_type="Update" if previous else "Alert", references=_reference(previous) if previous else "",
        category=data.category, urgency=data.urgency, severity=data.severity or CAP_SEVERITY[alert.severity],
        certainty=data.certainty, expires=sent + timedelta(hours=data.expires_hours), info=info,
        area=_area(session, alert, data), published_by=actor.name,
    )
    session.add(publication)
    alert.published_at = alert.published_at or sent
    session.flush()
    _announce(session, alert, "published", actor=actor.name, note=data.vi.headline,
              data={"identifier": publication.identifier, "msg_type": publication.msg_type}, settings=settings)
    audit(session, actor=actor, action="alert.publish", target_type="alert", target_id=str(alert.id),
          detail={"identifier": publication.identifier, "msg_type": publication.msg_type})
    return publication


def _cancel_publication(session: Session, alert: Alert, *, by: str) -> None:
    """When a published alert is resolved, tell the public with a CAP Cancel referencing the last message."""
    if alert.published_at is None:
        return
    previous = _latest_publication(session, alert.id)
    if previous is None or previous.msg_type == "Cancel":
        return
    sent = max(utcnow().replace(microsecond=0), previous.sent)
    info = [{**block, "headline": f"Kết thúc: {block['headline']}" if block["language"] == "vi-VN"
             else f"Ended: {block['headline']}"} for block in previous.info]
    session.add(AlertPublication(
        identifier=f"{previous.identifier}.cancel", alert_id=alert.id, sender=previous.sender, sent=sent,
        msg_type="Cancel", references=_reference(previous), category=previous.category, urgency="Past",
        severity=previous.severity, certainty=previous.certainty, expires=None, info=info, area=previous.area,
        published_by=by,
    ))


def publications(session: Session, *, actor: Actor, alert_id: uuid.UUID) -> list[AlertPublication]:
    """The CAP messages sent for an alert, oldest first."""
    alert = get_alert(session, actor=actor, alert_id=alert_id)
    stmt = select(AlertPublication).where(AlertPublication.alert_id == alert.id)
    return list(session.scalars(stmt.order_by(AlertPublication.sent, AlertPublication.id)))


def public_feed(session: Session, *, limit: int = 100) -> list[AlertPublication]:
    """The newest CAP message of each published alert, newest first: what the public feed lists."""
    newest = (select(AlertPublication.alert_id, func.max(AlertPublication.sent).label("sent"))
              .group_by(AlertPublication.alert_id).subquery())
    stmt = (select(AlertPublication)
            .join(newest, (newest.c.alert_id == AlertPublication.alert_id) & (newest.c.sent == AlertPublication.sent))
            .order_by(AlertPublication.sent.desc(), AlertPublication.id.desc()).limit(limit))
    seen: set[uuid.UUID] = set()
    out = []
    for publication in session.scalars(stmt):  # a Cancel may share its second with the message it cancels
        if publication.alert_id in seen:
            continue
        seen.add(publication.alert_id)
        out.append(publication)
    return out


def public_message(session: Session, *, identifier: str) -> AlertPublication:
    """One published CAP message by identifier; NotFound for anything never published."""
    publication = session.scalar(select(AlertPublication).where(AlertPublication.identifier == identifier))
    if publication is None:
        raise NotFound(f"no public warning {identifier!r}")
    return publication


# ---------------------------------------------------------------------------------------------------------------
# webhooks


def _webhook_in_scope(session: Session, actor: Actor, webhook_id: uuid.UUID) -> WebhookSubscription:
    actor.require("rules:write")
    stmt = (select(WebhookSubscription).join(Unit, Unit.code == WebhookSubscription.unit_code)
            .where(WebhookSubscription.id == webhook_id, scope_condition(actor, Unit.path)))
    webhook = session.scalar(stmt)
    if webhook is None:
        raise NotFound(f"webhook {webhook_id} not found")
    return webhook


def create_webhook(session: Session, *, actor: Actor, data: WebhookCreate) -> tuple[WebhookSubscription, str]:
    """Register a webhook in the actor's scope; returns it with its signing secret (generated when not given)."""
    actor.require("rules:write")
    unit = require_unit_in_scope(session, actor=actor, code=data.unit_code, loc=["body", "unit_code"])
    if data.rule_id is not None:
        rule = session.get(Rule, data.rule_id)
        rule_unit = session.get(Unit, rule.unit_code) if rule else None
        if rule is None or rule_unit is None or not actor.sees_path(rule_unit.path):
            raise ValidationFailed(f"unknown rule {data.rule_id}",
                                   [FieldError(["body", "rule_id"], f"unknown rule {data.rule_id}")])
    secret = data.secret or secrets.token_urlsafe(32)
    webhook = WebhookSubscription(name=data.name, url=str(data.url), secret=secret, topics=list(data.topics),
                                  unit_code=unit.code, rule_id=data.rule_id, min_severity=data.min_severity,
                                  active=data.active, created_by=actor.name)
    session.add(webhook)
    session.flush()
    audit(session, actor=actor, action="webhook.create", target_type="webhook", target_id=str(webhook.id),
          detail={"url": webhook.url, "topics": webhook.topics})
    return webhook, secret


def list_webhooks(session: Session, *, actor: Actor) -> list[WebhookSubscription]:
    """Webhooks registered in the actor's scope."""
    actor.require("rules:write")
    stmt = (select(WebhookSubscription).join(Unit, Unit.code == WebhookSubscription.unit_code)
            .where(scope_condition(actor, Unit.path)).order_by(WebhookSubscription.created_at))
    return list(session.scalars(stmt))


def get_webhook(session: Session, *, actor: Actor, webhook_id: uuid.UUID) -> WebhookSubscription:
    """One webhook in the actor's scope."""
    return _webhook_in_scope(session, actor, webhook_id)


def update_webhook(session: Session, *, actor: Actor, webhook_id: uuid.UUID,
                   changes: WebhookUpdate) -> WebhookSubscription:
    """Change a webhook's name, URL, secret, topics, minimum severity or activity."""
    webhook = _webhook_in_scope(session, actor, webhook_id)
    values = changes.model_dump(exclude_unset=True)
    for name, value in values.items():
        if value is None:
            raise ValidationFailed(f"{name} may not be null", [FieldError(["body", name], "may not be null")])
        setattr(webhook, name, str(value) if name == "url" else value)
    audit(session, actor=actor, action="webhook.update", target_type="webhook", target_id=str(webhook.id),
          detail={"fields": sorted(values)})
    return webhook


def delete_webhook(session: Session, *, actor: Actor, webhook_id: uuid.UUID) -> None:
    """Remove a webhook and its pending deliveries."""
    webhook = _webhook_in_scope(session, actor, webhook_id)
    session.execute(delete(AlertDelivery).where(AlertDelivery.subscription_id == webhook.id))
    session.delete(webhook)
    audit(session, actor=actor, action="webhook.delete", target_type="webhook", target_id=str(webhook_id))


def list_deliveries(session: Session, *, actor: Actor, webhook_id: uuid.UUID, limit: int = 100) -> list[AlertDelivery]:
    """The newest deliveries of a webhook."""
    webhook = _webhook_in_scope(session, actor, webhook_id)
    stmt = (select(AlertDelivery).where(AlertDelivery.subscription_id == webhook.id)
            .order_by(AlertDelivery.created_at.desc(), AlertDelivery.id.desc()).limit(limit))
    return list(session.scalars(stmt))
