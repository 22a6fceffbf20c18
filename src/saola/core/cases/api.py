"""Routes of cases, their SOP checklists, attachments, directives and SOP templates."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, Response, UploadFile, status
from fastapi.responses import FileResponse
from pydantic import AwareDatetime

from saola.core.cases import attachments, directives, export, service, sops
from saola.core.cases.flows import PRIORITIES, case_types
from saola.core.cases.models import SopTemplate
from saola.core.cases.schemas import (
    TYPE_PATTERN,
    UNIT_PATTERN,
    Assignment,
    AttachmentRead,
    CaseCreate,
    CasePage,
    CaseRead,
    CaseStats,
    CaseTypeRead,
    CaseTypesRead,
    ChecklistRead,
    ChecklistStepRead,
    CommentCreate,
    Delegation,
    DirectiveCreate,
    DirectiveRead,
    ExportFormat,
    Priority,
    ProgressReport,
    SopStepRead,
    SopTemplateCreate,
    SopTemplateRead,
    SopTemplateUpdate,
    StatusChange,
    StepTick,
    TimelinePage,
    TimelineRead,
)
from saola.core.limits import MAX_OFFSET, text_query
from saola.db.types import utcnow
from saola.deps import ActorDep, SessionDep, SettingsDep

router = APIRouter(prefix="/api", tags=["cases"])
sops_router = APIRouter(prefix="/api", tags=["sops"])
directives_router = APIRouter(prefix="/api", tags=["directives"])


def case_filter(
    type: Annotated[str | None, Query(pattern=TYPE_PATTERN, description="Case type")] = None,
    status: Annotated[list[str] | None, Query(max_length=20, description="One or more statuses")] = None,
    priority: Annotated[list[Priority] | None, Query(description="One or more priorities")] = None,
    unit: Annotated[str | None, Query(pattern=UNIT_PATTERN, description="Cases in this unit or below")] = None,
    agency: Annotated[uuid.UUID | None, Query(description="Owner agency")] = None,
    assignee: Annotated[uuid.UUID | None, Query(description="Assigned user")] = None,
    overdue: Annotated[bool | None, Query(description="Open past the deadline (true) or not (false)")] = None,
    q: Annotated[str | None, text_query("Text in code, title or description; diacritics ignored")] = None,
    category: Annotated[str | None, Query(max_length=80)] = None,
    parent: Annotated[uuid.UUID | None, Query(description="Child cases of this case (tasks of a directive)")] = None,
    alert: Annotated[uuid.UUID | None, Query(description="Cases opened for this alert")] = None,
    created_since: Annotated[AwareDatetime | None, Query(description="created_at >= this")] = None,
    created_until: Annotated[AwareDatetime | None, Query(description="created_at < this")] = None,
) -> service.CaseFilter:
    """The search filters shared by list, statistics and export."""
    return service.CaseFilter(case_type=type, status=status or (), priority=priority or (), unit=unit,
                              agency_id=agency, assignee_user_id=assignee, overdue=overdue, q=q, category=category,
                              parent_case_id=parent, alert_id=alert, created_since=created_since,
                              created_until=created_until)


FilterDep = Annotated[service.CaseFilter, Depends(case_filter)]


@router.get("/cases/types", response_model=CaseTypesRead, summary="Case types, their flows and labels")
def list_case_types(actor: ActorDep) -> CaseTypesRead:
    """Every declared case type with its statuses (Vietnamese labels), transitions and SLA policy."""
    if not actor.can("sops:read"):  # SOP authors need the types too, without reading cases
        actor.require("cases:read")
    types = [CaseTypeRead(type=d.type, name_vi=d.name_vi, name_en=d.name_en, prefix=d.prefix,
                          initial_status=d.initial_status, statuses=dict(d.status_labels),
                          transitions={k: list(v) for k, v in d.transitions.items()},
                          resolved_statuses=list(d.resolved_statuses), closed_statuses=list(d.closed_statuses),
                          reason_required=list(d.reason_required), sla_minutes=dict(d.sla_minutes),
                          first_response_minutes=dict(d.first_response_minutes), categories=dict(d.categories))
             for d in sorted(case_types().values(), key=lambda d: d.type)]
    return CaseTypesRead(priorities=PRIORITIES, types=types)


@router.get("/cases", response_model=CasePage, summary="Search cases, newest first")
def list_cases(
    session: SessionDep, actor: ActorDep, filters: FilterDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> CasePage:
    """Cases in the caller's scope matching the filters."""
    now = utcnow()
    total, items = service.list_cases(session, actor=actor, filters=filters, limit=limit, offset=offset, now=now)
    return CasePage(total=total, items=[CaseRead.of(c, now) for c in items])


