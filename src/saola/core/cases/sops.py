"""Standard operating procedures: templates of ordered steps, and each case's checklist copied from one.

A template applies to cases of its type (and category, "" for any) in its unit's subtree; the most specific
one wins (its own category before the generic one, then the deepest unit). A case keeps its own copy of the
steps, so editing a template never rewrites the checklist of a case already open.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, delete, func, or_, select
from sqlalchemy.orm import Session

from saola.core.audit.service import audit
from saola.core.auth.context import Actor
from saola.core.auth.roles import ROLES
from saola.core.cases.flows import flow_for
from saola.core.cases.models import Case, CaseSopStep, SopStep, SopTemplate
from saola.core.errors import DomainError, FieldError, NotFound, ValidationFailed
from saola.core.units.service import require_unit_in_scope, scope_condition
from saola.db.outbox import record_change
from saola.db.types import utcnow

MAX_STEPS = 100


@dataclass(frozen=True)
class StepSpec:
    """One step of a template as given by the caller."""

    title: str
    owner_role: str = "operator"
    expected_minutes: int = 30
    required: bool = True
    description: str = ""


def _applies_to_actor(actor: Actor) -> ColumnElement[bool]:
    # A template is visible when it lies in the caller's subtree or above it (it then governs the caller's cases).
    prefixes = actor.scope_path.split(".")
    above = [".".join(prefixes[: i + 1]) for i in range(len(prefixes))]
    return or_(scope_condition(actor, SopTemplate.unit_path), SopTemplate.unit_path.in_(above))


def _check_steps(steps: Sequence[StepSpec]) -> None:
    if not 1 <= len(steps) <= MAX_STEPS:
        raise ValidationFailed(f"a template has 1 to {MAX_STEPS} steps",
                               [FieldError(["body", "steps"], f"expected 1 to {MAX_STEPS} steps")])
    errors = []
    for i, step in enumerate(steps):
        if not step.title.strip():
            errors.append(FieldError(["body", "steps", i, "title"], "must not be empty"))
        if step.owner_role not in ROLES:
            errors.append(FieldError(["body", "steps", i, "owner_role"],
                                     f"unknown role {step.owner_role!r}; expected one of {', '.join(ROLES)}"))
        if not 1 <= step.expected_minutes <= 525_600:
            errors.append(FieldError(["body", "steps", i, "expected_minutes"], "expected 1 to 525600 minutes"))
    if errors:
        raise ValidationFailed("some steps are invalid", errors)


def _write_steps(session: Session, template: SopTemplate, steps: Sequence[StepSpec]) -> None:
    for position, step in enumerate(steps, start=1):
        session.add(SopStep(template_id=template.id, position=position, title=step.title.strip(),
                            description=step.description, owner_role=step.owner_role,
                            expected_minutes=step.expected_minutes, required=step.required))


def create_template(
    session: Session, *, actor: Actor, name: str, case_type: str, steps: Sequence[StepSpec], category: str = "",
    unit_code: str | None = None, description: str = "",
) -> SopTemplate:
    """Create an SOP template for a case type (and category) in a unit of the actor's scope."""
    actor.require("sops:write")
    flow_for(case_type)
    unit = require_unit_in_scope(session, actor=actor, code=unit_code or actor.scope_code, loc=["body", "unit_code"])
    _check_steps(steps)
    template = SopTemplate(name=name.strip(), description=description, case_type=case_type, category=category,
                           unit_code=unit.code, unit_path=unit.path, created_by=actor.name)
    session.add(template)
    session.flush()
    _write_steps(session, template, steps)
    session.flush()
    audit(session, actor=actor, action="sop.create", target_type="sop_template", target_id=str(template.id),
          detail={"name": template.name, "case_type": case_type, "category": category, "steps": len(steps)})
    record_change(session, topic="sops.created", aggregate_type="sop_template", aggregate_id=str(template.id),
                  payload={"unit_code": unit.code, "case_type": case_type, "category": category})
    return template


def get_template(session: Session, *, actor: Actor, template_id: uuid.UUID) -> SopTemplate:
    """A template the actor may see."""
    actor.require("sops:read")
    template = session.scalar(select(SopTemplate).where(SopTemplate.id == template_id, _applies_to_actor(actor)))
    if template is None:
        raise NotFound(f"SOP template {template_id} not found")
    return template


def template_for_write(session: Session, *, actor: Actor, template_id: uuid.UUID) -> SopTemplate:
    """A template inside the actor's own scope (a commune does not edit the province's SOPs)."""
    actor.require("sops:write")
    template = get_template(session, actor=actor, template_id=template_id)
    if not actor.sees_path(template.unit_path):
        raise DomainError(f"SOP template {template.name!r} belongs to unit {template.unit_code}, above your scope",
                          403, "forbidden")
    return template


def steps_of(session: Session, template_id: uuid.UUID) -> list[SopStep]:
    """A template's steps in order."""
    return list(session.scalars(select(SopStep).where(SopStep.template_id == template_id)
                                .order_by(SopStep.position)))


