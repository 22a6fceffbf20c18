"""Cases: open, read, search, move through the type's flow, assign, comment, and count, always inside scope.

Scope: a caller sees the cases of units in their subtree. Agency staff bound to an agency see, inside that,
only the cases their agency (or an agency below it) owns, and those assigned to them personally.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Integer, Select, and_, cast, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from saola.core.audit.service import audit
from saola.core.auth.context import Actor
from saola.core.auth.models import User
from saola.core.cases.flows import PRIORITIES, Flow, check_priority, flow_for
from saola.core.cases.models import Case, CaseCounter, CaseSopStep, CaseTimelineEntry
from saola.core.entities.models import Entity
from saola.core.errors import DomainError, FieldError, Forbidden, NotFound, ValidationFailed
from saola.core.text import fold
from saola.core.units.models import Agency, Unit
from saola.core.units.service import normalize_code, require_unit_in_scope, scope_condition
from saola.db.outbox import record_change
from saola.db.types import utcnow

Loc = list[str | int]
CODE_TIMEZONE = ZoneInfo("Asia/Ho_Chi_Minh")
MAX_TITLE = 300
MAX_DESCRIPTION = 20_000


# --- scope ----------------------------------------------------------------------------------------------------


def agency_subtree(session: Session, agency_id: uuid.UUID) -> set[uuid.UUID]:
    """The agency and every agency below it (by parent_id)."""
    found = {agency_id}
    frontier = [agency_id]
    while frontier:
        children = set(session.scalars(select(Agency.id).where(Agency.parent_id.in_(frontier)))) - found
        found |= children
        frontier = list(children)
    return found


def agency_limit(session: Session, actor: Actor) -> set[uuid.UUID] | None:
    """For agency staff bound to an agency: the agencies whose cases they may see; None when only units limit."""
    if actor.kind != "user" or actor.role != "agency_staff" or actor.id is None:
        return None
    key = ("cases.agency_limit", actor.id)
    if key not in session.info:
        agency_id = session.scalar(select(User.agency_id).where(User.id == actor.id))
        session.info[key] = None if agency_id is None else agency_subtree(session, agency_id)
    return session.info[key]


def visible_condition(session: Session, actor: Actor) -> ColumnElement[bool]:
    """SQL condition: the case lies in the actor's scope (unit subtree, and agency subtree for agency staff)."""
    condition = scope_condition(actor, Case.unit_path)
    limit = agency_limit(session, actor)
    if limit is not None:
        mine = or_(Case.owner_agency_id.in_(limit), Case.assignee_user_id == actor.id)
        condition = and_(condition, mine)
    return condition


def can_see(session: Session, actor: Actor, case: Case) -> bool:
    """True when the actor may see this case."""
    if not actor.sees_path(case.unit_path):
        return False
    limit = agency_limit(session, actor)
    if limit is None:
        return True
    return case.owner_agency_id in limit or (case.assignee_user_id is not None and case.assignee_user_id == actor.id)


def get_case(session: Session, *, actor: Actor, case_id: uuid.UUID) -> Case:
    """One case inside the actor's scope; NotFound otherwise (never reveals what lies outside)."""
    actor.require("cases:read")
    case = session.get(Case, case_id)
    if case is None or not can_see(session, actor, case):
        raise NotFound(f"case {case_id} not found")
    return case


def case_for_write(session: Session, *, actor: Actor, case_id: uuid.UUID, permission: str = "cases:write") -> Case:
    """A case the actor may change: visible (404 otherwise) and with the permission (403 otherwise)."""
    case = get_case(session, actor=actor, case_id=case_id)
    actor.require(permission)
    return case


# --- timeline and bus ------------------------------------------------------------------------------------------


def case_payload(case: Case) -> dict[str, Any]:
    """What every bus message about a case carries, so subscribers (the stream) can filter by scope."""
    return {
        "case_id": str(case.id), "code": case.code, "case_type": case.case_type, "status": case.status,
        "title": case.title, "priority": case.priority, "unit_code": case.unit_code, "unit_path": case.unit_path,
        "owner_agency_id": str(case.owner_agency_id) if case.owner_agency_id else None,
        "assignee_user_id": str(case.assignee_user_id) if case.assignee_user_id else None,
        "parent_case_id": str(case.parent_case_id) if case.parent_case_id else None,
    }


