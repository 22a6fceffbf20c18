"""A report from submission to rating, through the public doors and the operators' ones, and what each side sees."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta
from typing import Any

from PIL import Image
from sqlalchemy import func, select

from saola.core.cases.models import Case
from saola.core.cases.sla import run_sla_checks
from saola.db.engine import transaction
from saola.db.types import utcnow
from saola.domains.citizen_reports import service
from saola.domains.citizen_reports.models import ReportSubmission
from tests.citizen_reports.conftest import EMAIL, NAME, PHONE, WARD, jpeg_with_gps, phone, place, png, report, submit


def secrets_absent(text: str, *secrets: str) -> None:
    """None of the reporter's details appear in a public answer (phone also without its spaces)."""
    for secret in secrets:
        assert secret not in text
        assert secret.replace(" ", "") not in text


def test_categories_are_data_in_order(client: Any) -> None:
    r = client.get("/api/public/citizen-reports/categories")
    assert r.status_code == 200
    codes = [c["code"] for c in r.json()]
    for code in ("traffic", "water", "trees", "lighting", "electricity", "telecom", "public_transport",
                 "environment", "urban_order", "health", "tourism"):
        assert code in codes
    assert codes.index("traffic") < codes.index("tourism")
    assert all(c["name_vi"] and c["name_en"] for c in r.json())


