"""Citizen reports (phản ánh hiện trường) as kernel cases: submission, routing, the flow, privacy, map and statistics.

Every report is a kernel case of type 'citizen_report'; this module only adds what is specific to reports and
writes through the kernel's case services (open_case, assign, change_status, add_attachment), so scope, audit,
timeline, SLA escalation and the bus come from the kernel. The reporter's contact stays in the submission row:
never on the case, never in a public answer, and shown to agencies only when the reporter allowed it.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import math
import re
import secrets
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, and_, cast, func, or_, select, text
from sqlalchemy.orm import Session

from saola.config import Settings
from saola.core.audit.service import audit
from saola.core.auth.context import Actor
from saola.core.cases import attachments
from saola.core.cases import service as cases
from saola.core.cases.flows import flow_for
from saola.core.cases.models import Case, CaseAttachment, CaseTimelineEntry
from saola.core.errors import DomainError, FieldError, Forbidden, NotFound, ValidationFailed
from saola.core.text import fold
from saola.core.units.models import Agency, Unit
from saola.core.units.service import normalize_code, require_unit_in_scope
from saola.db.types import utcnow
from saola.domains.citizen_reports.models import (
    ReportCategory,
    ReportDetail,
    ReportPhoto,
    ReportRoute,
    ReportSubmission,
)
from saola.domains.citizen_reports.photos import CleanPhoto, clean_photo

CASE_TYPE = "citizen_report"
CONFIGURE = "citizen_reports:configure"
CONTACT = "citizen_reports:contact"
CITIZEN = "Người dân"
"""The name every citizen write is recorded under in the kernel (timeline, audit): never the reporter's."""

MAX_PHOTOS = 5
MAX_RESULT_PHOTOS = 3
MAX_DESCRIPTION = 5000
CHANNELS = ("portal", "api", "open311", "demo")
_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"  # no 0/O, 1/I/L, U: read aloud over the phone without mistakes
_TRACKING = re.compile(r"^PA-[2-9A-Z]{5}-[2-9A-Z]{5}$")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_PHONE = re.compile(r"(?<!\w)\+?\d(?:[\s.\-]?\d){7,13}(?!\w)")
_EMAIL_FIELD = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_PHONE_FIELD = re.compile(r"^\+?[\d\s.\-()]{8,20}$")
PUBLIC_HIDDEN_REASONS = ("returned",)
"""Statuses whose reason stays internal (between the IOC and agencies) in the citizen's timeline."""


# --- small helpers ------------------------------------------------------------------------------------------------


def citizen_actor(name: str = CITIZEN) -> Actor:
    """The actor anonymous citizen writes run as: the whole country, only what submission needs."""
    return Actor(kind="system", id=None, name=name, role="citizen", scope_code="VN", scope_path="VN",
                 permissions=frozenset({"cases:read", "cases:write"}))


def keyed_hash(settings: Settings, value: str) -> str:
    """An HMAC of an IP, phone or e-mail with the server's secret: comparable, not reversible."""
    if not value:
        return ""
    return hmac.new(settings.secret_key.encode(), value.encode(), hashlib.sha256).hexdigest()


def new_tracking_code() -> str:
    """A tracking code like PA-7K3QX-M9TZ2: 50 random bits, unlike the case's sequential code."""
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    return f"PA-{chars[:5]}-{chars[5:]}"


def normalize_tracking_code(code: str) -> str:
    """Upper-case, trimmed tracking code; NotFound when it cannot be one (so a probe learns nothing)."""
    text = (code or "").strip().upper()
    if not _TRACKING.match(text):
        raise NotFound("no report with this tracking code")
    return text


def mask_personal(text: str, extra: tuple[str, ...] = ()) -> str:
    """Text with e-mail addresses, phone numbers and the given strings (the reporter's own) masked."""
    out = _EMAIL.sub("[email]", text or "")
    out = _PHONE.sub("[số điện thoại]", out)
    for value in extra:
        if value and len(value.strip()) >= 3:
            out = re.sub(re.escape(value.strip()), "[ẩn]", out, flags=re.IGNORECASE)
    return out


def reporter_strings(session: Session, case_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[str, ...]]:
    """The reporters' own names, phones and e-mails per case, to mask wherever a case's text is shown publicly."""
    found: dict[uuid.UUID, tuple[str, ...]] = defaultdict(tuple)
    if not case_ids:
        return found
    for case_id, name, tel, mail in session.execute(select(
            ReportSubmission.case_id, ReportSubmission.contact_name, ReportSubmission.contact_phone,
            ReportSubmission.contact_email).where(ReportSubmission.case_id.in_(case_ids))):
        found[case_id] = (*found[case_id], *(v for v in (name, tel, mail) if v))
    return found


def public_description(session: Session, case: Case) -> str:
    """The case's text as the public may read it: no phone, e-mail or reporter's name, even one they shared."""
    return mask_personal(case.description, reporter_strings(session, [case.id])[case.id])


def coarse(value: float | None, decimals: int) -> float | None:
    """A coordinate rounded for the public (3 decimals is about 100 m)."""
    return None if value is None else round(value, decimals)


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres (haversine): exact enough for tens of metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(min(1.0, math.sqrt(a)))


