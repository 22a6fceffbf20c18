"""Request and response models of cases, SOPs and directives."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from saola.core.cases.flows import PRIORITIES, flow_for
from saola.core.cases.models import Case
from saola.core.limits import TEXT_PATTERN

Priority = Literal["low", "normal", "high", "critical"]
UNIT_PATTERN = r"^[A-Za-z0-9]{1,16}$"
TYPE_PATTERN = r"^[a-z][a-z0-9_.]{0,39}$"
SAFE_TEXT = TEXT_PATTERN


class CaseCreate(BaseModel):
    """A new case opened by hand (incidents from alerts are opened by the alert service)."""

    model_config = ConfigDict(extra="forbid")

    case_type: str = Field(pattern=TYPE_PATTERN)
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=20_000)
    unit_code: str = Field(pattern=UNIT_PATTERN)
    priority: Priority = "normal"
    category: str = Field(default="", max_length=80)
    owner_agency_id: uuid.UUID | None = None
    assignee_user_id: uuid.UUID | None = None
    entity_id: uuid.UUID | None = None
    alert_id: uuid.UUID | None = None
    due_at: AwareDatetime | None = Field(default=None, description="Overrides the SLA policy; must be in the future")


class CaseRead(BaseModel):
    """A case, with its labels and what it may move to next."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    code: str
    case_type: str
    type_label: str = ""
    category: str
    title: str
    description: str
    status: str
    status_label: str = ""
    priority: str
    priority_label: str = ""
    unit_code: str
    owner_agency_id: uuid.UUID | None
    assignee_user_id: uuid.UUID | None
    parent_case_id: uuid.UUID | None
    alert_id: uuid.UUID | None
    entity_id: uuid.UUID | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    due_at: datetime | None
    first_response_due_at: datetime | None
    first_response_at: datetime | None
    resolved_at: datetime | None
    resolved_on_time: bool | None
    closed_at: datetime | None
    escalation_level: int
    escalated_to_agency_id: uuid.UUID | None
    progress_percent: int
    overdue: bool = False
    allowed_transitions: list[str] = []
    data: dict[str, Any]

    @classmethod
    def of(cls, case: Case, now: datetime) -> CaseRead:
        """The read model of a case at a time (for the overdue flag)."""
        read = cls.model_validate(case)
        flow = flow_for(case.case_type)
        read.type_label = flow.definition.name_vi
        read.status_label = flow.label(case.status)
        read.priority_label = PRIORITIES.get(case.priority, case.priority)
        read.overdue = bool(case.is_open and case.due_at is not None and case.due_at < now)
        read.allowed_transitions = list(flow.allowed(case.status))
        return read


class CasePage(BaseModel):
    """A page of cases and how many matched."""

    total: int
    items: list[CaseRead]


class StatusChange(BaseModel):
    """Move a case to another status of its flow."""

    model_config = ConfigDict(extra="forbid")

    status: str = Field(min_length=1, max_length=32)
    reason: str = Field(default="", max_length=2000)


class Assignment(BaseModel):
    """Dispatch a case to a unit, an owner agency and/or a person (at least one)."""

    model_config = ConfigDict(extra="forbid")

    unit_code: str | None = Field(default=None, pattern=UNIT_PATTERN)
    agency_id: uuid.UUID | None = None
    assignee_user_id: uuid.UUID | None = None
    unassign: bool = False
    note: str = Field(default="", max_length=2000)


class CommentCreate(BaseModel):
    """A comment on a case."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=5000)


class TimelineRead(BaseModel):
    """One entry of a case's timeline."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    at: datetime
    actor_name: str
    data: dict[str, Any]


class TimelinePage(BaseModel):
    """A page of timeline entries, oldest first."""

    total: int
    items: list[TimelineRead]


class AttachmentRead(BaseModel):
    """A file attached to a case."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    case_id: uuid.UUID
    filename: str
    mime: str
    size: int
    sha256: str
    uploaded_by: str
    created_at: datetime


class StatsRow(BaseModel):
    """Counts of one unit, agency or type."""

    key: str | None
    name: str
    total: int
    by_status: dict[str, int]
    overdue_open: int
    resolved: int
    resolved_on_time: int
    on_time_rate: float | None = Field(description="Percent of resolved cases resolved by their deadline")
    mean_resolution_hours: float | None


class StatsTotals(BaseModel):
    """Counts over every group."""

    total: int
    by_status: dict[str, int]
    overdue_open: int
    resolved: int
    resolved_on_time: int
    on_time_rate: float | None
    mean_resolution_hours: float | None


class CaseStats(BaseModel):
    """Statistics of the cases in the caller's scope."""

    group_by: str
    items: list[StatsRow]
    totals: StatsTotals
    generated_at: datetime