def sees_message(session: Session, actor: Actor, payload: dict[str, Any]) -> bool:
    """True when a cases.* bus message is about a case the actor may see (the filter for the live stream)."""
    path = payload.get("unit_path")
    if not path and payload.get("unit_code"):
        path = session.scalar(select(Unit.path).where(Unit.code == payload["unit_code"]))
    if not path or not actor.sees_path(path):
        return False
    limit = agency_limit(session, actor)
    if limit is None:
        return True
    owner, assignee = payload.get("owner_agency_id"), payload.get("assignee_user_id")
    return bool((owner and uuid.UUID(owner) in limit) or (assignee and actor.id and assignee == str(actor.id)))


def publish(session: Session, case: Case, event: str, **extra: Any) -> None:
    """Announce a change of a case on the outbox and bus as topic cases.<event>."""
    record_change(session, topic=f"cases.{event}", aggregate_type="case", aggregate_id=str(case.id),
                  payload={**case_payload(case), **extra})


def add_timeline(
    session: Session, case: Case, *, actor: Actor, kind: str, data: dict[str, Any], at: datetime | None = None
) -> CaseTimelineEntry:
    """Append one entry to a case's timeline."""
    entry = CaseTimelineEntry(case_id=case.id, kind=kind, at=at or utcnow(), actor_name=actor.name,
                              actor_user_id=actor.id if actor.kind == "user" else None, data=data)
    session.add(entry)
    return entry


def timeline(
    session: Session, *, actor: Actor, case_id: uuid.UUID, limit: int = 200, offset: int = 0
) -> tuple[int, list[CaseTimelineEntry]]:
    """A case's timeline, oldest first."""
    case = get_case(session, actor=actor, case_id=case_id)
    stmt = select(CaseTimelineEntry).where(CaseTimelineEntry.case_id == case.id)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    items = session.scalars(stmt.order_by(CaseTimelineEntry.at, CaseTimelineEntry.id).limit(limit).offset(offset))
    return total, list(items)


# --- opening ---------------------------------------------------------------------------------------------------


def next_code(session: Session, *, prefix: str, at: datetime) -> str:
    """The next human-readable code for a prefix and year, such as SC-2026-000123 (atomic on both databases)."""
    year = at.astimezone(CODE_TIMEZONE).year
    table = CaseCounter.__table__
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table).values(prefix=prefix, year=year, last=1)
    stmt = stmt.on_conflict_do_update(index_elements=["prefix", "year"], set_={"last": table.c.last + 1})
    number = session.execute(stmt.returning(table.c.last)).scalar_one()
    return f"{prefix}-{year}-{number:06d}"


def deadlines(flow: Flow, priority: str, start: datetime) -> tuple[datetime | None, datetime | None]:
    """The SLA deadline to resolve and to first respond, from the type's policy for this priority."""
    d = flow.definition
    resolve = flow.minutes(d.sla_minutes, priority)
    respond = flow.minutes(d.first_response_minutes, priority)
    return (start + timedelta(minutes=resolve) if resolve else None,
            start + timedelta(minutes=respond) if respond else None)