class TooManyReports(DomainError):
    """A rate limit was reached; the client may try again later."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, 429, "rate_limited")
        self.retry_after = retry_after


# --- categories and routing ---------------------------------------------------------------------------------------


def list_categories(session: Session, *, include_inactive: bool = False) -> list[ReportCategory]:
    """Categories in display order."""
    stmt = select(ReportCategory).order_by(ReportCategory.position, ReportCategory.code)
    if not include_inactive:
        stmt = stmt.where(ReportCategory.active)
    return list(session.scalars(stmt))


def get_category(session: Session, code: str, loc: list[str | int], *, active: bool = True) -> ReportCategory:
    """A category by code; 422 naming the field and the known codes otherwise."""
    category = session.get(ReportCategory, code) if isinstance(code, str) else None
    if category is None or (active and not category.active):
        known = ", ".join(c.code for c in list_categories(session))
        raise ValidationFailed(f"unknown category {code!r}", [FieldError(loc, f"expected one of {known}")])
    return category


def save_category(session: Session, *, actor: Actor, code: str, values: dict[str, Any], create: bool) -> ReportCategory:
    """Create a category, or change the given fields of one; only for holders of citizen_reports:configure."""
    actor.require(CONFIGURE)
    category = session.get(ReportCategory, code)
    if create:
        if category is not None:
            raise DomainError(f"category {code!r} already exists", 409, "conflict")
        category = ReportCategory(code=code, **{"default_agency_code": "ubnd", "forward_minutes": 5,
                                                "answer_minutes": 5 * 24 * 60, "position": 1000, "active": True,
                                                "name_en": "", **values})
        session.add(category)
    else:
        if category is None:
            raise NotFound(f"category {code!r} not found")
        for key, value in values.items():
            setattr(category, key, value)
        category.updated_at = utcnow()
    session.flush()
    audit(session, actor=actor, action="citizen_reports.category", target_type="citizen_report_category",
          target_id=code, detail={k: v for k, v in values.items()})
    return category


def _agency_by_code(session: Session, code: str, unit: Unit) -> Agency | None:
    # Along the unit's path, nearest first: the commune's own office before the province's department.
    codes = unit.path.split(".")
    found = {a.unit_code: a for a in session.scalars(select(Agency).where(Agency.unit_code.in_(codes),
                                                                        Agency.code == code))}
    return next((found[c] for c in reversed(codes) if c in found), None)


def route_for(session: Session, *, category: ReportCategory, unit: Unit) -> Agency | None:
    """The agency that handles this category here: an operator's route (nearest unit first), else the default."""
    codes = unit.path.split(".")
    routes = {r.unit_code: r for r in session.scalars(select(ReportRoute).where(
        ReportRoute.category == category.code, ReportRoute.unit_code.in_(codes)))}
    for code in reversed(codes):
        if code in routes:
            agency = session.get(Agency, routes[code].agency_id)
            if agency is not None:
                return agency
    return _agency_by_code(session, category.default_agency_code, unit)


def _serves(agency_unit: Unit, unit: Unit) -> bool:
    return unit.path == agency_unit.path or unit.path.startswith(agency_unit.path + ".")


def set_route(session: Session, *, actor: Actor, category: str, unit_code: str, agency_id: uuid.UUID) -> ReportRoute:
    """Send reports of a category in a unit (and below) to an agency of the actor's scope that serves the unit."""
    actor.require(CONFIGURE)
    get_category(session, category, ["body", "category"], active=False)
    unit = require_unit_in_scope(session, actor=actor, code=unit_code, loc=["body", "unit_code"])
    agency = session.get(Agency, agency_id)
    agency_unit = session.get(Unit, agency.unit_code) if agency else None
    if agency is None or agency_unit is None or not actor.sees_path(agency_unit.path):
        raise ValidationFailed(f"unknown agency {agency_id}", [FieldError(["body", "agency_id"], "unknown agency")])
    if not _serves(agency_unit, unit):
        raise ValidationFailed(f"agency {agency.code!r} of unit {agency.unit_code} does not serve unit {unit.code}",
                               [FieldError(["body", "agency_id"], f"does not serve unit {unit.code}")])
    route = session.scalar(select(ReportRoute).where(ReportRoute.category == category,
                                                     ReportRoute.unit_code == unit.code))
    if route is None:
        route = ReportRoute(category=category, unit_code=unit.code, agency_id=agency.id, updated_by=actor.name)
        session.add(route)
    else:
        route.agency_id, route.updated_by, route.updated_at = agency.id, actor.name, utcnow()
    session.flush()
    return route


def list_routes(session: Session, *, actor: Actor) -> list[tuple[ReportRoute, Agency]]:
    """Routes set for units of the actor's scope."""
    actor.require("cases:read")
    rows = session.execute(select(ReportRoute, Agency, Unit.path).join(Agency, Agency.id == ReportRoute.agency_id)
                           .join(Unit, Unit.code == ReportRoute.unit_code)
                           .order_by(ReportRoute.category, ReportRoute.unit_code)).all()
    return [(r, a) for r, a, path in rows if actor.sees_path(path)]


def delete_route(session: Session, *, actor: Actor, route_id: uuid.UUID) -> None:
    """Remove a route in the actor's scope; the category's default applies again."""
    actor.require(CONFIGURE)
    route = session.get(ReportRoute, route_id)
    path = session.scalar(select(Unit.path).where(Unit.code == route.unit_code)) if route else None
    if route is None or path is None or not actor.sees_path(path):
        raise NotFound(f"route {route_id} not found")
    session.delete(route)


# --- submission ---------------------------------------------------------------------------------------------------


@dataclass
class Submission:
    """What a citizen sends, from any channel, before it is checked."""

    description: str
    category: str
    lon: float | None = None
    lat: float | None = None
    address: str = ""
    unit_code: str | None = None
    contact_name: str = ""
    contact_phone: str = ""
    contact_email: str = ""
    share_contact: bool = False
    media_url: str = ""
    photos: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class SubmitResult:
    """The stored submission, its case and whether it was linked to an earlier report of the same problem."""

    submission: ReportSubmission
    case: Case
    linked: bool


