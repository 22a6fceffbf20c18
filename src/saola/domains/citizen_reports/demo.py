"""Demo thread of citizen reports: a trickle of reports in Đà Lạt over the last 30 days, and one a minute live.

Everything goes through the pack's service (and so the kernel's cases): reports are submitted, forwarded by the
IOC, taken and resolved by agencies, rated by citizens; most on time, some late, some still open past their
deadline (the kernel's SLA pass escalates those). Seeded random, so two seeds tell the same story.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from saola.config import Settings
from saola.core.auth.context import system_actor
from saola.core.cases import service as cases
from saola.core.cases.models import Case
from saola.core.cases.sla import run_sla_checks
from saola.core.errors import DomainError
from saola.core.units.models import Unit
from saola.db.engine import transaction
from saola.domains.citizen_reports import service
from saola.domains.citizen_reports.models import ReportSubmission
from saola.packs.context import PackContext

log = logging.getLogger(__name__)

DAYS = 30
PER_DAY = (2, 6)


@dataclass(frozen=True)
class Place:
    """A plausible place in Đà Lạt: a ward, a point, an address."""

    unit_code: str
    lon: float
    lat: float
    address: str


PLACES: list[Place] = [
    Place("24781", 108.4420, 11.9416, "Đường Trần Quốc Toản, ven hồ Xuân Hương"),
    Place("24781", 108.4372, 11.9429, "Chợ Đà Lạt, đường Nguyễn Thị Minh Khai"),
    Place("24781", 108.4460, 11.9370, "Quảng trường Lâm Viên, đường Trần Quốc Toản"),
    Place("24781", 108.4395, 11.9395, "Đường Phan Đình Phùng"),
    Place("24781", 108.4486, 11.9489, "Đồi Cù, đường Phù Đổng Thiên Vương"),
    Place("24778", 108.4548, 11.9416, "Ga Đà Lạt, đường Quang Trung"),
    Place("24778", 108.4600, 11.9480, "Đường Hùng Vương"),
    Place("24778", 108.4488, 11.9797, "Thung lũng Tình Yêu, đường Mai Anh Đào"),
    Place("24787", 108.4256, 11.9361, "Thác Cam Ly, đường Hoàng Văn Thụ"),
    Place("24787", 108.4300, 11.9480, "Đường Hai Bà Trưng"),
    Place("24787", 108.4180, 11.9300, "Đường Ankroet"),
    Place("24805", 108.5000, 11.9450, "Đường Xuân Thọ"),
    Place("24805", 108.5150, 11.9300, "Trường Xuân, quốc lộ 20"),
    Place("24846", 108.4400, 12.0300, "Thị trấn Lạc Dương cũ, đường Langbiang"),
    Place("24846", 108.4250, 12.0050, "Đường Đan Kia"),
]

TEXTS: dict[str, list[str]] = {
    "lighting": ["Đèn đường bị hỏng, buổi tối rất tối, nguy hiểm cho người đi bộ.",
                 "Cột đèn chiếu sáng chập chờn, lúc sáng lúc tắt."],
    "trees": ["Cây xanh nghiêng sắp đổ ra đường sau mưa lớn.", "Cành cây gãy chắn ngang vỉa hè."],
    "water": ["Cống thoát nước bị nghẹt, nước tràn lên mặt đường khi mưa.", "Nắp cống bị vỡ, nguy hiểm."],
    "traffic": ["Ổ gà lớn giữa đường, xe máy dễ té ngã.", "Biển báo giao thông bị che khuất."],
    "urban_order": ["Lấn chiếm vỉa hè để buôn bán, người đi bộ phải xuống lòng đường.",
                    "Đổ xà bần không đúng nơi quy định."],
    "environment": ["Rác thải tập kết lâu ngày chưa được thu gom, bốc mùi.", "Đốt rác gây khói cả khu phố."],
    "electricity": ["Dây điện võng thấp qua đường."],
    "telecom": ["Cáp viễn thông đứt, treo lơ lửng trên vỉa hè."],
    "public_transport": ["Nhà chờ xe buýt bị hư hỏng mái che."],
    "health": ["Cơ sở kinh doanh thực phẩm không đảm bảo vệ sinh."],
    "tourism": ["Chèo kéo khách du lịch tại khu vực chợ đêm."],
}
WEIGHTS = {"lighting": 5, "trees": 4, "water": 4, "traffic": 4, "urban_order": 4, "environment": 3,
           "electricity": 1, "telecom": 1, "public_transport": 1, "health": 1, "tourism": 1}
RESULTS = ["Đơn vị đã kiểm tra hiện trường và khắc phục xong.", "Đã sửa chữa, thay thế và đưa vào sử dụng bình thường.",
           "Đã thu gom, xử lý và nhắc nhở các hộ liên quan."]
IOC = system_actor("Trung tâm IOC (demo)")
AGENCY = system_actor("Đơn vị xử lý (demo)")


def _submission(rng: random.Random) -> service.Submission:
    category = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
    place = rng.choice(PLACES)
    # Spread points a little around the place so the map is not a few piles.
    lon = round(place.lon + rng.uniform(-0.002, 0.002), 6)
    lat = round(place.lat + rng.uniform(-0.002, 0.002), 6)
    phone = f"09{rng.randint(10_000_000, 99_999_999)}" if rng.random() < 0.7 else ""
    return service.Submission(description=rng.choice(TEXTS[category]), category=category, lon=lon, lat=lat,
                              address=place.address, unit_code=place.unit_code, contact_phone=phone,
                              contact_name=rng.choice(["", "Nguyễn Văn A", "Trần Thị B", "Lê Văn C"]),
                              share_contact=rng.random() < 0.3)


def _advance(session: Session, rng: random.Random, case: Case, received: datetime, now: datetime,
             settings: Settings) -> None:
    """Walk one report through the flow, at plausible times, stopping where `now` (or fate) says."""
    forward_at = received + timedelta(minutes=rng.choice([2, 3, 4, 4, 5, 8, 15]))
    if forward_at >= now or (now - received < timedelta(hours=12) and rng.random() < 0.4):
        return  # still waiting for the IOC to triage it
    service.forward(session, actor=IOC, case_id=case.id, now=forward_at)
    taken_at = forward_at + timedelta(hours=rng.uniform(1, 20))
    if taken_at >= now or (now - received < timedelta(days=2) and rng.random() < 0.35):
        return  # the agency has not taken it yet
    cases.change_status(session, actor=AGENCY, case_id=case.id, status="in_progress", now=taken_at)
    fate = rng.random()
    days = rng.uniform(0.5, 4.5) if fate < 0.8 else rng.uniform(5.2, 8)  # about one in five is late
    resolved_at = received + timedelta(days=days)
    if resolved_at >= now or fate > 0.95:
        return  # still being handled (and past its deadline if old enough)
    service.resolve(session, actor=AGENCY, settings=settings, case_id=case.id,
                    result=rng.choice(RESULTS), now=resolved_at)
    code = session.scalar(select(ReportSubmission.tracking_code).where(
        ReportSubmission.case_id == case.id, ReportSubmission.is_primary))
    assert code is not None
    rated_at = resolved_at + timedelta(hours=rng.uniform(2, 48))
    if rated_at >= now or rng.random() < 0.4:
        return
    if rng.random() < 0.08:
        service.reopen(session, tracking_code=code, reason="Sự việc vẫn tái diễn sau khi xử lý.",
                       now=rated_at)
        return
    rating = rng.choices([5, 4, 3, 2, 1], weights=[45, 30, 12, 8, 5])[0] if days < 5 else rng.choice([2, 3, 4])
    service.rate(session, tracking_code=code, rating=rating, now=rated_at)


def seed(context: PackContext) -> int:
    """About 120 reports over 30 days in Đà Lạt's wards, moved along their flow; returns how many."""
    rng = random.Random(7022)
    now = context.now
    with transaction(context.session_factory) as session:
        known = set(session.scalars(select(Unit.code).where(Unit.code.in_({p.unit_code for p in PLACES}))))
    if len(known) < len({p.unit_code for p in PLACES}):
        log.warning("citizen_reports: Đà Lạt wards are missing from the unit tree; no demo reports")
        return 0
    written = 0
    label = "Phản ánh hiện trường / citizen reports"
    for day in range(DAYS, -1, -1):
        with transaction(context.session_factory) as session:
            for _ in range(rng.randint(*PER_DAY)):
                received = now - timedelta(days=day, minutes=rng.randint(0, 16 * 60))
                if received >= now:
                    continue
                try:
                    result = service.submit(session, settings=context.settings, data=_submission(rng),
                                            channel="demo", now=received)
                except DomainError:
                    log.exception("citizen_reports: a demo report was refused")
                    continue
                written += 1
                if not result.linked:
                    _advance(session, rng, result.case, received, now, context.settings)
        context.progress(label, (DAYS - day + 1) / (DAYS + 1))
    with transaction(context.session_factory) as session:
        run_sla_checks(session, now=now)
    return written


def tick(context: PackContext) -> None:
    """Live: a new report now, and one waiting report moves a step."""
    rng = context.rng
    now = context.now
    with transaction(context.session_factory) as session:
        service.submit(session, settings=context.settings, data=_submission(rng), channel="demo", now=now)
        waiting = session.scalars(select(Case).where(Case.case_type == service.CASE_TYPE, Case.is_open,
                                                     Case.status.in_(("received", "forwarded", "in_progress")))
                                  .order_by(Case.created_at).limit(5)).all()
        if not waiting:
            return
        case = rng.choice(waiting)
        if case.status == "received":
            service.forward(session, actor=IOC, case_id=case.id, now=now)
        elif case.status == "forwarded":
            cases.change_status(session, actor=AGENCY, case_id=case.id, status="in_progress", now=now)
        else:
            service.resolve(session, actor=AGENCY, settings=context.settings, case_id=case.id,
                            result=rng.choice(RESULTS), now=now)
