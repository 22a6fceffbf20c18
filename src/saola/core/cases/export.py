"""Export of a case search to CSV (UTF-8 with BOM, for Excel) and XLSX, with Vietnamese headers."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from saola.core.auth.context import Actor
from saola.core.cases.flows import PRIORITIES, case_types
from saola.core.cases.models import Case
from saola.core.cases.service import CaseFilter, filtered, is_overdue
from saola.core.errors import ValidationFailed
from saola.core.units.models import Agency, Unit
from saola.db.types import utcnow

MAX_EXPORT_ROWS = 100_000
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

HEADERS: list[tuple[str, str]] = [
    ("code", "Mã"),
    ("type", "Loại"),
    ("category", "Lĩnh vực"),
    ("title", "Tiêu đề"),
    ("status", "Trạng thái"),
    ("priority", "Mức độ ưu tiên"),
    ("unit_code", "Mã đơn vị hành chính"),
    ("unit_name", "Đơn vị hành chính"),
    ("agency", "Cơ quan chủ trì"),
    ("created_at", "Ngày tạo"),
    ("due_at", "Hạn xử lý"),
    ("resolved_at", "Ngày xử lý xong"),
    ("on_time", "Đúng hạn"),
    ("overdue", "Quá hạn"),
    ("escalation_level", "Cấp chuyển lên"),
    ("progress_percent", "Tiến độ (%)"),
    ("created_by", "Người tạo"),
]
"""Column keys and their Vietnamese headers, in order."""


def _local(value: datetime | None, tz: ZoneInfo) -> str:
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M") if value else ""


def export_rows(
    session: Session, *, actor: Actor, filters: CaseFilter, timezone: str = "Asia/Ho_Chi_Minh",
    now: datetime | None = None,
) -> list[list[Any]]:
    """The header row and one row per matching case in the actor's scope, times in the local zone."""
    now = now or utcnow()
    tz = ZoneInfo(timezone)
    stmt = filtered(session, actor=actor, filters=filters, now=now)
    cases = list(session.scalars(stmt.order_by(Case.created_at.desc(), Case.id.desc()).limit(MAX_EXPORT_ROWS + 1)))
    if len(cases) > MAX_EXPORT_ROWS:
        raise ValidationFailed(f"more than {MAX_EXPORT_ROWS} cases match; narrow the search")
    units = dict(session.execute(select(Unit.code, Unit.name).where(Unit.code.in_({c.unit_code for c in cases})))
                 .all()) if cases else {}
    agency_ids = {c.owner_agency_id for c in cases if c.owner_agency_id}
    agencies = dict(session.execute(select(Agency.id, Agency.name).where(Agency.id.in_(agency_ids))).all()) \
        if agency_ids else {}
    known = case_types()
    rows: list[list[Any]] = [[label for _, label in HEADERS]]
    for c in cases:
        d = known.get(c.case_type)
        on_time = "" if c.resolved_on_time is None else ("Có" if c.resolved_on_time else "Không")
        rows.append([
            c.code, d.name_vi if d else c.case_type, (d.categories.get(c.category, c.category) if d else c.category),
            c.title, d.status_labels.get(c.status, c.status) if d else c.status, PRIORITIES.get(c.priority, c.priority),
            c.unit_code, units.get(c.unit_code, ""), agencies.get(c.owner_agency_id, "") if c.owner_agency_id else "",
            _local(c.created_at, tz), _local(c.due_at, tz), _local(c.resolved_at, tz), on_time,
            "Có" if is_overdue(c, now) else "Không", c.escalation_level, c.progress_percent, c.created_by,
        ])
    return rows


def _cell(value: Any) -> Any:
    # Spreadsheet programs run cells that start with these as formulas; a leading quote keeps them text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_csv(rows: list[list[Any]]) -> bytes:
    """CSV bytes, UTF-8 with a byte order mark so Excel shows Vietnamese correctly."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(rows: list[list[Any]], *, title: str = "Danh sách vụ việc") -> bytes:
    """An XLSX workbook with one sheet, a bold frozen header row and sized columns."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    workbook = Workbook(write_only=False)
    sheet = workbook.active
    assert sheet is not None
    sheet.title = title[:31]
    for row in rows:
        sheet.append([_cell(v) for v in row])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "A2"
    for i, (key, label) in enumerate(HEADERS, start=1):
        width = 50 if key == "title" else max(12, len(label) + 2)
        sheet.column_dimensions[sheet.cell(row=1, column=i).column_letter].width = width
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
