"""Staff's side: categories and routing as editable data, forwarding, scope and permission rules, statistics."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from saola.db.engine import transaction
from saola.db.types import utcnow
from saola.domains.citizen_reports import service
from tests.citizen_reports.conftest import OTHER_WARD, PROVINCE, WARD, place, submit
from tests.conftest import unique


@pytest.fixture
def category(client: Any, person: Any) -> str:
    """A fresh category of this test only (so routing and SLA changes touch no other test)."""
    code = unique("c_")
    r = client.post("/api/citizen-reports/categories", headers=person("operator").headers,
                    json={"code": code, "name_vi": "Thử nghiệm", "name_en": "Test", "default_agency_code": "so-xd"})
    assert r.status_code == 201, r.text
    return code


def case_of(client: Any, person: Any, report_code: str) -> dict:
    """The kernel case of a report (read as an admin)."""
    found = client.get("/api/cases", params={"type": "citizen_report", "q": report_code},
                       headers=person("admin", "VN").headers)
    return next(c for c in found.json()["items"] if c["code"] == report_code)


def test_category_sla_is_editable_and_applies_to_new_reports(client: Any, citizen: Any, person: Any,
                                                             category: str, agencies: Any) -> None:
    r = client.patch(f"/api/citizen-reports/categories/{category}", headers=person("operator").headers,
                     json={"answer_minutes": 2 * 24 * 60, "forward_minutes": 15})
    assert r.status_code == 200 and r.json()["answer_minutes"] == 2880
    case = case_of(client, person, submit(citizen(), category=category).json()["report_code"])
    created = datetime.fromisoformat(case["created_at"])
    assert datetime.fromisoformat(case["due_at"]) - created == timedelta(days=2)
    assert datetime.fromisoformat(case["first_response_due_at"]) - created == timedelta(minutes=15)
    # A retired category is refused at submission, with the field named.
    client.patch(f"/api/citizen-reports/categories/{category}", headers=person("operator").headers,
                 json={"active": False})
    r = submit(citizen(), category=category)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "category"]
    assert category not in [c["code"] for c in client.get("/api/public/citizen-reports/categories").json()]


@pytest.mark.parametrize("role", ["agency_staff", "viewer", "leader"])
def test_only_configurers_edit_categories_and_routes(client: Any, person: Any, role: str, category: str,
                                                     agencies: Any) -> None:
    headers = person(role).headers
    assert client.patch(f"/api/citizen-reports/categories/{category}", headers=headers,
                        json={"name_vi": "Đổi tên"}).status_code == 403
    assert client.post("/api/citizen-reports/categories", headers=headers,
                       json={"code": unique("c_"), "name_vi": "X"}).status_code == 403
    assert client.put("/api/citizen-reports/routes", headers=headers, json={
        "category": category, "unit_code": WARD, "agency_id": str(agencies.ward_committee)}).status_code == 403


def test_bad_category_edits(client: Any, person: Any, category: str) -> None:
    headers = person("operator").headers
    assert client.post("/api/citizen-reports/categories", headers=headers,
                       json={"code": category, "name_vi": "Trùng"}).status_code == 409
    assert client.patch("/api/citizen-reports/categories/nothing_here", headers=headers,
                        json={"name_vi": "X"}).status_code == 404
    r = client.patch(f"/api/citizen-reports/categories/{category}", headers=headers, json={"answer_minutes": 0})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "answer_minutes"]
    r = client.patch(f"/api/citizen-reports/categories/{category}", headers=headers, json={"name_vi": None})
    assert r.status_code == 422
    r = client.post("/api/citizen-reports/categories", headers=headers, json={"code": "Bad Code", "name_vi": "X"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "code"]


def test_routing_by_category_and_commune(client: Any, citizen: Any, person: Any, category: str,
                                         agencies: Any) -> None:
    operator = person("operator")
    # Default: the category's agency code, looked up along the unit path (Sở Xây dựng of the province).
    before = case_of(client, person, submit(citizen(), category=category).json()["report_code"])
    assert before["owner_agency_id"] == str(agencies.construction)
    r = client.put("/api/citizen-reports/routes", headers=operator.headers, json={
        "category": category, "unit_code": WARD, "agency_id": str(agencies.ward_committee)})
    assert r.status_code == 200, r.text
    route_id = r.json()["id"]
    in_ward = case_of(client, person, submit(citizen(), category=category).json()["report_code"])
    assert in_ward["owner_agency_id"] == str(agencies.ward_committee)
    other = case_of(client, person, submit(citizen(), category=category, unit_code=OTHER_WARD).json()["report_code"])
    assert other["owner_agency_id"] == str(agencies.construction)  # the route is for one ward only
    # An agency of another ward cannot be routed reports of this one; unknown agencies are named.
    r = client.put("/api/citizen-reports/routes", headers=operator.headers, json={
        "category": category, "unit_code": WARD, "agency_id": str(agencies.other_ward_committee)})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "agency_id"]
    r = client.put("/api/citizen-reports/routes", headers=operator.headers, json={
        "category": "aliens", "unit_code": WARD, "agency_id": str(agencies.ward_committee)})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "category"]
    assert route_id in [x["id"] for x in client.get("/api/citizen-reports/routes", headers=operator.headers).json()]
    assert client.delete(f"/api/citizen-reports/routes/{route_id}", headers=operator.headers).status_code == 204
    back = case_of(client, person, submit(citizen(), category=category).json()["report_code"])
    assert back["owner_agency_id"] == str(agencies.construction)


def test_route_outside_scope_is_refused(client: Any, person: Any, category: str, agencies: Any) -> None:
    ward_operator = person("operator", OTHER_WARD)
    r = client.put("/api/citizen-reports/routes", headers=ward_operator.headers, json={
        "category": category, "unit_code": WARD, "agency_id": str(agencies.ward_committee)})
    assert r.status_code in (403, 404)


def test_forward_to_a_chosen_agency_and_after_return(client: Any, citizen: Any, person: Any, agencies: Any) -> None:
    operator = person("operator")
    case = case_of(client, person, submit(citizen()).json()["report_code"])
    r = client.post(f"/api/citizen-reports/{case['id']}/forward", headers=operator.headers,
                    json={"agency_id": str(agencies.ward_committee), "note": "Phường xử lý"})
    assert r.status_code == 200 and r.json()["owner_agency_id"] == str(agencies.ward_committee)
    again = client.post(f"/api/citizen-reports/{case['id']}/forward", headers=operator.headers, json={})
    assert again.status_code == 409
    ward_staff = person("agency_staff", WARD, agency_id=agencies.ward_committee)
    r = client.post(f"/api/cases/{case['id']}/status", headers=ward_staff.headers,
                    json={"status": "returned", "reason": "Thuộc Sở Xây dựng"})
    assert r.status_code == 200
    r = client.post(f"/api/citizen-reports/{case['id']}/forward", headers=operator.headers,
                    json={"agency_id": str(agencies.construction)})
    assert r.status_code == 200 and r.json()["status"] == "forwarded"
    assert r.json()["owner_agency_name"] == "Sở Xây dựng"


def test_scope_and_permissions_on_reports(client: Any, citizen: Any, person: Any, agencies: Any) -> None:
    case = case_of(client, person, submit(citizen()).json()["report_code"])
    outsider = person("agency_staff", OTHER_WARD, agency_id=agencies.other_ward_committee)
    assert client.get(f"/api/citizen-reports/{case['id']}", headers=outsider.headers).status_code == 404
    assert client.post(f"/api/citizen-reports/{case['id']}/forward", headers=outsider.headers,
                       json={}).status_code == 404
    assert client.post(f"/api/citizen-reports/{case['id']}/resolve", headers=outsider.headers,
                       json={"result": "x"}).status_code == 404
    other_province = person("operator", "79")
    assert client.get(f"/api/citizen-reports/{case['id']}", headers=other_province.headers).status_code == 404
    viewer = person("viewer")
    assert client.get(f"/api/citizen-reports/{case['id']}", headers=viewer.headers).status_code == 200
    assert client.post(f"/api/citizen-reports/{case['id']}/forward", headers=viewer.headers,
                       json={}).status_code == 403
    assert client.post(f"/api/citizen-reports/{case['id']}/resolve", headers=viewer.headers,
                       json={"result": "x"}).status_code == 403
    assert client.get(f"/api/citizen-reports/{case['id']}").status_code == 401
    # Not every case is a citizen report.
    incident = client.post("/api/cases", headers=person("operator").headers,
                           json={"case_type": "incident", "title": "Sự cố", "unit_code": WARD}).json()
    assert client.get(f"/api/citizen-reports/{incident['id']}",
                      headers=person("operator").headers).status_code == 404


def test_resolve_needs_a_result_and_the_right_status(client: Any, citizen: Any, person: Any, agencies: Any) -> None:
    operator = person("operator")
    case = case_of(client, person, submit(citizen()).json()["report_code"])
    r = client.post(f"/api/citizen-reports/{case['id']}/resolve", headers=operator.headers, json={"result": "x"})
    assert r.status_code == 409  # still 'received': forward it first
    client.post(f"/api/citizen-reports/{case['id']}/forward", headers=operator.headers, json={})
    r = client.post(f"/api/citizen-reports/{case['id']}/resolve", headers=operator.headers, json={"result": "  "})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "result"]
    r = client.post(f"/api/citizen-reports/{case['id']}/resolve", headers=operator.headers, json=["x"])
    assert r.status_code == 422
    r = client.post(f"/api/citizen-reports/{case['id']}/resolve",
                    headers={**operator.headers, "Content-Type": "text/plain"}, content=b"done")
    assert r.status_code == 415


def test_statistics_map_and_on_time_rate(client: Any, settings: Any, session_factory: Any, agencies: Any) -> None:
    """Three reports of a category in one ward: one on time and rated 5, one late rated 2, one open past due."""
    from saola.core.auth.context import system_actor

    code = unique("s_")
    with transaction(session_factory) as session:
        service.save_category(session, actor=system_actor("test"), code=code, create=True,
                              values={"name_vi": "Thống kê", "default_agency_code": "ubnd"})
    now = utcnow()
    actor = system_actor("test")
    with transaction(session_factory) as session:
        ids = []
        for days_ago in (10, 9, 7):
            lon, lat = place()
            result = service.submit(session, settings=settings, channel="api", now=now - timedelta(days=days_ago),
                                    data=service.Submission(description="Thống kê", category=code, lon=lon, lat=lat,
                                                            unit_code=WARD))
            ids.append((result.case.id, result.submission.tracking_code, days_ago))
        for (case_id, tracking, days_ago), (resolve_after, rating) in zip(ids, [(2, 5), (6, 2), (None, None)],
                                                                          strict=True):
            start = now - timedelta(days=days_ago)
            service.forward(session, actor=actor, case_id=case_id, now=start + timedelta(minutes=3))
            if resolve_after is None:
                continue
            at = start + timedelta(days=resolve_after)
            service.resolve(session, actor=actor, settings=settings, case_id=case_id, result="Xong", now=at)
            service.rate(session, tracking_code=tracking, rating=rating, now=at + timedelta(hours=1))
    stats = client.get("/api/public/citizen-reports/stats", params={"unit": WARD}).json()
    mine = next(c for c in stats["by_category"] if c["code"] == code)
    assert mine["count"] == 3 and mine["name_vi"] == "Thống kê"
    assert any(c["code"] == WARD for c in stats["by_commune"])
    assert {s["status"] for s in stats["by_status"]} >= {"rated", "forwarded"}
    ward = next(a for a in stats["agencies"] if a["agency_id"] == str(agencies.ward_committee))
    assert ward["handled"] >= 2 and ward["handled_on_time"] >= 1 and ward["overdue_open"] >= 1
    assert ward["on_time_rate"] == round(100 * ward["handled_on_time"] / ward["handled"], 1)
    assert stats["satisfaction"]["distribution"]["5"] >= 1 and stats["satisfaction"]["distribution"]["2"] >= 1
    assert stats["satisfaction"]["average"] is not None
    # Only this category, on its own: exact numbers.
    with session_factory() as session:
        exact = service.statistics(session, unit=WARD, since=now - timedelta(days=11))
    assert next(c for c in exact["by_category"] if c["code"] == code)["count"] == 3
    features = client.get("/api/public/citizen-reports/map.geojson", params={"category": code}).json()["features"]
    assert len(features) == 3 and sum(f["properties"]["overdue"] for f in features) == 1
    assert client.get("/api/public/citizen-reports/map.geojson", params={"bbox": "1,2,3"}).status_code == 422
    assert client.get("/api/public/citizen-reports/map.geojson", params={"status": "nope"}).status_code == 422
    assert client.get("/api/public/citizen-reports/stats", params={"unit": "99999"}).status_code == 422
    assert client.get("/api/public/citizen-reports/stats", params={"unit": PROVINCE}).status_code == 200


def test_kernel_open_case_refuses_a_past_response_deadline(session_factory: Any) -> None:
    """The small kernel addition this pack needs: open_case(first_response_due_at=...) checks it like due_at."""
    from saola.core.auth.context import system_actor
    from saola.core.cases.service import open_case
    from saola.core.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as refused, transaction(session_factory) as session:
        open_case(session, actor=system_actor("test"), case_type="citizen_report", title="x", unit_code=WARD,
                  first_response_due_at=utcnow() - timedelta(minutes=1))
    assert refused.value.errors[0].loc == ["body", "first_response_due_at"]