class CaseTypeRead(BaseModel):
    """A case type with its flow and labels, for forms and filters."""

    type: str
    name_vi: str
    name_en: str
    prefix: str
    initial_status: str
    statuses: dict[str, str]
    transitions: dict[str, list[str]]
    resolved_statuses: list[str]
    closed_statuses: list[str]
    reason_required: list[str]
    sla_minutes: dict[str, int]
    first_response_minutes: dict[str, int]
    categories: dict[str, str]


class CaseTypesRead(BaseModel):
    """Every case type, and the priorities with their labels."""

    priorities: dict[str, str]
    types: list[CaseTypeRead]


# --- SOPs ---------------------------------------------------------------------------------------------------------


class SopStepIn(BaseModel):
    """One step of a template."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=5000)
    owner_role: str = Field(default="operator", max_length=32)
    expected_minutes: int = Field(default=30, ge=1, le=525_600)
    required: bool = True


class SopTemplateCreate(BaseModel):
    """A new SOP template."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    case_type: str = Field(default="incident", pattern=TYPE_PATTERN)
    category: str = Field(default="", max_length=80)
    unit_code: str | None = Field(default=None, pattern=UNIT_PATTERN,
                                  description="Unit whose subtree the SOP governs; default: the caller's scope")
    steps: list[SopStepIn] = Field(min_length=1, max_length=100)


class SopTemplateUpdate(BaseModel):
    """Changes to a template; steps, when given, replace the old ones."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    steps: list[SopStepIn] | None = Field(default=None, min_length=1, max_length=100)
    active: bool | None = None


class SopStepRead(BaseModel):
    """One step of a template."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    position: int
    title: str
    description: str
    owner_role: str
    expected_minutes: int
    required: bool


class SopTemplateRead(BaseModel):
    """An SOP template and its steps."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str
    case_type: str
    category: str
    unit_code: str
    active: bool
    version: int
    created_by: str
    steps: list[SopStepRead] = []


class ChecklistStepRead(BaseModel):
    """One step of a case's checklist: who ticked it and when."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    position: int
    title: str
    description: str
    owner_role: str
    expected_minutes: int
    required: bool
    done_at: datetime | None
    done_by: str | None
    note: str


class ChecklistRead(BaseModel):
    """A case's SOP checklist and its progress."""

    case_id: uuid.UUID
    template: dict[str, Any] | None
    steps: list[ChecklistStepRead]
    done: int
    total: int
    required_open: int


class StepTick(BaseModel):
    """Tick or untick a checklist step."""

    model_config = ConfigDict(extra="forbid")

    done: bool = True
    note: str = Field(default="", max_length=2000)


# --- directives ---------------------------------------------------------------------------------------------------


class RecipientIn(BaseModel):
    """A unit or an agency (exactly one)."""

    model_config = ConfigDict(extra="forbid")

    unit_code: str | None = Field(default=None, pattern=UNIT_PATTERN)
    agency_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _one(self) -> RecipientIn:
        if (self.unit_code is None) == (self.agency_id is None):
            raise ValueError("give exactly one of unit_code and agency_id")
        return self


class DirectiveCreate(BaseModel):
    """A directive to units or agencies of the caller's scope."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=20_000)
    priority: Priority = "normal"
    due_at: AwareDatetime
    recipients: list[RecipientIn] = Field(min_length=1, max_length=500)


class DirectiveRecipientRead(BaseModel):
    """One recipient's task as the issuer sees it."""

    task_id: uuid.UUID
    code: str
    unit_code: str
    unit_name: str
    agency_id: uuid.UUID | None
    agency_name: str
    status: str
    status_label: str
    progress_percent: int
    due_at: datetime | None
    overdue: bool
    resolved_on_time: bool | None
    last_report_at: str | None
    last_report_text: str
    delegated: int


class DirectiveRead(BaseModel):
    """A directive with completion across its recipients."""

    directive: CaseRead
    recipients: list[DirectiveRecipientRead]
    overall_percent: int
    done: int
    overdue: int
    total: int


class ProgressReport(BaseModel):
    """A recipient's progress on its task."""

    model_config = ConfigDict(extra="forbid")

    percent: int = Field(ge=0, le=100)
    text: str = Field(default="", max_length=5000)
    attachment_ids: list[uuid.UUID] = Field(default_factory=list, max_length=50)


class Delegation(BaseModel):
    """Hand a task down the recipient's subtree."""

    model_config = ConfigDict(extra="forbid")

    recipients: list[RecipientIn] = Field(min_length=1, max_length=500)
    due_at: AwareDatetime | None = None
    note: str = Field(default="", max_length=2000)


ExportFormat = Literal["csv", "xlsx"]
