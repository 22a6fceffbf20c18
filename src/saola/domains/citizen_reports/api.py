"""Routes of the citizen reports pack: the citizen's doors under /api/public/citizen-reports, staff's under
/api/citizen-reports. The operator queue itself is the kernel's GET /api/cases?type=citizen_report."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from pydantic import AwareDatetime, ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from saola.core.cases.flows import flow_for
from saola.core.errors import DomainError, FieldError, ValidationFailed
from saola.db.engine import transaction
from saola.deps import ActorDep, SessionDep, SettingsDep
from saola.domains.citizen_reports import service
from saola.domains.citizen_reports.schemas import (
    CategoryCreate,
    CategoryPublic,
    CategoryRead,
    CategoryUpdate,
    Forwarding,
    OperatorReport,
    RatingCreate,
    ReopenCreate,
    ReportAccepted,
    ReportCreate,
    ReportPublic,
    RouteRead,
    RouteSet,
)

router = APIRouter(prefix="/api/citizen-reports", tags=["citizen reports"])
public_router = APIRouter(prefix="/api/public/citizen-reports", tags=["citizen reports (public)"])

PHOTO: dict[int | str, dict[str, Any]] = {200: {"content": {
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
}}}

T = TypeVar("T")
TRUE = {"true", "1", "on", "yes"}
FALSE = {"false", "0", "off", "no", ""}
FORM_FIELDS = ("description", "category", "lon", "lat", "address", "unit_code", "contact_name", "contact_phone",
               "contact_email", "share_contact", "captcha_token")
SUBMIT_BODY = {
    "requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["description", "category"], "properties": {
            **{name: {"type": "string"} for name in FORM_FIELDS},
            "lon": {"type": "number"}, "lat": {"type": "number"}, "share_contact": {"type": "boolean"},
            "photos": {"type": "array", "maxItems": service.MAX_PHOTOS,
                       "items": {"type": "string", "format": "binary"}}}}},
        "application/json": {"schema": ReportCreate.model_json_schema()},
    }},
}


def rate_limited(exc: service.TooManyReports) -> JSONResponse:
    """The 429 answer, with Retry-After."""
    return JSONResponse({"detail": exc.message, "code": exc.code, "errors": []}, status_code=429,
                        headers={"Retry-After": str(exc.retry_after)})


def in_transaction(request: Request, work: Callable[[Session], T]) -> T:
    """Run `work` in one write transaction of the app's database (SQLite: take the write lock first)."""
    with transaction(request.app.state.session_factory) as session:
        return work(session)


def remote_ip(request: Request) -> str:
    """The caller's address as the server sees it (behind a proxy, run uvicorn with --proxy-headers)."""
    return request.client.host if request.client else ""


def check_captcha(request: Request, token: str, purpose: str) -> None:
    """Ask every saola_verify_captcha hook; any refusal (or no acceptance when one is required) is a 400."""
    settings = request.app.state.settings
    answers = [a for a in request.app.state.plugin_manager.hook.saola_verify_captcha(
        token=token, remote_ip=remote_ip(request), purpose=purpose) if a is not None]
    if any(a is False for a in answers) or (settings.citizen_reports_require_captcha and True not in answers):
        raise DomainError("the captcha was not accepted; please solve it again", 400, "captcha_failed",
                          [FieldError(["body", "captcha_token"], "not accepted")])


def _float(value: str, name: str) -> float | None:
    if value.strip() == "":
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ValidationFailed(f"{name} is not a number", [FieldError(["body", name], "expected a decimal number")])
    return number


def _bool(value: str, name: str) -> bool:
    text = value.strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValidationFailed(f"{name} is not true or false", [FieldError(["body", name], "expected true or false")])


async def read_photos(form: FormData, field: str, limit: int, max_bytes: int) -> list[tuple[str, bytes]]:
    """The uploaded files of a form field, each read up to one byte past the size cap (the service refuses it)."""
    files = [f for f in form.getlist(field) if isinstance(f, UploadFile) and (f.filename or f.size)]
    if len(files) > limit:
        raise ValidationFailed(f"at most {limit} photos", [FieldError(["body", field], f"at most {limit} photos")])
    others = [k for k, v in form.multi_items() if isinstance(v, UploadFile) and k != field]
    if others:
        raise ValidationFailed("unexpected file field", [FieldError(["body", others[0]], f"files go in {field!r}")])
    return [(f.filename or "photo", await f.read(max_bytes + 1)) for f in files]


