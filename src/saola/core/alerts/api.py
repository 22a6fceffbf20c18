"""Routes of alerts (list, read, acknowledge, resolve, history, publish as CAP) and of outbound webhooks."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from saola.core.alerts import service
from saola.core.alerts.schemas import (
    AcknowledgeRequest,
    AlertHistoryRead,
    AlertPage,
    AlertRead,
    AlertStatus,
    DeliveryRead,
    PublicationRead,
    PublishRequest,
    ResolveRequest,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookUpdate,
)
from saola.core.entities.schemas import UNIT_PATTERN
from saola.core.events.schemas import Severity
from saola.core.limits import MAX_OFFSET
from saola.core.rules.engine import wait_idle
from saola.deps import ActorDep, SessionDep, SettingsDep

router = APIRouter(prefix="/api", tags=["alerts"])
# A read of alerts first lets the rules engine catch up with the readings committed before it (bounded, so a
# backlog delays a list at most this long): whoever ingested and then asks sees what the readings caused.
CATCH_UP_SECONDS = 2.0


def _publication(p: object) -> PublicationRead:
    read = PublicationRead.model_validate(p)
    read.url = f"/cap/{read.identifier}.xml"
    return read


@router.get("/alerts", response_model=AlertPage, summary="List alerts, newest first")
def list_alerts(
    session: SessionDep,
    actor: ActorDep,
    status: Annotated[list[AlertStatus] | None, Query(description="One or more statuses")] = None,
    severity: Annotated[list[Severity] | None, Query(description="One or more severities")] = None,
    rule: uuid.UUID | None = None,
    unit: Annotated[str | None, Query(max_length=16, pattern=UNIT_PATTERN,
                                      description="Unit code: alerts in it or below it")] = None,
    subject: Annotated[str | None, Query(max_length=64, pattern=r"^(u:[A-Za-z0-9]+|e:[0-9a-f-]{36}|\*)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> AlertPage:
    """Alerts in the caller's scope."""
    wait_idle(CATCH_UP_SECONDS)
    total, items = service.list_alerts(session, actor=actor, status=status, severity=severity, rule_id=rule,
                                       unit=unit, subject=subject, limit=limit, offset=offset)
    return AlertPage(total=total, items=[AlertRead.model_validate(a) for a in items])


@router.get("/alerts/{alert_id}", response_model=AlertRead, summary="One alert")
def get_alert(alert_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> AlertRead:
    """An alert inside the caller's scope."""
    wait_idle(CATCH_UP_SECONDS)
    return AlertRead.model_validate(service.get_alert(session, actor=actor, alert_id=alert_id))


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertRead, summary="Acknowledge an alert")
def acknowledge(alert_id: uuid.UUID, body: AcknowledgeRequest, session: SessionDep, actor: ActorDep,
                settings: SettingsDep) -> AlertRead:
    """Take a firing alert in hand (records who and when)."""
    return AlertRead.model_validate(service.acknowledge(session, actor=actor, alert_id=alert_id, note=body.note,
                                                        settings=settings))


@router.post("/alerts/{alert_id}/resolve", response_model=AlertRead, summary="Resolve an alert by hand")
def resolve(alert_id: uuid.UUID, body: ResolveRequest, session: SessionDep, actor: ActorDep,
            settings: SettingsDep) -> AlertRead:
    """Close an open alert with a note; a published warning is cancelled."""
    return AlertRead.model_validate(service.resolve(session, actor=actor, alert_id=alert_id, note=body.note,
                                                    settings=settings))


@router.get("/alerts/{alert_id}/history", response_model=list[AlertHistoryRead], summary="An alert's timeline")
def history(alert_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> list[AlertHistoryRead]:
    """Every step of an alert, oldest first."""
    return [AlertHistoryRead.model_validate(h) for h in service.history(session, actor=actor, alert_id=alert_id)]


@router.post("/alerts/{alert_id}/publish", response_model=PublicationRead, status_code=status.HTTP_201_CREATED,
             summary="Publish an alert as a public warning (CAP 1.2)")
def publish(alert_id: uuid.UUID, body: PublishRequest, session: SessionDep, actor: ActorDep,
            settings: SettingsDep) -> PublicationRead:
    """Send the public fields chosen by an operator as a CAP message on /cap/alerts.atom."""
    return _publication(service.publish(session, actor=actor, alert_id=alert_id, data=body, settings=settings))


@router.get("/alerts/{alert_id}/publications", response_model=list[PublicationRead],
            summary="CAP messages sent for an alert")
def publications(alert_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> list[PublicationRead]:
    """The public messages of an alert, oldest first."""
    return [_publication(p) for p in service.publications(session, actor=actor, alert_id=alert_id)]


@router.get("/webhooks", response_model=list[WebhookRead], summary="List webhooks")
def list_webhooks(session: SessionDep, actor: ActorDep) -> list[WebhookRead]:
    """Webhooks registered in the caller's scope."""
    return [WebhookRead.model_validate(w) for w in service.list_webhooks(session, actor=actor)]


@router.post("/webhooks", response_model=WebhookCreated, status_code=status.HTTP_201_CREATED,
             summary="Register a webhook")
def create_webhook(body: WebhookCreate, session: SessionDep, actor: ActorDep) -> WebhookCreated:
    """Register a webhook; the answer carries its signing secret, shown only this once."""
    webhook, secret = service.create_webhook(session, actor=actor, data=body)
    return WebhookCreated.model_validate({**WebhookRead.model_validate(webhook).model_dump(), "secret": secret})


@router.get("/webhooks/{webhook_id}", response_model=WebhookRead, summary="One webhook")
def get_webhook(webhook_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> WebhookRead:
    """A webhook in the caller's scope."""
    return WebhookRead.model_validate(service.get_webhook(session, actor=actor, webhook_id=webhook_id))


@router.patch("/webhooks/{webhook_id}", response_model=WebhookRead, summary="Change a webhook")
def update_webhook(webhook_id: uuid.UUID, body: WebhookUpdate, session: SessionDep, actor: ActorDep) -> WebhookRead:
    """Change a webhook's name, URL, secret, topics, minimum severity or activity."""
    return WebhookRead.model_validate(service.update_webhook(session, actor=actor, webhook_id=webhook_id,
                                                             changes=body))


@router.delete("/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a webhook")
def delete_webhook(webhook_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> Response:
    """Remove a webhook and its pending deliveries."""
    service.delete_webhook(session, actor=actor, webhook_id=webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/webhooks/{webhook_id}/deliveries", response_model=list[DeliveryRead],
            summary="Deliveries of a webhook, newest first")
def list_deliveries(webhook_id: uuid.UUID, session: SessionDep, actor: ActorDep,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[DeliveryRead]:
    """How the notifications of a webhook went: attempts, last status, next try."""
    return [DeliveryRead.model_validate(d)
            for d in service.list_deliveries(session, actor=actor, webhook_id=webhook_id, limit=limit)]
