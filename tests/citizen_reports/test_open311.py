"""Open311 GeoReport v2, read through the `georeport` client (JSON and XML) and written with httpx (it cannot POST)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import requests
from georeport import GeoReport
from sqlalchemy.orm import Session, sessionmaker

from saola.core.auth.context import system_actor
from saola.core.sources.service import create_source
from saola.db.engine import transaction
from tests.citizen_reports.conftest import EMAIL, NAME, PHONE, WARD, phone, place
from tests.conftest import unique


@pytest.fixture
def source_key(session_factory: sessionmaker[Session]) -> Callable[..., str]:
    """A source system's API key (the Open311 api_key), with its own scope and per-minute limit."""

    def _make(scope: str = "68", per_minute: int = 600, demo: bool = False) -> str:
        with transaction(session_factory) as session:
            _, key = create_source(session, actor=system_actor("test"), name=unique("o311-"), scope=scope,
                                   rate_limit_per_minute=per_minute, is_demo=demo)
        return key

    return _make


def post(live_url: str, key: str, fmt: str = "json", **fields: Any) -> httpx.Response:
    """POST /requests.{fmt} form-encoded, as an Open311 client app does."""
    lon, lat = place()
    form = {"api_key": key, "service_code": "lighting", "lat": str(lat), "long": str(lon),
            "description": "Đèn đường không sáng", "attribute[commune]": WARD, **fields}
    return httpx.post(f"{live_url}/open311/v2/requests.{fmt}", data={k: v for k, v in form.items() if v is not None})


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_services_through_georeport(live_url: str, fmt: str) -> None:
    client = GeoReport(f"{live_url}/open311/v2", output_format=fmt)
    services = client.get_service_list()
    codes = {s["service_code"] for s in services}
    assert {"traffic", "lighting", "trees", "tourism"} <= codes
    lighting = next(s for s in services if s["service_code"] == "lighting")
    assert lighting["service_name"] == "Chiếu sáng"
    assert str(lighting["metadata"]).lower() == "true" and lighting["type"] == "realtime"
    definition = client.get_service_definition("lighting")
    assert definition["service_code"] == "lighting"
    attributes = definition["attributes"]
    if fmt == "xml":
        attributes = attributes["attribute"]
    assert {a["code"] for a in attributes} == {"commune", "share_contact"}


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_post_then_read_back(live_url: str, source_key: Any, fmt: str, agencies: Any) -> None:
    key = source_key()
    own_phone = phone()
    r = post(live_url, key, fmt, first_name="Bí", last_name="Mật", phone=own_phone, email=EMAIL)
    assert r.status_code == 201, r.text
    if fmt == "json":
        created = r.json()[0]
    else:
        import xmltodict

        created = xmltodict.parse(r.content)["service_requests"]["request"]
    request_id = created["service_request_id"]
    assert request_id.startswith("PA-") and "PA-" in created["service_notice"]

    client = GeoReport(f"{live_url}/open311/v2", output_format=fmt)
    one = client.get_service_request(request_id)
    assert one["service_request_id"] == request_id and one["status"] == "open"
    assert one["service_code"] == "lighting" and one["address_id"] == WARD
    assert one["agency_responsible"] == "Sở Xây dựng"
    assert float(one["lat"]) == round(float(one["lat"]), 3)  # coarse, as on the public map
    listed = client.get_service_requests(service_code="lighting,trees", status="open")
    listed = [listed] if isinstance(listed, dict) else listed  # XML: one item comes back as a dict
    assert request_id in {x["service_request_id"] for x in listed}
    by_id = client.get_service_requests(service_request_id=request_id)
    by_id = [by_id] if isinstance(by_id, dict) else by_id
    assert [x["service_request_id"] for x in by_id] == [request_id]
    # georeport's XML mode cannot read an empty list (<service_requests/>), so ask with plain HTTP here.
    closed = httpx.get(f"{live_url}/open311/v2/requests.{fmt}", params={"status": "closed"})
    assert closed.status_code == 200 and request_id not in closed.text
    text = json.dumps([one, listed], ensure_ascii=False)
    assert own_phone not in text and EMAIL not in text and "Mật" not in text


def test_done_when_open311_report_is_handled_and_rated(live_url: str, source_key: Any, client: Any,
                                                       person: Any, agencies: Any) -> None:
    """The issue's acceptance: sent through Open311, on the operator's queue, forwarded, resolved, rated; the
    public view never shows who sent it."""
    r = post(live_url, source_key(), first_name=NAME, phone=PHONE, email=EMAIL,
             description="Đèn đường tắt cả dãy phố")
    assert r.status_code == 201, r.text
    request_id, tracking = r.json()[0]["service_request_id"], r.json()[0]["tracking_code"]

    operator = person("operator")
    queue = client.get("/api/cases", params={"type": "citizen_report", "status": "received"},
                       headers=operator.headers).json()["items"]
    case = next(c for c in queue if c["code"] == request_id)
    assert client.post(f"/api/citizen-reports/{case['id']}/forward", json={},
                       headers=operator.headers).json()["status"] == "forwarded"
    assert client.post(f"/api/citizen-reports/{case['id']}/resolve", json={"result": "Đã sửa tủ điện."},
                       headers=operator.headers).json()["status"] == "resolved"
    georeport = GeoReport(f"{live_url}/open311/v2")
    seen = georeport.get_service_request(request_id)
    assert seen["status"] == "closed" and "Đã sửa tủ điện." in seen["status_notes"]
    rated = client.post(f"/api/public/citizen-reports/{tracking}/rating", json={"rating": 4})
    assert rated.status_code == 200 and rated.json()["status"] == "rated"
    views = [georeport.get_service_request(request_id), rated.json(),
             client.get("/api/public/citizen-reports/map.geojson").json(),
             GeoReport(f"{live_url}/open311/v2", output_format="xml").get_service_request(request_id)]
    text = json.dumps(views, ensure_ascii=False)
    for secret in (NAME, PHONE, PHONE.replace(" ", ""), EMAIL):
        assert secret not in text