async def parse_submission(request: Request) -> tuple[service.Submission, str]:
    """A submission from a multipart form (with photos) or a JSON body, and its captcha token."""
    settings = request.app.state.settings
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            body = ReportCreate.model_validate_json(await request.body())
        except ValidationError as exc:
            raise ValidationFailed("the report is not valid", [
                FieldError(["body", *e["loc"]], e["msg"], e["type"]) for e in exc.errors()]) from None
        values = body.model_dump()
        token = values.pop("captcha_token")
        return service.Submission(**values), token or request.headers.get("x-captcha-token", "")
    if kind not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise DomainError("send multipart/form-data (with photos) or application/json", 415, "unsupported_media_type")
    form = await request.form(max_files=service.MAX_PHOTOS + 5, max_fields=50)
    unknown = [k for k in form if k not in FORM_FIELDS and k != "photos"]
    if unknown:
        raise ValidationFailed(f"unknown field {unknown[0]!r}", [FieldError(["body", unknown[0]], "unknown field")])
    text = {k: v for k, v in form.items() if isinstance(v, str)}
    photos = await read_photos(form, "photos", service.MAX_PHOTOS, settings.citizen_reports_max_photo_bytes)
    data = service.Submission(
        description=text.get("description", ""), category=text.get("category", ""),
        lon=_float(text.get("lon", ""), "lon"), lat=_float(text.get("lat", ""), "lat"),
        address=text.get("address", ""), unit_code=text.get("unit_code") or None,
        contact_name=text.get("contact_name", ""), contact_phone=text.get("contact_phone", ""),
        contact_email=text.get("contact_email", ""), share_contact=_bool(text.get("share_contact", ""),
                                                                         "share_contact"),
        photos=photos)
    return data, text.get("captcha_token", "") or request.headers.get("x-captcha-token", "")


# --- public -------------------------------------------------------------------------------------------------------


@public_router.get("/categories", response_model=list[CategoryPublic], summary="Lĩnh vực phản ánh / categories")
def public_categories(session: SessionDep) -> list[CategoryPublic]:
    """Active categories in display order."""
    return [CategoryPublic(code=c.code, name_vi=c.name_vi, name_en=c.name_en)
            for c in service.list_categories(session)]


@public_router.post("", response_model=ReportAccepted, status_code=status.HTTP_201_CREATED,
                    summary="Gửi phản ánh / send a report (no account)", openapi_extra=SUBMIT_BODY,
                    responses={429: {"description": "Too many reports from this address or contact"}})
async def submit(request: Request) -> Any:
    """Multipart form with up to 5 photos (JPEG or PNG; location and other metadata removed), or JSON."""
    data, token = await parse_submission(request)
    check_captcha(request, token, "citizen_report")
    settings = request.app.state.settings
    ip = remote_ip(request)
    channel = "portal" if request.headers.get("x-saola-channel") == "portal" else "api"

    def work(session: Session) -> ReportAccepted:
        result = service.submit(session, settings=settings, data=data, channel=channel, remote_ip=ip)
        return accepted(result)

    try:
        return await run_in_threadpool(in_transaction, request, work)
    except service.TooManyReports as exc:
        return rate_limited(exc)


def accepted(result: service.SubmitResult) -> ReportAccepted:
    """The answer to an accepted submission."""
    code = result.submission.tracking_code
    return ReportAccepted(tracking_code=code, report_code=result.case.code, status=result.case.status,
                          status_label_vi=service.public_status_label(result.case), linked=result.linked,
                          follow_url=f"/api/public/citizen-reports/{code}")


@public_router.get("/map.geojson", summary="Bản đồ phản ánh (ẩn danh) / anonymised map of reports",
                   response_class=Response, responses={200: {"content": {"application/geo+json": {"schema": {
                       "type": "object", "description": "GeoJSON FeatureCollection"}}}}})
