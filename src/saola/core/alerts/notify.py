"""Outbound notifications of alert changes: signed webhooks and e-mail, queued in the alert's transaction and sent
by a scheduled job with exponential backoff.

A webhook POST carries the JSON body, `X-Saola-Signature: sha256=<hex HMAC-SHA256 of the raw body keyed with the
subscription's secret>`, `X-Saola-Timestamp` (Unix seconds of the attempt), `X-Saola-Event` (the topic) and
`X-Saola-Delivery` (the delivery id, the same on every retry). Any 2xx answer counts as delivered.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import logging
import smtplib
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, sessionmaker

from saola.core.alerts.models import Alert, AlertDelivery, WebhookSubscription
from saola.core.events.schemas import SEVERITIES
from saola.core.units.models import Unit
from saola.db.ids import new_id
from saola.db.types import utcnow

if TYPE_CHECKING:
    from saola.config import Settings
    from saola.packs.definitions import ScheduledJob

log = logging.getLogger(__name__)

VN_TZ = timezone(timedelta(hours=7), "ICT")
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_MAX_SECONDS = 6 * 3600.0
LEASE = timedelta(minutes=2)  # a claimed delivery is not handed out again while its attempt runs
EMAIL_TOPICS = ("alerts.firing", "alerts.resolved")
STATUS_VI = {"firing": "ĐANG CẢNH BÁO", "acknowledged": "ĐÃ TIẾP NHẬN", "resolved": "ĐÃ KẾT THÚC"}


def sign(secret: str, body: bytes) -> str:
    """The signature header value of a body: 'sha256=' and the hex HMAC-SHA256 keyed with the secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff_seconds(attempts: int) -> float:
    """Wait before the next try after `attempts` failed ones: 30 s, 60 s, 120 s ... at most 6 hours."""
    return min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS)


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


def _in_subtree(path: str, root: str) -> bool:
    return path == root or path.startswith(root + ".")


def queue_deliveries(session: Session, *, alert: Alert, topic: str, payload: dict[str, Any],
                     settings: Settings | None = None) -> int:
    """Queue a delivery for each webhook (and the e-mail recipients) this alert change concerns; returns how many."""
    now = utcnow()
    rows: list[AlertDelivery] = []
    subscriptions = session.info.get("saola_webhooks")
    if subscriptions is None:  # read once per transaction: the engine writes many alert changes in one
        subscriptions = session.info["saola_webhooks"] = session.execute(
            select(WebhookSubscription, Unit.path).join(Unit, Unit.code == WebhookSubscription.unit_code)
            .where(WebhookSubscription.active.is_(True))).all()
    if subscriptions:
        path = session.scalar(select(Unit.path).where(Unit.code == alert.unit_code)) or ""
        for webhook, root in subscriptions:
            if (not _in_subtree(path, root) or _rank(alert.severity) < _rank(webhook.min_severity)
                    or (webhook.rule_id is not None and webhook.rule_id != alert.rule_id)
                    or not any(fnmatch.fnmatchcase(topic, p) for p in webhook.topics)):
                continue
            delivery_id = new_id()
            body = orjson.dumps({"delivery_id": str(delivery_id), "topic": topic, "created_at": now.isoformat(),
                                 "alert": payload}).decode()
            rows.append(AlertDelivery(id=delivery_id, channel="webhook", subscription_id=webhook.id,
                                      alert_id=alert.id, topic=topic, target=webhook.url, body=body,
                                      next_attempt_at=now, created_at=now))
    if (settings is not None and settings.smtp_host and settings.smtp_to and topic in EMAIL_TOPICS
            and _rank(alert.severity) >= _rank(settings.smtp_min_severity)):
        subject, text = _email_text(alert, topic)
        rows.append(AlertDelivery(channel="email", alert_id=alert.id, topic=topic, target=",".join(settings.smtp_to),
                                  subject=subject, body=text, next_attempt_at=now, created_at=now))
    session.add_all(rows)
    return len(rows)


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _forget_webhooks(session: Session) -> None:
    session.info.pop("saola_webhooks", None)


def _email_text(alert: Alert, topic: str) -> tuple[str, str]:
    status = STATUS_VI.get(alert.status, alert.status)
    subject = f"[Saola][{alert.severity.upper()}] {status}: {alert.title}"[:400]
    when = alert.fired_at.astimezone(VN_TZ).strftime("%H:%M %d/%m/%Y")
    lines = [
        f"{status}: {alert.title}",
        f"Mức độ / severity: {alert.severity}",
        f"Đơn vị / unit: {alert.unit_code}",
        f"Bắt đầu / fired at: {when} (UTC+7)",
    ]
    if alert.value is not None:
        lines.append(f"Giá trị / value: {alert.value:g}" + (f" (ngưỡng / threshold {alert.threshold:g})"
                                                             if alert.threshold is not None else ""))
    if topic == "alerts.resolved":
        lines.append(f"Kết thúc bởi / resolved by: {alert.resolved_by} — {alert.resolve_note}")
    lines.append(f"Mã cảnh báo / alert id: {alert.id}")
    return subject, "\n".join(lines) + "\n"


