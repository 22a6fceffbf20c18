"""Tables of the NGSI-LD door: entity type names, subscriptions and their queued notifications.

Entities themselves are kernel rows (saola.core.entities): an NGSI-LD entity id is the kernel entity's
external_id, so the door adds an index on that column for lookups by id alone.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from saola.core.entities.models import Entity
from saola.db.base import Base
from saola.db.ids import new_id
from saola.db.types import JSONType, UTCDateTime, utcnow

# NGSI-LD addresses entities by id alone (the type is not in the URL): look external ids up without the type.
ENTITY_EXTERNAL_ID_INDEX = Index("ix_ngsi_ld_entities_external_id", Entity.external_id)


class NgsiType(Base):
    """An NGSI-LD entity type (its expanded IRI) that no pack declares, and the kernel type allotted to it."""

    __tablename__ = "ngsi_ld_types"

    iri: Mapped[str] = mapped_column(String(512), primary_key=True)
    kernel_type: Mapped[str] = mapped_column(String(60), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NgsiSubscription(Base):
    """A subscription: which entity changes to notify, to which endpoint, in which form.

    `body` keeps the subscription as its creator wrote it (their terms, compacted against `context`); the
    other columns hold what matching needs, already expanded. Notifications only ever carry entities inside the
    creator's scope (`owner_scope_path`).
    """

    __tablename__ = "ngsi_ld_subscriptions"

    id: Mapped[str] = mapped_column(String(256), primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSONType)
    context: Mapped[Any] = mapped_column(JSONType)
    entities: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    watched: Mapped[list[str] | None] = mapped_column(JSONType)
    q: Mapped[str | None] = mapped_column(Text)
    geo: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    attributes: Mapped[list[str] | None] = mapped_column(JSONType)
    format: Mapped[str] = mapped_column(String(20), default="normalized")
    endpoint_uri: Mapped[str] = mapped_column(String(2048))
    endpoint_accept: Mapped[str] = mapped_column(String(40), default="application/json")
    receiver_info: Mapped[list[dict[str, str]]] = mapped_column(JSONType, default=list)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    throttling: Mapped[int | None] = mapped_column(Integer)
    owner_kind: Mapped[str] = mapped_column(String(16))
    owner_name: Mapped[str] = mapped_column(String(255))
    owner_scope_path: Mapped[str] = mapped_column(String(120))
    times_sent: Mapped[int] = mapped_column(Integer, default=0)
    times_failed: Mapped[int] = mapped_column(Integer, default=0)
    last_notification: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_failure: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NgsiNotification(Base):
    """A notification queued in the transaction of the change it reports, sent after commit with retries."""

    __tablename__ = "ngsi_ld_notifications"
    __table_args__ = (Index("ix_ngsi_ld_notifications_due", "status", "next_attempt_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    subscription_id: Mapped[str] = mapped_column(
        String(256), ForeignKey("ngsi_ld_subscriptions.id", ondelete="CASCADE"), index=True)
    data: Mapped[str] = mapped_column(Text)  # the JSON array of entities, rendered for the subscription
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