def _text(value: str | None, loc: list[str | int], max_length: int, required: bool = False) -> str:
    return cases.check_text(value or "", loc, max_length=max_length, required=required)


def check_submission(session: Session, *, settings: Settings, data: Submission, body: str = "body") -> dict[str, Any]:
    """Every field checked at once; 422 naming each wrong field, before anything is written."""
    errors: list[FieldError] = []
    out: dict[str, Any] = {}

    def attempt(name: str, check: Any) -> None:
        try:
            out[name] = check()
        except ValidationFailed as exc:
            errors.extend(exc.errors)

    attempt("description", lambda: _text(data.description, [body, "description"], MAX_DESCRIPTION, True))
    attempt("category", lambda: get_category(session, data.category, [body, "category"]))
    attempt("address", lambda: _text(data.address, [body, "address"], 300))
    attempt("contact_name", lambda: _text(data.contact_name, [body, "contact_name"], 120))
    attempt("contact_phone", lambda: _text(data.contact_phone, [body, "contact_phone"], 40))
    attempt("contact_email", lambda: _text(data.contact_email, [body, "contact_email"], 254))
    attempt("media_url", lambda: _text(data.media_url, [body, "media_url"], 500))
    if out.get("contact_phone") and not _PHONE_FIELD.match(out["contact_phone"]):
        errors.append(FieldError([body, "contact_phone"], "expected a phone number (8 to 20 digits)"))
    if out.get("contact_email") and not _EMAIL_FIELD.match(out["contact_email"]):
        errors.append(FieldError([body, "contact_email"], "expected an e-mail address"))
    if out.get("media_url") and not out["media_url"].startswith(("http://", "https://")):
        errors.append(FieldError([body, "media_url"], "expected an http(s) URL"))
    if (data.lon is None) != (data.lat is None):
        errors.append(FieldError([body, "lat" if data.lat is None else "lon"], "give both lon and lat, or neither"))
    elif data.lon is not None and data.lat is not None:
        if not (math.isfinite(data.lon) and -180 <= data.lon <= 180):
            errors.append(FieldError([body, "lon"], "longitude must lie between -180 and 180"))
        if not (math.isfinite(data.lat) and -90 <= data.lat <= 90):
            errors.append(FieldError([body, "lat"], "latitude must lie between -90 and 90"))
    if data.lon is None and not (data.address or "").strip():
        errors.append(FieldError([body, "lon"], "give a location: lon and lat, or an address"))
    if len(data.photos) > MAX_PHOTOS:
        errors.append(FieldError([body, "photos"], f"at most {MAX_PHOTOS} photos"))
    code = normalize_code(data.unit_code) if data.unit_code else normalize_code(settings.citizen_reports_default_unit)
    unit = session.get(Unit, code)
    if unit is None:
        errors.append(FieldError([body, "unit_code"], f"unknown unit {code!r}"))
    out["unit"] = unit
    if errors:
        raise ValidationFailed("the report is not valid: " + "; ".join(
            f"{'.'.join(str(p) for p in e.loc)}: {e.msg}" for e in errors[:5]), errors)
    return out


