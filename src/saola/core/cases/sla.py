"""SLA watch: escalate overdue cases, flag late first responses, and remind before deadlines.

`run_sla_checks(session, now=...)` does one pass and is what the scheduled job calls every minute; tests call
it directly with the time they want. Each escalation, breach and reminder is written once: the case remembers
its escalation level, its response breach and which reminders it got.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from saola.core.auth.context import Actor, system_actor
from saola.core.cases import service
from saola.core.cases.flows import case_types, flow_for
from saola.core.cases.models import Case
from saola.core.units.models import Agency
from saola.db.engine import transaction
from saola.db.types import utcnow
from saola.packs.definitions import ScheduledJob

SLA_ACTOR = "sla"
BATCH = 500
JOB_INTERVAL_SECONDS = 60.0


def escalation_chain(session: Session, case: Case) -> list[Agency]:
    """Who a case escalates to, level by level: the owner agency's parents, then People's Committees up the tree."""
    chain: list[Agency] = []
    seen = {case.owner_agency_id} if case.owner_agency_id else set()
    agency = session.get(Agency, case.owner_agency_id) if case.owner_agency_id else None
    while agency is not None and agency.parent_id is not None and agency.parent_id not in seen:
        agency = session.get(Agency, agency.parent_id)
        if agency is None:
            break
        seen.add(agency.id)
        chain.append(agency)
    for code in reversed(case.unit_path.split(".")):
        committee = session.scalar(select(Agency).where(Agency.unit_code == code, Agency.kind == "people_committee")
                                   .order_by(Agency.created_at).limit(1))
        if committee is not None and committee.id not in seen:
            seen.add(committee.id)
            chain.append(committee)
    return chain


def _chunks(session: Session, stmt: Any) -> Iterator[Case]:
    # Materialise ids first: the loop writes to the rows it walks.
    ids = list(session.scalars(stmt.with_only_columns(Case.id)))
    for start in range(0, len(ids), BATCH):
        yield from session.scalars(select(Case).where(Case.id.in_(ids[start : start + BATCH])))


def _escalate(session: Session, case: Case, *, level: int, reason: str, actor: Actor, now: datetime) -> None:
    chain = escalation_chain(session, case)
    target = chain[min(level, len(chain)) - 1] if chain and level > 0 else None
    if reason == "overdue":
        case.escalation_level = level
        if target is not None:
            case.escalated_to_agency_id = target.id
    else:
        case.first_response_breached = True
    late = case.due_at if reason == "overdue" else case.first_response_due_at
    data = {"level": level, "reason": reason, "due_at": late.isoformat() if late else None,
            "late_minutes": int((now - late).total_seconds() // 60) if late else None,
            "to_agency_id": str(target.id) if target else None, "to_agency_name": target.name if target else None,
            "to_unit_code": target.unit_code if target else None}
    service.add_timeline(session, case, actor=actor, kind="escalation", at=now, data=data)
    service.publish(session, case, "escalated", level=level, reason=reason,
                    escalated_to_agency_id=data["to_agency_id"], escalated_to_unit_code=data["to_unit_code"])


def run_sla_checks(session: Session, *, now: datetime | None = None) -> dict[str, int]:
    """One pass: escalate overdue open cases, flag late first responses, send reminders due by `now`."""
    now = now or utcnow()
    actor = system_actor(SLA_ACTOR)
    known = case_types()
    counts = {"escalated": 0, "response_breached": 0, "reminded": 0}

    escalating = [t for t, d in known.items() if d.escalation_after_minutes]
    overdue = select(Case).where(Case.is_open, Case.due_at <= now, Case.case_type.in_(escalating))
    for case in _chunks(session, overdue):
        offsets = flow_for(case.case_type).definition.escalation_after_minutes
        assert case.due_at is not None
        level = sum(1 for minutes in offsets if case.due_at + timedelta(minutes=minutes) <= now)
        if level > case.escalation_level:
            _escalate(session, case, level=level, reason="overdue", actor=actor, now=now)
            counts["escalated"] += 1

    late = select(Case).where(Case.is_open, Case.first_response_at.is_(None), ~Case.first_response_breached,
                              Case.first_response_due_at <= now)
    for case in _chunks(session, late):
        _escalate(session, case, level=max(case.escalation_level, 1), reason="first_response", actor=actor, now=now)
        counts["response_breached"] += 1

    windows = {t: d.remind_before_minutes for t, d in known.items() if d.remind_before_minutes}
    if windows:
        horizon = now + timedelta(minutes=max(max(w) for w in windows.values()))
        upcoming = select(Case).where(Case.is_open, Case.due_at > now, Case.due_at <= horizon,
                                      Case.case_type.in_(list(windows)))
        for case in _chunks(session, upcoming):
            assert case.due_at is not None
            sent = set((case.data or {}).get("reminders_sent", []))
            due = [m for m in windows[case.case_type] if case.due_at - timedelta(minutes=m) <= now and m not in sent]
            if not due:
                continue
            minutes_left = int((case.due_at - now).total_seconds() // 60)
            case.data = {**(case.data or {}), "reminders_sent": sorted(sent | set(due))}
            service.add_timeline(session, case, actor=actor, kind="reminder", at=now,
                                 data={"due_at": case.due_at.isoformat(), "minutes_left": minutes_left})
            service.publish(session, case, "reminder", due_at=case.due_at.isoformat(), minutes_left=minutes_left)
            counts["reminded"] += 1
    return counts


def sla_job(context: Any) -> None:
    """The scheduled job: one SLA pass in its own transaction."""
    with transaction(context.session_factory) as session:
        run_sla_checks(session, now=utcnow())


SLA_JOB = ScheduledJob(name="cases.sla", interval_seconds=JOB_INTERVAL_SECONDS, run=sla_job)
"""Escalations, response breaches and reminders, checked every minute."""
