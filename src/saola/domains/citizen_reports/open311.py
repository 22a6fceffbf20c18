"""Open311 GeoReport v2 under /open311/v2: services, service definitions, requests (GET and POST), one request.

Every resource answers in XML (required by the specification) and JSON, chosen by the path's extension.
Errors are the specification's list [{"code", "description"}] (<errors><error>... in XML). Service requests
are citizen report cases: service_request_id is the case code (PA-2026-000123), status is open or closed.
POST needs the api_key of a Saola source system (the kernel's sources); it is answered at once with the
service_request_id, so there is no tokens endpoint. The reporter's contact is kept private like any other
report's: GET answers never carry it, and coordinates are rounded as on the public map.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlalchemy.orm import Session

from saola.core.cases.models import Case
from saola.core.errors import DomainError, Unauthorized, ValidationFailed
from saola.core.sources.service import source_by_key
from saola.core.units.models import Agency
from saola.db.types import utcnow
from saola.deps import SessionDep, SettingsDep
from saola.domains.citizen_reports import service
from saola.domains.citizen_reports.api import in_transaction, remote_ip
from saola.domains.citizen_reports.models import ReportCategory, ReportDetail, ReportPhoto

router = APIRouter(prefix="/open311/v2", tags=["Open311 GeoReport v2"])

# Each path answers JSON or XML by its extension ({fmt}); OpenAPI describes both bodies.
BODIES: dict[int | str, dict[str, Any]] = {200: {"content": {
    "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
    "text/xml": {"schema": {"type": "string", "format": "xml"}},
}}}

FORMATS = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
MAX_RANGE = timedelta(days=90)
MAX_IDS = 100
MAX_RESULTS = 1000
POST_FIELDS = {"api_key", "jurisdiction_id", "service_code", "lat", "long", "address_string", "address_id",
               "email", "device_id", "account_id", "first_name", "last_name", "phone", "description", "media_url"}
ATTRIBUTES = [
    {"variable": True, "code": "commune", "datatype": "string", "required": False,
     "datatype_description": "Mã xã/phường (5 chữ số), ví dụ 24781", "order": 1,
     "description": "Xã/phường nơi xảy ra sự việc / commune of the problem", "values": []},
    {"variable": True, "code": "share_contact", "datatype": "singlevaluelist", "required": False,
     "datatype_description": "", "order": 2,
     "description": "Cho phép đơn vị xử lý xem thông tin liên hệ / let the handling agency see the contact",
     "values": [{"key": "false", "name": "Không / No"}, {"key": "true", "name": "Có / Yes"}]},
]


class Open311Error(Exception):
    """An error answered in the specification's format."""

    def __init__(self, code: int, description: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.headers = code, description, headers or {}


# --- rendering -------------------------------------------------------------------------------------------------


def _xml_value(parent: ET.Element, key: str, value: Any) -> None:
    if isinstance(value, list):
        holder = ET.SubElement(parent, key)
        child = key[:-1] if key.endswith("s") else "item"
        for item in value:
            if isinstance(item, dict):
                node = ET.SubElement(holder, child)
                for k, v in item.items():
                    _xml_value(node, k, v)
            else:
                ET.SubElement(holder, child).text = _text(item)
        return
    ET.SubElement(parent, key).text = _text(value)


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    # XML 1.0 cannot carry most control characters, even escaped: drop them rather than write a broken document.
    return _NOT_XML.sub("", str(value))


def render(fmt: str, root: str, item: str | None, payload: Any, status: int = 200,
           headers: dict[str, str] | None = None) -> Response:
    """JSON as is; XML as <root><item>...</item></root> for lists, <root>...</root> for one object."""
    if fmt == "json":
        return Response(orjson.dumps(payload), status_code=status, media_type=FORMATS["json"], headers=headers)
    element = ET.Element(root)
    rows: Iterable[dict[str, Any]] = payload if isinstance(payload, list) else [payload]
    for row in rows:
        node = ET.SubElement(element, item) if item else element
        for key, value in row.items():
            _xml_value(node, key, value)
    body = b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(element, encoding="utf-8", xml_declaration=False)
    return Response(body, status_code=status, media_type=FORMATS["xml"], headers=headers)


def error(fmt: str, code: int, description: str, headers: dict[str, str] | None = None) -> Response:
    """The specification's error list."""
    return render(fmt if fmt in FORMATS else "json", "errors", "error", [{"code": code, "description": description}],
                  status=code, headers=headers)


def answer(fmt: str, produce: Callable[[], Response]) -> Response:
    """Run a handler, turning domain errors into Open311 errors in the asked format."""
    if fmt not in FORMATS:
        return error("json", 400, f"unknown format {fmt!r}: use .json or .xml")
    try:
        return produce()
    except Open311Error as exc:
        return error(fmt, exc.code, exc.description, exc.headers)
    except service.TooManyReports as exc:
        return error(fmt, 429, exc.message, {"Retry-After": str(exc.retry_after)})
    except Unauthorized:
        return error(fmt, 403, "invalid api_key")
    except ValidationFailed as exc:
        where = "; ".join(f"{_field(e.loc)}: {e.msg}" for e in exc.errors[:5])
        return error(fmt, 400, f"{exc.message}" + (f" ({where})" if where and where not in exc.message else ""))
    except DomainError as exc:
        return error(fmt, exc.status_code if exc.status_code != 422 else 400, exc.message)


OPEN311_NAMES = {"lon": "long", "address": "address_string", "unit_code": "attribute[commune]",
                 "contact_phone": "phone", "contact_email": "email", "contact_name": "first_name"}


def _field(loc: list[str | int]) -> str:
    name = str(loc[-1]) if loc else ""
    return OPEN311_NAMES.get(name, name)


def local_time(value: datetime | None, tz: str) -> str | None:
    """A W3C date-time in the configured time zone (times are stored in UTC)."""
    return value.astimezone(ZoneInfo(tz)).isoformat(timespec="seconds") if value else None


# --- services -----------------------------------------------------------------------------------------------------


def _service(category: ReportCategory) -> dict[str, Any]:
    return {"service_code": category.code, "service_name": category.name_vi,
            "description": f"{category.name_vi} / {category.name_en}", "metadata": True, "type": "realtime",
            "keywords": category.name_en.lower(), "group": "Phản ánh hiện trường"}


@router.get("/services.{fmt}", responses=BODIES, summary="Service list (the report categories)")
def services(fmt: str, session: SessionDep) -> Response:
    """Every active category as a service."""
    return answer(fmt, lambda: render(fmt, "services", "service",
                                      [_service(c) for c in service.list_categories(session)]))


@router.get("/services/{service_code}.{fmt}", responses=BODIES, summary="Service definition")
def service_definition(service_code: str, fmt: str, session: SessionDep) -> Response:
    """The optional attributes a request of this service may carry: the commune and consent to share contact."""

    def produce() -> Response:
        category = session.get(ReportCategory, service_code)
        if category is None or not category.active:
            raise Open311Error(404, f"unknown service_code {service_code!r}")
        return render(fmt, "service_definition", None, {"service_code": category.code, "attributes": ATTRIBUTES})

    return answer(fmt, produce)


# --- requests -----------------------------------------------------------------------------------------------------


def _status(case: Case) -> str:
    return "open" if case.is_open else "closed"


def _notes(case: Case, detail: ReportDetail | None) -> str:
    label = service.public_status_label(case)
    if case.status in ("resolved", "rated") and detail and detail.result_text:
        return f"{label}: {service.mask_personal(detail.result_text)}"
    return label


def request_row(session: Session, case: Case, detail: ReportDetail | None, *, settings: Any,
                names: dict[str, str], agencies: dict[Any, str], reporters: tuple[str, ...] = ()) -> dict[str, Any]:
    """One service request as the specification shapes it; no person, coordinates rounded."""
    decimals = settings.citizen_reports_public_decimals
    media = None
    if detail is not None:
        first = session.scalar(select(ReportPhoto.attachment_id).where(
            ReportPhoto.case_id == case.id, ReportPhoto.kind == "result").order_by(ReportPhoto.created_at).limit(1))
        media = f"/api/public/citizen-reports/photos/{first}" if first else None
    description = "" if case.status == "rejected" else service.mask_personal(case.description, reporters)
    return {
        "service_request_id": case.code, "status": _status(case), "status_notes": _notes(case, detail),
        "service_name": names.get(case.category, case.category), "service_code": case.category,
        "description": description, "agency_responsible": agencies.get(case.owner_agency_id, ""),
        "service_notice": "", "requested_datetime": local_time(case.created_at, settings.timezone),
        "updated_datetime": local_time(case.updated_at, settings.timezone),
        "expected_datetime": local_time(case.due_at, settings.timezone),
        "address": detail.address if detail else "", "address_id": case.unit_code, "zipcode": "",
        "lat": service.coarse(detail.lat, decimals) if detail else None,
        "long": service.coarse(detail.lon, decimals) if detail else None,
        "media_url": media,
    }


def _rows(session: Session, cases: list[Case], settings: Any) -> list[dict[str, Any]]:
    ids = [c.id for c in cases]
    details = {d.case_id: d for d in session.scalars(select(ReportDetail).where(ReportDetail.case_id.in_(ids)))}
    names = {c.code: c.name_vi for c in service.list_categories(session, include_inactive=True)}
    owners = {c.owner_agency_id for c in cases if c.owner_agency_id}
    agencies = (dict(session.execute(select(Agency.id, Agency.name).where(Agency.id.in_(owners))).all())
                if owners else {})
    reporters = service.reporter_strings(session, ids)
    return [request_row(session, c, details.get(c.id), settings=settings, names=names, agencies=agencies,
                        reporters=reporters[c.id]) for c in cases]


def _date(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise Open311Error(400, f"{name} must be a W3C date-time such as 2026-01-01T00:00:00Z") from None
    if parsed.tzinfo is None:
        raise Open311Error(400, f"{name} needs a time zone (Z or +07:00)")
    return parsed


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@router.get("/requests.{fmt}", responses=BODIES, summary="Service requests (GET with the standard filters)")
def list_requests(fmt: str, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """service_request_id (comma list, overrides the rest), service_code, start_date, end_date, status."""

    def produce() -> Response:
        q = request.query_params
        known = {"service_request_id", "service_code", "start_date", "end_date", "status", "jurisdiction_id",
                 "api_key"}
        unknown = sorted(set(q) - known)
        if unknown:
            raise Open311Error(400, f"unknown parameter {unknown[0]!r}")
        stmt = select(Case).where(Case.case_type == service.CASE_TYPE)
        ids = _split(q.get("service_request_id"))
        if ids:
            if len(ids) > MAX_IDS:
                raise Open311Error(400, f"at most {MAX_IDS} service_request_id values")
            stmt = stmt.where(Case.code.in_(ids))
        else:
            stmt = stmt.where(Case.status != "rejected")
            codes = _split(q.get("service_code"))
            if codes:
                known_codes = {c.code for c in service.list_categories(session, include_inactive=True)}
                bad = [c for c in codes if c not in known_codes]
                if bad:
                    raise Open311Error(400, f"unknown service_code {bad[0]!r}")
                stmt = stmt.where(Case.category.in_(codes))
            start, end = _date(q.get("start_date"), "start_date"), _date(q.get("end_date"), "end_date")
            if start and end and end < start:
                raise Open311Error(400, "end_date is before start_date")
            if start and end and end - start > MAX_RANGE:
                raise Open311Error(400, "start_date and end_date may not span more than 90 days")
            if start is None and end is None:
                start = utcnow() - MAX_RANGE
            elif start is None:
                assert end is not None
                start = end - MAX_RANGE
            stmt = stmt.where(Case.created_at >= start)
            if end is not None:
                stmt = stmt.where(Case.created_at <= end)
            statuses = _split(q.get("status"))
            bad = [s for s in statuses if s not in ("open", "closed")]
            if bad:
                raise Open311Error(400, f"unknown status {bad[0]!r}: use open or closed")
            if statuses and len(set(statuses)) == 1:
                stmt = stmt.where(Case.is_open if statuses[0] == "open" else ~Case.is_open)
        cases = list(session.scalars(stmt.order_by(Case.created_at.desc(), Case.id.desc()).limit(MAX_RESULTS)))
        return render(fmt, "service_requests", "request", _rows(session, cases, settings))

    return answer(fmt, produce)


@router.get("/requests/{service_request_id}.{fmt}", responses=BODIES, summary="One service request")
def get_request(service_request_id: str, fmt: str, session: SessionDep, settings: SettingsDep) -> Response:
    """A one-element list, as the specification says."""

    def produce() -> Response:
        case = session.scalar(select(Case).where(Case.case_type == service.CASE_TYPE, Case.code == service_request_id))
        if case is None:
            raise Open311Error(404, f"unknown service_request_id {service_request_id!r}")
        return render(fmt, "service_requests", "request", _rows(session, [case], settings))

    return answer(fmt, produce)


def _coordinate(value: str | None, name: str) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise Open311Error(400, f"{name} must be a decimal number")
    return number


@router.post("/requests.{fmt}", responses=BODIES, summary="Create a service request (form-encoded, with api_key)",
             status_code=201)
async def create_request(fmt: str, request: Request) -> Response:
    """Open a citizen report from an Open311 client; answered at once with its service_request_id."""
    if fmt not in FORMATS:
        return error("json", 400, f"unknown format {fmt!r}: use .json or .xml")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return error(fmt, 400, "send the request form-encoded (application/x-www-form-urlencoded)")
    form = await request.form(max_files=0, max_fields=60)
    settings = request.app.state.settings
    ip = remote_ip(request)

    def produce() -> Response:
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        unknown = sorted(k for k in fields if k not in POST_FIELDS and not k.startswith("attribute["))
        if unknown:
            raise Open311Error(400, f"unknown field {unknown[0]!r}")
        attributes = {k[len("attribute["):-1]: v for k, v in fields.items() if k.startswith("attribute[")}
        bad = sorted(set(attributes) - {a["code"] for a in ATTRIBUTES})
        if bad:
            raise Open311Error(400, f"unknown attribute {bad[0]!r}")
        if not fields.get("api_key"):
            raise Open311Error(400, "api_key is required to create a service request")
        if not fields.get("service_code"):
            raise Open311Error(400, "service_code is required")
        share = attributes.get("share_contact", "false").strip().lower()
        if share not in ("true", "false"):
            raise Open311Error(400, "attribute[share_contact] must be true or false")
        lat, lon = _coordinate(fields.get("lat"), "lat"), _coordinate(fields.get("long"), "long")
        address = fields.get("address_string") or fields.get("address_id") or ""
        name = " ".join(p for p in (fields.get("first_name", "").strip(), fields.get("last_name", "").strip()) if p)
        data = service.Submission(
            description=fields.get("description", ""), category=fields["service_code"], lon=lon, lat=lat,
            address=address, unit_code=attributes.get("commune") or None, contact_name=name,
            contact_phone=fields.get("phone", ""), contact_email=fields.get("email", ""),
            share_contact=share == "true", media_url=fields.get("media_url", ""))

        def work(session: Session) -> dict[str, Any]:
            source = source_by_key(session, fields["api_key"], allow_demo=settings.demo_mode)
            result = service.submit(session, settings=settings, data=data, channel="open311", remote_ip=ip,
                                    source=source)
            code = result.submission.tracking_code
            notice = (f"Mã theo dõi / tracking code: {code}. " + (
                "Phản ánh này trùng với một phản ánh đang xử lý và đã được gộp vào đó. " if result.linked else "")
                + f"Tra cứu: /api/public/citizen-reports/{code}")
            return {"service_request_id": result.case.code, "service_notice": notice, "account_id": None,
                    "tracking_code": code}

        row = in_transaction(request, work)
        return render(fmt, "service_requests", "request", [row], status=201)

    return await run_in_threadpool(answer, fmt, produce)