def check_future(value: datetime | None, now: datetime, loc: Loc) -> datetime | None:
    """The deadline if it lies in the future; 422 naming the field otherwise."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValidationFailed("a deadline needs a time zone", [FieldError(loc, "give a time zone, e.g. +07:00")])
    if value <= now:
        raise ValidationFailed("the deadline is in the past", [FieldError(loc, "the deadline must be in the future")])
    return value


def check_text(value: str, loc: Loc, *, max_length: int, required: bool = True) -> str:
    """Trimmed text within bounds; 422 naming the field otherwise."""
    text = (value or "").strip()
    if required and not text:
        raise ValidationFailed("text is required", [FieldError(loc, "must not be empty")])
    if len(text) > max_length:
        raise ValidationFailed("text is too long", [FieldError(loc, f"at most {max_length} characters")])
    if "\x00" in text:
        raise ValidationFailed("text holds a NUL character", [FieldError(loc, "must not contain NUL")])
    return text


def _unit_people_committee(session: Session, unit_code: str) -> Agency | None:
    return session.scalar(select(Agency).where(Agency.unit_code == unit_code, Agency.kind == "people_committee")
                          .order_by(Agency.created_at).limit(1))


def check_owner_agency(session: Session, *, actor: Actor, agency_id: uuid.UUID, unit: Unit, loc: Loc) -> Agency:
    """An agency that may own a case of this unit: known (422), in the actor's scope (403), on the unit's path."""
    agency = session.get(Agency, agency_id)
    if agency is None:
        raise ValidationFailed(f"unknown agency {agency_id}", [FieldError(loc, f"unknown agency {agency_id}")])
    agency_unit = session.get(Unit, agency.unit_code)
    assert agency_unit is not None
    if not actor.sees_path(agency_unit.path):
        raise Forbidden(f"agency {agency.code!r} of unit {agency.unit_code} is outside the scope of {actor.name!r}")
    limit = agency_limit(session, actor)
    if limit is not None and agency.id not in limit:
        raise Forbidden(f"agency {agency.code!r} is outside the agency of {actor.name!r}")
    if not (unit.path == agency_unit.path or unit.path.startswith(agency_unit.path + ".")):
        raise ValidationFailed(f"agency {agency.code!r} of unit {agency.unit_code} does not serve unit {unit.code}",
                               [FieldError(loc, f"agency of unit {agency.unit_code} cannot own a case of unit "
                                                f"{unit.code}")])
    return agency


def _default_owner(session: Session, actor: Actor, unit: Unit) -> uuid.UUID | None:
    if actor.kind == "user" and actor.id is not None:
        agency_id = session.scalar(select(User.agency_id).where(User.id == actor.id))
        if agency_id is not None:
            agency = session.get(Agency, agency_id)
            agency_unit = session.get(Unit, agency.unit_code) if agency else None
            if agency_unit and (unit.path == agency_unit.path or unit.path.startswith(agency_unit.path + ".")):
                return agency_id
    committee = _unit_people_committee(session, unit.code)
    return committee.id if committee else None


def open_case(
    session: Session,
    *,
    actor: Actor,
    case_type: str,
    title: str,
    unit_code: str,
    priority: str = "normal",
    description: str = "",
    alert_id: uuid.UUID | None = None,
    entity_id: uuid.UUID | None = None,
    category: str = "",
    owner_agency_id: uuid.UUID | None = None,
    assignee_user_id: uuid.UUID | None = None,
    due_at: datetime | None = None,
    parent_case_id: uuid.UUID | None = None,
    data: dict[str, Any] | None = None,
    now: datetime | None = None,
    first_response_due_at: datetime | None = None,
) -> Case:
    """Open a case of a declared type in a unit of the actor's scope, with its SLA deadline and SOP checklist.

    A second call for the same alert and type returns the case already open for it. due_at and
    first_response_due_at override the type's policy (a pack's per-category SLA, for one).
    """
    from saola.core.cases import sops  # the checklist module needs this one's helpers

    actor.require("cases:write")
    now = now or utcnow()
    flow = flow_for(case_type)
    priority = check_priority(priority)
    title = check_text(title, ["body", "title"], max_length=MAX_TITLE)
    description = check_text(description, ["body", "description"], max_length=MAX_DESCRIPTION, required=False)
    category = check_text(category, ["body", "category"], max_length=80, required=False)
    d = flow.definition
    if d.categories and category and category not in d.categories:
        raise ValidationFailed(f"unknown category {category!r}", [FieldError(
            ["body", "category"], f"expected one of {', '.join(d.categories)}")])
    unit = require_unit_in_scope(session, actor=actor, code=unit_code, loc=["body", "unit_code"])
    if alert_id is not None:
        existing = session.scalar(select(Case).where(Case.alert_id == alert_id, Case.case_type == case_type,
                                                     Case.is_open).limit(1))
        if existing is not None:
            return existing
    if owner_agency_id is not None:
        check_owner_agency(session, actor=actor, agency_id=owner_agency_id, unit=unit,
                           loc=["body", "owner_agency_id"])
    else:
        owner_agency_id = _default_owner(session, actor, unit)
    if entity_id is not None:
        entity_unit = session.scalar(select(Unit.path).join(Entity, Entity.unit_code == Unit.code)
                                     .where(Entity.id == entity_id))
        if entity_unit is None or not actor.sees_path(entity_unit):
            raise ValidationFailed(f"unknown entity {entity_id}",
                                   [FieldError(["body", "entity_id"], f"unknown entity {entity_id}")])
    if assignee_user_id is not None:
        check_assignee(session, actor=actor, user_id=assignee_user_id, unit_path=unit.path,
                       loc=["body", "assignee_user_id"])
    check_future(due_at, now, ["body", "due_at"])
    check_future(first_response_due_at, now, ["body", "first_response_due_at"])
    policy_due, response_due = deadlines(flow, priority, now)
    response_due = first_response_due_at or response_due
    code = next_code(session, prefix=d.prefix, at=now)
    case = Case(
        code=code, case_type=case_type, category=category, title=title, description=description,
        status=d.initial_status, priority=priority, unit_code=unit.code, unit_path=unit.path,
        owner_agency_id=owner_agency_id, assignee_user_id=assignee_user_id, created_by=actor.name,
        created_by_user_id=actor.id if actor.kind == "user" else None, parent_case_id=parent_case_id,
        alert_id=alert_id, entity_id=entity_id, is_open=flow.is_open(d.initial_status),
        due_at=due_at or policy_due, first_response_due_at=response_due, data=dict(data or {}),
        search_text=fold(f"{code} {title} {description[:2000]}"), created_at=now, updated_at=now,
    )
    session.add(case)
    session.flush()
    add_timeline(session, case, actor=actor, kind="created", at=now,
                 data={"status": case.status, "priority": priority, "unit_code": unit.code,
                       "due_at": case.due_at.isoformat() if case.due_at else None})
    template = sops.find_template(session, case_type=case_type, category=category, unit_path=unit.path)
    steps = sops.attach_checklist(session, case=case, template=template) if template else []
    audit(session, actor=actor, action="case.open", target_type="case", target_id=str(case.id),
          detail={"code": code, "case_type": case_type, "unit_code": unit.code})
    publish(session, case, "created", sop_steps=len(steps))
    return case


# --- status flow -----------------------------------------------------------------------------------------------


def open_required_steps(session: Session, case_id: uuid.UUID) -> list[CaseSopStep]:
    """Required checklist steps of a case not yet ticked, in order."""
    return list(session.scalars(select(CaseSopStep).where(
        CaseSopStep.case_id == case_id, CaseSopStep.required, CaseSopStep.done_at.is_(None))
        .order_by(CaseSopStep.position)))


def change_status(
    session: Session, *, actor: Actor, case_id: uuid.UUID, status: str, reason: str = "",
    now: datetime | None = None,
) -> Case:
    """Move a case to a status its flow allows from the current one; 409 for any other move."""
    case = case_for_write(session, actor=actor, case_id=case_id)
    flow = flow_for(case.case_type)
    if status not in flow.statuses:
        raise ValidationFailed(f"unknown status {status!r}", [FieldError(
            ["body", "status"], f"{case.case_type} has the statuses {', '.join(sorted(flow.statuses))}")])
    allowed = flow.allowed(case.status)
    if status not in allowed:
        raise DomainError(
            f"a {case.case_type} cannot move from {case.status!r} to {status!r}; allowed: "
            f"{', '.join(allowed) or 'none'}", 409, "transition_not_allowed",
            [FieldError(["body", "status"], f"allowed from {case.status!r}: {', '.join(allowed) or 'none'}")])
    reason = check_text(reason, ["body", "reason"], max_length=2000, required=status in flow.definition.reason_required)
    if status in flow.definition.checklist_gate:
        missing = open_required_steps(session, case.id)
        if missing:
            names = "; ".join(f"{s.position}. {s.title}" for s in missing)
            raise DomainError(f"required SOP steps are not done: {names}", 409, "sop_incomplete",
                              [FieldError(["sop", s.position], s.title, "sop_step_open") for s in missing])
    apply_status(session, case=case, flow=flow, status=status, actor=actor, reason=reason, now=now or utcnow())
    return case


def apply_status(
    session: Session, *, case: Case, flow: Flow, status: str, actor: Actor, reason: str = "", now: datetime
) -> None:
    """Record a status change already checked against the flow: times, SLA outcome, timeline, audit, bus."""
    from saola.core.cases import directives  # directives roll task changes up; they import this module

    old = case.status
    case.status = status
    case.updated_at = now
    d = flow.definition
    if case.first_response_at is None and status in d.response_statuses:
        case.first_response_at = now
    if flow.is_resolved(status) and not flow.is_resolved(old):
        case.resolved_at = now
        case.resolved_on_time = case.due_at is None or now <= case.due_at
        case.resolution_seconds = max(0, int((now - case.created_at).total_seconds()))
    elif not flow.is_resolved(status) and flow.is_resolved(old):
        case.resolved_at = case.resolved_on_time = case.resolution_seconds = None
    case.closed_at = now if status in d.closed_statuses else None
    case.is_open = flow.is_open(status)
    if case.case_type == "task" and flow.is_resolved(status):
        case.progress_percent = 100
    add_timeline(session, case, actor=actor, kind="status", at=now,
                 data={"from": old, "to": status, **({"reason": reason} if reason else {})})
    audit(session, actor=actor, action="case.status", target_type="case", target_id=str(case.id),
          detail={"from": old, "to": status})
    publish(session, case, "status_changed", from_status=old, **({"reason": reason} if reason else {}))
    directives.after_status_change(session, case=case, old=old, actor=actor, reason=reason, now=now)


# --- assignment and comments ----------------------------------------------------------------------------------


def check_assignee(session: Session, *, actor: Actor, user_id: uuid.UUID, unit_path: str, loc: Loc) -> User:
    """A user the actor may assign a case of this unit to: known (422), in the actor's scope (403), able to see it."""
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise ValidationFailed(f"unknown user {user_id}", [FieldError(loc, f"unknown user {user_id}")])
    user_path = session.scalar(select(Unit.path).where(Unit.code == user.scope_code)) or ""
    if not actor.sees_path(user_path):
        raise Forbidden(f"user {user.username!r} is outside the scope of {actor.name!r}")
    limit = agency_limit(session, actor)
    if limit is not None and user.agency_id not in limit:
        raise Forbidden(f"user {user.username!r} is outside the agency of {actor.name!r}")
    if not (unit_path == user_path or unit_path.startswith(user_path + ".")):
        raise ValidationFailed(f"user {user.username!r} cannot see cases of this unit",
                               [FieldError(loc, f"user {user.username!r} (scope {user.scope_code}) cannot see "
                                                "this case's unit")])
    return user


