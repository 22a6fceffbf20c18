"""Directives: a leader issues to three communes, recipients report progress with files, the issuer sees
completion with overdue ones marked, reminders come before the deadline, and delegation stays in the subtree."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from saola.core.auth.context import system_actor
from saola.core.cases import directives
from saola.core.cases.models import Case, CaseTimelineEntry
from saola.core.cases.sla import run_sla_checks
from saola.db.engine import transaction
from saola.db.types import utcnow
from tests.conftest import unique
from tests.ops.test_cases_helpers import (
    OTHER_WARD,
    PROVINCE,
    WARD_A,
    WARD_B,
    WARD_C,
    Maker,
    bus_messages,
    counts,
    make_agency,
    make_person,
    pdf_bytes,
    upload,
)

WARDS = [WARD_A, WARD_B, WARD_C]


@pytest.fixture
def person(client: TestClient, session_factory: sessionmaker[Session], app) -> Maker:  # type: ignore[no-untyped-def]
    def _make(role: str, scope: str, agency_id: uuid.UUID | None = None):  # type: ignore[no-untyped-def]
        return make_person(client, session_factory, app.state.registry, role, scope, agency_id)

    return _make


def _in(days: float = 3) -> str:
    return (utcnow() + timedelta(days=days)).isoformat()


def _issue(client: TestClient, headers: dict[str, str], recipients: list[dict[str, Any]], **over: Any) -> Any:
    title = over.pop("title", f"Triển khai phòng chống sạt lở {unique()}")
    body = {"title": title, "due_at": over.pop("due_at", _in()), "recipients": recipients, **over}
    return client.post("/api/directives", json=body, headers=headers)


def test_leader_issues_to_three_communes_and_follows_progress(client: TestClient, person: Maker,
                                                             session_factory: sessionmaker[Session]) -> None:
    leader = person("leader", PROVINCE)
    staff = {ward: person("agency_staff", ward) for ward in WARDS}
    with bus_messages() as seen:
        r = _issue(client, leader.headers, [{"unit_code": w} for w in WARDS], priority="high",
                   description="Rà soát khu dân cư có nguy cơ sạt lở, báo cáo trước hạn")
    assert r.status_code == 201, r.text
    view = r.json()
    directive = view["directive"]
    assert directive["code"].startswith("CD-") and directive["status"] == "issued"
    assert directive["unit_code"] == PROVINCE and view["total"] == 3 and view["overall_percent"] == 0
    tasks = {row["unit_code"]: row for row in view["recipients"]}
    assert set(tasks) == set(WARDS) and all(row["status"] == "assigned" for row in tasks.values())
    assert tasks[WARD_A]["unit_name"] == "Phường Xuân Hương - Đà Lạt"
    created = [m.data for m in seen if m.topic == "cases.created"]
    assert sorted(m["unit_code"] for m in created) == sorted([PROVINCE, *WARDS])

    # Each commune sees its own task, not the others' and not the directive (which lives at the province).
    for ward, who in staff.items():
        listed = client.get("/api/cases?type=task&limit=500", headers=who.headers).json()["items"]
        mine = [c for c in listed if c["parent_case_id"] == directive["id"]]
        assert [c["unit_code"] for c in mine] == [ward]
        assert mine[0]["due_at"] == directive["due_at"] and mine[0]["data"]["directive_code"] == directive["code"]
    assert client.get(f"/api/cases/{directive['id']}", headers=staff[WARD_A].headers).status_code == 404
    assert client.get(f"/api/directives/{directive['id']}", headers=staff[WARD_A].headers).status_code == 404

    # The issuer's files reach the recipients through their task.
    att = upload(client, leader.headers, directive["id"], "ke-hoach.pdf", pdf_bytes()).json()
    task_a = tasks[WARD_A]["task_id"]
    files = client.get(f"/api/cases/{task_a}/attachments", headers=staff[WARD_A].headers).json()
    assert [f["id"] for f in files] == [att["id"]]
    got = client.get(f"/api/cases/{task_a}/attachments/{att['id']}", headers=staff[WARD_A].headers)
    assert got.status_code == 200 and got.content.startswith(b"%PDF")

    # Ward A reports 50% with a photo report; ward B finishes; ward C says nothing.
    report = upload(client, staff[WARD_A].headers, task_a, "bao-cao.pdf", pdf_bytes("Tien do 50")).json()
    with bus_messages() as seen:
        r = client.post(f"/api/cases/{task_a}/progress", headers=staff[WARD_A].headers,
                        json={"percent": 50, "text": "Đã rà soát 12/24 khu dân cư", "attachment_ids": [report["id"]]})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "in_progress" and r.json()["progress_percent"] == 50
    assert [m.data["unit_code"] for m in seen if m.topic == "cases.progress"] == [WARD_A]
    r = client.post(f"/api/cases/{tasks[WARD_B]['task_id']}/progress", headers=staff[WARD_B].headers,
                    json={"percent": 100, "text": "Hoàn thành"})
    assert r.status_code == 200 and r.json()["status"] == "done" and r.json()["resolved_on_time"] is True

    view = client.get(f"/api/directives/{directive['id']}", headers=leader.headers).json()
    rows = {row["unit_code"]: row for row in view["recipients"]}
    assert (rows[WARD_A]["progress_percent"], rows[WARD_B]["progress_percent"], rows[WARD_C]["progress_percent"]) \
        == (50, 100, 0)
    assert rows[WARD_A]["last_report_text"] == "Đã rà soát 12/24 khu dân cư"
    assert rows[WARD_B]["status_label"] == "Hoàn thành"
    assert view["overall_percent"] == 50 and view["done"] == 1 and view["overdue"] == 0
    assert view["directive"]["status"] == "in_progress" and view["directive"]["progress_percent"] == 50
    timeline = client.get(f"/api/cases/{task_a}/timeline", headers=staff[WARD_A].headers).json()["items"]
    progress = next(e for e in timeline if e["kind"] == "progress")
    assert progress["data"]["attachment_ids"] == [report["id"]] and progress["actor_name"] == staff[WARD_A].username

    # Past the deadline the issuer sees who is late.
    deadline = _t(directive["due_at"])
    with session_factory() as session:
        late = directives.overview(session, actor=leader.actor, directive_id=uuid.UUID(directive["id"]),
                                   now=deadline + timedelta(hours=1))
    flags = {row["unit_code"]: row["overdue"] for row in late["recipients"]}
    assert flags == {WARD_A: True, WARD_B: False, WARD_C: True} and late["overdue"] == 2

    # When the last two finish, the directive completes by itself.
    for ward in (WARD_A, WARD_C):
        r = client.post(f"/api/cases/{tasks[ward]['task_id']}/progress", headers=staff[ward].headers,
                        json={"percent": 100})
        assert r.status_code == 200
    view = client.get(f"/api/directives/{directive['id']}", headers=leader.headers).json()
    assert view["directive"]["status"] == "completed" and view["overall_percent"] == 100 and view["done"] == 3
    # A finished task takes no more reports.
    r = client.post(f"/api/cases/{task_a}/progress", headers=staff[WARD_A].headers, json={"percent": 10})
    assert r.status_code == 409


def _t(text: str):  # type: ignore[no-untyped-def]
    from datetime import datetime

    return datetime.fromisoformat(text)


def test_bad_directives_are_refused_and_create_nothing(client: TestClient, person: Maker,
                                                       session_factory: sessionmaker[Session]) -> None:
    leader = person("leader", PROVINCE)
    before = counts(session_factory)
    past = (utcnow() - timedelta(minutes=1)).isoformat()
    r = _issue(client, leader.headers, [{"unit_code": WARD_A}], due_at=past)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "due_at"]
    r = _issue(client, leader.headers, [{"unit_code": WARD_A}, {"unit_code": OTHER_WARD}])
    assert r.status_code == 403
    r = _issue(client, leader.headers, [{"unit_code": WARD_A}, {"unit_code": WARD_A}])
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "recipients", 1]
    r = _issue(client, leader.headers, [{"unit_code": "99999"}])
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "recipients", 0, "unit_code"]
    r = _issue(client, leader.headers, [{"agency_id": str(uuid.uuid4())}])
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "recipients", 0, "agency_id"]
    r = _issue(client, leader.headers, [{"unit_code": WARD_A, "agency_id": str(uuid.uuid4())}])
    assert r.status_code == 422
    r = _issue(client, leader.headers, [])
    assert r.status_code == 422
    r = _issue(client, leader.headers, [{"unit_code": WARD_A}], due_at="2030-01-01T00:00:00")  # no time zone
    assert r.status_code == 422
    operator = person("operator", PROVINCE)
    r = _issue(client, operator.headers, [{"unit_code": WARD_A}])
    assert r.status_code == 403 and "directives:issue" in r.json()["detail"]
    assert counts(session_factory) == before


def test_directive_to_agencies_and_delegation_inside_the_subtree(client: TestClient, person: Maker,
                                                                 session_factory: sessionmaker[Session]) -> None:
    national = person("leader", "VN")
    department = make_agency(session_factory, PROVINCE)
    unit_below = make_agency(session_factory, PROVINCE, parent_id=department)
    foreign = make_agency(session_factory, "79")
    dept_staff = person("agency_staff", PROVINCE, agency_id=department)
    r = _issue(client, national.headers, [{"agency_id": str(department)}, {"unit_code": "79"}])
    assert r.status_code == 201, r.text
    rows = {row["unit_code"]: row for row in r.json()["recipients"]}
    assert rows[PROVINCE]["agency_id"] == str(department) and rows[PROVINCE]["agency_name"].startswith("Cơ quan")
    task = rows[PROVINCE]["task_id"]
    assert client.get(f"/api/cases/{task}", headers=dept_staff.headers).status_code == 200

    before = counts(session_factory)
    url = f"/api/cases/{task}/delegate"
    for body, code in (
        ({"recipients": [{"agency_id": str(foreign)}]}, 403),  # another province
        ({"recipients": [{"unit_code": WARD_A}]}, 403),  # agency staff hand down to agencies of their own agency
        ({"recipients": [{"agency_id": str(unit_below)}], "due_at": _in(30)}, 422),  # after the task's deadline
        ({"recipients": [{"agency_id": str(unit_below)}], "due_at": (utcnow() - timedelta(hours=1)).isoformat()},
         422),
    ):
        r = client.post(url, json=body, headers=dept_staff.headers)
        assert r.status_code == code, (body, r.text)
    assert counts(session_factory) == before
    r = client.post(url, json={"recipients": [{"agency_id": str(unit_below)}], "note": "Giao Chi cục thực hiện"},
                    headers=dept_staff.headers)
    assert r.status_code == 201, r.text
    (sub,) = r.json()
    assert sub["parent_case_id"] == task and sub["owner_agency_id"] == str(unit_below)
    assert sub["data"]["note"] == "Giao Chi cục thực hiện" and sub["due_at"] == rows[PROVINCE]["due_at"]
    view = client.get(f"/api/directives/{r.json()[0]['data']['directive_id']}", headers=national.headers).json()
    assert {row["unit_code"]: row["delegated"] for row in view["recipients"]} == {PROVINCE: 1, "79": 0}


def test_commune_delegates_only_below_itself(client: TestClient, person: Maker,
                                             session_factory: sessionmaker[Session]) -> None:
    leader = person("leader", PROVINCE)
    ward_staff = person("agency_staff", WARD_A)
    ward_team = make_agency(session_factory, WARD_A)
    other_team = make_agency(session_factory, WARD_B)
    task = _issue(client, leader.headers, [{"unit_code": WARD_A}]).json()["recipients"][0]["task_id"]
    url = f"/api/cases/{task}/delegate"
    assert client.post(url, json={"recipients": [{"unit_code": WARD_B}]}, headers=ward_staff.headers).status_code \
        == 403
    assert client.post(url, json={"recipients": [{"agency_id": str(other_team)}]},
                       headers=ward_staff.headers).status_code == 403
    r = client.post(url, json={"recipients": [{"unit_code": WARD_A}]}, headers=ward_staff.headers)
    assert r.status_code == 422
    r = client.post(url, json={"recipients": [{"agency_id": str(ward_team)}]}, headers=ward_staff.headers)
    assert r.status_code == 201 and r.json()[0]["unit_code"] == WARD_A


def test_reminders_before_the_deadline_and_escalation_after(session_factory: sessionmaker[Session]) -> None:
    leader = system_actor("lanhdao")
    due = utcnow() + timedelta(days=2)
    with transaction(session_factory) as session:
        directive, tasks = directives.issue_directive(
            session, actor=leader, title="Báo cáo tình hình mưa lũ", due_at=due,
            recipients=[directives.Recipient(unit_code=w) for w in WARDS])
        directive_id, task_ids = directive.id, {t.id for t in tasks}
        directives.report_progress(session, actor=leader, case_id=tasks[0].id, percent=100)
    with bus_messages() as seen, transaction(session_factory) as session:
        run_sla_checks(session, now=due - timedelta(days=1, minutes=5))  # not yet
        run_sla_checks(session, now=due - timedelta(hours=23))  # one day before
        run_sla_checks(session, now=due - timedelta(hours=22))  # nothing new
        run_sla_checks(session, now=due - timedelta(minutes=90))  # two hours before
    reminders = [m.data for m in seen if m.topic == "cases.reminder" and uuid.UUID(m.data["case_id"]) in task_ids]
    assert len(reminders) == 4  # two open tasks, two reminders each; the done one gets none
    assert {m["unit_code"] for m in reminders} == {WARD_B, WARD_C}
    with bus_messages() as seen, transaction(session_factory) as session:
        run_sla_checks(session, now=due + timedelta(minutes=5))
    escalated = [m.data for m in seen if m.topic == "cases.escalated" and uuid.UUID(m.data["case_id"]) in task_ids]
    assert sorted(m["unit_code"] for m in escalated) == sorted([WARD_B, WARD_C])
    assert not [m for m in seen if m.data.get("case_id") == str(directive_id)]  # directives do not escalate
    with session_factory() as session:
        kinds = session.scalars(select(CaseTimelineEntry.kind).where(
            CaseTimelineEntry.case_id.in_(task_ids), CaseTimelineEntry.kind == "reminder")).all()
        assert len(kinds) == 4


def test_cancelling_a_directive_cancels_open_tasks(client: TestClient, person: Maker,
                                                   session_factory: sessionmaker[Session]) -> None:
    leader = person("leader", PROVINCE)
    view = _issue(client, leader.headers, [{"unit_code": WARD_A}, {"unit_code": WARD_B}]).json()
    directive = view["directive"]
    staff_a = person("agency_staff", WARD_A)
    task_a = next(r["task_id"] for r in view["recipients"] if r["unit_code"] == WARD_A)
    r = client.post(f"/api/cases/{task_a}/status", json={"status": "returned"}, headers=staff_a.headers)
    assert r.status_code == 422  # returning needs a reason
    r = client.post(f"/api/cases/{task_a}/status", json={"status": "returned", "reason": "Không đủ nhân lực"},
                    headers=staff_a.headers)
    assert r.status_code == 200 and r.json()["status"] == "returned"
    task_b = next(r["task_id"] for r in view["recipients"] if r["unit_code"] == WARD_B)
    team = make_agency(session_factory, WARD_B)
    sub = client.post(f"/api/cases/{task_b}/delegate", json={"recipients": [{"agency_id": str(team)}]},
                      headers=leader.headers)
    assert sub.status_code == 201, sub.text
    r = client.post(f"/api/cases/{directive['id']}/status", json={"status": "cancelled", "reason": "Đã có văn bản mới"},
                    headers=leader.headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    with session_factory() as session:
        statuses = set(session.scalars(select(Case.status).where(Case.parent_case_id == uuid.UUID(directive["id"]))))
        sub_status = session.get(Case, uuid.UUID(sub.json()[0]["id"])).status
    assert statuses == {"cancelled"} and sub_status == "cancelled"  # down the delegation chain too
