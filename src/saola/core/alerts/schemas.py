"""Request and response models of alerts, their history, public CAP publications and webhooks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from saola.core.entities.schemas import UNIT_PATTERN, SafeStr
from saola.core.events.schemas import Severity

AlertStatus = Literal["firing", "acknowledged", "resolved"]
CapCategory = Literal["Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra",
                      "CBRNE", "Other"]
CapUrgency = Literal["Immediate", "Expected", "Future", "Past", "Unknown"]
CapSeverity = Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
CapCertainty = Literal["Observed", "Likely", "Possible", "Unlikely", "Unknown"]
TOPIC_PATTERN = r"^alerts\.[a-z*?]+$"

Note = Annotated[SafeStr, Field(max_length=2000)]


class AlertRead(BaseModel):
    """An alert and where it stands in its lifecycle."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    rule_id: uuid.UUID | None
    subject: str
    kind: str
    status: AlertStatus
    severity: Severity
    title: str
    unit_code: str
    entity_id: uuid.UUID | None
    indicator_code: str | None
    event_type: str | None
    value: float | None
    threshold: float | None
    started_at: datetime
    fired_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None
    resolve_note: str
    flapping: bool
    case_id: uuid.UUID | None
    published_at: datetime | None
    details: dict[str, Any]


class AlertPage(BaseModel):
    """A page of alerts and the total that matched."""

    total: int
    items: list[AlertRead]


class AcknowledgeRequest(BaseModel):
    """Taking an alert in hand, with an optional note."""

    model_config = ConfigDict(extra="forbid")

    note: Note = ""


class ResolveRequest(BaseModel):
    """Closing an alert by hand: say why."""

    model_config = ConfigDict(extra="forbid")

    note: Annotated[SafeStr, Field(min_length=1, max_length=2000)]


class AlertHistoryRead(BaseModel):
    """One step of an alert's timeline."""

    model_config = ConfigDict(from_attributes=True)

    at: datetime
    action: str
    actor: str
    note: str
    value: float | None
    data: dict[str, Any]


PublicText = Annotated[SafeStr, Field(max_length=4000)]


class CapText(BaseModel):
    """The public words of a warning in one language."""

    model_config = ConfigDict(extra="forbid")

    event: Annotated[SafeStr, Field(min_length=1, max_length=200)]
    headline: Annotated[SafeStr, Field(min_length=1, max_length=200)]
    description: PublicText = ""
    instruction: PublicText = ""


class CapCircle(BaseModel):
    """A circle on the map: centre and radius in kilometres."""

    model_config = ConfigDict(extra="forbid")

    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    radius_km: Annotated[float, Field(gt=0, le=1000)]


Position = Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=2, max_length=2)]


class PublishRequest(BaseModel):
    """What an operator makes public about an alert (sent as OASIS CAP 1.2).

    The area defaults to the alert's entity geometry (a point becomes a 5 km circle) or its unit's name and code;
    give `circle` or `polygon` ([lon, lat] positions, GeoJSON order) to draw it yourself.
    """

    model_config = ConfigDict(extra="forbid")

    category: CapCategory = "Other"
    urgency: CapUrgency = "Expected"
    certainty: CapCertainty = "Observed"
    severity: CapSeverity | None = Field(default=None, description="Default: mapped from the alert's severity")
    vi: CapText = Field(description="Vietnamese text (vi-VN), always sent")
    en: CapText | None = Field(default=None, description="English text (en-US), sent as a second info block")
    area_desc: Annotated[SafeStr | None, Field(min_length=1, max_length=500)] = None
    circle: CapCircle | None = None
    polygon: Annotated[list[Position] | None, Field(min_length=3, max_length=2000)] = None
    expires_hours: Annotated[int, Field(ge=1, le=24 * 14)] = 24
    web: AnyHttpUrl | None = None

    @field_validator("polygon")
    @classmethod
    def _ring(cls, ring: list[list[float]] | None) -> list[list[float]] | None:
        if ring is None:
            return None
        for lon, lat in ring:
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                raise ValueError("positions are [lon, lat] within -180..180 and -90..90")
        if ring[0] != ring[-1]:
            ring = [*ring, ring[0]]
        if len({tuple(p) for p in ring}) < 3:
            raise ValueError("a polygon needs at least three distinct positions")
        return ring


class PublicationRead(BaseModel):
    """One CAP message sent for an alert."""

    model_config = ConfigDict(from_attributes=True)

    identifier: str
    alert_id: uuid.UUID
    sender: str
    sent: datetime
    msg_type: Literal["Alert", "Update", "Cancel"]
    references: str
    category: str
    urgency: str
    severity: str
    certainty: str
    expires: datetime | None
    info: list[dict[str, Any]]
    area: dict[str, Any]
    published_by: str
    url: str = ""


Topic = Annotated[str, Field(min_length=3, max_length=60, pattern=TOPIC_PATTERN)]


class WebhookCreate(BaseModel):
    """A webhook: alert changes (topics such as alerts.firing or alerts.*) in a unit subtree POSTed to a URL."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[SafeStr, Field(min_length=1, max_length=200)]
    url: Annotated[AnyHttpUrl, Field(description="http or https only")]
    secret: Annotated[str | None, Field(min_length=16, max_length=200, pattern=r"^[\x21-\x7e]+$",
                                        description="Default: a random secret, shown once")] = None
    topics: Annotated[list[Topic], Field(min_length=1, max_length=20)] = ["alerts.*"]
    unit_code: Annotated[str, Field(min_length=1, max_length=16, pattern=UNIT_PATTERN)]
    rule_id: uuid.UUID | None = None
    min_severity: Severity = "info"
    active: bool = True

    @field_validator("url")
    @classmethod
    def _short(cls, url: AnyHttpUrl) -> AnyHttpUrl:
        if len(str(url)) > 2000:
            raise ValueError("at most 2000 characters")
        return url


class WebhookUpdate(BaseModel):
    """Changes to a webhook."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[SafeStr | None, Field(min_length=1, max_length=200)] = None
    url: AnyHttpUrl | None = None
    secret: Annotated[str | None, Field(min_length=16, max_length=200, pattern=r"^[\x21-\x7e]+$")] = None
    topics: Annotated[list[Topic] | None, Field(min_length=1, max_length=20)] = None
    min_severity: Severity | None = None
    active: bool | None = None


class WebhookRead(BaseModel):
    """A webhook (its secret is never shown again after creation)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    url: str
    topics: list[str]
    unit_code: str
    rule_id: uuid.UUID | None
    min_severity: Severity
    active: bool
    created_by: str
    created_at: datetime


class WebhookCreated(WebhookRead):
    """A new webhook with its signing secret: keep it, it is not shown again."""

    secret: str


class DeliveryRead(BaseModel):
    """One outbound notification and how its attempts went."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    channel: str
    topic: str
    alert_id: uuid.UUID | None
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str
    delivered_at: datetime | None
    created_at: datetime
