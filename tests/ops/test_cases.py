"""Cases: opening with SLA deadlines and codes, status flows, assignment, comments, attachments, search,
statistics, export, escalation, and the case-type registry packs extend."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from saola.core.auth.context import system_actor
from saola.core.cases import service
from saola.core.cases.flows import INCIDENT, case_types, check_definition, temporary_case_type
from saola.core.cases.models import Case, CaseAttachment, CaseTimelineEntry
from saola.core.cases.sla import run_sla_checks
from saola.core.errors import ValidationFailed
from saola.db.engine import transaction
from saola.db.types import utcnow
from saola.packs.context import PackContext
from saola.packs.definitions import CaseTypeDefinition
from tests.conftest import unique
from tests.ops.test_cases_helpers import (
    OTHER_WARD,
    PROVINCE,
    WARD_A,
    WARD_B,
    Maker,
    bus_messages,
    committee,
    counts,
    docx_bytes,
    exe_bytes,
    make_agency,
    make_person,
    open_incident,
    pdf_bytes,
    png_bytes,
    upload,
)

CODE = re.compile(r"^SC-\d{4}-\d{6}$")


@pytest.fixture
def person(client: TestClient, session_factory: sessionmaker[Session], app) -> Maker:  # type: ignore[no-untyped-def]
    def _make(role: str, scope: str, agency_id: uuid.UUID | None = None):  # type: ignore[no-untyped-def]
        return make_person(client, session_factory, app.state.registry, role, scope, agency_id)

    return _make


def _locs(r) -> list[list]:  # type: ignore[no-untyped-def]
    return [e["loc"] for e in r.json()["errors"]]


# --- opening ---------------------------------------------------------------------------------------------------


def test_open_case_sets_code_deadlines_and_publishes(client: TestClient, person: Maker) -> None:
    operator = person("operator", PROVINCE)
    with bus_messages() as seen:
        case = open_incident(client, operator.headers, priority="high", title="Ngập úng đường Trần Phú")
    assert CODE.match(case["code"]), case["code"]
    assert case["status"] == "open" and case["status_label"] == "Mới" and case["type_label"] == "Sự cố"
    assert case["priority_label"] == "Cao"
    assert set(case["allowed_transitions"]) == {"acknowledged", "in_progress", "cancelled"}
    created = _t(case["created_at"])
    assert _t(case["due_at"]) - created == timedelta(minutes=INCIDENT.sla_minutes["high"])
    assert _t(case["first_response_due_at"]) - created == timedelta(minutes=30)
    created_msgs = [m for m in seen if m.topic == "cases.created"]
    assert len(created_msgs) == 1
    data = created_msgs[0].data
    assert {k: data[k] for k in ("unit_code", "case_type", "status", "case_id", "title")} == {
        "unit_code": WARD_A, "case_type": "incident", "status": "open", "case_id": case["id"],
        "title": "Ngập úng đường Trần Phú"}
    r = client.get(f"/api/cases/{case['id']}", headers=operator.headers)
    assert r.status_code == 200 and r.json()["code"] == case["code"]


def _t(text: str):  # type: ignore[no-untyped-def]
    from datetime import datetime

    return datetime.fromisoformat(text)


def test_codes_count_up_per_prefix(client: TestClient, person: Maker) -> None:
    operator = person("operator", PROVINCE)
    first = open_incident(client, operator.headers)["code"]
    second = open_incident(client, operator.headers)["code"]
    assert first[:8] == second[:8] and int(second[-6:]) == int(first[-6:]) + 1


def test_open_case_service_contract_is_idempotent_per_alert(session_factory: sessionmaker[Session]) -> None:
    alert_id = uuid.uuid4()
    with transaction(session_factory) as session:
        case = service.open_case(session, actor=system_actor("rules"), case_type="incident",
                                 title="AQI trên 200 tại trạm Đà Lạt", unit_code=WARD_A, priority="urgent",
                                 alert_id=alert_id)
        again = service.open_case(session, actor=system_actor("rules"), case_type="incident",
                                  title="AQI trên 200 tại trạm Đà Lạt", unit_code=WARD_A, priority="critical",
                                  alert_id=alert_id)
        assert isinstance(case, Case) and again.id == case.id
        assert case.alert_id == alert_id and case.unit_path == f"VN.{PROVINCE}.{WARD_A}"
        assert case.priority == "critical"  # alert words are understood: urgent, medium, info
        assert case.due_at is not None and case.due_at - case.created_at == timedelta(hours=4)


def test_bad_input_to_open_is_refused_and_changes_nothing(client: TestClient, person: Maker,
                                                          session_factory: sessionmaker[Session]) -> None:
    operator = person("operator", PROVINCE)
    before = counts(session_factory)
    past = (utcnow() - timedelta(hours=1)).isoformat()
    cases = [
        ({"case_type": "incident", "title": "x", "unit_code": WARD_A, "due_at": past}, 422, ["body", "due_at"]),
        ({"case_type": "meteor", "title": "x", "unit_code": WARD_A}, 422, ["body", "case_type"]),
        ({"case_type": "incident", "title": "x", "unit_code": "99999"}, 422, ["body", "unit_code"]),
        ({"case_type": "incident", "title": "x", "unit_code": WARD_A, "priority": "asap"}, 422,
         ["body", "priority"]),
        ({"case_type": "incident", "title": "", "unit_code": WARD_A}, 422, ["body", "title"]),
        ({"case_type": "incident", "title": "   ", "unit_code": WARD_A}, 422, ["body", "title"]),
        ({"case_type": "incident", "title": "x", "unit_code": WARD_A, "entity_id": str(uuid.uuid4())}, 422,
         ["body", "entity_id"]),
        ({"case_type": "incident", "title": "x", "unit_code": WARD_A, "owner_agency_id": str(uuid.uuid4())}, 422,
         ["body", "owner_agency_id"]),
    ]
    for body, code, loc in cases:
        r = client.post("/api/cases", json=body, headers=operator.headers)
        assert r.status_code == code, (body, r.text)
        assert loc in _locs(r), (body, r.json())
    r = client.post("/api/cases", json={"case_type": "incident", "title": "x", "unit_code": OTHER_WARD},
                    headers=operator.headers)
    assert r.status_code == 403
    viewer = person("viewer", PROVINCE)
    r = client.post("/api/cases", json={"case_type": "incident", "title": "x", "unit_code": WARD_A},
                    headers=viewer.headers)
    assert r.status_code == 403 and "cases:write" in r.json()["detail"]
    assert counts(session_factory) == before


# --- status flow ------------------------------------------------------------------------------------------------


def test_incident_flow_and_refused_transitions(client: TestClient, person: Maker,
                                               session_factory: sessionmaker[Session]) -> None:
    operator = person("operator", PROVINCE)
    case = open_incident(client, operator.headers)
    url = f"/api/cases/{case['id']}/status"
    before = counts(session_factory)
    r = client.post(url, json={"status": "closed"}, headers=operator.headers)
    assert r.status_code == 409 and r.json()["code"] == "transition_not_allowed"
    assert ["body", "status"] in _locs(r) and "acknowledged" in r.json()["detail"]
    r = client.post(url, json={"status": "flying"}, headers=operator.headers)
    assert r.status_code == 422 and ["body", "status"] in _locs(r)
    r = client.post(url, json={"status": "cancelled"}, headers=operator.headers)
    assert r.status_code == 422 and ["body", "reason"] in _locs(r)
    assert counts(session_factory) == before
    assert client.get(f"/api/cases/{case['id']}", headers=operator.headers).json()["status"] == "open"

    with bus_messages() as seen:
        for status in ("acknowledged", "in_progress", "resolved", "closed"):
            r = client.post(url, json={"status": status}, headers=operator.headers)
            assert r.status_code == 200, r.text
    final = r.json()
    assert final["status"] == "closed" and final["status_label"] == "Đã đóng"
    assert final["first_response_at"] and final["resolved_at"] and final["closed_at"]
    assert final["resolved_on_time"] is True and final["allowed_transitions"] == []
    changes = [m.data for m in seen if m.topic == "cases.status_changed"]
    assert [(m["from_status"], m["status"]) for m in changes] == [
        ("open", "acknowledged"), ("acknowledged", "in_progress"), ("in_progress", "resolved"),
        ("resolved", "closed")]
    assert all(m["unit_code"] == WARD_A for m in changes)
    r = client.post(url, json={"status": "in_progress"}, headers=operator.headers)
    assert r.status_code == 409


def test_reopening_a_resolved_case_clears_the_outcome(client: TestClient, person: Maker) -> None:
    operator = person("operator", PROVINCE)
    case = open_incident(client, operator.headers)
    url = f"/api/cases/{case['id']}/status"
    for status in ("in_progress", "resolved", "in_progress"):
        r = client.post(url, json={"status": status}, headers=operator.headers)
        assert r.status_code == 200, r.text
    assert r.json()["resolved_at"] is None and r.json()["resolved_on_time"] is None


def test_citizen_report_flow(client: TestClient, person: Maker) -> None:
    operator = person("operator", PROVINCE)
    r = client.post("/api/cases", json={"case_type": "citizen_report", "title": "Đèn đường hỏng",
                                        "unit_code": WARD_A}, headers=operator.headers)
    assert r.status_code == 201
    report = r.json()
    assert report["code"].startswith("PA-") and report["status"] == "received"
    assert _t(report["first_response_due_at"]) - _t(report["created_at"]) == timedelta(minutes=5)
    assert _t(report["due_at"]) - _t(report["created_at"]) == timedelta(days=5)
    url = f"/api/cases/{report['id']}/status"
    assert client.post(url, json={"status": "rejected"}, headers=operator.headers).status_code == 422
    for status, reason in (("forwarded", ""), ("returned", "Không thuộc thẩm quyền"), ("forwarded", ""),
                           ("in_progress", ""), ("resolved", ""), ("rated", "")):
        r = client.post(url, json={"status": status, "reason": reason}, headers=operator.headers)
        assert r.status_code == 200, (status, r.text)
    assert r.json()["closed_at"] and r.json()["resolved_on_time"] is True


# --- assignment and comments ------------------------------------------------------------------------------------


def test_assignment_inside_scope_and_refusals(client: TestClient, person: Maker,
                                              session_factory: sessionmaker[Session]) -> None:
    operator = person("operator", PROVINCE)
    staff_a = person("agency_staff", WARD_A)
    staff_b = person("agency_staff", WARD_B)
    outsider = person("agency_staff", OTHER_WARD)
    department = make_agency(session_factory, PROVINCE)
    foreign_agency = make_agency(session_factory, "79")
    case = open_incident(client, operator.headers)
    url = f"/api/cases/{case['id']}/assign"
    with bus_messages() as seen:
        r = client.post(url, json={"agency_id": str(department), "assignee_user_id": str(staff_a.user_id),
                                   "note": "Chuyển Sở xử lý"}, headers=operator.headers)
    assert r.status_code == 200, r.text
    assert r.json()["owner_agency_id"] == str(department) and r.json()["assignee_user_id"] == str(staff_a.user_id)
    assert [m.data["unit_code"] for m in seen if m.topic == "cases.assigned"] == [WARD_A]
    before = counts(session_factory)
    refused = [
        ({"assignee_user_id": str(outsider.user_id)}, 403),
        ({"agency_id": str(foreign_agency)}, 403),
        ({"unit_code": OTHER_WARD}, 403),
        ({"assignee_user_id": str(staff_b.user_id)}, 422),  # in scope, but cannot see a case of ward A
        ({"assignee_user_id": str(uuid.uuid4())}, 422),
        ({}, 422),
    ]
    for body, code in refused:
        r = client.post(url, json=body, headers=operator.headers)
        assert r.status_code == code, (body, r.text)
    assert counts(session_factory) == before
    # The assigned staff member acts on it; staff of ward B cannot even see it.
    assert client.get(f"/api/cases/{case['id']}", headers=staff_a.headers).status_code == 200
    assert client.get(f"/api/cases/{case['id']}", headers=staff_b.headers).status_code == 404
    # Moving the case to ward B is a dispatch inside the operator's scope; the owner agency follows the unit.
    r = client.post(url, json={"unit_code": WARD_B, "unassign": True}, headers=operator.headers)
    assert r.status_code == 200 and r.json()["unit_code"] == WARD_B and r.json()["assignee_user_id"] is None
    assert client.get(f"/api/cases/{case['id']}", headers=staff_b.headers).status_code == 200
    assert client.get(f"/api/cases/{case['id']}", headers=staff_a.headers).status_code == 404


def test_agency_staff_see_only_their_agency_cases(client: TestClient, person: Maker,
                                                  session_factory: sessionmaker[Session]) -> None:
    operator = person("operator", PROVINCE)
    health = make_agency(session_factory, PROVINCE)
    hospital = make_agency(session_factory, PROVINCE, parent_id=health)
    transport = make_agency(session_factory, PROVINCE)
    health_staff = person("agency_staff", PROVINCE, agency_id=health)
    mine = open_incident(client, operator.headers, owner_agency_id=str(hospital))
    theirs = open_incident(client, operator.headers, owner_agency_id=str(transport))
    assert client.get(f"/api/cases/{mine['id']}", headers=health_staff.headers).status_code == 200
    assert client.get(f"/api/cases/{theirs['id']}", headers=health_staff.headers).status_code == 404
    ids = {c["id"] for c in client.get("/api/cases?limit=500", headers=health_staff.headers).json()["items"]}
    assert mine["id"] in ids and theirs["id"] not in ids
    # They assign inside their own agency subtree, not to another agency.
    r = client.post(f"/api/cases/{mine['id']}/assign", json={"agency_id": str(transport)},
                    headers=health_staff.headers)
    assert r.status_code == 403


def test_comments_and_timeline(client: TestClient, person: Maker) -> None:
    operator = person("operator", PROVINCE)
    case = open_incident(client, operator.headers)
    with bus_messages() as seen:
        r = client.post(f"/api/cases/{case['id']}/comments", json={"text": "Đã cử tổ công tác đến hiện trường"},
                        headers=operator.headers)
    assert r.status_code == 201 and r.json()["kind"] == "comment"
    assert [m.data["unit_code"] for m in seen if m.topic == "cases.commented"] == [WARD_A]
    assert client.post(f"/api/cases/{case['id']}/comments", json={"text": ""},
                       headers=operator.headers).status_code == 422
    client.post(f"/api/cases/{case['id']}/status", json={"status": "acknowledged"}, headers=operator.headers)
    timeline = client.get(f"/api/cases/{case['id']}/timeline", headers=operator.headers).json()
    assert [e["kind"] for e in timeline["items"]] == ["created", "comment", "status"]
    assert timeline["items"][1]["actor_name"] == operator.username
    assert timeline["items"][2]["data"] == {"from": "open", "to": "acknowledged"}


# --- attachments -----------------------------------------------------------------------------------------------


def test_attachments_checked_by_content_and_size(client: TestClient, person: Maker, settings,  # type: ignore[no-untyped-def]
                                                 session_factory: sessionmaker[Session]) -> None:
    operator = person("operator", PROVINCE)
    case = open_incident(client, operator.headers)
    image = png_bytes(4, 4)
    r = upload(client, operator.headers, case["id"], "hien-truong.png", image, "image/png")
    assert r.status_code == 201, r.text
    att = r.json()
    assert att["mime"] == "image/png" and att["size"] == len(image) and len(att["sha256"]) == 64
    assert (settings.data_dir / "files" / att["sha256"][:2] / att["sha256"]).is_file()
    for name, content, mime in (("bao-cao.pdf", pdf_bytes(), "application/pdf"),
                                ("ke-hoach.docx", docx_bytes(), "application/octet-stream"),
                                ("ghi-chu.txt", "Nước ngập 30 cm".encode(), "text/plain")):
        r = upload(client, operator.headers, case["id"], name, content)
        assert r.status_code == 201, (name, r.text)
        assert r.json()["mime"] == mime or name.endswith(".docx")
    got = client.get(f"/api/cases/{case['id']}/attachments/{att['id']}", headers=operator.headers)
    assert got.status_code == 200 and got.content == image and got.headers["content-type"] == "image/png"
    assert "attachment" in got.headers["content-disposition"]
    listed = client.get(f"/api/cases/{case['id']}/attachments", headers=operator.headers).json()
    assert len(listed) == 4

    before = counts(session_factory)
    with session_factory() as session:
        files_before = session.scalar(select(func.count()).select_from(CaseAttachment))
    r = upload(client, operator.headers, case["id"], "anh.png", exe_bytes())
    assert r.status_code == 415 and ["body", "file"] in _locs(r)
    r = upload(client, operator.headers, case["id"], "anh.pdf", image)  # a PNG that says it is a PDF
    assert r.status_code == 415 and "image/png" in r.json()["detail"]
    r = upload(client, operator.headers, case["id"], "rong.txt", b"")
    assert r.status_code == 415
    r = upload(client, operator.headers, case["id"], "zip.docx", _plain_zip())
    assert r.status_code == 415
    limit = settings.max_attachment_bytes
    settings.max_attachment_bytes = 2048
    try:
        r = upload(client, operator.headers, case["id"], "lon.png", image + b"\x00" * 4096)
    finally:
        settings.max_attachment_bytes = limit
    assert r.status_code == 413 and ["body", "file"] in _locs(r)
    assert counts(session_factory) == before
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(CaseAttachment)) == files_before
    assert not list((settings.data_dir / "files" / "tmp").iterdir())


def _plain_zip() -> bytes:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("readme.txt", "not an office file")
    return out.getvalue()


# --- search, statistics, export ---------------------------------------------------------------------------------


def test_search_and_filters(client: TestClient, person: Maker) -> None:
    operator = person("operator", PROVINCE)
    tag = unique("k")
    flood = open_incident(client, operator.headers, title=f"Ngập úng đường Hùng Vương {tag}", priority="high")
    tree = open_incident(client, operator.headers, unit=WARD_B, title=f"Cây đổ chắn đường {tag}")
    client.post(f"/api/cases/{tree['id']}/status", json={"status": "acknowledged"}, headers=operator.headers)

    def ids(query: str, words: str = "") -> list[str]:
        r = client.get(f"/api/cases?q={tag} {words}&{query}", headers=operator.headers)
        assert r.status_code == 200, r.text
        return [c["id"] for c in r.json()["items"]]

    assert ids("") == [tree["id"], flood["id"]]  # newest first
    assert ids("", "ngap ung") == [flood["id"]] == ids("", "NGẬP") == ids("", "hùng VUONG")
    assert ids("status=acknowledged") == [tree["id"]]
    assert ids("status=open&status=acknowledged") == [tree["id"], flood["id"]]
    assert ids("priority=high") == [flood["id"]]
    assert ids(f"unit={WARD_B}") == [tree["id"]]
    assert ids(f"unit={PROVINCE}") == [tree["id"], flood["id"]]
    assert ids("type=incident&overdue=false") == [tree["id"], flood["id"]]
    assert ids("overdue=true") == []
    soon = (utcnow() + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert ids(f"created_until={soon}") == [tree["id"], flood["id"]]
    assert ids(f"created_since={soon}") == []
    r = client.get(f"/api/cases?q={tag}&limit=1&offset=1", headers=operator.headers).json()
    assert r["total"] == 2 and [c["id"] for c in r["items"]] == [flood["id"]]
    assert client.get("/api/cases?type=meteor", headers=operator.headers).status_code == 422
    assert client.get("/api/cases?priority=asap", headers=operator.headers).status_code == 422
    assert client.get("/api/cases?unit=99999", headers=operator.headers).status_code == 422


def test_statistics_on_time_rate_and_mean_time(session_factory: sessionmaker[Session]) -> None:
    system = system_actor("test")
    ward, tag = OTHER_WARD, unique("s")
    agency = make_agency(session_factory, ward)
    t0 = utcnow() - timedelta(days=10)
    with transaction(session_factory) as session:
        def incident(priority: str = "normal") -> uuid.UUID:
            return service.open_case(session, actor=system, case_type="incident", title=f"Thống kê {tag}",
                                     unit_code=ward, priority=priority, owner_agency_id=agency, now=t0).id

        on_time, late, open_overdue, open_fresh = incident(), incident("critical"), incident("critical"), incident()
        service.change_status(session, actor=system, case_id=on_time, status="in_progress", now=t0)
        service.change_status(session, actor=system, case_id=on_time, status="resolved", now=t0 + timedelta(hours=2))
        service.change_status(session, actor=system, case_id=late, status="in_progress", now=t0)
        service.change_status(session, actor=system, case_id=late, status="resolved", now=t0 + timedelta(hours=6))
        service.change_status(session, actor=system, case_id=open_fresh, status="acknowledged", now=t0)
        session.get(Case, open_fresh).due_at = utcnow() + timedelta(days=1)
        stats = service.statistics(session, actor=system, filters=service.CaseFilter(unit=ward, q=tag),
                                   group_by="unit")
        by_agency = service.statistics(session, actor=system, filters=service.CaseFilter(q=tag), group_by="agency")
    (row,) = stats["items"]
    assert row["key"] == ward and row["name"] == "Phường Vũng Tàu"
    assert row["total"] == 4 and row["by_status"] == {"resolved": 2, "open": 1, "acknowledged": 1}
    assert row["resolved"] == 2 and row["resolved_on_time"] == 1 and row["on_time_rate"] == 50.0
    assert row["mean_resolution_hours"] == 4.0 and row["overdue_open"] == 1
    assert stats["totals"]["on_time_rate"] == 50.0 and stats["totals"]["mean_resolution_hours"] == 4.0
    assert by_agency["items"][0]["key"] == str(agency) and by_agency["items"][0]["total"] == 4
    assert open_overdue


def test_statistics_and_export_over_http(client: TestClient, person: Maker) -> None:
    operator = person("operator", PROVINCE)
    tag = unique("x")
    a = open_incident(client, operator.headers, title=f"=HYPERLINK(\"http://x\") Sạt lở đất {tag}")
    b = open_incident(client, operator.headers, unit=WARD_B, title=f"Cháy rừng {tag}", priority="critical")
    r = client.get(f"/api/cases/stats?q={tag}&group_by=unit", headers=operator.headers)
    assert r.status_code == 200, r.text
    assert {row["key"]: row["total"] for row in r.json()["items"]} == {WARD_A: 1, WARD_B: 1}
    assert client.get("/api/cases/stats?group_by=moon", headers=operator.headers).status_code == 422

    r = client.get(f"/api/cases/export?q={tag}&format=csv", headers=operator.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:5] == ["Mã", "Loại", "Lĩnh vực", "Tiêu đề", "Trạng thái"]
    assert [row[0] for row in rows[1:]] == [b["code"], a["code"]]
    assert rows[1][1] == "Sự cố" and rows[1][4] == "Mới" and rows[1][5] == "Khẩn cấp"
    assert rows[2][3].startswith("'=HYPERLINK")  # no formula injection

    r = client.get(f"/api/cases/export?q={tag}&format=xlsx", headers=operator.headers)
    assert r.status_code == 200 and "spreadsheetml" in r.headers["content-type"]
    sheet = load_workbook(io.BytesIO(r.content)).active
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values[0][0] == "Mã" and values[0][7] == "Đơn vị hành chính"
    assert [v[0] for v in values[1:]] == [b["code"], a["code"]]
    assert values[1][7] == "Phường Cam Ly - Đà Lạt"
    assert client.get("/api/cases/export?format=pdf", headers=operator.headers).status_code == 422


# --- SLA: escalation and response breaches ---------------------------------------------------------------------


def test_overdue_case_escalates_up_the_agency_chain(session_factory: sessionmaker[Session]) -> None:
    system = system_actor("test")
    parent = make_agency(session_factory, PROVINCE)
    child = make_agency(session_factory, PROVINCE, parent_id=parent)
    ward_committee = committee(session_factory, WARD_A)
    with transaction(session_factory) as session:
        case = service.open_case(session, actor=system, case_type="incident", title="Quá hạn", unit_code=WARD_A,
                                 owner_agency_id=child, priority="critical")
        service.change_status(session, actor=system, case_id=case.id, status="acknowledged")
        case_id, due = case.id, case.due_at
    assert due is not None
    with bus_messages() as seen, transaction(session_factory) as session:
        run_sla_checks(session, now=due - timedelta(minutes=1))
        assert session.get(Case, case_id).escalation_level == 0
        run_sla_checks(session, now=due + timedelta(minutes=1))
        run_sla_checks(session, now=due + timedelta(minutes=2))  # nothing new: level 1 already recorded
    mine = [m for m in seen if m.topic == "cases.escalated" and m.data["case_id"] == str(case_id)]
    assert len(mine) == 1 and mine[0].data["level"] == 1 and mine[0].data["unit_code"] == WARD_A
    assert mine[0].data["escalated_to_agency_id"] == str(parent)
    with transaction(session_factory) as session:
        run_sla_checks(session, now=due + timedelta(days=1, minutes=1))
        case = session.get(Case, case_id)
        assert case.escalation_level == 2
        # Past the owner's parent, the chain continues with the People's Committees up the unit tree.
        assert case.escalated_to_agency_id == ward_committee
        entries = session.scalars(select(CaseTimelineEntry).where(CaseTimelineEntry.case_id == case_id,
                                                                  CaseTimelineEntry.kind == "escalation")).all()
        assert [e.data["level"] for e in entries] == [1, 2]
        assert entries[0].data["to_agency_id"] == str(parent) and entries[0].actor_name == "sla"


def test_late_first_response_is_flagged_once(session_factory: sessionmaker[Session]) -> None:
    system = system_actor("test")
    with transaction(session_factory) as session:
        report = service.open_case(session, actor=system, case_type="citizen_report", title="Rác thải",
                                   unit_code=WARD_B)
        report_id, respond_by = report.id, report.first_response_due_at
    assert respond_by is not None
    with bus_messages() as seen, transaction(session_factory) as session:
        run_sla_checks(session, now=respond_by + timedelta(minutes=1))
        run_sla_checks(session, now=respond_by + timedelta(minutes=2))
    mine = [m.data for m in seen if m.topic == "cases.escalated" and m.data["case_id"] == str(report_id)]
    assert len(mine) == 1 and mine[0]["reason"] == "first_response" and mine[0]["unit_code"] == WARD_B
    with session_factory() as session:
        assert session.get(Case, report_id).first_response_breached is True


def test_scheduled_job_is_registered_and_runs(app, session_factory: sessionmaker[Session]) -> None:  # type: ignore[no-untyped-def]
    jobs = {j.name: j for group in app.state.plugin_manager.hook.saola_scheduled_jobs(settings=app.state.settings)
            for j in group or []}
    job = jobs["cases.sla"]
    assert job.interval_seconds == 60
    job.run(PackContext(settings=app.state.settings, session_factory=session_factory, now=utcnow()))


# --- case types as data -----------------------------------------------------------------------------------------


def test_case_types_endpoint_lists_flows_with_labels(client: TestClient, person: Maker) -> None:
    viewer = person("viewer", PROVINCE)
    r = client.get("/api/cases/types", headers=viewer.headers)
    assert r.status_code == 200
    types = {t["type"]: t for t in r.json()["types"]}
    assert {"incident", "citizen_report", "directive", "task"} <= set(types)
    assert types["citizen_report"]["statuses"]["forwarded"] == "Đã chuyển xử lý"
    assert types["incident"]["transitions"]["open"] == ["acknowledged", "in_progress", "cancelled"]
    assert r.json()["priorities"]["critical"] == "Khẩn cấp"


def test_a_pack_can_register_a_case_type(client: TestClient, person: Maker) -> None:
    flood = CaseTypeDefinition(
        type="test.flood_report", name_vi="Báo cáo lũ", name_en="Flood report", prefix="LU",
        initial_status="new", transitions={"new": ("checked",), "checked": ("archived",)},
        status_labels={"new": "Mới", "checked": "Đã kiểm tra", "archived": "Lưu trữ"},
        resolved_statuses=("checked", "archived"), closed_statuses=("archived",), sla_minutes={"*": 60},
        categories={"river": "Lũ sông", "flash": "Lũ quét"},
    )
    operator = person("operator", PROVINCE)
    with temporary_case_type(flood):
        assert "test.flood_report" in case_types()
        r = client.post("/api/cases", json={"case_type": "test.flood_report", "title": "Lũ sông Đa Nhim",
                                            "unit_code": WARD_A, "category": "river"}, headers=operator.headers)
        assert r.status_code == 201, r.text
        assert r.json()["code"].startswith("LU-") and r.json()["status_label"] == "Mới"
        r = client.post("/api/cases", json={"case_type": "test.flood_report", "title": "x", "unit_code": WARD_A,
                                            "category": "volcano"}, headers=operator.headers)
        assert r.status_code == 422 and ["body", "category"] in _locs(r)
    assert "test.flood_report" not in case_types()


def test_inconsistent_case_types_are_refused() -> None:
    broken = CaseTypeDefinition(type="broken", name_vi="Hỏng", name_en="Broken", prefix="HG", initial_status="a",
                                transitions={"a": ("b",)}, status_labels={"a": "A"}, resolved_statuses=("z",),
                                sla_minutes={"someday": 5})
    with pytest.raises(ValueError) as info:
        check_definition(broken)
    text = str(info.value)
    assert "unknown status 'z'" in text and "'b' has no label" in text and "unknown priority 'someday'" in text


def test_unknown_case_type_is_a_field_error() -> None:
    from saola.core.cases.flows import flow_for

    with pytest.raises(ValidationFailed) as info:
        flow_for("nope")
    assert info.value.errors[0].loc == ["body", "case_type"]