def serialize(session: Session, *keys: str) -> None:
    """On PostgreSQL, queue concurrent submissions that share a key (same IP, contact or category) one after the
    other for the rest of the transaction, so two of them cannot both pass a limit or both miss a duplicate.
    SQLite needs nothing: a submission holds the database's single write lock from its start."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for key in sorted({k for k in keys if k}):
        number = int.from_bytes(hashlib.sha256(f"citizen_reports:{key}".encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:n)"), {"n": number})


def check_limits(
    session: Session, *, settings: Settings, ip_key: str, phone_key: str, email_key: str,
    source: Any = None, now: datetime,
) -> None:
    """429 when this IP (or this source system), phone or e-mail sent too many reports lately."""
    if source is not None:
        since = now - timedelta(minutes=1)
        n = session.scalar(select(func.count()).where(ReportSubmission.source_id == source.id,
                                                      ReportSubmission.created_at >= since)) or 0
        if n >= source.rate_limit_per_minute:
            raise TooManyReports(f"source {source.name!r} may send {source.rate_limit_per_minute} reports a minute",
                                 60)
    elif ip_key:
        since = now - timedelta(hours=1)
        n = session.scalar(select(func.count()).where(ReportSubmission.ip_key == ip_key,
                                                      ReportSubmission.created_at >= since)) or 0
        if n >= settings.citizen_reports_per_ip_per_hour:
            raise TooManyReports(f"at most {settings.citizen_reports_per_ip_per_hour} reports an hour from one "
                                 "address; please try again later", 3600)
    keys = [c for c in (ReportSubmission.phone_key == phone_key if phone_key else None,
                        ReportSubmission.email_key == email_key if email_key else None) if c is not None]
    if keys:
        since = now - timedelta(days=1)
        n = session.scalar(select(func.count()).where(or_(*keys), ReportSubmission.created_at >= since)) or 0
        if n >= settings.citizen_reports_per_contact_per_day:
            raise TooManyReports(f"at most {settings.citizen_reports_per_contact_per_day} reports a day from one "
                                 "phone number or e-mail address", 86400)


def find_duplicate(
    session: Session, *, settings: Settings, category: str, lon: float | None, lat: float | None,
    address_key: str, now: datetime,
) -> Case | None:
    """An open report of the same category at the same place received lately, nearest first; None when none."""
    minutes = settings.citizen_reports_duplicate_minutes
    if minutes <= 0:
        return None
    since = now - timedelta(minutes=minutes)
    stmt = (select(ReportDetail, Case).join(Case, Case.id == ReportDetail.case_id)
            .where(ReportDetail.category == category, ReportDetail.created_at >= since, Case.is_open,
                   Case.status != "rejected"))
    radius = settings.citizen_reports_duplicate_radius_m
    if lon is not None and lat is not None:
        # A box prefilter in degrees keeps the candidates few; the exact distance decides.
        dlat = radius / 111_320 + 1e-9
        dlon = dlat / max(math.cos(math.radians(lat)), 0.01)
        stmt = stmt.where(ReportDetail.lon.between(lon - dlon, lon + dlon),
                          ReportDetail.lat.between(lat - dlat, lat + dlat))
        best: tuple[float, Case] | None = None
        for detail, case in session.execute(stmt):
            assert detail.lon is not None and detail.lat is not None
            d = distance_m(lon, lat, detail.lon, detail.lat)
            if d <= radius and (best is None or d < best[0]):
                best = (d, case)
        return best[1] if best else None
    if not address_key:
        return None
    row = session.execute(stmt.where(ReportDetail.address_key == address_key)
                          .order_by(ReportDetail.created_at).limit(1)).first()
    return row[1] if row else None


def _title(category: ReportCategory, address: str, description: str) -> str:
    what = description.splitlines()[0] if description else ""
    text = f"{category.name_vi}: {what[:120]}"
    return f"{text} — {address[:120]}" if address else text


def _attach_photos(
    session: Session, *, case: Case, photos: list[CleanPhoto], kind: str, submission_id: uuid.UUID | None,
    settings: Settings, actor: Actor, start: int = 1,
) -> list[CaseAttachment]:
    stored = []
    for i, photo in enumerate(photos, start=start):
        attachment = attachments.add_attachment(
            session, actor=actor, case_id=case.id, filename=f"{'anh' if kind == 'report' else 'ket-qua'}-{i}"
            f"{photo.extension}", stream=io.BytesIO(photo.data), data_dir=Path(settings.data_dir),
            max_bytes=max(settings.max_attachment_bytes, len(photo.data)))
        session.add(ReportPhoto(attachment_id=attachment.id, case_id=case.id, submission_id=submission_id,
                                kind=kind, width=photo.width, height=photo.height,
                                original_bytes=photo.original_bytes, had_location=photo.had_location))
        stored.append(attachment)
    session.flush()
    return stored


def submit(
    session: Session, *, settings: Settings, data: Submission, channel: str, remote_ip: str = "",
    source: Any = None, now: datetime | None = None, body: str = "body",
) -> SubmitResult:
    """Take a citizen's report: check it, apply the limits, link it to an open duplicate or open a kernel case.

    Nothing is written when any check fails. `source` is the kernel Source an Open311 client authenticated as:
    its own per-minute limit then replaces the per-IP one, and the report's unit must lie in its scope.
    """
    now = now or utcnow()
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    checked = check_submission(session, settings=settings, data=data, body=body)
    category: ReportCategory = checked["category"]
    unit: Unit = checked["unit"]
    if source is not None:
        scope_path = session.scalar(select(Unit.path).where(Unit.code == source.scope_code)) or ""
        if not (unit.path == scope_path or unit.path.startswith(scope_path + ".")):
            raise Forbidden(f"unit {unit.code} is outside the scope of source {source.name!r}")
    phone = re.sub(r"\D", "", checked["contact_phone"])
    email = checked["contact_email"].lower()
    ip_key = keyed_hash(settings, "ip:" + remote_ip) if remote_ip else ""
    phone_key = keyed_hash(settings, "tel:" + phone) if phone else ""
    email_key = keyed_hash(settings, "mail:" + email) if email else ""
    serialize(session, ip_key if source is None else f"source:{source.id}", phone_key, email_key,
              f"category:{category.code}")
    check_limits(session, settings=settings, ip_key=ip_key, phone_key=phone_key, email_key=email_key,
                 source=source, now=now)
    photos = [clean_photo(raw, max_bytes=settings.citizen_reports_max_photo_bytes, loc=[body, "photos", i])
              for i, (_name, raw) in enumerate(data.photos)]
    description: str = checked["description"]
    address: str = checked["address"]
    address_key = fold(address)
    contact = (checked["contact_name"], checked["contact_phone"], checked["contact_email"])
    actor = citizen_actor(CITIZEN if source is None else f"{CITIZEN} (qua {source.name})")

    case = find_duplicate(session, settings=settings, category=category.code, lon=data.lon, lat=data.lat,
                          address_key=address_key, now=now)
    linked = case is not None
    if case is None:
        # Agencies read the case: the reporter's own contact (and any phone or e-mail typed in the text) is masked
        # there unless they agreed to share it; the original stays in the submission row.
        case_text = description if data.share_contact else mask_personal(description, contact)
        owner = route_for(session, category=category, unit=unit)
        case = cases.open_case(
            session, actor=actor, case_type=CASE_TYPE, title=_title(category, address, case_text),
            unit_code=unit.code, description=case_text, category=category.code,
            owner_agency_id=owner.id if owner else None,
            due_at=now + timedelta(minutes=category.answer_minutes),
            first_response_due_at=now + timedelta(minutes=category.forward_minutes), now=now,
            data={"channel": channel, "has_location": data.lon is not None},
        )
        session.add(ReportDetail(case_id=case.id, category=category.code, lon=data.lon, lat=data.lat,
                                 address=address, address_key=address_key, channel=channel, created_at=now,
                                 updated_at=now))
    else:
        detail = session.get(ReportDetail, case.id)
        assert detail is not None
        detail.linked_count += 1
        detail.updated_at = now
    submission = ReportSubmission(
        case_id=case.id, tracking_code=_unused_tracking_code(session), is_primary=not linked, channel=channel,
        source_id=source.id if source is not None else None, description=description,
        contact_name=contact[0], contact_phone=contact[1], contact_email=contact[2],
        share_contact=bool(data.share_contact), ip_key=ip_key if source is None else "", phone_key=phone_key,
        email_key=email_key, media_url=checked["media_url"], created_at=now)
    session.add(submission)
    session.flush()
    if linked:
        cases.add_timeline(session, case, actor=actor, kind="linked_report", at=now,
                           data={"channel": channel, "photos": len(photos),
                                 "linked_count": session.get(ReportDetail, case.id).linked_count})  # type: ignore[union-attr]
        cases.publish(session, case, "linked_report", channel=channel)
    if photos:
        _attach_photos(session, case=case, photos=photos, kind="report", submission_id=submission.id,
                       settings=settings, actor=actor, start=_photo_count(session, case.id, "report") + 1)
    return SubmitResult(submission=submission, case=case, linked=linked)


def _unused_tracking_code(session: Session) -> str:
    # 50 random bits make a clash all but impossible; the check is one indexed lookup (without flushing first).
    with session.no_autoflush:
        while True:
            code = new_tracking_code()
            if session.scalar(select(ReportSubmission.id).where(ReportSubmission.tracking_code == code)) is None:
                return code


def _photo_count(session: Session, case_id: uuid.UUID, kind: str) -> int:
    return session.scalar(select(func.count()).where(ReportPhoto.case_id == case_id, ReportPhoto.kind == kind)) or 0


# --- what the citizen sees ----------------------------------------------------------------------------------------


def submission_by_code(session: Session, tracking_code: str) -> tuple[ReportSubmission, Case]:
    """The submission and its case for a tracking code; 404 otherwise."""
    code = normalize_tracking_code(tracking_code)
    row = session.execute(select(ReportSubmission, Case).join(Case, Case.id == ReportSubmission.case_id)
                          .where(ReportSubmission.tracking_code == code)).first()
    if row is None:
        raise NotFound("no report with this tracking code")
    return row[0], row[1]


def public_status_label(case: Case) -> str:
    """The Vietnamese label a citizen sees for the case's status."""
    if case.status == "returned":
        return "Đang điều chuyển đơn vị xử lý"
    return flow_for(CASE_TYPE).label(case.status)