def test_report_from_submission_to_rating(client: Any, citizen: Any, person: Any, agencies: Any,
                                          session_factory: Any) -> None:
    operator = person("operator")
    staff = person("agency_staff", agency_id=agencies.construction)
    lon, lat = place()
    r = submit(citizen(), photos=[("a.jpg", jpeg_with_gps(), "image/jpeg"), ("b.png", png(), "image/png")],
               description=f"Đèn hỏng. Gọi tôi: {PHONE}", lon=str(lon), lat=str(lat), contact_name=NAME,
               contact_phone=PHONE, contact_email=EMAIL, share_contact="false")
    assert r.status_code == 201, r.text
    accepted = r.json()
    code, report_code = accepted["tracking_code"], accepted["report_code"]
    assert accepted["status"] == "received" and accepted["status_label_vi"] == "Đã tiếp nhận"
    assert not accepted["linked"] and report_code.startswith("PA-")

    # The operator's queue is the kernel's case search.
    queue = client.get("/api/cases", params={"type": "citizen_report", "status": "received"},
                       headers=operator.headers).json()
    case = next(c for c in queue["items"] if c["code"] == report_code)
    assert case["category"] == "lighting" and case["unit_code"] == WARD
    assert case["owner_agency_id"] == str(agencies.construction)  # lighting goes to Sở Xây dựng by default
    # Answer within 5 days, forward within 5 minutes (the category's SLA), counted from the case's creation.
    created = datetime.fromisoformat(case["created_at"])
    assert datetime.fromisoformat(case["due_at"]) - created == timedelta(days=5)
    assert datetime.fromisoformat(case["first_response_due_at"]) - created == timedelta(minutes=5)
    # Agencies read the case: the phone typed in the text is masked there, since the reporter did not share it.
    secrets_absent(json.dumps(case, ensure_ascii=False), PHONE, EMAIL, NAME)

    # The IOC sees the contact; the handling agency does not.
    seen = client.get(f"/api/citizen-reports/{case['id']}", headers=operator.headers).json()
    assert seen["submissions"][0]["contact"] == {"name": NAME, "phone": PHONE, "email": EMAIL}
    assert seen["lon"] == lon and seen["lat"] == lat
    photos = seen["photos"]
    assert len(photos) == 2 and photos[0]["location_removed"] is True and photos[1]["location_removed"] is False
    agency_view = client.get(f"/api/citizen-reports/{case['id']}", headers=staff.headers)
    assert agency_view.status_code == 200
    assert agency_view.json()["submissions"][0]["contact"] is None
    secrets_absent(agency_view.text, PHONE, EMAIL, NAME)

    # The stored photo has no EXIF at all (position, owner), and stands upright.
    stored = client.get(photos[0]["url"], headers=staff.headers)
    assert stored.status_code == 200 and stored.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(stored.content))
    assert dict(image.getexif()) == {}
    assert NAME.encode() not in stored.content
    assert image.size == (32, 64)  # the 64x32 photo had Orientation 6: turned before the tag was dropped

    r = client.post(f"/api/citizen-reports/{case['id']}/forward", json={}, headers=operator.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "forwarded"
    r = client.post(f"/api/citizen-reports/{case['id']}/resolve", headers=staff.headers,
                    data={"result": "Đã thay bóng đèn."}, files=[("photos", ("done.png", png(), "image/png"))])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "resolved"

    public = client.get(f"/api/public/citizen-reports/{code}")
    assert public.status_code == 200
    view = public.json()
    assert view["status"] == "resolved" and view["can_rate"]
    assert view["result"]["text"] == "Đã thay bóng đèn." and len(view["result"]["photos"]) == 1
    assert [s["status"] for s in view["timeline"]] == ["received", "forwarded", "in_progress", "resolved"]
    assert view["handling_agency"] == "Sở Xây dựng"
    assert (view["lon"], view["lat"]) == (round(lon, 3), round(lat, 3))  # coarse: tracking codes get passed around
    assert client.get(view["result"]["photos"][0]).status_code == 200
    assert client.get(view["photos"][0]).status_code == 200  # report photos through the tracking code
    report_photo = view["photos"][0].rsplit("/", 1)[1]
    assert client.get(f"/api/public/citizen-reports/photos/{report_photo}").status_code == 404  # not publicly
    secrets_absent(public.text, PHONE, EMAIL, NAME)

    r = client.post(f"/api/public/citizen-reports/{code}/rating", json={"rating": 5, "comment": "Cảm ơn!"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "rated" and r.json()["rating"] == 5 and not r.json()["is_open"]
    again = client.post(f"/api/public/citizen-reports/{code}/rating", json={"rating": 1})
    assert again.status_code == 409

    # Public map and Open311 never show who sent it.
    features = client.get("/api/public/citizen-reports/map.geojson").json()["features"]
    mine = next(f for f in features if f["id"] == report_code)
    assert mine["properties"]["status"] == "rated"
    assert mine["geometry"]["coordinates"] == [round(lon, 3), round(lat, 3)]
    assert set(mine["properties"]) == {"code", "category", "category_name", "status", "status_label",
                                       "created_at", "overdue", "unit_code"}
    open311 = client.get(f"/open311/v2/requests/{report_code}.json")
    assert open311.json()[0]["status"] == "closed"
    for text in (json.dumps(features, ensure_ascii=False), open311.text):
        secrets_absent(text, PHONE, EMAIL, NAME)


def test_shared_contact_is_shown_to_the_agency(client: Any, citizen: Any, person: Any, agencies: Any) -> None:
    staff = person("agency_staff", agency_id=agencies.construction)
    own_phone = phone()
    r = submit(citizen(), contact_name="Lê Văn Đồngý", contact_phone=own_phone, share_contact="true")
    assert r.status_code == 201, r.text
    case = _case_id(client, person, r.json()["report_code"])
    seen = client.get(f"/api/citizen-reports/{case}", headers=staff.headers).json()
    assert seen["submissions"][0]["contact"]["phone"] == own_phone
    public = client.get(f"/api/public/citizen-reports/{r.json()['tracking_code']}").text
    assert own_phone not in public and "Đồngý" not in public  # consent reaches the agency, never the public


def _case_id(client: Any, person: Any, report_code: str) -> str:
    admin = person("admin", "VN")
    found = client.get("/api/cases", params={"type": "citizen_report", "q": report_code}, headers=admin.headers)
    return next(c["id"] for c in found.json()["items"] if c["code"] == report_code)


def test_json_submission_and_reopen(client: Any, citizen: Any, person: Any, agencies: Any) -> None:
    lon, lat = place()
    body = {"description": "Cống nghẹt, nước tràn.", "category": "water", "lon": lon, "lat": lat}
    r = citizen().post("/api/public/citizen-reports", json=body)
    assert r.status_code == 201, r.text
    code = r.json()["tracking_code"]
    case = _case_id(client, person, r.json()["report_code"])
    operator = person("operator")
    assert client.post(f"/api/citizen-reports/{case}/forward", json={"note": "Chuyển Sở Xây dựng"},
                       headers=operator.headers).status_code == 200
    r = client.post(f"/api/citizen-reports/{case}/resolve", json={"result": "Đã nạo vét."}, headers=operator.headers)
    assert r.status_code == 200, r.text
    r = client.post(f"/api/public/citizen-reports/{code}/reopen", json={"reason": "Vẫn còn ngập."})
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["status"] == "reopened" and view["timeline"][-1]["note"] == "Vẫn còn ngập."
    assert client.post(f"/api/public/citizen-reports/{code}/rating", json={"rating": 4}).status_code == 409
    # Reopened work goes back in progress and is resolved again.
    r = client.post(f"/api/citizen-reports/{case}/resolve", json={"result": "Đã nạo vét lần 2."},
                    headers=operator.headers)
    assert r.status_code == 200 and r.json()["status"] == "resolved"


def test_rejected_and_returned_need_a_reason_and_returned_reason_stays_internal(
        client: Any, citizen: Any, person: Any) -> None:
    operator = person("operator")
    r = submit(citizen())
    code = r.json()["tracking_code"]
    case = _case_id(client, person, r.json()["report_code"])
    assert client.post(f"/api/cases/{case}/status", json={"status": "rejected"},
                       headers=operator.headers).status_code == 422
    client.post(f"/api/citizen-reports/{case}/forward", json={}, headers=operator.headers)
    r = client.post(f"/api/cases/{case}/status", json={"status": "returned", "reason": "Không thuộc thẩm quyền XD"},
                    headers=operator.headers)
    assert r.status_code == 200
    view = client.get(f"/api/public/citizen-reports/{code}").json()
    assert view["status"] == "returned" and "thẩm quyền" not in json.dumps(view, ensure_ascii=False)
    r = client.post(f"/api/cases/{case}/status", json={"status": "rejected", "reason": "Trùng nội dung đã xử lý"},
                    headers=operator.headers)
    assert r.status_code == 200
    view = client.get(f"/api/public/citizen-reports/{code}").json()
    assert view["status"] == "rejected" and view["timeline"][-1]["note"] == "Trùng nội dung đã xử lý"
    features = client.get("/api/public/citizen-reports/map.geojson").json()["features"]
    assert r.json()["code"] not in {f["id"] for f in features}  # rejected reports stay off the public map


def test_overdue_report_escalates_and_shows_as_overdue(client: Any, settings: Any, session_factory: Any,
                                                       agencies: Any) -> None:
    received = utcnow() - timedelta(days=6)
    lon, lat = place()
    with transaction(session_factory) as session:
        result = service.submit(session, settings=settings, channel="api", now=received, data=service.Submission(
            description="Cây đổ chắn đường", category="trees", lon=lon, lat=lat, unit_code=WARD))
        code, case_id = result.submission.tracking_code, result.case.id
    with transaction(session_factory) as session:
        counts = run_sla_checks(session, now=utcnow())
    assert counts["escalated"] >= 1
    view = client.get(f"/api/public/citizen-reports/{code}").json()
    assert view["overdue"] is True
    assert "overdue" in [s["status"] for s in view["timeline"]]
    with session_factory() as session:
        case = session.get(Case, case_id)
        assert case.escalation_level >= 1 and case.first_response_breached
        assert case.owner_agency_id == agencies.ward_committee  # trees: the ward's People's Committee


def test_nothing_is_written_when_a_photo_is_refused(client: Any, citizen: Any, session_factory: Any) -> None:
    with session_factory() as session:
        before = (session.scalar(select(func.count()).select_from(Case)),
                  session.scalar(select(func.count()).select_from(ReportSubmission)))
    r = submit(citizen(), photos=[("ok.png", png(), "image/png"), ("bad.jpg", b"MZ\x90\x00 not a photo", "image/jpeg")])
    assert r.status_code == 415
    assert r.json()["errors"][0]["loc"] == ["body", "photos", 1]
    with session_factory() as session:
        after = (session.scalar(select(func.count()).select_from(Case)),
                 session.scalar(select(func.count()).select_from(ReportSubmission)))
    assert after == before


def test_unknown_tracking_codes_are_404(client: Any) -> None:
    assert client.get("/api/public/citizen-reports/PA-22222-22222").status_code == 404
    assert client.get("/api/public/citizen-reports/nonsense").status_code == 404
    assert client.post("/api/public/citizen-reports/PA-22222-22222/rating", json={"rating": 3}).status_code == 404


def test_kernel_actor_names_never_the_reporter(client: Any, citizen: Any, person: Any) -> None:
    r = submit(citizen(), contact_name=NAME, contact_phone=phone())
    case = _case_id(client, person, r.json()["report_code"])
    admin = person("admin", "VN")
    timeline = client.get(f"/api/cases/{case}/timeline", headers=admin.headers).text
    read = client.get(f"/api/cases/{case}", headers=admin.headers).text
    assert NAME not in timeline and NAME not in read
    assert "Người dân" in timeline


def test_report_without_commune_goes_to_the_default_unit(citizen: Any, client: Any, person: Any) -> None:
    data = report()
    del data["unit_code"]
    r = citizen().post("/api/public/citizen-reports", data=data)
    assert r.status_code == 201
    case = _case_id(client, person, r.json()["report_code"])
    admin = person("admin", "VN")
    assert client.get(f"/api/cases/{case}", headers=admin.headers).json()["unit_code"] == "68"