def errors_of(r: httpx.Response | requests.Response) -> list[dict]:
    """The specification's error list, from JSON or XML."""
    if "xml" in r.headers["content-type"]:
        import xmltodict

        error = xmltodict.parse(r.content)["errors"]["error"]
        return [{"code": int(error["code"]), "description": error["description"]}]
    return r.json()


@pytest.mark.parametrize("fields, status, words", [
    ({"api_key": "sk_000000000000_wrongwrongwrongwrongwrong"}, 403, "api_key"),
    ({"api_key": ""}, 400, "api_key"),
    ({"service_code": "aliens"}, 400, "category"),
    ({"service_code": None}, 400, "service_code"),
    ({"description": None}, 400, "description"),
    ({"lat": "north"}, 400, "lat"),
    ({"attribute[commune]": "99999"}, 400, "commune"),
    ({"attribute[colour]": "red"}, 400, "colour"),
    ({"attribute[share_contact]": "perhaps"}, 400, "share_contact"),
    ({"email": "nope"}, 400, "email"),
    ({"favourite": "x"}, 400, "favourite"),
])
@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_post_errors(live_url: str, source_key: Any, fields: dict, status: int, words: str, fmt: str) -> None:
    key = source_key()
    fields = {"api_key": key, **fields}
    r = post(live_url, fields.pop("api_key"), fmt, **fields)
    assert r.status_code == status, r.text
    error = errors_of(r)[0]
    assert error["code"] == status and words in error["description"]


def test_a_demo_source_key_files_nothing_outside_demo_mode(live_url: str, source_key: Any) -> None:
    # The test server runs with demo mode off, as production does: the demo's published keys must open nothing.
    description = f"Phản ánh từ nguồn demo {unique('d')}"
    r = post(live_url, source_key(demo=True), description=description)
    assert r.status_code == 403 and "api_key" in errors_of(r)[0]["description"]
    assert post(live_url, source_key(), description=f"{description} thật").status_code == 201
    listed = [x.get("description") for x in httpx.get(f"{live_url}/open311/v2/requests.json").json()]
    assert f"{description} thật" in listed and description not in listed


def test_source_scope_and_per_minute_limit(live_url: str, source_key: Any) -> None:
    elsewhere = source_key(scope="79")  # a source of Ho Chi Minh City cannot file reports in Lâm Đồng
    r = post(live_url, elsewhere)
    assert r.status_code == 403
    key = source_key(per_minute=2)
    assert [post(live_url, key).status_code for _ in range(2)] == [201, 201]
    refused = post(live_url, key)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
    assert errors_of(refused)[0]["code"] == 429


def test_open311_contact_limit(live_url: str, source_key: Any, variant: Any) -> None:
    key, own = source_key(), phone()
    codes = [post(live_url, key, phone=own).status_code for _ in range(6)]
    assert codes == [201] * 5 + [429]  # the default 5 a day per phone applies on every channel


@pytest.mark.parametrize("query, words", [
    ("start_date=yesterday", "start_date"),
    ("start_date=2026-01-01T00:00:00", "time zone"),
    ("start_date=2026-01-01T00:00:00Z&end_date=2026-06-01T00:00:00Z", "90 days"),
    ("start_date=2026-02-01T00:00:00Z&end_date=2026-01-01T00:00:00Z", "before"),
    ("status=pending", "status"),
    ("service_code=aliens", "service_code"),
    ("colour=red", "colour"),
])
def test_get_filter_errors(live_url: str, query: str, words: str) -> None:
    r = httpx.get(f"{live_url}/open311/v2/requests.xml?{query}")
    assert r.status_code == 400
    assert words in errors_of(r)[0]["description"]


def test_unknown_ids_formats_and_date_window(live_url: str, source_key: Any) -> None:
    r = httpx.get(f"{live_url}/open311/v2/requests/PA-1999-000001.xml")
    assert r.status_code == 404 and errors_of(r)[0]["code"] == 404
    assert httpx.get(f"{live_url}/open311/v2/services.yaml").status_code == 400
    assert httpx.get(f"{live_url}/open311/v2/services/aliens.json").status_code == 404
    created = post(live_url, source_key()).json()[0]["service_request_id"]
    now = datetime.now(UTC)
    client = GeoReport(f"{live_url}/open311/v2")
    inside = client.get_service_requests(start_date=(now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                         end_date=(now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert created in {x["service_request_id"] for x in inside}
    before = client.get_service_requests(start_date="2026-01-01T00:00:00+07:00",
                                         end_date="2026-01-02T00:00:00+07:00")
    assert created not in {x["service_request_id"] for x in before}


def test_xml_stays_well_formed_and_shared_names_stay_private(live_url: str, source_key: Any) -> None:
    r = post(live_url, source_key(), first_name="Hoàng", last_name="Vănchiasẻ",
             description="Tôi là Hoàng Vănchiasẻ,\x01 đèn hỏng\x07", **{"attribute[share_contact]": "true"})
    assert r.status_code == 201, r.text
    request_id = r.json()[0]["service_request_id"]
    one = GeoReport(f"{live_url}/open311/v2", output_format="xml").get_service_request(request_id)
    assert "đèn hỏng" in one["description"] and "Vănchiasẻ" not in one["description"]
