"""Tables of the operations loop: cases, their timeline, attachments, SOP templates and checklists."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from saola.db.base import Base, IdMixin, NodeMixin, TimestampMixin
from saola.db.types import JSONType, UTCDateTime, utcnow


class Case(IdMixin, NodeMixin, TimestampMixin, Base):
    """A unit of work with an owner unit and agency, a status in its type's flow, and an SLA deadline.

    unit_path copies the unit's materialised path so every scope check is one indexed prefix match.
    is_open is true while the SLA clock runs (neither resolved nor closed in the type's flow).
    """

    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("origin_node", "code"),
        # text_pattern_ops lets PostgreSQL use the index for the scope check (LIKE 'VN.68.%').
        Index("ix_cases_unit_path", "unit_path", postgresql_ops={"unit_path": "text_pattern_ops"}),
        Index("ix_cases_type_status", "case_type", "status"),
        Index("ix_cases_open_due", "is_open", "due_at"),
        Index("ix_cases_created_at", "created_at"),
    )

    code: Mapped[str] = mapped_column(String(32))
    case_type: Mapped[str] = mapped_column(String(40))
    category: Mapped[str] = mapped_column(String(80), default="")
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(32))
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"))
    unit_path: Mapped[str] = mapped_column(String(64))
    owner_agency_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agencies.id"), index=True)
    assignee_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_by: Mapped[str] = mapped_column(String(120), default="")
    created_by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    parent_case_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("cases.id"), index=True)
    # Alerts live in their own module; a plain id keeps the two migration branches independent.
    alert_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    entity_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("entities.id"))
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_response_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_response_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_on_time: Mapped[bool | None] = mapped_column(Boolean)
    resolution_seconds: Mapped[int | None] = mapped_column(BigInteger)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    escalated_to_agency_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agencies.id"))
    progress_percent: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    search_text: Mapped[str] = mapped_column(Text, default="")


class CaseTimelineEntry(IdMixin, NodeMixin, Base):
    """One thing that happened to a case: a comment, a status change, an assignment, a file, progress ..."""

    __tablename__ = "case_timeline"
    __table_args__ = (Index("ix_case_timeline_case_at", "case_id", "at"),)

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"))
    kind: Mapped[str] = mapped_column(String(24))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_name: Mapped[str] = mapped_column(String(120), default="")
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class CaseAttachment(IdMixin, NodeMixin, Base):
    """A file attached to a case, checked by content type and size, stored by its SHA-256."""

    __tablename__ = "case_attachments"

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    mime: Mapped[str] = mapped_column(String(120))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_path: Mapped[str] = mapped_column(String(255))
    uploaded_by: Mapped[str] = mapped_column(String(120), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CaseCounter(Base):
    """The last sequence number given per code prefix and year (SC-2026-000123)."""

    __tablename__ = "case_counters"

    prefix: Mapped[str] = mapped_column(String(8), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(Integer, default=0)


class SopTemplate(IdMixin, NodeMixin, TimestampMixin, Base):
    """A standard operating procedure: ordered steps for cases of a type (and category) inside a unit's subtree."""

    __tablename__ = "sop_templates"
    __table_args__ = (Index("ix_sop_templates_match", "case_type", "category", "active"),)

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    case_type: Mapped[str] = mapped_column(String(40))
    category: Mapped[str] = mapped_column(String(80), default="")
    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"))
    unit_path: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(120), default="")


class SopStep(IdMixin, Base):
    """One step of a template, in order."""

    __tablename__ = "sop_steps"
    __table_args__ = (UniqueConstraint("template_id", "position"),)

    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sop_templates.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    owner_role: Mapped[str] = mapped_column(String(32), default="operator")
    expected_minutes: Mapped[int] = mapped_column(Integer, default=30)
    required: Mapped[bool] = mapped_column(Boolean, default=True)


class CaseSopStep(IdMixin, Base):
    """A case's copy of a template step: its checklist, with who ticked it and when."""

    __tablename__ = "case_sop_steps"
    __table_args__ = (UniqueConstraint("case_id", "position"),)

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"))
    template_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sop_templates.id", ondelete="SET NULL"))
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    owner_role: Mapped[str] = mapped_column(String(32), default="operator")
    expected_minutes: Mapped[int] = mapped_column(Integer, default=30)
    required: Mapped[bool] = mapped_column(Boolean, default=True)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_by: Mapped[str | None] = mapped_column(String(120))
    done_by_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    note: Mapped[str] = mapped_column(Text, default="")