def _agency_name(session: Session, agency_id: uuid.UUID | None) -> str | None:
    return session.scalar(select(Agency.name).where(Agency.id == agency_id)) if agency_id else None


def public_timeline(session: Session, case: Case) -> list[dict[str, Any]]:
    """The steps a citizen sees: received, each status change (with public reasons), escalations; no names."""
    flow = flow_for(CASE_TYPE)
    steps: list[dict[str, Any]] = []
    for entry in session.scalars(select(CaseTimelineEntry).where(CaseTimelineEntry.case_id == case.id)
                                 .order_by(CaseTimelineEntry.at, CaseTimelineEntry.id)):
        data = entry.data or {}
        if entry.kind == "created":
            steps.append({"at": entry.at, "status": "received", "label": flow.label("received")})
        elif entry.kind == "status":
            to = data.get("to", "")
            step = {"at": entry.at, "status": to,
                    "label": "Đang điều chuyển đơn vị xử lý" if to == "returned" else flow.label(to)}
            if data.get("reason") and to not in PUBLIC_HIDDEN_REASONS:
                step["note"] = mask_personal(str(data["reason"]))
            steps.append(step)
        elif entry.kind == "escalation" and data.get("reason") == "overdue":
            steps.append({"at": entry.at, "status": "overdue", "label": "Quá hạn, đã báo cáo cấp trên"})
    return steps


def photo_ids(session: Session, case_id: uuid.UUID, kind: str) -> list[uuid.UUID]:
    """Attachment ids of a case's report or result photos, oldest first."""
    return list(session.scalars(select(ReportPhoto.attachment_id).where(
        ReportPhoto.case_id == case_id, ReportPhoto.kind == kind).order_by(ReportPhoto.created_at)))


def public_view(session: Session, *, settings: Settings, tracking_code: str, now: datetime | None = None) -> dict:
    """What the holder of a tracking code sees: the report, its status and public timeline, the result; no person."""
    now = now or utcnow()
    submission, case = submission_by_code(session, tracking_code)
    detail = session.get(ReportDetail, case.id)
    assert detail is not None
    category = session.get(ReportCategory, detail.category)
    base = f"/api/public/citizen-reports/{submission.tracking_code}/photos"
    return {
        "tracking_code": submission.tracking_code, "report_code": case.code, "linked": not submission.is_primary,
        "category": detail.category, "category_name_vi": category.name_vi if category else detail.category,
        "category_name_en": category.name_en if category else detail.category,
        "description": public_description(session, case), "address": detail.address,
        # Tracking codes get passed around: the point is as coarse as on the public map.
        "lon": coarse(detail.lon, settings.citizen_reports_public_decimals),
        "lat": coarse(detail.lat, settings.citizen_reports_public_decimals), "unit_code": case.unit_code,
        "unit_name": session.scalar(select(Unit.name).where(Unit.code == case.unit_code)),
        "status": case.status, "status_label_vi": public_status_label(case), "is_open": case.is_open,
        "overdue": cases.is_overdue(case, now), "created_at": case.created_at, "due_at": case.due_at,
        "handling_agency": _agency_name(session, case.owner_agency_id),
        "timeline": public_timeline(session, case),
        "result": ({"text": mask_personal(detail.result_text), "at": detail.result_at,
                    "photos": [f"/api/public/citizen-reports/photos/{p}"
                               for p in photo_ids(session, case.id, "result")]} if detail.result_at else None),
        "photos": [f"{base}/{p}" for p in photo_ids(session, case.id, "report")],
        "rating": detail.rating, "can_rate": case.status == "resolved", "can_reopen": case.status == "resolved",
    }