def public_map(
    session: SessionDep, settings: SettingsDep,
    bbox: Annotated[str | None, Query(max_length=200, description="minlon,minlat,maxlon,maxlat")] = None,
    category: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    unit: Annotated[str | None, Query(pattern=r"^(VN|\d{1,5})$")] = None,
    since: Annotated[AwareDatetime | None, Query(description="Received since")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 5000,
) -> Response:
    """Reports (rejected ones left out) with category, status and dates at a coarse point; never who sent them."""
    import orjson

    box = None
    if bbox:
        try:
            parts = [float(v) for v in bbox.split(",")]
        except ValueError:
            parts = []
        if len(parts) != 4 or parts[0] > parts[2] or parts[1] > parts[3]:
            raise ValidationFailed("bbox must be minlon,minlat,maxlon,maxlat",
                                   [FieldError(["query", "bbox"], "expected 4 numbers, min before max")])
        box = (parts[0], parts[1], parts[2], parts[3])
    if status and status not in flow_for(service.CASE_TYPE).statuses:
        raise ValidationFailed(f"unknown status {status!r}", [FieldError(["query", "status"], "unknown status")])
    body = service.map_features(session, settings=settings, bbox=box, category=category, status=status, unit=unit,
                                since=since, limit=limit)
    return Response(orjson.dumps(body), media_type="application/geo+json")


@public_router.get("/stats", summary="Thống kê phản ánh / statistics")
def public_stats(
    session: SessionDep,
    unit: Annotated[str | None, Query(pattern=r"^(VN|\d{1,5})$", description="A unit and everything below")] = None,
    since: Annotated[AwareDatetime | None, Query(description="Received since")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Received before")] = None,
) -> dict:
    """Counts by category, status and commune; on-time rate per agency (Decision 766); satisfaction."""
    return service.statistics(session, unit=unit, since=since, until=until)


def _file(attachment: Any, path: Any) -> FileResponse:
    return FileResponse(path, media_type=attachment.mime, headers={"X-Content-Type-Options": "nosniff",
                                                                   "Cache-Control": "public, max-age=86400"})


@public_router.get("/photos/{attachment_id}", response_class=FileResponse, responses=PHOTO,
                   summary="Ảnh kết quả / a result photo")
def result_photo(attachment_id: uuid.UUID, session: SessionDep, settings: SettingsDep) -> FileResponse:
    """A photo of a published result."""
    return _file(*service.public_photo(session, settings=settings, attachment_id=attachment_id))


@public_router.get("/{tracking_code}", response_model=ReportPublic, summary="Tra cứu phản ánh / follow a report")
def follow(tracking_code: str, session: SessionDep, settings: SettingsDep) -> dict:
    """Status, public timeline and result of the report behind this tracking code; never who sent it."""
    return service.public_view(session, settings=settings, tracking_code=tracking_code)


@public_router.get("/{tracking_code}/photos/{attachment_id}", response_class=FileResponse, responses=PHOTO,
                   summary="Ảnh của phản ánh / a photo of the report")
def report_photo(tracking_code: str, attachment_id: uuid.UUID, session: SessionDep,
                 settings: SettingsDep) -> FileResponse:
    """A photo of the report or its result, for the holder of its tracking code."""
    return _file(*service.public_photo(session, settings=settings, attachment_id=attachment_id,
                                       tracking_code=tracking_code))


@public_router.post("/{tracking_code}/rating", response_model=ReportPublic, summary="Đánh giá / rate the result")
def rate(tracking_code: str, body: RatingCreate, session: SessionDep, settings: SettingsDep) -> dict:
    """Rate a resolved report from 1 to 5 (once); the report is then closed."""
    service.rate(session, tracking_code=tracking_code, rating=body.rating, comment=body.comment)
    return service.public_view(session, settings=settings, tracking_code=tracking_code)


@public_router.post("/{tracking_code}/reopen", response_model=ReportPublic,
                    summary="Chưa hài lòng, mở lại / reopen the report")
def reopen(tracking_code: str, body: ReopenCreate, session: SessionDep, settings: SettingsDep) -> dict:
    """Reopen a resolved report with the reason the result is not enough."""
    service.reopen(session, tracking_code=tracking_code, reason=body.reason)
    return service.public_view(session, settings=settings, tracking_code=tracking_code)


# --- staff ----------------------------------------------------------------------------------------------------------


@router.get("/categories", response_model=list[CategoryRead], summary="Categories with routing defaults and SLA")
def categories(session: SessionDep, actor: ActorDep) -> list[CategoryRead]:
    """Every category, retired ones included."""
    actor.require("cases:read")
    return [CategoryRead.model_validate(c) for c in service.list_categories(session, include_inactive=True)]


@router.post("/categories", response_model=CategoryRead, status_code=status.HTTP_201_CREATED,
             summary="Add a category")
def create_category(body: CategoryCreate, session: SessionDep, actor: ActorDep) -> CategoryRead:
    """A new category (citizen_reports:configure)."""
    values = body.model_dump()
    code = values.pop("code")
    return CategoryRead.model_validate(service.save_category(session, actor=actor, code=code, values=values,
                                                             create=True))


@router.patch("/categories/{code}", response_model=CategoryRead, summary="Change a category")
def update_category(code: str, body: CategoryUpdate, session: SessionDep, actor: ActorDep) -> CategoryRead:
    """Rename, change the default agency or SLA, retire or bring back a category (citizen_reports:configure)."""
    values = body.model_dump(exclude_unset=True)
    if any(v is None for v in values.values()):
        bad = next(k for k, v in values.items() if v is None)
        raise ValidationFailed(f"{bad} cannot be null", [FieldError(["body", bad], "must not be null")])
    return CategoryRead.model_validate(service.save_category(session, actor=actor, code=code, values=values,
                                                             create=False))


def _route_read(route: Any, agency: Any) -> RouteRead:
    return RouteRead(id=route.id, category=route.category, unit_code=route.unit_code, agency_id=route.agency_id,
                     agency_name=agency.name, updated_by=route.updated_by)


@router.get("/routes", response_model=list[RouteRead], summary="Routing set by operators")
def routes(session: SessionDep, actor: ActorDep) -> list[RouteRead]:
    """Routes of units in the caller's scope."""
    return [_route_read(r, a) for r, a in service.list_routes(session, actor=actor)]


@router.put("/routes", response_model=RouteRead, summary="Route a category in a unit to an agency")
def set_route(body: RouteSet, session: SessionDep, actor: ActorDep) -> RouteRead:
    """Reports of this category in this unit (and below) go to this agency (citizen_reports:configure)."""
    route = service.set_route(session, actor=actor, category=body.category, unit_code=body.unit_code,
                              agency_id=body.agency_id)
    from saola.core.units.models import Agency

    return _route_read(route, session.get(Agency, route.agency_id))


@router.delete("/routes/{route_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a route")
def delete_route(route_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> Response:
    """The category's default agency applies again."""
    service.delete_route(session, actor=actor, route_id=route_id)
    return Response(status_code=204)


@router.get("/{case_id}", response_model=OperatorReport, summary="A report for staff")
def operator_report(case_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> dict:
    """Exact place, submissions and photos; the reporter's contact only when shared or the caller may see it."""
    return service.operator_view(session, actor=actor, case_id=case_id)


@router.post("/{case_id}/forward", response_model=OperatorReport, summary="Forward to the handling agency")
def forward(case_id: uuid.UUID, body: Forwarding, session: SessionDep, actor: ActorDep) -> dict:
    """To the agency given, else to the one the routing names for the report's category and unit."""
    service.forward(session, actor=actor, case_id=case_id, agency_id=body.agency_id, unit_code=body.unit_code,
                    note=body.note)
    return service.operator_view(session, actor=actor, case_id=case_id)


@router.post("/{case_id}/resolve", response_model=OperatorReport, summary="Publish the result and resolve",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "multipart/form-data": {"schema": {"type": "object", "required": ["result"], "properties": {
                     "result": {"type": "string"},
                     "photos": {"type": "array", "maxItems": service.MAX_RESULT_PHOTOS,
                                "items": {"type": "string", "format": "binary"}}}}},
                 "application/json": {"schema": {"type": "object", "required": ["result"],
                                                 "properties": {"result": {"type": "string"}}}}}}})
async def resolve(case_id: uuid.UUID, request: Request) -> dict:
    """The result the citizen will read (text, up to 3 photos); a forwarded report is taken in hand first."""
    settings = request.app.state.settings
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    photos: list[tuple[str, bytes]] = []
    if kind == "application/json":
        import orjson

        try:
            payload = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("result"), str):
            raise ValidationFailed("result is required", [FieldError(["body", "result"], "expected text")])
        text = payload["result"]
    elif kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.form(max_files=service.MAX_RESULT_PHOTOS + 5, max_fields=10)
        value = form.get("result")
        text = value if isinstance(value, str) else ""
        photos = await read_photos(form, "photos", service.MAX_RESULT_PHOTOS, settings.citizen_reports_max_photo_bytes)
    else:
        raise DomainError("send multipart/form-data or application/json", 415, "unsupported_media_type")

    def work(session: Session) -> dict:
        actor = caller(request, session)
        service.resolve(session, actor=actor, settings=settings, case_id=case_id, result=text, photos=photos)
        return service.operator_view(session, actor=actor, case_id=case_id)

    return await run_in_threadpool(in_transaction, request, work)



def caller(request: Request, session: Session) -> Any:
    """The kernel's get_actor, for routes that open their own transaction (one SQLite writer per request)."""
    from saola.deps import get_actor

    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
    return get_actor(request, session, request.app.state.settings, request.app.state.registry, token=token,
                     api_key=request.headers.get("x-api-key"))