@router.get("/cases/stats", response_model=CaseStats, summary="Case statistics per unit, agency or type")
def case_stats(
    session: SessionDep, actor: ActorDep, filters: FilterDep,
    group_by: Annotated[str, Query(pattern="^(unit|agency|type)$")] = "unit",
    resolved_since: Annotated[AwareDatetime | None, Query(description="Resolved cases counted from")] = None,
    resolved_until: Annotated[AwareDatetime | None, Query(description="Resolved cases counted until")] = None,
) -> CaseStats:
    """Counts by status, overdue open cases, on-time rate and mean time to resolve, inside the caller's scope."""
    return CaseStats.model_validate(service.statistics(session, actor=actor, filters=filters, group_by=group_by,
                                                       resolved_since=resolved_since,
                                                       resolved_until=resolved_until))


BINARY = {"schema": {"type": "string", "format": "binary"}}


@router.get("/cases/export", summary="Export a case search to CSV or XLSX", response_class=Response,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}, export.XLSX_MIME: BINARY},
                             "description": "The matching cases, one row each"}})
def export_cases(
    session: SessionDep, actor: ActorDep, settings: SettingsDep, filters: FilterDep, format: ExportFormat = "csv",
) -> Response:
    """The same search as GET /api/cases, every matching row, with Vietnamese headers."""
    rows = export.export_rows(session, actor=actor, filters=filters, timezone=settings.timezone)
    stamp = utcnow().strftime("%Y%m%d-%H%M")
    if format == "xlsx":
        return Response(export.to_xlsx(rows), media_type=export.XLSX_MIME,
                        headers={"Content-Disposition": f'attachment; filename="cases-{stamp}.xlsx"'})
    return Response(export.to_csv(rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="cases-{stamp}.csv"'})


@router.post("/cases", response_model=CaseRead, status_code=status.HTTP_201_CREATED, summary="Open a case")
def open_case(body: CaseCreate, session: SessionDep, actor: ActorDep) -> CaseRead:
    """Open a case in a unit of the caller's scope; its deadline follows the type's SLA policy."""
    case = service.open_case(session, actor=actor, **body.model_dump())
    return CaseRead.of(case, utcnow())


@router.get("/cases/{case_id}", response_model=CaseRead, summary="One case")
def get_case(case_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> CaseRead:
    """A case inside the caller's scope."""
    return CaseRead.of(service.get_case(session, actor=actor, case_id=case_id), utcnow())


@router.post("/cases/{case_id}/status", response_model=CaseRead, summary="Change a case's status")
def change_status(case_id: uuid.UUID, body: StatusChange, session: SessionDep, actor: ActorDep) -> CaseRead:
    """Move a case along its flow; moves the flow does not allow get 409."""
    case = service.change_status(session, actor=actor, case_id=case_id, status=body.status, reason=body.reason)
    return CaseRead.of(case, utcnow())


@router.post("/cases/{case_id}/assign", response_model=CaseRead, summary="Dispatch a case")
def assign(case_id: uuid.UUID, body: Assignment, session: SessionDep, actor: ActorDep) -> CaseRead:
    """Give a case to a unit, an owner agency and/or a person inside the caller's scope."""
    case = service.assign(session, actor=actor, case_id=case_id, **body.model_dump())
    return CaseRead.of(case, utcnow())


@router.post("/cases/{case_id}/comments", response_model=TimelineRead, status_code=status.HTTP_201_CREATED,
             summary="Comment on a case")
def comment(case_id: uuid.UUID, body: CommentCreate, session: SessionDep, actor: ActorDep) -> TimelineRead:
    """Add a comment to the case's timeline."""
    return TimelineRead.model_validate(service.add_comment(session, actor=actor, case_id=case_id, text=body.text))


@router.get("/cases/{case_id}/timeline", response_model=TimelinePage, summary="A case's timeline")
def get_timeline(
    case_id: uuid.UUID, session: SessionDep, actor: ActorDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> TimelinePage:
    """Comments, status changes, assignments, files, progress, escalations and SOP ticks, oldest first."""
    total, items = service.timeline(session, actor=actor, case_id=case_id, limit=limit, offset=offset)
    return TimelinePage(total=total, items=[TimelineRead.model_validate(e) for e in items])


@router.post("/cases/{case_id}/attachments", response_model=AttachmentRead, status_code=status.HTTP_201_CREATED,
             summary="Attach a file (PNG, JPEG, PDF, DOCX, XLSX or text)")
def add_attachment(
    case_id: uuid.UUID, session: SessionDep, actor: ActorDep, settings: SettingsDep,
    file: Annotated[UploadFile, File(description="The file; its content decides its type")],
) -> AttachmentRead:
    """Store a file on the case after checking its content type and size."""
    attachment = attachments.add_attachment(session, actor=actor, case_id=case_id, filename=file.filename,
                                            stream=file.file, data_dir=settings.data_dir,
                                            max_bytes=settings.max_attachment_bytes)
    return AttachmentRead.model_validate(attachment)


@router.get("/cases/{case_id}/attachments", response_model=list[AttachmentRead], summary="A case's files")
def list_attachments(case_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> list[AttachmentRead]:
    """Files of the case (and, for a task, of its directive)."""
    return [AttachmentRead.model_validate(a)
            for a in attachments.list_attachments(session, actor=actor, case_id=case_id)]


@router.get("/cases/{case_id}/attachments/{attachment_id}", summary="Download a file",
            response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": BINARY}, "description": "The file's bytes"}})
def download_attachment(
    case_id: uuid.UUID, attachment_id: uuid.UUID, session: SessionDep, actor: ActorDep, settings: SettingsDep,
) -> FileResponse:
    """The file's bytes, as a download."""
    attachment, path = attachments.open_attachment(session, actor=actor, case_id=case_id,
                                                   attachment_id=attachment_id, data_dir=settings.data_dir)
    return FileResponse(path, media_type=attachment.mime, filename=attachment.filename,
                        headers={"X-Content-Type-Options": "nosniff"})


@router.get("/cases/{case_id}/sop", response_model=ChecklistRead, summary="A case's SOP checklist")
def get_checklist(case_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> ChecklistRead:
    """The steps copied from the SOP template, with who ticked each and when."""
    case, steps = sops.checklist(session, actor=actor, case_id=case_id)
    return ChecklistRead(case_id=case.id, template=(case.data or {}).get("sop"),
                         steps=[ChecklistStepRead.model_validate(s) for s in steps],
                         done=sum(1 for s in steps if s.done_at), total=len(steps),
                         required_open=sum(1 for s in steps if s.required and not s.done_at))


@router.post("/cases/{case_id}/sop/{step_id}", response_model=ChecklistStepRead, summary="Tick a checklist step")
def tick_step(case_id: uuid.UUID, step_id: uuid.UUID, body: StepTick, session: SessionDep,
              actor: ActorDep) -> ChecklistStepRead:
    """Tick (done=true) or untick a step; who and when are kept."""
    step = sops.tick_step(session, actor=actor, case_id=case_id, step_id=step_id, done=body.done, note=body.note)
    return ChecklistStepRead.model_validate(step)


@router.post("/cases/{case_id}/progress", response_model=CaseRead, summary="Report progress on a task")
def report_progress(case_id: uuid.UUID, body: ProgressReport, session: SessionDep, actor: ActorDep) -> CaseRead:
    """A recipient's progress: percent, text and files already attached to the task; 100 completes it."""
    task = directives.report_progress(session, actor=actor, case_id=case_id, percent=body.percent, text=body.text,
                                      attachment_ids=body.attachment_ids)
    return CaseRead.of(task, utcnow())


@router.post("/cases/{case_id}/delegate", response_model=list[CaseRead], status_code=status.HTTP_201_CREATED,
             summary="Delegate a task down your subtree")
def delegate(case_id: uuid.UUID, body: Delegation, session: SessionDep, actor: ActorDep) -> list[CaseRead]:
    """Create sub-tasks for units or agencies below the task's own unit."""
    recipients = [directives.Recipient(unit_code=r.unit_code, agency_id=r.agency_id) for r in body.recipients]
    subtasks = directives.delegate(session, actor=actor, case_id=case_id, recipients=recipients, due_at=body.due_at,
                                   note=body.note)
    now = utcnow()
    return [CaseRead.of(s, now) for s in subtasks]


# --- directives ---------------------------------------------------------------------------------------------------


def _directive_read(view: dict) -> DirectiveRead:
    return DirectiveRead(**{**view, "directive": CaseRead.of(view["directive"], utcnow())})


@directives_router.post("/directives", response_model=DirectiveRead, status_code=status.HTTP_201_CREATED,
                        summary="Issue a directive")
def issue_directive(body: DirectiveCreate, session: SessionDep, actor: ActorDep) -> DirectiveRead:
    """Issue a directive to units or agencies of the caller's scope; each recipient gets its own task."""
    recipients = [directives.Recipient(unit_code=r.unit_code, agency_id=r.agency_id) for r in body.recipients]
    directive, _ = directives.issue_directive(session, actor=actor, title=body.title, description=body.description,
                                              priority=body.priority, due_at=body.due_at, recipients=recipients)
    return _directive_read(directives.overview(session, actor=actor, directive_id=directive.id))


@directives_router.get("/directives/{directive_id}", response_model=DirectiveRead,
                       summary="A directive's completion across its recipients")
def get_directive(directive_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> DirectiveRead:
    """Each recipient's status, percent and last report, with overdue ones marked, and the overall percent."""
    return _directive_read(directives.overview(session, actor=actor, directive_id=directive_id))


# --- SOP templates ------------------------------------------------------------------------------------------------


def _template_read(session: SessionDep, template: SopTemplate) -> SopTemplateRead:
    read = SopTemplateRead.model_validate(template)
    read.steps = [SopStepRead.model_validate(s) for s in sops.steps_of(session, template.id)]
    return read


def _specs(steps: list) -> list[sops.StepSpec]:
    return [sops.StepSpec(**s.model_dump()) for s in steps]


@sops_router.get("/sops", response_model=list[SopTemplateRead], summary="SOP templates")
def list_sops(
    session: SessionDep, actor: ActorDep,
    case_type: Annotated[str | None, Query(pattern=TYPE_PATTERN)] = None, include_inactive: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[SopTemplateRead]:
    """Templates that govern the caller's scope (defined in it or above it)."""
    _, items = sops.list_templates(session, actor=actor, case_type=case_type, include_inactive=include_inactive,
                                   limit=limit, offset=offset)
    return [_template_read(session, t) for t in items]


@sops_router.post("/sops", response_model=SopTemplateRead, status_code=status.HTTP_201_CREATED,
                  summary="Create an SOP template")
def create_sop(body: SopTemplateCreate, session: SessionDep, actor: ActorDep) -> SopTemplateRead:
    """A template of ordered steps for a case type (and category) in a unit of the caller's scope."""
    template = sops.create_template(session, actor=actor, name=body.name, description=body.description,
                                    case_type=body.case_type, category=body.category, unit_code=body.unit_code,
                                    steps=_specs(body.steps))
    return _template_read(session, template)


@sops_router.get("/sops/{template_id}", response_model=SopTemplateRead, summary="One SOP template")
def get_sop(template_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> SopTemplateRead:
    """A template and its steps."""
    return _template_read(session, sops.get_template(session, actor=actor, template_id=template_id))


@sops_router.patch("/sops/{template_id}", response_model=SopTemplateRead, summary="Change an SOP template")
def update_sop(template_id: uuid.UUID, body: SopTemplateUpdate, session: SessionDep,
               actor: ActorDep) -> SopTemplateRead:
    """Rename, (de)activate or replace the steps (which bumps the version; open checklists keep theirs)."""
    template = sops.update_template(session, actor=actor, template_id=template_id, name=body.name,
                                    description=body.description, active=body.active,
                                    steps=_specs(body.steps) if body.steps is not None else None)
    return _template_read(session, template)
