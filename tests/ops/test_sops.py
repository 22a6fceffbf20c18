"""SOPs: templates of ordered steps; incidents get their checklist (also when opened from an alert); closing
waits for the required steps; who ticked each step is kept."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from saola.core.auth.context import system_actor
from saola.core.cases import service, sops
from saola.db.engine import transaction
from tests.conftest import unique
from tests.ops.test_cases_helpers import PROVINCE, WARD_A, WARD_B, Maker, bus_messages, make_person

STEPS = [
    {"title": "Xác minh thông tin cảnh báo", "owner_role": "operator", "expected_minutes": 10},
    {"title": "Thông báo cho UBND phường", "owner_role": "operator", "expected_minutes": 15},
    {"title": "Cử lực lượng đến hiện trường", "owner_role": "agency_staff", "expected_minutes": 60},
    {"title": "Chụp ảnh lưu hồ sơ", "owner_role": "agency_staff", "expected_minutes": 30, "required": False},
]


@pytest.fixture
def person(client: TestClient, session_factory: sessionmaker[Session], app) -> Maker:  # type: ignore[no-untyped-def]
    def _make(role: str, scope: str, agency_id: uuid.UUID | None = None):  # type: ignore[no-untyped-def]
        return make_person(client, session_factory, app.state.registry, role, scope, agency_id)

    return _make


def _template(client: TestClient, headers: dict[str, str], **over: Any) -> dict[str, Any]:
    body = {"name": f"Quy trình {unique()}", "case_type": "incident", "steps": STEPS, **over}
    r = client.post("/api/sops", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def test_operator_runs_an_incident_sop_to_closure(client: TestClient, person: Maker) -> None:
    operator = person("operator", PROVINCE)
    category = unique("env.air_")
    template = _template(client, operator.headers, category=category)
    assert [s["position"] for s in template["steps"]] == [1, 2, 3, 4] and template["version"] == 1
    r = client.post("/api/cases", json={"case_type": "incident", "title": "Khói bụi vượt ngưỡng", "unit_code": WARD_A,
                                        "category": category, "priority": "high"}, headers=operator.headers)
    assert r.status_code == 201
    case = r.json()
    assert case["data"]["sop"]["template_id"] == template["id"]
    checklist = client.get(f"/api/cases/{case['id']}/sop", headers=operator.headers).json()
    assert [s["title"] for s in checklist["steps"]] == [s["title"] for s in STEPS]
    assert checklist["done"] == 0 and checklist["total"] == 4 and checklist["required_open"] == 3
    steps = checklist["steps"]
    status_url = f"/api/cases/{case['id']}/status"
    client.post(status_url, json={"status": "in_progress"}, headers=operator.headers)

    with bus_messages() as seen:
        r = client.post(f"/api/cases/{case['id']}/sop/{steps[0]['id']}", json={"note": "Đã gọi trạm quan trắc"},
                        headers=operator.headers)
    assert r.status_code == 200 and r.json()["done_by"] == operator.username and r.json()["done_at"]
    assert [m.data["unit_code"] for m in seen if m.topic == "cases.sop_step"] == [WARD_A]

    r = client.post(status_url, json={"status": "resolved"}, headers=operator.headers)
    assert r.status_code == 409 and r.json()["code"] == "sop_incomplete"
    assert "Thông báo cho UBND phường" in r.json()["detail"] and "Cử lực lượng" in r.json()["detail"]
    assert [e["loc"] for e in r.json()["errors"]] == [["sop", 2], ["sop", 3]]
    assert "Chụp ảnh" not in r.json()["detail"]  # optional steps never block

    staff = person("agency_staff", WARD_A)
    for step in steps[1:3]:
        who = operator if step["owner_role"] == "operator" else staff
        r = client.post(f"/api/cases/{case['id']}/sop/{step['id']}", json={}, headers=who.headers)
        assert r.status_code == 200, r.text
    for status in ("resolved", "closed"):
        r = client.post(status_url, json={"status": status}, headers=operator.headers)
        assert r.status_code == 200, r.text
    checklist = client.get(f"/api/cases/{case['id']}/sop", headers=operator.headers).json()
    assert [s["done_by"] for s in checklist["steps"]] == [operator.username, operator.username, staff.username,
                                                          None]
    assert checklist["steps"][0]["note"] == "Đã gọi trạm quan trắc"
    kinds = [e["kind"] for e in client.get(f"/api/cases/{case['id']}/timeline", headers=operator.headers)
             .json()["items"]]
    assert kinds.count("sop_step") == 3
    # The checklist of a closed case is frozen.
    r = client.post(f"/api/cases/{case['id']}/sop/{steps[3]['id']}", json={}, headers=operator.headers)
    assert r.status_code == 409


def test_unticking_a_step_blocks_closing_again(client: TestClient, person: Maker) -> None:
    operator = person("operator", PROVINCE)
    category = unique("c")
    template = _template(client, operator.headers, category=category, steps=STEPS[:1])
    assert template["steps"][0]["required"] is True
    case = client.post("/api/cases", json={"case_type": "incident", "title": "x", "unit_code": WARD_A,
                                           "category": category}, headers=operator.headers).json()
    step = client.get(f"/api/cases/{case['id']}/sop", headers=operator.headers).json()["steps"][0]
    url = f"/api/cases/{case['id']}/sop/{step['id']}"
    client.post(url, json={"done": True}, headers=operator.headers)
    r = client.post(url, json={"done": False, "note": "Chưa xác minh xong"}, headers=operator.headers)
    assert r.status_code == 200 and r.json()["done_at"] is None and r.json()["done_by"] is None
    client.post(f"/api/cases/{case['id']}/status", json={"status": "in_progress"}, headers=operator.headers)
    assert client.post(f"/api/cases/{case['id']}/status", json={"status": "resolved"},
                       headers=operator.headers).status_code == 409
    other = client.post("/api/cases", json={"case_type": "incident", "title": "y", "unit_code": WARD_A},
                        headers=operator.headers).json()
    assert client.post(f"/api/cases/{other['id']}/sop/{step['id']}", json={},
                       headers=operator.headers).status_code == 404


def test_incident_from_an_alert_gets_the_most_specific_sop(client: TestClient, person: Maker,
                                                           session_factory: sessionmaker[Session]) -> None:
    operator = person("operator", PROVINCE)
    category = unique("station.silent_")
    with transaction(session_factory) as session:
        generic = {"id": str(sops.create_template(
            session, actor=system_actor(), name="Quy trình quốc gia", case_type="incident", category=category,
            unit_code="VN", steps=[sops.StepSpec(title="Báo cáo Trung tâm quốc gia")]).id)}
    provincial = _template(client, operator.headers, category=category, steps=STEPS[:2], unit_code=PROVINCE)
    ward = _template(client, operator.headers, category=category, steps=STEPS[:3], unit_code=WARD_B)
    with transaction(session_factory) as session:
        in_a = service.open_case(session, actor=system_actor("rules"), case_type="incident",
                                 title="Trạm mất tín hiệu", unit_code=WARD_A, alert_id=uuid.uuid4(),
                                 category=category)
        in_b = service.open_case(session, actor=system_actor("rules"), case_type="incident",
                                 title="Trạm mất tín hiệu", unit_code=WARD_B, alert_id=uuid.uuid4(),
                                 category=category)
        elsewhere = service.open_case(session, actor=system_actor("rules"), case_type="incident",
                                      title="Trạm mất tín hiệu", unit_code="26506", alert_id=uuid.uuid4(),
                                      category=category)
        found = {c.id: c.data["sop"]["template_id"] for c in (in_a, in_b, elsewhere)}
        _, steps = sops.checklist(session, actor=system_actor(), case_id=in_b.id)
    assert found == {in_a.id: provincial["id"], in_b.id: ward["id"], elsewhere.id: generic["id"]}
    assert len(steps) == 3


def test_editing_a_template_leaves_open_checklists_alone(client: TestClient, person: Maker) -> None:
    operator = person("operator", PROVINCE)
    category = unique("c")
    template = _template(client, operator.headers, category=category)
    case = client.post("/api/cases", json={"case_type": "incident", "title": "x", "unit_code": WARD_A,
                                           "category": category}, headers=operator.headers).json()
    r = client.patch(f"/api/sops/{template['id']}", json={"steps": STEPS[:1], "name": "Quy trình rút gọn"},
                     headers=operator.headers)
    assert r.status_code == 200 and r.json()["version"] == 2 and len(r.json()["steps"]) == 1
    assert client.get(f"/api/cases/{case['id']}/sop", headers=operator.headers).json()["total"] == 4
    r = client.patch(f"/api/sops/{template['id']}", json={"active": False}, headers=operator.headers)
    assert r.status_code == 200 and r.json()["active"] is False
    fresh = client.post("/api/cases", json={"case_type": "incident", "title": "x", "unit_code": WARD_A,
                                            "category": category}, headers=operator.headers).json()
    assert "sop" not in fresh["data"]
    listed = client.get("/api/sops?case_type=incident&include_inactive=true", headers=operator.headers).json()
    assert template["id"] in {t["id"] for t in listed}


def test_bad_templates_and_permissions(client: TestClient, person: Maker) -> None:
    operator = person("operator", PROVINCE)
    body = {"name": "Hỏng", "case_type": "incident", "steps": STEPS}
    r = client.post("/api/sops", json={**body, "steps": [{**STEPS[0], "owner_role": "wizard"}]},
                    headers=operator.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "steps", 0, "owner_role"]
    r = client.post("/api/sops", json={**body, "steps": [{**STEPS[0], "expected_minutes": 0}]},
                    headers=operator.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"][:3] == ["body", "steps", 0]
    r = client.post("/api/sops", json={**body, "steps": []}, headers=operator.headers)
    assert r.status_code == 422
    r = client.post("/api/sops", json={**body, "case_type": "meteor"}, headers=operator.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "case_type"]
    r = client.post("/api/sops", json={**body, "unit_code": "26506"}, headers=operator.headers)
    assert r.status_code == 403
    staff = person("agency_staff", WARD_A)
    assert client.post("/api/sops", json=body, headers=staff.headers).status_code == 403
    # A commune reads the province's SOP but may not edit it.
    provincial = _template(client, operator.headers)
    ward_operator = person("operator", WARD_A)
    assert client.get(f"/api/sops/{provincial['id']}", headers=staff.headers).status_code == 200
    r = client.patch(f"/api/sops/{provincial['id']}", json={"name": "x"}, headers=ward_operator.headers)
    assert r.status_code == 403
    outsider = person("operator", "79")
    assert client.get(f"/api/sops/{provincial['id']}", headers=outsider.headers).status_code == 404
    integrator = person("integrator", PROVINCE)
    assert client.post("/api/sops", json=body, headers=integrator.headers).status_code == 201