def assign(
    session: Session, *, actor: Actor, case_id: uuid.UUID, unit_code: str | None = None,
    agency_id: uuid.UUID | None = None, assignee_user_id: uuid.UUID | None = None, unassign: bool = False,
    note: str = "", now: datetime | None = None,
) -> Case:
    """Dispatch a case: to another unit, an owner agency and/or a person, all inside the assigner's scope."""
    case = case_for_write(session, actor=actor, case_id=case_id, permission="cases:assign")
    if unit_code is None and agency_id is None and assignee_user_id is None and not unassign:
        raise ValidationFailed("nothing to assign", [FieldError(
            ["body"], "give unit_code, agency_id, assignee_user_id or unassign")])
    if not flow_for(case.case_type).is_open(case.status):
        raise DomainError(f"case {case.code} is {case.status}; reopen it before assigning", 409, "case_closed")
    note = check_text(note, ["body", "note"], max_length=2000, required=False)
    now = now or utcnow()
    before = {"unit_code": case.unit_code, "agency_id": case.owner_agency_id, "assignee_user_id": case.assignee_user_id}
    unit = session.get(Unit, case.unit_code)
    assert unit is not None
    if unit_code is not None:
        unit = require_unit_in_scope(session, actor=actor, code=unit_code, loc=["body", "unit_code"])
    owner = case.owner_agency_id
    if agency_id is not None:
        owner = check_owner_agency(session, actor=actor, agency_id=agency_id, unit=unit,
                                   loc=["body", "agency_id"]).id
    elif unit_code is not None and owner is not None:
        current = session.get(Agency, owner)
        current_path = session.scalar(select(Unit.path).where(Unit.code == current.unit_code)) if current else ""
        if not current_path or not (unit.path == current_path or unit.path.startswith(current_path + ".")):
            committee = _unit_people_committee(session, unit.code)
            owner = committee.id if committee else None
    assignee = None if unassign else case.assignee_user_id
    if assignee_user_id is not None:
        assignee = check_assignee(session, actor=actor, user_id=assignee_user_id, unit_path=unit.path,
                                  loc=["body", "assignee_user_id"]).id
    case.unit_code, case.unit_path, case.owner_agency_id, case.assignee_user_id = unit.code, unit.path, owner, assignee
    case.updated_at = now
    after = {"unit_code": case.unit_code, "agency_id": case.owner_agency_id, "assignee_user_id": case.assignee_user_id}
    change = {k: {"from": _jsonable(before[k]), "to": _jsonable(after[k])} for k in after if before[k] != after[k]}
    add_timeline(session, case, actor=actor, kind="assignment", at=now,
                 data={"changes": change, **({"note": note} if note else {})})
    audit(session, actor=actor, action="case.assign", target_type="case", target_id=str(case.id), detail=change)
    publish(session, case, "assigned", changes=change,
            from_unit_code=before["unit_code"] if before["unit_code"] != case.unit_code else None)
    return case


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value


