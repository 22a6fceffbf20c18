"""The demo's operations story, written through the kernel's case services as people would have done it.

An air-quality incident in Đà Lạt that the operator (`dieuhanh`) is working through, with its SOP checklist about
half ticked; and a directive from the provincial leader (`lanhdao`) to three wards of Đà Lạt with mixed progress:
one done on time, one late at 40 %, one not started and overdue (the SLA job escalates the late ones once the
server runs). The rules that fire on the smoke episode and the silent station come from the environment pack.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from saola.core.auth.context import Actor
from saola.core.auth.models import User
from saola.core.auth.service import actor_for_user
from saola.core.cases import directives, sops
from saola.core.cases import service as cases
from saola.core.cases.models import Case, SopTemplate
from saola.db.engine import transaction
from saola.demo.people import DEMO_PROVINCE, DEMO_WARD
from saola.packs.context import PackContext
from saola.packs.manager import get_registry

SOP_NAME = "Xử lý sự cố chất lượng không khí (khói, bụi mịn)"
INCIDENT_CATEGORY = "env.air_quality"
SOP_STEPS = [  # (title, owner role, expected minutes, required)
    ("Xác minh số liệu trạm quan trắc và hình ảnh camera", "operator", 15, True),
    ("Báo cáo lãnh đạo UBND tỉnh và thông báo Sở Nông nghiệp và Môi trường", "operator", 15, True),
    ("Phát khuyến cáo người dân hạn chế ra ngoài, đeo khẩu trang", "operator", 30, True),
    ("Điều lực lượng kiểm lâm, công an xác định nguồn khói", "agency_staff", 120, True),
    ("Cập nhật diễn biến cho lãnh đạo mỗi 2 giờ", "operator", 120, False),
    ("Đánh giá kết quả xử lý, đề xuất đóng sự cố", "operator", 60, True),
]
TICKED = 3  # the operator has done the first three steps
WARDS = ("24781", "24787", "24778")  # Xuân Hương, Cam Ly, Lâm Viên (Đà Lạt)


@dataclass(frozen=True)
class OperationsSeed:
    """What was seeded (ids for tests and the welcome text)."""

    incident_code: str
    directive_code: str


def _user_actor(session: Session, username: str, grants: dict[str, set[str]]) -> Actor:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise LookupError(f"demo user {username!r} is missing: seed the people first")
    return actor_for_user(session, user, grants)


def seed_operations(context: PackContext) -> OperationsSeed | None:
    """Seed the incident with its half-done SOP and the leader's directive; None when already there."""
    grants = get_registry(tuple(context.settings.disabled_packs)).permissions
    now = context.now.replace(microsecond=0)
    with transaction(context.session_factory) as session:
        if session.scalar(select(SopTemplate.id).where(SopTemplate.name == SOP_NAME)) is not None:
            return None
        operator = _user_actor(session, "dieuhanh", grants)
        leader = _user_actor(session, "lanhdao", grants)
        ward_staff = _user_actor(session, "xuanhuong", grants)
        incident = _incident(session, operator, now)
        directive = _directive(session, leader, operator, ward_staff, now)
        return OperationsSeed(incident_code=incident.code, directive_code=directive.code)


def _incident(session: Session, operator: Actor, now: datetime) -> Case:
    """The operator's SOP for smoke and fine dust, and an incident under way with half of it ticked."""
    sops.create_template(
        session, actor=operator, name=SOP_NAME, case_type="incident", category=INCIDENT_CATEGORY,
        unit_code=DEMO_PROVINCE, description="Quy trình mẫu của Trung tâm IOC tỉnh Lâm Đồng (dữ liệu demo).",
        steps=[sops.StepSpec(title=t, owner_role=r, expected_minutes=m, required=q) for t, r, m, q in SOP_STEPS])
    opened = now - timedelta(hours=3)
    case = cases.open_case(
        session, actor=operator, case_type="incident", title="Khói mù dày, AQI vượt 200 tại phường Xuân Hương",
        unit_code=DEMO_WARD, priority="high", category=INCIDENT_CATEGORY, now=opened,
        description="Trạm quan trắc Xuân Hương và camera hồ Xuân Hương ghi nhận khói mù dày từ sáng; "
                    "nghi do đốt thực bì ở vùng ven.")
    cases.change_status(session, actor=operator, case_id=case.id, status="acknowledged", now=opened + timedelta(
        minutes=8))
    cases.change_status(session, actor=operator, case_id=case.id, status="in_progress",
                        now=opened + timedelta(minutes=12))
    _, steps = sops.checklist(session, actor=operator, case_id=case.id)
    notes = ["PM2.5 trạm Xuân Hương 168 µg/m³, camera xác nhận khói.", "Đã gọi điện báo cáo đồng chí Phó Chủ tịch.",
             "Đã phát trên loa phường và Zalo OA của tỉnh."]
    for k, step in enumerate(steps[:TICKED]):
        sops.tick_step(session, actor=operator, case_id=case.id, step_id=step.id, note=notes[k],
                       now=opened + timedelta(minutes=20 + 35 * k))
    cases.add_comment(session, actor=operator, case_id=case.id, now=opened + timedelta(minutes=130),
                      text="Đang chờ Hạt kiểm lâm Đà Lạt xác định vị trí điểm đốt.")
    return case


def _directive(session: Session, leader: Actor, operator: Actor, ward_staff: Actor, now: datetime) -> Case:
    """The leader's directive to three wards, issued four days ago, due six hours ago: done, 40 % and late, 0 %."""
    issued = now - timedelta(days=4)
    directive, tasks = directives.issue_directive(
        session, actor=leader, title="Kiểm tra, xử lý triệt để các điểm đốt thực bì gây khói mù trên địa bàn",
        description="Yêu cầu UBND các phường rà soát, lập biên bản và xử lý các điểm đốt thực bì, rác thải; báo cáo "
                    "kết quả về UBND tỉnh (qua Trung tâm IOC) trước thời hạn.",
        priority="high", due_at=now - timedelta(hours=6), unit_code=DEMO_PROVINCE, now=issued,
        recipients=[directives.Recipient(unit_code=code) for code in WARDS])
    by_unit = {t.unit_code: t for t in tasks}
    reports = {  # ward: (reporter, [(days after issue, percent, text)])
        WARDS[0]: (ward_staff, [(1, 30, "Đã rà soát 4/12 tổ dân phố."), (2, 70, "Đã lập biên bản 3 trường hợp."),
                                (3, 100, "Hoàn thành: xử lý 5 điểm đốt, phạt 2 hộ; báo cáo kèm theo.")]),
        WARDS[1]: (operator, [(2, 20, "Đang rà soát khu vực giáp ranh rừng thông."),
                              (3, 40, "Còn 2 điểm chưa xác định được chủ đất.")]),
    }
    for code, (reporter, steps) in reports.items():
        for days, percent, text in steps:
            # Ward staff report for their own ward; Cam Ly has no demo account, so the IOC operator keys in the
            # ward's written reports.
            directives.report_progress(session, actor=reporter, case_id=by_unit[code].id, percent=percent,
                                       text=text, now=issued + timedelta(days=days))
    return directive
