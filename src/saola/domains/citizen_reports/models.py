"""Tables of the citizen reports pack: categories and routing (data operators edit), and the side data of reports.

A citizen report IS a kernel case (case_type 'citizen_report'); these tables only hold what the kernel does not:
the exact place, the result published to the citizen, the rating, each submission's tracking code and the
reporter's private contact (kept apart from the case, which agencies read), and the metadata of photos.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from saola.db.base import Base, IdMixin, TimestampMixin
from saola.db.types import UTCDateTime, utcnow


class ReportCategory(TimestampMixin, Base):
    """A category of report (lighting, trees ...) with its default handling agency and its SLA policy."""

    __tablename__ = "citizen_report_categories"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name_vi: Mapped[str] = mapped_column(String(120))
    name_en: Mapped[str] = mapped_column(String(120), default="")
    # An agency code looked up along the report's unit path (commune first): 'so-xd', 'ubnd' ...
    default_agency_code: Mapped[str] = mapped_column(String(60), default="ubnd")
    forward_minutes: Mapped[int] = mapped_column(Integer, default=5)
    answer_minutes: Mapped[int] = mapped_column(Integer, default=5 * 24 * 60)
    position: Mapped[int] = mapped_column(Integer, default=100)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class ReportRoute(IdMixin, TimestampMixin, Base):
    """Routing an operator set: reports of this category in this unit (or below) go to this agency."""

    __tablename__ = "citizen_report_routes"
    __table_args__ = (UniqueConstraint("category", "unit_code"),)

    category: Mapped[str] = mapped_column(ForeignKey("citizen_report_categories.code"))
    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"))
    agency_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agencies.id"))
    updated_by: Mapped[str] = mapped_column(String(120), default="")


class ReportDetail(TimestampMixin, Base):
    """What a citizen report case carries besides the kernel's columns: place, result, rating, duplicates."""

    __tablename__ = "citizen_report_details"
    __table_args__ = (Index("ix_citizen_report_details_category_created", "category", "created_at"),)

    case_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("cases.id"), primary_key=True)
    category: Mapped[str] = mapped_column(String(40))
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    address: Mapped[str] = mapped_column(String(300), default="")
    address_key: Mapped[str] = mapped_column(String(300), default="")  # folded address, for duplicates
    channel: Mapped[str] = mapped_column(String(16), default="portal")
    result_text: Mapped[str] = mapped_column(Text, default="")
    result_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rating: Mapped[int | None] = mapped_column(Integer)
    rating_comment: Mapped[str] = mapped_column(Text, default="")
    rated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    linked_count: Mapped[int] = mapped_column(Integer, default=0)


class ReportSubmission(IdMixin, Base):
    """One citizen's submission: its tracking code, private contact and abuse keys; duplicates link to one case.

    Contact lives only here: never on the case (agencies read cases), never in public answers. ip_key and the
    contact keys are keyed hashes (HMAC with the server's secret), so rate limits work without keeping raw IPs.
    """

    __tablename__ = "citizen_report_submissions"
    __table_args__ = (
        Index("ix_citizen_report_submissions_ip", "ip_key", "created_at"),
        Index("ix_citizen_report_submissions_phone", "phone_key", "created_at"),
        Index("ix_citizen_report_submissions_email", "email_key", "created_at"),
        Index("ix_citizen_report_submissions_source", "source_id", "created_at"),
    )

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"), index=True)
    tracking_code: Mapped[str] = mapped_column(String(24), unique=True)
    is_primary: Mapped[bool] = mapped_column(Boolean, default=True)
    channel: Mapped[str] = mapped_column(String(16), default="portal")
    source_id: Mapped[int | None] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text, default="")
    contact_name: Mapped[str] = mapped_column(String(120), default="")
    contact_phone: Mapped[str] = mapped_column(String(40), default="")
    contact_email: Mapped[str] = mapped_column(String(254), default="")
    share_contact: Mapped[bool] = mapped_column(Boolean, default=False)
    ip_key: Mapped[str] = mapped_column(String(64), default="")
    phone_key: Mapped[str] = mapped_column(String(64), default="")
    email_key: Mapped[str] = mapped_column(String(64), default="")
    media_url: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReportPhoto(Base):
    """Metadata of a photo stored as a kernel case attachment: whose it is and what was stripped from it."""

    __tablename__ = "citizen_report_photos"

    attachment_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("case_attachments.id"), primary_key=True)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"), index=True)
    submission_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("citizen_report_submissions.id"))
    kind: Mapped[str] = mapped_column(String(8))  # report | result
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    original_bytes: Mapped[int] = mapped_column(Integer)
    had_location: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