def public_photo(
    session: Session, *, settings: Settings, attachment_id: uuid.UUID, tracking_code: str | None = None
) -> tuple[CaseAttachment, Path]:
    """A stored photo: result photos are public; report photos only through one of the case's tracking codes."""
    photo = session.get(ReportPhoto, attachment_id)
    if photo is None:
        raise NotFound("photo not found")
    if tracking_code is None:
        if photo.kind != "result":
            raise NotFound("photo not found")
    else:
        _, case = submission_by_code(session, tracking_code)
        if case.id != photo.case_id:
            raise NotFound("photo not found")
    attachment = session.get(CaseAttachment, attachment_id)
    assert attachment is not None
    path = attachments.files_dir(Path(settings.data_dir)) / attachment.storage_path
    if not path.is_file():
        raise NotFound("the photo's file is missing from storage")
    return attachment, path


def rate(
    session: Session, *, tracking_code: str, rating: int, comment: str = "", now: datetime | None = None
) -> Case:
    """The citizen rates the result (1 to 5): the case moves to 'rated' and closes; once only."""
    now = now or utcnow()
    submission, case = submission_by_code(session, tracking_code)
    if not isinstance(rating, int) or isinstance(rating, bool) or not 1 <= rating <= 5:
        raise ValidationFailed("rating must be 1 to 5", [FieldError(["body", "rating"], "an integer from 1 to 5")])
    comment = _text(comment, ["body", "comment"], 2000)
    if case.status != "resolved":
        raise DomainError(f"only a resolved report can be rated; this one is {case.status!r}", 409, "not_resolved")
    detail = session.get(ReportDetail, case.id)
    assert detail is not None
    detail.rating, detail.rating_comment, detail.rated_at, detail.updated_at = rating, comment, now, now
    contact = (submission.contact_name, submission.contact_phone, submission.contact_email)
    note = f"{rating}/5" + (f": {mask_personal(comment, contact)}" if comment else "")
    return cases.change_status(session, actor=citizen_actor(), case_id=case.id, status="rated", reason=note, now=now)


def reopen(session: Session, *, tracking_code: str, reason: str, now: datetime | None = None) -> Case:
    """The citizen is not satisfied with the result: the report reopens, with their reason."""
    submission, case = submission_by_code(session, tracking_code)
    reason = _text(reason, ["body", "reason"], 2000, True)
    if case.status != "resolved":
        raise DomainError(f"only a resolved report can be reopened; this one is {case.status!r}", 409,
                          "not_resolved")
    contact = (submission.contact_name, submission.contact_phone, submission.contact_email)
    return cases.change_status(session, actor=citizen_actor(), case_id=case.id, status="reopened",
                               reason=mask_personal(reason, contact), now=now)


# --- what operators and agencies do -------------------------------------------------------------------------------


def report_case(session: Session, *, actor: Actor, case_id: uuid.UUID, permission: str | None = None) -> Case:
    """A citizen report inside the actor's scope (404 otherwise, and for cases of other types)."""
    case = cases.get_case(session, actor=actor, case_id=case_id)
    if case.case_type != CASE_TYPE:
        raise NotFound(f"citizen report {case_id} not found")
    if permission:
        actor.require(permission)
    return case


def forward(
    session: Session, *, actor: Actor, case_id: uuid.UUID, agency_id: uuid.UUID | None = None,
    unit_code: str | None = None, note: str = "", now: datetime | None = None,
) -> Case:
    """Forward a report to its handling agency: the one given, else the route for its category and unit."""
    now = now or utcnow()
    case = report_case(session, actor=actor, case_id=case_id, permission="cases:assign")
    if "forwarded" not in flow_for(CASE_TYPE).allowed(case.status):
        raise DomainError(f"a report that is {case.status!r} cannot be forwarded", 409, "transition_not_allowed",
                          [FieldError(["body"], f"allowed from {case.status!r}: "
                                                f"{', '.join(flow_for(CASE_TYPE).allowed(case.status))}")])
    if agency_id is None:
        unit = session.get(Unit, normalize_code(unit_code)) if unit_code else session.get(Unit, case.unit_code)
        detail = session.get(ReportDetail, case.id)
        category = session.get(ReportCategory, detail.category) if detail else None
        routed = route_for(session, category=category, unit=unit) if category and unit else None
        if routed is not None and routed.id != case.owner_agency_id:
            agency_id = routed.id
    if agency_id is not None or (unit_code and normalize_code(unit_code) != case.unit_code):
        cases.assign(session, actor=actor, case_id=case.id, unit_code=unit_code, agency_id=agency_id, note=note,
                     now=now)
    if case.owner_agency_id is None:
        raise ValidationFailed("no agency handles this report here",
                               [FieldError(["body", "agency_id"], "give the handling agency")])
    return cases.change_status(session, actor=actor, case_id=case.id, status="forwarded", reason=note, now=now)