def list_templates(
    session: Session, *, actor: Actor, case_type: str | None = None, include_inactive: bool = False,
    limit: int = 100, offset: int = 0,
) -> tuple[int, list[SopTemplate]]:
    """Templates in or above the actor's scope."""
    actor.require("sops:read")
    stmt = select(SopTemplate).where(_applies_to_actor(actor))
    if case_type:
        stmt = stmt.where(SopTemplate.case_type == case_type)
    if not include_inactive:
        stmt = stmt.where(SopTemplate.active)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    items = session.scalars(stmt.order_by(SopTemplate.case_type, SopTemplate.name).limit(limit).offset(offset))
    return total, list(items)


def update_template(
    session: Session, *, actor: Actor, template_id: uuid.UUID, name: str | None = None,
    description: str | None = None, steps: Sequence[StepSpec] | None = None, active: bool | None = None,
) -> SopTemplate:
    """Change a template; new steps replace the old ones and bump the version (open checklists keep theirs)."""
    template = template_for_write(session, actor=actor, template_id=template_id)
    if steps is not None:
        _check_steps(steps)
        session.execute(delete(SopStep).where(SopStep.template_id == template.id))
        session.flush()
        _write_steps(session, template, steps)
        template.version += 1
    if name is not None:
        template.name = name.strip()
    if description is not None:
        template.description = description
    if active is not None:
        template.active = active
    template.updated_at = utcnow()
    session.flush()
    audit(session, actor=actor, action="sop.update", target_type="sop_template", target_id=str(template.id),
          detail={"version": template.version, "active": template.active})
    record_change(session, topic="sops.updated", aggregate_type="sop_template", aggregate_id=str(template.id),
                  payload={"unit_code": template.unit_code, "case_type": template.case_type,
                           "version": template.version, "active": template.active})
    return template


def find_template(session: Session, *, case_type: str, category: str, unit_path: str) -> SopTemplate | None:
    """The most specific active template for a case of this type and category in this unit, if any."""
    parts = unit_path.split(".")
    ancestors = [".".join(parts[: i + 1]) for i in range(len(parts))]
    candidates = list(session.scalars(select(SopTemplate).where(
        SopTemplate.active, SopTemplate.case_type == case_type, SopTemplate.category.in_({category, ""}),
        SopTemplate.unit_path.in_(ancestors))))
    if not candidates:
        return None
    return max(candidates, key=lambda t: (t.category == category and category != "", len(t.unit_path),
                                          t.created_at))


def attach_checklist(session: Session, *, case: Case, template: SopTemplate) -> list[CaseSopStep]:
    """Copy a template's steps into the case's checklist."""
    steps = [CaseSopStep(case_id=case.id, template_id=template.id, position=s.position, title=s.title,
                         description=s.description, owner_role=s.owner_role, expected_minutes=s.expected_minutes,
                         required=s.required) for s in steps_of(session, template.id)]
    session.add_all(steps)
    case.data = {**(case.data or {}), "sop": {"template_id": str(template.id), "name": template.name,
                                              "version": template.version}}
    session.flush()
    return steps


def checklist(session: Session, *, actor: Actor, case_id: uuid.UUID) -> tuple[Case, list[CaseSopStep]]:
    """A case's SOP checklist, in order."""
    from saola.core.cases.service import get_case

    case = get_case(session, actor=actor, case_id=case_id)
    steps = session.scalars(select(CaseSopStep).where(CaseSopStep.case_id == case.id)
                            .order_by(CaseSopStep.position))
    return case, list(steps)


def tick_step(
    session: Session, *, actor: Actor, case_id: uuid.UUID, step_id: uuid.UUID, done: bool = True, note: str = "",
    now: datetime | None = None,
) -> CaseSopStep:
    """Tick (or untick) one step of a case's checklist, keeping who did it and when."""
    from saola.core.cases import service

    case = service.case_for_write(session, actor=actor, case_id=case_id)
    step = session.get(CaseSopStep, step_id)
    if step is None or step.case_id != case.id:
        raise NotFound(f"step {step_id} not found in case {case.code}")
    if not flow_for(case.case_type).is_open(case.status):
        raise DomainError(f"case {case.code} is {case.status}; its checklist is frozen", 409, "case_closed")
    note = service.check_text(note, ["body", "note"], max_length=2000, required=False)
    now = now or utcnow()
    if done:
        step.done_at, step.done_by, step.note = now, actor.name, note
        step.done_by_user_id = actor.id if actor.kind == "user" else None
    else:
        step.done_at = step.done_by = step.done_by_user_id = None
        step.note = note
    case.updated_at = now
    service.add_timeline(session, case, actor=actor, kind="sop_step", at=now,
                         data={"step_id": str(step.id), "position": step.position, "title": step.title,
                               "done": done, **({"note": note} if note else {})})
    service.publish(session, case, "sop_step", step_id=str(step.id), position=step.position, done=done)
    return step