def _claim(session_factory: sessionmaker[Session], now: datetime, limit: int) -> list[tuple[AlertDelivery, str]]:
    """Take up to `limit` due deliveries (moving their next attempt past a lease) with their webhook secrets."""
    due_stmt = select(AlertDelivery.id).where(AlertDelivery.status == "pending", AlertDelivery.next_attempt_at <= now)
    with session_factory() as session:  # a plain read first: most of the time nothing is due, and no lock is taken
        if session.scalar(due_stmt.limit(1)) is None:
            return []
    with session_factory() as session, session.begin():
        session.connection(execution_options={"sqlite_immediate": True})
        due = session.execute(
            select(AlertDelivery.id, AlertDelivery.next_attempt_at)
            .where(AlertDelivery.status == "pending", AlertDelivery.next_attempt_at <= now)
            .order_by(AlertDelivery.next_attempt_at).limit(limit)).all()
        claimed: list[uuid.UUID] = []
        for delivery_id, was in due:
            result = session.execute(
                update(AlertDelivery)
                .where(AlertDelivery.id == delivery_id, AlertDelivery.status == "pending",
                       AlertDelivery.next_attempt_at == was)
                .values(next_attempt_at=now + LEASE))
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(delivery_id)
        if not claimed:
            return []
        rows = session.execute(
            select(AlertDelivery, WebhookSubscription.secret)
            .outerjoin(WebhookSubscription, WebhookSubscription.id == AlertDelivery.subscription_id)
            .where(AlertDelivery.id.in_(claimed))).all()
        session.expunge_all()
        return [(delivery, secret or "") for delivery, secret in rows]


def _post(client: Any, delivery: AlertDelivery, secret: str, now: datetime) -> tuple[int | None, str]:
    body = delivery.body.encode()
    headers = {"Content-Type": "application/json", "User-Agent": "Saola-Webhook/1",
               "X-Saola-Signature": sign(secret, body), "X-Saola-Timestamp": str(int(now.timestamp())),
               "X-Saola-Event": delivery.topic, "X-Saola-Delivery": str(delivery.id)}
    try:
        response = client.post(delivery.target, content=body, headers=headers)
    except Exception as exc:  # any transport failure is a failed attempt, retried later
        return None, f"{type(exc).__name__}: {exc}"[:500]
    return response.status_code, "" if 200 <= response.status_code < 300 else response.text[:200]


def _mail(settings: Settings, delivery: AlertDelivery) -> tuple[int | None, str]:
    if not settings.smtp_host:
        return None, "SMTP is not configured (SAOLA_SMTP_HOST)"
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = delivery.target
    message["Subject"] = delivery.subject
    message["X-Saola-Delivery"] = str(delivery.id)
    message.set_content(delivery.body)
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.webhook_timeout_seconds) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password)
            smtp.send_message(message)
    except Exception as exc:  # retried with backoff like a webhook
        return None, f"{type(exc).__name__}: {exc}"[:500]
    return 250, ""


def deliver_due(session_factory: sessionmaker[Session], *, settings: Settings, now: datetime | None = None,
                limit: int = 100) -> dict[str, int]:
    """Send the deliveries that are due at `now`; failures are retried with backoff, then given up as failed."""
    import httpx  # only the sending job needs it

    now = now or utcnow()
    claimed = _claim(session_factory, now, limit)
    if not claimed:
        return {"delivered": 0, "retrying": 0, "failed": 0}
    results: list[tuple[AlertDelivery, int | None, str]] = []
    with httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False) as client:
        for delivery, secret in claimed:
            code, error = (_post(client, delivery, secret, now) if delivery.channel == "webhook"
                           else _mail(settings, delivery))
            results.append((delivery, code, error))
    counts = {"delivered": 0, "retrying": 0, "failed": 0}
    with session_factory() as session, session.begin():
        session.connection(execution_options={"sqlite_immediate": True})
        for delivery, code, error in results:
            attempts = delivery.attempts + 1
            values: dict[str, Any] = {"attempts": attempts, "last_attempt_at": now, "last_status": code,
                                      "last_error": error}
            if not error:
                values.update(status="delivered", delivered_at=now)
                counts["delivered"] += 1
            elif attempts >= settings.webhook_max_attempts:
                values.update(status="failed")
                counts["failed"] += 1
            else:
                values.update(next_attempt_at=now + timedelta(seconds=backoff_seconds(attempts)))
                counts["retrying"] += 1
            session.execute(update(AlertDelivery).where(AlertDelivery.id == delivery.id).values(**values))
    if counts["failed"] or counts["retrying"]:
        log.warning("alert deliveries: %s", counts)
    return counts


def scheduled_jobs(interval_seconds: float = 5.0) -> list[ScheduledJob]:
    """The job that sends due deliveries."""
    from saola.packs.definitions import ScheduledJob

    def run(context: Any) -> None:
        deliver_due(context.session_factory, settings=context.settings)

    job: Callable[[Any], None] = run
    return [ScheduledJob("alerts.deliveries", interval_seconds, job)]
