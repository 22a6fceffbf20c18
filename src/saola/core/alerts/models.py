"""Tables of alerts, their history, public (CAP) publications, webhook subscriptions and outbound deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from saola.db.base import Base, IdMixin, NodeMixin, TimestampMixin
from saola.db.types import JSONType, UTCDateTime, utcnow


class Alert(IdMixin, NodeMixin, TimestampMixin, Base):
    """A rule's condition holding for one subject: firing -> acknowledged -> resolved.

    `open_key` is '<rule id>:<subject>' while the alert is open and NULL once resolved; its unique constraint
    keeps one open alert per rule and subject on every database (NULLs never collide).
    """

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_status_unit", "status", "unit_code"),
        Index("ix_alerts_unit_fired", "unit_code", "fired_at"),
        Index("ix_alerts_rule", "rule_id"),
        Index("ix_alerts_fired", "fired_at"),
    )

    rule_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("rules.id", ondelete="SET NULL"))
    subject: Mapped[str] = mapped_column(String(64))  # 'u:<unit>', 'e:<entity uuid>' or '*' (the whole scope)
    open_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16), default="firing")
    severity: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(400))
    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"))
    entity_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    indicator_code: Mapped[str | None] = mapped_column(String(80))
    event_type: Mapped[str | None] = mapped_column(String(60))
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)  # data time when the condition began
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(120))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(120))
    resolution: Mapped[str | None] = mapped_column(String(16))  # auto | manual
    resolve_note: Mapped[str] = mapped_column(String(2000), default="")
    flapping: Mapped[bool] = mapped_column(Boolean, default=False)
    case_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # first made public (CAP)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class AlertHistory(IdMixin, Base):
    """One step in an alert's timeline: fired, acknowledged, resolved, flapping, published ..."""

    __tablename__ = "alert_history"
    __table_args__ = (Index("ix_alert_history_alert", "alert_id", "at"),)

    alert_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("alerts.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    action: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(120), default="")
    note: Mapped[str] = mapped_column(String(2000), default="")
    value: Mapped[float | None] = mapped_column(Float)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class AlertPublication(IdMixin, Base):
    """A public warning sent as one CAP 1.2 message (Alert, Update or Cancel) for an alert.

    `info` keeps the public fields the operator chose (per language) and `area`, so the CAP door renders the
    same message every time it is asked for.
    """

    __tablename__ = "alert_publications"
    __table_args__ = (Index("ix_alert_publications_alert", "alert_id", "sent"),
                      Index("ix_alert_publications_sent", "sent"))

    identifier: Mapped[str] = mapped_column(String(160), unique=True)
    alert_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("alerts.id", ondelete="CASCADE"))
    sender: Mapped[str] = mapped_column(String(160))
    sent: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    msg_type: Mapped[str] = mapped_column(String(8))  # Alert | Update | Cancel
    references: Mapped[str] = mapped_column(String(2000), default="")
    category: Mapped[str] = mapped_column(String(16))
    urgency: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    certainty: Mapped[str] = mapped_column(String(16))
    expires: Mapped[datetime | None] = mapped_column(UTCDateTime)
    info: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    area: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    published_by: Mapped[str] = mapped_column(String(120), default="")


class WebhookSubscription(IdMixin, NodeMixin, TimestampMixin, Base):
    """An outbound webhook: alert changes matching `topics` (glob patterns), a unit subtree, a rule or a minimum
    severity are POSTed to `url`, signed with `secret` (HMAC-SHA256)."""

    __tablename__ = "webhook_subscriptions"

    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))
    topics: Mapped[list[str]] = mapped_column(JSONType, default=list)
    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"))
    rule_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("rules.id", ondelete="CASCADE"))
    min_severity: Mapped[str] = mapped_column(String(16), default="info")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(120), default="")


class AlertDelivery(IdMixin, Base):
    """One outbound notification (webhook POST or e-mail), retried with exponential backoff until it succeeds."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (Index("ix_alert_deliveries_due", "status", "next_attempt_at"),
                      Index("ix_alert_deliveries_subscription", "subscription_id", "created_at"))

    channel: Mapped[str] = mapped_column(String(8))  # webhook | email
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    alert_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("alerts.id", ondelete="CASCADE"))
    topic: Mapped[str] = mapped_column(String(60))
    target: Mapped[str] = mapped_column(String(2000))
    subject: Mapped[str] = mapped_column(String(400), default="")
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