def add_comment(
    session: Session, *, actor: Actor, case_id: uuid.UUID, text: str, now: datetime | None = None
) -> CaseTimelineEntry:
    """Add a comment to a case's timeline."""
    case = case_for_write(session, actor=actor, case_id=case_id)
    text = check_text(text, ["body", "text"], max_length=5000)
    entry = add_timeline(session, case, actor=actor, kind="comment", data={"text": text}, at=now)
    session.flush()
    publish(session, case, "commented", entry_id=str(entry.id))
    return entry


# --- search ------------------------------------------------------------------------------------------------------


@dataclass
class CaseFilter:
    """What a list, search, statistics or export asks for; every field is optional."""

    case_type: str | None = None
    status: Sequence[str] = ()
    priority: Sequence[str] = ()
    unit: str | None = None
    agency_id: uuid.UUID | None = None
    assignee_user_id: uuid.UUID | None = None
    overdue: bool | None = None
    q: str | None = None
    category: str | None = None
    parent_case_id: uuid.UUID | None = None
    alert_id: uuid.UUID | None = None
    created_since: datetime | None = None
    created_until: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def filtered(session: Session, *, actor: Actor, filters: CaseFilter, now: datetime | None = None) -> Select[Any]:
    """The select of the actor's visible cases matching the filters (no order, no paging)."""
    actor.require("cases:read")
    now = now or utcnow()
    stmt = select(Case).where(visible_condition(session, actor))
    f = filters
    if f.case_type:
        flow_for(f.case_type, ["query", "type"])
        stmt = stmt.where(Case.case_type == f.case_type)
    if f.status:
        stmt = stmt.where(Case.status.in_(list(f.status)))
    if f.priority:
        stmt = stmt.where(Case.priority.in_([check_priority(p, ["query", "priority"]) for p in f.priority]))
    if f.unit:
        path = session.scalar(select(Unit.path).where(Unit.code == normalize_code(f.unit)))
        if path is None:
            raise ValidationFailed(f"unknown unit {f.unit!r}", [FieldError(["query", "unit"], "unknown unit")])
        stmt = stmt.where(or_(Case.unit_path == path, Case.unit_path.startswith(path + ".", autoescape=True)))
    if f.agency_id:
        stmt = stmt.where(Case.owner_agency_id == f.agency_id)
    if f.assignee_user_id:
        stmt = stmt.where(Case.assignee_user_id == f.assignee_user_id)
    if f.overdue is True:
        stmt = stmt.where(Case.is_open, Case.due_at < now)
    elif f.overdue is False:
        stmt = stmt.where(or_(~Case.is_open, Case.due_at.is_(None), Case.due_at >= now))
    if f.q:
        words = fold(f.q).split()
        for word in words:
            stmt = stmt.where(Case.search_text.contains(word, autoescape=True))
    if f.category:
        stmt = stmt.where(Case.category == f.category)
    if f.parent_case_id:
        stmt = stmt.where(Case.parent_case_id == f.parent_case_id)
    if f.alert_id:
        stmt = stmt.where(Case.alert_id == f.alert_id)
    if f.created_since:
        stmt = stmt.where(Case.created_at >= f.created_since)
    if f.created_until:
        stmt = stmt.where(Case.created_at < f.created_until)
    return stmt


