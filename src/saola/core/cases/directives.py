"""Directives (chỉ đạo): a leader's order to units or agencies of their scope, one task per recipient.

A directive is a case of type `directive`; each recipient gets a child case of type `task` owned by its unit
(and agency), with the directive's deadline. Recipients report progress (percent, text, files) on their task
and may delegate it down their own subtree as sub-tasks. The directive follows its tasks: in progress once one
starts, completed when all are done; cancelling it cancels the tasks still open.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from saola.core.audit.service import audit
from saola.core.auth.context import Actor
from saola.core.cases import service
from saola.core.cases.flows import check_priority, flow_for
from saola.core.cases.models import Case, CaseAttachment
from saola.core.errors import DomainError, FieldError, Forbidden, ValidationFailed
from saola.core.units.models import Agency, Unit
from saola.core.units.service import require_unit_in_scope
from saola.db.types import utcnow

Loc = list[str | int]
MAX_RECIPIENTS = 500


@dataclass(frozen=True)
class Recipient:
    """Who receives a directive or a delegation: a unit, or an agency (exactly one of the two)."""

    unit_code: str | None = None
    agency_id: uuid.UUID | None = None


@dataclass(frozen=True)
class _Target:
    unit: Unit
    agency: Agency | None

    @property
    def key(self) -> tuple[str, uuid.UUID | None]:
        return self.unit.code, self.agency.id if self.agency else None


def _resolve(session: Session, *, actor: Actor, recipients: Sequence[Recipient], within: str | None,
             loc: Loc) -> list[_Target]:
    """Check every recipient before anything is written: known (422), inside scope (403), no duplicates."""
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise ValidationFailed(f"give 1 to {MAX_RECIPIENTS} recipients",
                               [FieldError(loc, f"expected 1 to {MAX_RECIPIENTS} recipients")])
    limit = service.agency_limit(session, actor)
    targets: list[_Target] = []
    for i, r in enumerate(recipients):
        here: Loc = [*loc, i]
        if (r.unit_code is None) == (r.agency_id is None):
            raise ValidationFailed("a recipient is a unit or an agency",
                                   [FieldError(here, "give exactly one of unit_code and agency_id")])
        if r.agency_id is not None:
            agency = session.get(Agency, r.agency_id)
            if agency is None:
                raise ValidationFailed(f"unknown agency {r.agency_id}",
                                       [FieldError([*here, "agency_id"], f"unknown agency {r.agency_id}")])
            unit = session.get(Unit, agency.unit_code)
            assert unit is not None
            if not actor.sees_path(unit.path):
                raise Forbidden(f"agency {agency.code!r} of unit {unit.code} is outside the scope of {actor.name!r}")
            if limit is not None and agency.id not in limit:
                raise Forbidden(f"agency {agency.code!r} is outside the agency of {actor.name!r}")
            target = _Target(unit, agency)
        else:
            unit = require_unit_in_scope(session, actor=actor, code=str(r.unit_code), loc=[*here, "unit_code"])
            target = _Target(unit, None)
        if within is not None and not (unit.path == within or unit.path.startswith(within + ".")):
            raise Forbidden(f"recipient {unit.code} is outside the subtree of the task being delegated")
        if target.key in {t.key for t in targets}:
            raise ValidationFailed("a recipient is listed twice", [FieldError(here, "duplicate recipient")])
        targets.append(target)
    return targets


def _owner_of(session: Session, target: _Target) -> uuid.UUID | None:
    if target.agency is not None:
        return target.agency.id
    committee = session.scalar(select(Agency.id).where(Agency.unit_code == target.unit.code,
                                                       Agency.kind == "people_committee").limit(1))
    return committee


def issue_directive(
    session: Session, *, actor: Actor, title: str, due_at: datetime, recipients: Sequence[Recipient],
    description: str = "", priority: str = "normal", unit_code: str | None = None, now: datetime | None = None,
) -> tuple[Case, list[Case]]:
    """Issue a directive to units or agencies of the actor's scope: the directive case and one task per recipient."""
    actor.require("directives:issue")
    now = now or utcnow()
    service.check_text(title, ["body", "title"], max_length=service.MAX_TITLE)
    priority = check_priority(priority)
    if due_at is None:
        raise ValidationFailed("a directive needs a deadline", [FieldError(["body", "due_at"], "required")])
    service.check_future(due_at, now, ["body", "due_at"])
    targets = _resolve(session, actor=actor, recipients=recipients, within=None, loc=["body", "recipients"])
    directive = service.open_case(
        session, actor=actor, case_type="directive", title=title, description=description,
        unit_code=unit_code or actor.scope_code, priority=priority, due_at=due_at, now=now,
        data={"recipients": len(targets)},
    )
    tasks = [_task_for(session, actor=actor, parent=directive, target=t, due_at=due_at, now=now,
                       directive=directive) for t in targets]
    audit(session, actor=actor, action="directive.issue", target_type="case", target_id=str(directive.id),
          detail={"code": directive.code, "recipients": [t.unit_code for t in tasks]})
    return directive, tasks


