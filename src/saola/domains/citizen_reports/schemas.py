"""Request and answer shapes of the citizen reports pack."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

CODE_PATTERN = r"^[a-z][a-z0-9_]{1,39}$"


class CategoryPublic(BaseModel):
    """A category as the portal lists it."""

    code: str
    name_vi: str
    name_en: str


class CategoryRead(CategoryPublic):
    """A category with its routing default and SLA, for operators."""

    model_config = ConfigDict(from_attributes=True)

    default_agency_code: str
    forward_minutes: int
    answer_minutes: int
    position: int
    active: bool


class CategoryCreate(BaseModel):
    """A new category."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=CODE_PATTERN)
    name_vi: str = Field(min_length=1, max_length=120)
    name_en: str = Field(default="", max_length=120)
    default_agency_code: str = Field(default="ubnd", min_length=1, max_length=60)
    forward_minutes: int = Field(default=5, ge=1, le=7 * 24 * 60)
    answer_minutes: int = Field(default=5 * 24 * 60, ge=1, le=365 * 24 * 60)
    position: int = Field(default=1000, ge=0, le=100_000)
    active: bool = True


class CategoryUpdate(BaseModel):
    """Fields of a category to change."""

    model_config = ConfigDict(extra="forbid")

    name_vi: str | None = Field(default=None, min_length=1, max_length=120)
    name_en: str | None = Field(default=None, max_length=120)
    default_agency_code: str | None = Field(default=None, min_length=1, max_length=60)
    forward_minutes: int | None = Field(default=None, ge=1, le=7 * 24 * 60)
    answer_minutes: int | None = Field(default=None, ge=1, le=365 * 24 * 60)
    position: int | None = Field(default=None, ge=0, le=100_000)
    active: bool | None = None


class RouteSet(BaseModel):
    """Send reports of a category in a unit (and below) to an agency."""

    model_config = ConfigDict(extra="forbid")

    category: str = Field(pattern=CODE_PATTERN)
    unit_code: str = Field(pattern=r"^(VN|\d{1,5})$")
    agency_id: uuid.UUID


class RouteRead(BaseModel):
    """A route and its agency."""

    id: uuid.UUID
    category: str
    unit_code: str
    agency_id: uuid.UUID
    agency_name: str
    updated_by: str


class ReportCreate(BaseModel):
    """A report sent as JSON (no photos): the same fields as the portal's multipart form."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(max_length=5000)
    category: str = Field(max_length=40)
    lon: float | None = Field(default=None, ge=-180, le=180)
    lat: float | None = Field(default=None, ge=-90, le=90)
    address: str = Field(default="", max_length=300)
    unit_code: str | None = Field(default=None, pattern=r"^\d{1,5}$", description="Commune code, when known")
    contact_name: str = Field(default="", max_length=120)
    contact_phone: str = Field(default="", max_length=40)
    contact_email: str = Field(default="", max_length=254)
    share_contact: bool = False
    captcha_token: str = Field(default="", max_length=4000)


class ReportAccepted(BaseModel):
    """The answer to a submission: the tracking code to follow the report with."""

    tracking_code: str
    report_code: str
    status: str
    status_label_vi: str
    linked: bool = Field(description="True when this joined an open report of the same problem at the same place")
    follow_url: str


class TimelineStep(BaseModel):
    """One public step of a report."""

    at: datetime
    status: str
    label: str
    note: str | None = None


class ResultPublic(BaseModel):
    """The published result."""

    text: str
    at: datetime | None
    photos: list[str]


class ReportPublic(BaseModel):
    """What the holder of a tracking code sees: never who sent it."""

    tracking_code: str
    report_code: str
    linked: bool
    category: str
    category_name_vi: str
    category_name_en: str
    description: str
    address: str
    lon: float | None
    lat: float | None
    unit_code: str
    unit_name: str | None
    status: str
    status_label_vi: str
    is_open: bool
    overdue: bool
    created_at: datetime
    due_at: datetime | None
    handling_agency: str | None
    timeline: list[TimelineStep]
    result: ResultPublic | None
    photos: list[str]
    rating: int | None
    can_rate: bool
    can_reopen: bool


class RatingCreate(BaseModel):
    """The citizen's rating of the result."""

    model_config = ConfigDict(extra="forbid")

    rating: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=2000)


class ReopenCreate(BaseModel):
    """Why the citizen is not satisfied."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


class Forwarding(BaseModel):
    """Forward to an agency (default: the route for the report's category and unit)."""

    model_config = ConfigDict(extra="forbid")

    agency_id: uuid.UUID | None = None
    unit_code: str | None = Field(default=None, pattern=r"^\d{1,5}$")
    note: str = Field(default="", max_length=2000)


class OperatorReport(BaseModel):
    """A report for staff in scope; contact appears only when shared or the caller may see it."""

    case_id: uuid.UUID
    code: str
    status: str
    status_label_vi: str
    category: str
    lon: float | None
    lat: float | None
    address: str
    unit_code: str
    owner_agency_id: uuid.UUID | None
    owner_agency_name: str | None
    suggested_agency_id: uuid.UUID | None
    due_at: datetime | None
    first_response_due_at: datetime | None
    overdue: bool
    linked_count: int
    channel: str
    result: str | None
    result_at: datetime | None
    rating: int | None
    rating_comment: str | None
    submissions: list[dict[str, Any]]
    photos: list[dict[str, Any]]