def list_cases(
    session: Session, *, actor: Actor, filters: CaseFilter | None = None, limit: int = 50, offset: int = 0,
    now: datetime | None = None,
) -> tuple[int, list[Case]]:
    """Cases in the actor's scope that match the filters, newest first, and how many matched."""
    stmt = filtered(session, actor=actor, filters=filters or CaseFilter(), now=now)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    items = session.scalars(stmt.order_by(Case.created_at.desc(), Case.id.desc()).limit(limit).offset(offset))
    return total, list(items)


def is_overdue(case: Case, now: datetime | None = None) -> bool:
    """True when the case is still open past its deadline."""
    return bool(case.is_open and case.due_at is not None and case.due_at < (now or utcnow()))


# --- statistics --------------------------------------------------------------------------------------------------


GROUPS = ("unit", "agency", "type")


def statistics(
    session: Session, *, actor: Actor, filters: CaseFilter | None = None, group_by: str = "unit",
    resolved_since: datetime | None = None, resolved_until: datetime | None = None, now: datetime | None = None,
) -> dict[str, Any]:
    """Counts by status, overdue open cases, on-time rate and mean time to resolve, per unit, agency or type.

    The on-time rate is resolved on time over all resolved (Decision 766 style: handled on time over all
    handled within the authority); resolved_since/until restrict the resolved cases it counts.
    """
    if group_by not in GROUPS:
        raise ValidationFailed(f"unknown grouping {group_by!r}",
                               [FieldError(["query", "group_by"], f"expected one of {', '.join(GROUPS)}")])
    now = now or utcnow()
    base = filtered(session, actor=actor, filters=filters or CaseFilter(), now=now).subquery()
    key = {"unit": base.c.unit_code, "agency": base.c.owner_agency_id, "type": base.c.case_type}[group_by]
    rows: dict[Any, dict[str, Any]] = defaultdict(lambda: {"total": 0, "by_status": {}, "overdue_open": 0,
                                                           "resolved": 0, "resolved_on_time": 0,
                                                           "mean_resolution_hours": None, "on_time_rate": None})
    for k, status, n in session.execute(select(key, base.c.status, func.count()).group_by(key, base.c.status)):
        rows[k]["by_status"][status] = n
        rows[k]["total"] += n
    overdue = select(key, func.count()).where(base.c.is_open, base.c.due_at < now).group_by(key)
    for k, n in session.execute(overdue):
        rows[k]["overdue_open"] = n
    on_time = func.sum(cast(base.c.resolved_on_time, Integer))
    resolved = select(key, func.count(), on_time, func.avg(base.c.resolution_seconds)).where(
        base.c.resolved_at.is_not(None))
    if resolved_since:
        resolved = resolved.where(base.c.resolved_at >= resolved_since)
    if resolved_until:
        resolved = resolved.where(base.c.resolved_at < resolved_until)
    seconds = 0.0
    for k, n, good, mean in session.execute(resolved.group_by(key)):
        seconds += float(mean or 0) * n
        row = rows[k]
        row["resolved"], row["resolved_on_time"] = n, int(good or 0)
        row["on_time_rate"] = round(100.0 * int(good or 0) / n, 1) if n else None
        row["mean_resolution_hours"] = round(float(mean) / 3600.0, 2) if mean is not None else None
    names = _group_names(session, group_by, [k for k in rows if k is not None])
    items = [{"key": str(k) if k is not None else None, "name": names.get(k, "(chưa giao)" if k is None else str(k)),
              **v} for k, v in rows.items()]
    items.sort(key=lambda r: (-r["total"], r["name"] or ""))
    totals = {"total": sum(r["total"] for r in items), "overdue_open": sum(r["overdue_open"] for r in items),
              "resolved": sum(r["resolved"] for r in items),
              "resolved_on_time": sum(r["resolved_on_time"] for r in items)}
    totals["on_time_rate"] = (round(100.0 * totals["resolved_on_time"] / totals["resolved"], 1)
                              if totals["resolved"] else None)
    totals["mean_resolution_hours"] = (round(seconds / totals["resolved"] / 3600.0, 2)
                                       if totals["resolved"] else None)
    by_status: dict[str, int] = defaultdict(int)
    for r in items:
        for s, n in r["by_status"].items():
            by_status[s] += n
    totals["by_status"] = dict(by_status)
    return {"group_by": group_by, "items": items, "totals": totals, "generated_at": now}


def _group_names(session: Session, group_by: str, keys: list[Any]) -> dict[Any, str]:
    if not keys:
        return {}
    if group_by == "unit":
        return dict(session.execute(select(Unit.code, Unit.name).where(Unit.code.in_(keys))).all())
    if group_by == "agency":
        return dict(session.execute(select(Agency.id, Agency.name).where(Agency.id.in_(keys))).all())
    from saola.core.cases.flows import case_types

    known = case_types()
    return {k: known[k].name_vi if k in known else k for k in keys}


def priority_label(priority: str) -> str:
    """The Vietnamese label of a priority."""
    return PRIORITIES.get(priority, priority)