def resolve(
    session: Session, *, actor: Actor, settings: Settings, case_id: uuid.UUID, result: str,
    photos: list[tuple[str, bytes]] | None = None, now: datetime | None = None,
) -> Case:
    """Publish the result (text and up to 3 photos) and mark the report resolved; a forwarded one is taken first."""
    now = now or utcnow()
    case = report_case(session, actor=actor, case_id=case_id, permission="cases:write")
    text = _text(result, ["body", "result"], MAX_DESCRIPTION, True)
    photos = photos or []
    if len(photos) > MAX_RESULT_PHOTOS:
        raise ValidationFailed("too many photos", [FieldError(["body", "photos"], f"at most {MAX_RESULT_PHOTOS}")])
    if case.status not in ("forwarded", "in_progress", "reopened"):
        raise DomainError(f"a report that is {case.status!r} cannot be resolved", 409, "transition_not_allowed")
    clean = [clean_photo(raw, max_bytes=settings.citizen_reports_max_photo_bytes, loc=["body", "photos", i])
             for i, (_n, raw) in enumerate(photos)]
    if case.status != "in_progress":
        cases.change_status(session, actor=actor, case_id=case.id, status="in_progress", now=now)
    detail = session.get(ReportDetail, case.id)
    assert detail is not None
    detail.result_text, detail.result_at, detail.updated_at = text, now, now
    if clean:
        _attach_photos(session, case=case, photos=clean, kind="result", submission_id=None, settings=settings,
                       actor=actor, start=_photo_count(session, case.id, "result") + 1)
    return cases.change_status(session, actor=actor, case_id=case.id, status="resolved", reason=text, now=now)


def operator_view(session: Session, *, actor: Actor, case_id: uuid.UUID) -> dict[str, Any]:
    """A report for staff in scope: exact place, submissions, photos; contact only if shared or allowed to see."""
    case = report_case(session, actor=actor, case_id=case_id)
    detail = session.get(ReportDetail, case.id)
    assert detail is not None
    may_see_all = actor.can(CONTACT)
    subs = []
    for s in session.scalars(select(ReportSubmission).where(ReportSubmission.case_id == case.id)
                             .order_by(ReportSubmission.created_at)):
        shown = may_see_all or s.share_contact
        contact = ({"name": s.contact_name, "phone": s.contact_phone, "email": s.contact_email}
                   if shown and (s.contact_name or s.contact_phone or s.contact_email) else None)
        subs.append({"id": s.id, "primary": s.is_primary, "channel": s.channel, "created_at": s.created_at,
                     "share_contact": s.share_contact, "has_contact": bool(s.contact_phone or s.contact_email),
                     "contact": contact, "media_url": s.media_url or None,
                     "description": s.description if shown else mask_personal(
                         s.description, (s.contact_name, s.contact_phone, s.contact_email))})
    photos = session.execute(select(ReportPhoto).where(ReportPhoto.case_id == case.id)
                             .order_by(ReportPhoto.created_at)).scalars().all()
    return {
        "case_id": case.id, "code": case.code, "status": case.status,
        "status_label_vi": flow_for(CASE_TYPE).label(case.status), "category": detail.category,
        "lon": detail.lon, "lat": detail.lat, "address": detail.address, "unit_code": case.unit_code,
        "owner_agency_id": case.owner_agency_id, "owner_agency_name": _agency_name(session, case.owner_agency_id),
        "due_at": case.due_at, "first_response_due_at": case.first_response_due_at,
        "overdue": cases.is_overdue(case), "linked_count": detail.linked_count, "channel": detail.channel,
        "result": detail.result_text or None, "result_at": detail.result_at, "rating": detail.rating,
        "rating_comment": detail.rating_comment or None, "submissions": subs,
        "photos": [{"attachment_id": p.attachment_id, "kind": p.kind, "width": p.width, "height": p.height,
                    "location_removed": p.had_location,
                    "url": f"/api/cases/{case.id}/attachments/{p.attachment_id}"} for p in photos],
        "suggested_agency_id": _suggested(session, case, detail),
    }


def _suggested(session: Session, case: Case, detail: ReportDetail) -> uuid.UUID | None:
    category = session.get(ReportCategory, detail.category)
    unit = session.get(Unit, case.unit_code)
    agency = route_for(session, category=category, unit=unit) if category and unit else None
    return agency.id if agency else None


# --- public map and statistics ------------------------------------------------------------------------------------


def _public_cases(session: Session, *, unit: str | None = None, since: datetime | None = None,
                  until: datetime | None = None) -> Any:
    stmt = select(Case).where(Case.case_type == CASE_TYPE, Case.status != "rejected")
    if unit:
        path = session.scalar(select(Unit.path).where(Unit.code == normalize_code(unit)))
        if path is None:
            raise ValidationFailed(f"unknown unit {unit!r}", [FieldError(["query", "unit"], "unknown unit")])
        stmt = stmt.where(or_(Case.unit_path == path, Case.unit_path.startswith(path + ".", autoescape=True)))
    if since:
        stmt = stmt.where(Case.created_at >= since)
    if until:
        stmt = stmt.where(Case.created_at < until)
    return stmt


def map_features(
    session: Session, *, settings: Settings, bbox: tuple[float, float, float, float] | None = None,
    category: str | None = None, status: str | None = None, unit: str | None = None,
    since: datetime | None = None, limit: int = 5000, now: datetime | None = None,
) -> dict[str, Any]:
    """Anonymised reports as a GeoJSON FeatureCollection: category, status, dates, coarse point; no person."""
    now = now or utcnow()
    decimals = settings.citizen_reports_public_decimals
    base = _public_cases(session, unit=unit, since=since).subquery()
    stmt = (select(base.c.code, base.c.status, base.c.created_at, base.c.is_open, base.c.due_at, base.c.unit_code,
                   ReportDetail.category, ReportDetail.lon, ReportDetail.lat)
            .join(ReportDetail, ReportDetail.case_id == base.c.id).where(ReportDetail.lon.is_not(None)))
    if bbox:
        stmt = stmt.where(ReportDetail.lon.between(bbox[0], bbox[2]), ReportDetail.lat.between(bbox[1], bbox[3]))
    if category:
        stmt = stmt.where(ReportDetail.category == category)
    if status:
        stmt = stmt.where(base.c.status == status)
    names = {c.code: c.name_vi for c in list_categories(session, include_inactive=True)}
    labels = {**flow_for(CASE_TYPE).definition.status_labels, "returned": "Đang điều chuyển đơn vị xử lý"}
    features = []
    for code, state, created, is_open, due, unit_code, kind, lon, lat in session.execute(
            stmt.order_by(base.c.created_at.desc()).limit(limit)):
        features.append({
            "type": "Feature", "id": code,
            "geometry": {"type": "Point", "coordinates": [round(lon, decimals), round(lat, decimals)]},
            "properties": {"code": code, "category": kind, "category_name": names.get(kind), "status": state,
                           "status_label": labels.get(state, state), "created_at": created.isoformat(),
                           "overdue": bool(is_open and due is not None and due < now), "unit_code": unit_code},
        })
    return {"type": "FeatureCollection", "features": features, "numberReturned": len(features)}