def _task_for(session: Session, *, actor: Actor, parent: Case, target: _Target, due_at: datetime | None,
              now: datetime, directive: Case, note: str = "") -> Case:
    data: dict[str, Any] = {"directive_id": str(directive.id), "directive_code": directive.code,
                            "issued_by": directive.created_by}
    if note:
        data["note"] = note
    return service.open_case(
        session, actor=actor, case_type="task", title=parent.title, description=parent.description,
        unit_code=target.unit.code, priority=parent.priority, owner_agency_id=_owner_of(session, target),
        parent_case_id=parent.id, due_at=due_at, now=now, data=data,
    )


def _directive_of(session: Session, case: Case) -> Case | None:
    parent_id = case.parent_case_id
    for _ in range(10):
        if parent_id is None:
            return None
        parent = session.get(Case, parent_id)
        if parent is None:
            return None
        if parent.case_type == "directive":
            return parent
        parent_id = parent.parent_case_id
    return None


def _task_for_write(session: Session, *, actor: Actor, case_id: uuid.UUID, permission: str) -> Case:
    task = service.case_for_write(session, actor=actor, case_id=case_id, permission=permission)
    if task.case_type != "task":
        raise DomainError(f"case {task.code} is a {task.case_type}, not a task", 409, "not_a_task")
    if not flow_for("task").is_open(task.status):
        raise DomainError(f"task {task.code} is {task.status}", 409, "case_closed")
    return task


def report_progress(
    session: Session, *, actor: Actor, case_id: uuid.UUID, percent: int, text: str = "",
    attachment_ids: Sequence[uuid.UUID] = (), now: datetime | None = None,
) -> Case:
    """A recipient's progress on its task: percent done, what was done, and files already attached to the task.

    The first report starts the task; 100 percent completes it.
    """
    task = _task_for_write(session, actor=actor, case_id=case_id, permission="cases:write")
    if not 0 <= percent <= 100:
        raise ValidationFailed("percent is 0 to 100", [FieldError(["body", "percent"], "expected 0 to 100")])
    text = service.check_text(text, ["body", "text"], max_length=5000, required=False)
    wanted = list(dict.fromkeys(attachment_ids))
    if wanted:
        found = set(session.scalars(select(CaseAttachment.id).where(CaseAttachment.id.in_(wanted),
                                                                    CaseAttachment.case_id == task.id)))
        missing = [i for i, a in enumerate(wanted) if a not in found]
        if missing:
            raise ValidationFailed("unknown attachments", [FieldError(["body", "attachment_ids", i],
                                                                      "not an attachment of this task")
                                                           for i in missing])
    now = now or utcnow()
    task.progress_percent = percent
    task.updated_at = now
    task.data = {**(task.data or {}), "last_report": {"percent": percent, "text": text, "at": now.isoformat(),
                                                      "by": actor.name}}
    service.add_timeline(session, task, actor=actor, kind="progress", at=now,
                         data={"percent": percent, "text": text, "attachment_ids": [str(a) for a in wanted]})
    service.publish(session, task, "progress", percent=percent)
    flow = flow_for("task")
    if percent == 100:
        service.apply_status(session, case=task, flow=flow, status="done", actor=actor, now=now)
    elif task.status == "assigned":
        service.apply_status(session, case=task, flow=flow, status="in_progress", actor=actor, now=now)
    else:
        _roll_up(session, task=task, actor=actor, now=now)
    return task


def delegate(
    session: Session, *, actor: Actor, case_id: uuid.UUID, recipients: Sequence[Recipient],
    due_at: datetime | None = None, note: str = "", now: datetime | None = None,
) -> list[Case]:
    """Hand a task down the recipient's own subtree as sub-tasks; anything outside it is refused with 403."""
    task = _task_for_write(session, actor=actor, case_id=case_id, permission="cases:assign")
    now = now or utcnow()
    note = service.check_text(note, ["body", "note"], max_length=2000, required=False)
    service.check_future(due_at, now, ["body", "due_at"])
    if due_at is not None and task.due_at is not None and due_at > task.due_at:
        raise ValidationFailed("a sub-task cannot be due after its task",
                               [FieldError(["body", "due_at"], f"at the latest {task.due_at.isoformat()}")])
    targets = _resolve(session, actor=actor, recipients=recipients, within=task.unit_path,
                       loc=["body", "recipients"])
    limit = service.agency_limit(session, actor)
    for i, t in enumerate(targets):
        if t.agency is None and t.unit.code == task.unit_code:
            raise ValidationFailed("delegate to a unit below, or to an agency",
                                   [FieldError(["body", "recipients", i], "this is the task's own unit")])
        if limit is not None and t.agency is None:
            raise Forbidden("agency staff delegate to agencies of their own agency")
    directive = _directive_of(session, task) or task
    subtasks = [_task_for(session, actor=actor, parent=task, target=t, due_at=due_at or task.due_at, now=now,
                          directive=directive, note=note) for t in targets]
    service.add_timeline(session, task, actor=actor, kind="delegation", at=now,
                         data={"to": [{"case_id": str(s.id), "code": s.code, "unit_code": s.unit_code}
                                      for s in subtasks], **({"note": note} if note else {})})
    service.publish(session, task, "delegated", subtasks=[str(s.id) for s in subtasks])
    return subtasks


def after_status_change(session: Session, *, case: Case, old: str, actor: Actor, reason: str, now: datetime) -> None:
    """Keep directives and tasks in step: cancelling one cancels the open tasks below it; tasks roll up."""
    if case.case_type in ("directive", "task") and case.status == "cancelled":
        flow = flow_for("task")
        children = session.scalars(select(Case).where(Case.parent_case_id == case.id, Case.case_type == "task",
                                                      Case.is_open))
        for task in list(children):
            if "cancelled" in flow.allowed(task.status):
                service.apply_status(session, case=task, flow=flow, status="cancelled", actor=actor,
                                     reason=reason or f"{case.code} cancelled", now=now)
    if case.case_type == "task":
        _roll_up(session, task=case, actor=actor, now=now)


def _roll_up(session: Session, *, task: Case, actor: Actor, now: datetime) -> None:
    """Recompute the directive above a task: its percent (mean of its tasks) and its status."""
    if task.parent_case_id is None:
        return
    directive = session.get(Case, task.parent_case_id)
    if directive is None or directive.case_type != "directive" or directive.status == "cancelled":
        return
    session.flush()
    rows = session.execute(select(Case.status, Case.progress_percent).where(
        Case.parent_case_id == directive.id, Case.case_type == "task", Case.status != "cancelled")).all()
    if not rows:
        return
    directive.progress_percent = round(sum(p for _, p in rows) / len(rows))
    task_flow, flow = flow_for("task"), flow_for("directive")
    all_done = all(task_flow.is_resolved(s) for s, _ in rows)
    started = any(s != "assigned" for s, _ in rows)
    target = None
    if all_done and directive.status != "completed":
        target = "completed"
    elif (not all_done and directive.status == "completed") or (started and directive.status == "issued"):
        target = "in_progress"
    if target and target in flow.allowed(directive.status):
        service.apply_status(session, case=directive, flow=flow, status=target, actor=actor, now=now)


def overview(session: Session, *, actor: Actor, directive_id: uuid.UUID, now: datetime | None = None) -> dict[str, Any]:
    """The issuer's view: each recipient's task with status, percent, last report and overdue flag, and the total."""
    now = now or utcnow()
    directive = service.get_case(session, actor=actor, case_id=directive_id)
    if directive.case_type != "directive":
        raise DomainError(f"case {directive.code} is a {directive.case_type}, not a directive", 409,
                          "not_a_directive")
    tasks = list(session.scalars(select(Case).where(Case.parent_case_id == directive.id)
                                 .order_by(Case.unit_code, Case.code)))
    ids = [t.id for t in tasks]
    delegated = dict(session.execute(select(Case.parent_case_id, func.count()).where(Case.parent_case_id.in_(ids))
                                     .group_by(Case.parent_case_id)).all()) if ids else {}
    units = dict(session.execute(select(Unit.code, Unit.name).where(Unit.code.in_({t.unit_code for t in tasks})))
                 .all()) if tasks else {}
    agency_ids = {t.owner_agency_id for t in tasks if t.owner_agency_id}
    agencies = dict(session.execute(select(Agency.id, Agency.name).where(Agency.id.in_(agency_ids))).all()) \
        if agency_ids else {}
    task_flow = flow_for("task")
    recipients = []
    for t in tasks:
        report = (t.data or {}).get("last_report") or {}
        recipients.append({
            "task_id": t.id, "code": t.code, "unit_code": t.unit_code, "unit_name": units.get(t.unit_code, ""),
            "agency_id": t.owner_agency_id, "agency_name": agencies.get(t.owner_agency_id, "") if t.owner_agency_id
            else "", "status": t.status, "status_label": task_flow.label(t.status),
            "progress_percent": t.progress_percent, "due_at": t.due_at, "overdue": service.is_overdue(t, now),
            "resolved_on_time": t.resolved_on_time, "last_report_at": report.get("at"),
            "last_report_text": report.get("text", ""), "delegated": delegated.get(t.id, 0),
        })
    counted = [r for r in recipients if r["status"] != "cancelled"]
    return {
        "directive": directive,
        "recipients": recipients,
        "overall_percent": round(sum(r["progress_percent"] for r in counted) / len(counted)) if counted else 0,
        "done": sum(1 for r in counted if task_flow.is_resolved(r["status"])),
        "overdue": sum(1 for r in recipients if r["overdue"]),
        "total": len(recipients),
    }