def statistics(
    session: Session, *, unit: str | None = None, since: datetime | None = None, until: datetime | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Counts by category, status and commune; on-time rate per agency (Decision 766); satisfaction."""
    now = now or utcnow()
    base = _public_cases(session, unit=unit, since=since, until=until).subquery()
    flow = flow_for(CASE_TYPE)
    names = {c.code: (c.name_vi, c.name_en) for c in list_categories(session, include_inactive=True)}
    by_category = [{"code": k, "name_vi": names.get(k, (k, k))[0], "name_en": names.get(k, (k, k))[1], "count": n}
                   for k, n in session.execute(select(base.c.category, func.count()).group_by(base.c.category)
                                               .order_by(func.count().desc()))]
    by_status = [{"status": k, "label_vi": flow.label(k), "count": n}
                 for k, n in session.execute(select(base.c.status, func.count()).group_by(base.c.status)
                                             .order_by(func.count().desc()))]
    by_commune = [{"code": k, "name": name, "count": n} for k, name, n in session.execute(
        select(base.c.unit_code, Unit.name, func.count()).join(Unit, Unit.code == base.c.unit_code)
        .group_by(base.c.unit_code, Unit.name).order_by(func.count().desc()))]
    on_time = func.sum(cast(base.c.resolved_on_time, Integer))
    resolved = func.sum(cast(base.c.resolved_at.is_not(None), Integer))
    late_open = func.sum(cast(and_(base.c.is_open, base.c.due_at < now), Integer))
    agencies = []
    for agency_id, name, total, handled, good, overdue in session.execute(
        select(base.c.owner_agency_id, Agency.name, func.count(), resolved, on_time, late_open)
        .outerjoin(Agency, Agency.id == base.c.owner_agency_id).group_by(base.c.owner_agency_id, Agency.name)
    ):
        handled, good, overdue = int(handled or 0), int(good or 0), int(overdue or 0)
        agencies.append({
            "agency_id": agency_id, "name": name or "(chưa giao)", "total": total, "handled": handled,
            "handled_on_time": good, "overdue_open": overdue,
            # Decision 766/QĐ-TTg: handled on time over all handled within the agency's authority.
            "on_time_rate": round(100.0 * good / handled, 1) if handled else None,
            # Stricter reading: open reports already past their deadline count as late too.
            "on_time_rate_with_overdue": round(100.0 * good / (handled + overdue), 1) if handled + overdue else None,
        })
    agencies.sort(key=lambda a: (-a["total"], a["name"]))
    ratings = dict(session.execute(
        select(ReportDetail.rating, func.count()).join(base, base.c.id == ReportDetail.case_id)
        .where(ReportDetail.rating.is_not(None)).group_by(ReportDetail.rating)).all())
    rated = sum(ratings.values())
    total_handled = sum(a["handled"] for a in agencies)
    total_good = sum(a["handled_on_time"] for a in agencies)
    open_now = session.scalar(select(func.count()).select_from(base).where(base.c.is_open)) or 0
    return {
        "total": sum(c["count"] for c in by_category), "open": open_now,
        "overdue_open": sum(a["overdue_open"] for a in agencies),
        "handled": total_handled, "handled_on_time": total_good,
        "on_time_rate": round(100.0 * total_good / total_handled, 1) if total_handled else None,
        "by_category": by_category, "by_status": by_status, "by_commune": by_commune, "agencies": agencies,
        "satisfaction": {
            "rated": rated,
            "average": round(sum(k * n for k, n in ratings.items()) / rated, 2) if rated else None,
            "satisfied_rate": round(100.0 * sum(n for k, n in ratings.items() if k >= 4) / rated, 1) if rated else None,
            "distribution": {str(k): ratings.get(k, 0) for k in range(1, 6)},
        },
        "generated_at": now,
    }


def counts_by_unit(session: Session) -> dict[str, dict[str, float | None]]:
    """Open reports and on-time rate (Decision 766) per province, for the wallboard indicators."""
    rows: dict[str, dict[str, float]] = defaultdict(lambda: {"open": 0.0, "handled": 0.0, "good": 0.0})
    stmt = (select(Case.unit_path, func.sum(cast(Case.is_open, Integer)),
                   func.sum(cast(Case.resolved_at.is_not(None), Integer)),
                   func.sum(cast(Case.resolved_on_time, Integer)))
            .where(Case.case_type == CASE_TYPE, Case.status != "rejected").group_by(Case.unit_path))
    for path, open_n, handled, good in session.execute(stmt):
        parts = path.split(".")
        row = rows[parts[1] if len(parts) > 1 else parts[0]]
        row["open"] += float(open_n or 0)
        row["handled"] += float(handled or 0)
        row["good"] += float(good or 0)
    return {k: {"open": v["open"], "on_time_rate": round(100.0 * v["good"] / v["handled"], 1) if v["handled"]
                else None} for k, v in rows.items()}
