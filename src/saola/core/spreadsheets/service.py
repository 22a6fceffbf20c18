"""Indicator values and plan targets from spreadsheets (XLSX or CSV): the template, reading, and the import.

One row says: indicator code, unit code, period (2026, 2026-Q4 or 2026-11), and a value (written as an observation
at the start of the period, local time), a plan target, or both, with an optional note. Headers may be Vietnamese
("Mã chỉ tiêu", "Mã đơn vị", "Kỳ", "Giá trị", "Kế hoạch", "Ghi chú") or English (indicator, unit, period, value,
target, note), with or without diacritics. A file is imported all or nothing; every refused row is reported with
its row number as the spreadsheet shows it.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Font, PatternFill
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from saola.core.auth.context import Actor
from saola.core.errors import FieldError, Forbidden, ValidationFailed
from saola.core.indicators.models import Indicator
from saola.core.indicators.schemas import TargetIn
from saola.core.indicators.service import indicators_by_code, parse_period, upsert_targets
from saola.core.observations import service as observations
from saola.core.observations.schemas import MAX_BATCH
from saola.core.spreadsheets.schemas import ImportReport
from saola.core.text import fold
from saola.core.units.models import Unit
from saola.core.units.service import normalize_code, scope_condition

Progress = Callable[[str, float], None]

MAX_ROWS = 100_000
MAX_NOTE = 500
HEADER_SCAN_ROWS = 10

# Column key -> (Vietnamese header, English header, help shown in the template).
COLUMNS: dict[str, tuple[str, str, str]] = {
    "indicator": ("Mã chỉ tiêu", "indicator", "Mã chỉ tiêu trong danh mục, ví dụ kt.grdp_growth"),
    "unit": ("Mã đơn vị", "unit", "Mã đơn vị hành chính: 68 (tỉnh), 24781 (xã/phường)"),
    "period": ("Kỳ", "period", "Năm 2026, quý 2026-Q4 hoặc tháng 2026-11"),
    "value": ("Giá trị", "value", "Số liệu thực hiện của kỳ (để trống nếu chỉ nhập kế hoạch)"),
    "target": ("Kế hoạch", "target", "Chỉ tiêu kế hoạch của kỳ (để trống nếu chỉ nhập số liệu)"),
    "note": ("Ghi chú", "note", "Ghi chú (không bắt buộc, tối đa 500 ký tự)"),
}
REQUIRED = ("indicator", "unit", "period")
_ALIASES: dict[str, str] = {}
for _key, (_vi, _en, _help) in COLUMNS.items():
    for _name in (_vi, _en, _key):
        _ALIASES[fold(_name)] = _key
_ALIASES.update({fold(a): k for a, k in (
    ("mã chỉ tiêu", "indicator"), ("chỉ tiêu", "indicator"), ("indicator code", "indicator"), ("code", "indicator"),
    ("mã đơn vị hành chính", "unit"), ("đơn vị", "unit"), ("unit code", "unit"),
    ("kỳ báo cáo", "period"), ("kỳ số liệu", "period"), ("thời kỳ", "period"),
    ("thực hiện", "value"), ("số liệu", "value"), ("kết quả", "value"),
    ("chỉ tiêu kế hoạch", "target"), ("kế hoạch năm", "target"), ("plan", "target"), ("plan target", "target"),
    ("ghi chu", "note"), ("notes", "note"),
)})


@dataclass(slots=True)
class SheetRow:
    """One data row: its number as the spreadsheet shows it and its cells by column key."""

    number: int
    cells: dict[str, Any]


# ---------------------------------------------------------------------------------------------------------------
# templates


def template_xlsx(session: Session, *, actor: Actor) -> bytes:
    """An XLSX template: a data sheet with the headers, and a guide listing active indicators and units in scope."""
    actor.require("indicators:read")
    wb = Workbook()
    data = wb.active
    assert data is not None
    data.title = "Dữ liệu"
    bold, fill = Font(bold=True, color="FFFFFF"), PatternFill("solid", fgColor="1F4E78")
    for col, (key, (vi, _en, help_text)) in enumerate(COLUMNS.items(), start=1):
        cell = data.cell(row=1, column=col, value=vi)
        cell.font, cell.fill = bold, fill
        cell.alignment = Alignment(horizontal="center")
        data.column_dimensions[cell.column_letter].width = 36 if key == "note" else 18
        cell.comment = Comment(help_text, "Saola")
        # Periods and codes are text: keep Excel from turning 2026-11 into a date or 01 into 1.
        if key in REQUIRED:
            for row in range(2, 1002):
                data.cell(row=row, column=col).number_format = "@"
    data.freeze_panes = "A2"

    guide = wb.create_sheet("Hướng dẫn")
    lines = [
        ("Hướng dẫn nhập số liệu chỉ tiêu / How to fill in this template",),
        ("Mỗi dòng của trang 'Dữ liệu': một chỉ tiêu, một đơn vị, một kỳ; có Giá trị, Kế hoạch hoặc cả hai.",),
        ("Each row of the 'Dữ liệu' sheet: one indicator, one unit, one period; a value, a target or both.",),
        ("Tiêu đề cột có thể viết tiếng Việt hoặc tiếng Anh / headers may be Vietnamese or English:",),
        *[(vi, en, help_text) for vi, en, help_text in COLUMNS.values()],
        ("Cả tệp được nhập hoặc không nhập gì; mọi dòng lỗi được báo kèm số dòng.",),
        ("The whole file is imported or nothing is; every refused row is reported with its row number.",),
        (),
        ("Mã chỉ tiêu", "Tên chỉ tiêu", "Đơn vị tính", "Kỳ"),
    ]
    for line in lines:
        guide.append(list(line))
    guide["A1"].font = Font(bold=True, size=13)
    for indicator in session.scalars(select(Indicator).where(Indicator.is_active.is_(True))
                                     .order_by(Indicator.code).limit(5000)):
        guide.append([indicator.code, indicator.name_vi, indicator.unit, indicator.periodicity])
    guide.append([])
    guide.append(["Mã đơn vị", "Tên đơn vị", "Cấp"])
    units = session.execute(select(Unit.code, Unit.name, Unit.level).where(scope_condition(actor, Unit.path))
                            .order_by(Unit.path).limit(5000))
    for code, name, level in units:
        guide.append([code, name, level])
    for letter, width in zip("ABCD", (22, 48, 40, 14), strict=True):
        guide.column_dimensions[letter].width = width
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def template_csv() -> bytes:
    """A CSV template: the Vietnamese header line, UTF-8 with a byte-order mark so Excel reads the diacritics."""
    return ("\ufeff" + ",".join(vi for vi, _en, _help in COLUMNS.values()) + "\r\n").encode("utf-8")


# ---------------------------------------------------------------------------------------------------------------
# reading


def _header_map(cells: Sequence[Any]) -> dict[int, str] | None:
    """Column index -> key when the cells look like a header row (every required column present)."""
    found: dict[int, str] = {}
    for i, cell in enumerate(cells):
        if isinstance(cell, str):
            key = _ALIASES.get(fold(cell.replace("*", "").replace(":", "")))
            if key is not None and key not in found.values():
                found[i] = key
    keys = set(found.values())
    if all(k in keys for k in REQUIRED) and ({"value", "target"} & keys):
        return found
    return None


def _rows_from(grid: Iterator[tuple[int, Sequence[Any]]]) -> Iterator[SheetRow]:
    """Data rows after the header row (searched in the first rows); blank rows are skipped."""
    header: dict[int, str] | None = None
    for number, cells in grid:
        if header is None:
            header = _header_map(cells)
            if header is None and number >= HEADER_SCAN_ROWS:
                break
            continue
        if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
            continue
        yield SheetRow(number, {key: cells[i] if i < len(cells) else None for i, key in header.items()})
    if header is None:
        vi = ", ".join(f"'{COLUMNS[k][0]}'" for k in REQUIRED)
        raise ValidationFailed(
            f"no header row found in the first {HEADER_SCAN_ROWS} rows: it needs {vi} and 'Giá trị' or 'Kế hoạch' "
            "(or indicator, unit, period and value or target)",
            [FieldError(["file", "header"], "header row not found")])


def _xlsx_grid(data: bytes) -> Iterator[tuple[int, Sequence[Any]]]:
    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ValidationFailed(f"the file is not a readable XLSX workbook: {exc}",
                               [FieldError(["file"], "unreadable XLSX")]) from None
    try:
        sheets = wb.worksheets
        # The sheet named like the template's, else the first one.
        sheet = next((s for s in sheets if fold(s.title) in ("du lieu", "data")), sheets[0])
        yield from enumerate(sheet.iter_rows(values_only=True, max_col=40), start=1)
    finally:
        wb.close()


def _csv_grid(data: bytes) -> Iterator[tuple[int, Sequence[Any]]]:
    for encoding in ("utf-8-sig", "cp1258"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - cp1258 decodes nearly anything
        raise ValidationFailed("the CSV file is neither UTF-8 nor Windows-1258", [FieldError(["file"], "encoding")])
    if "\x00" in text:
        raise ValidationFailed("the CSV file holds NUL characters", [FieldError(["file"], "binary content")])
    sample = text[:4096]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    yield from enumerate(reader, start=1)


def read_rows(data: bytes, *, filename: str = "") -> list[SheetRow]:
    """The data rows of an XLSX or CSV file (told apart by content), at most MAX_ROWS of them."""
    is_xlsx = data[:4] == b"PK\x03\x04" or filename.lower().endswith((".xlsx", ".xlsm"))
    grid = _xlsx_grid(data) if is_xlsx else _csv_grid(data)
    rows: list[SheetRow] = []
    for row in _rows_from(grid):
        rows.append(row)
        if len(rows) > MAX_ROWS:
            raise ValidationFailed(f"a file holds at most {MAX_ROWS:,} rows",
                                   [FieldError(["file"], f"more than {MAX_ROWS:,} rows")])
    return rows


# ---------------------------------------------------------------------------------------------------------------
# checking cells


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _number(value: Any) -> float | str | None:
    """A finite number, None for an empty cell, or the reason the cell is not a number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return "expected a number"
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip().replace(" ", "").replace("\u00a0", "")
        if "," in text and "." not in text:
            text = text.replace(",", ".")  # 1,5 written the Vietnamese way
        elif "," in text:
            text = text.replace(",", "")  # 1,234.5
        try:
            number = float(text)
        except ValueError:
            return f"expected a number, got {str(value)[:40]!r}"
    if not math.isfinite(number):
        return "expected a finite number"
    return number


def _period(value: Any) -> str | None:
    if isinstance(value, datetime | date):
        return f"{value.year}-{value.month:02d}"  # Excel turned 2026-11 into a date: read it as that month
    return _text(value)


@dataclass(slots=True)
class _Checked:
    number: int
    indicator: str
    unit: str
    period: str
    start: datetime
    value: float | None
    target: float | None
    note: str


def _check(rows: Sequence[SheetRow], errors: list[FieldError]) -> list[_Checked]:
    """Cell-level checks; what passes is returned, problems are appended to errors."""
    checked: list[_Checked] = []
    for row in rows:
        n, cells = row.number, row.cells
        problems: list[FieldError] = []
        code = _text(cells.get("indicator"))
        unit = _text(cells.get("unit"))
        period = _period(cells.get("period"))
        for key, given in (("indicator", code), ("unit", unit), ("period", period)):
            if given is None:
                problems.append(FieldError(["rows", n, key], f"'{COLUMNS[key][0]}' is empty"))
        value, target = _number(cells.get("value")), _number(cells.get("target"))
        for key, got in (("value", value), ("target", target)):
            if isinstance(got, str):
                problems.append(FieldError(["rows", n, key], f"'{COLUMNS[key][0]}': {got}"))
        if value is None and target is None:
            problems.append(FieldError(["rows", n, "value"], "give 'Giá trị' (value), 'Kế hoạch' (target) or both"))
        note = _text(cells.get("note")) or ""
        if len(note) > MAX_NOTE or "\x00" in note:
            problems.append(FieldError(["rows", n, "note"], f"'Ghi chú' holds at most {MAX_NOTE} characters"))
        start = None
        if period is not None:
            try:
                period, start, _end = parse_period(period)
            except ValueError as exc:
                problems.append(FieldError(["rows", n, "period"], f"'Kỳ' {period!r}: {exc}"))
        if problems:
            errors.extend(problems)
            continue
        assert code and unit and period and start
        checked.append(_Checked(n, code, normalize_code(unit), period, start,
                                value if isinstance(value, float) else None,
                                target if isinstance(target, float) else None, note))
    return checked


def _check_references(session: Session, actor: Actor, rows: Sequence[_Checked], errors: list[FieldError]) -> None:
    """Unknown indicators and units, and units outside the actor's scope, as row errors."""
    refs = indicators_by_code(session, {r.indicator for r in rows})
    codes = sorted({r.unit for r in rows if r.unit.isascii() and r.unit.isalnum() and len(r.unit) <= 16})
    paths: dict[str, str] = {}
    for start in range(0, len(codes), 500):
        for code, path in session.execute(select(Unit.code, Unit.path).where(Unit.code.in_(codes[start:start + 500]))):
            paths[code] = path
    for r in rows:
        ref = refs.get(r.indicator)
        if ref is None:
            errors.append(FieldError(["rows", r.number, "indicator"], f"unknown indicator {r.indicator!r}"))
        elif not ref.is_active:
            errors.append(FieldError(["rows", r.number, "indicator"], f"indicator {r.indicator!r} is inactive"))
        path = paths.get(r.unit)
        if path is None:
            errors.append(FieldError(["rows", r.number, "unit"], f"unknown unit {r.unit!r}"))
        elif not actor.sees_path(path):
            errors.append(FieldError(["rows", r.number, "unit"],
                                     f"unit {r.unit!r} is outside your scope ({actor.scope_code})"))


def _remap(exc: ValidationFailed, numbers: Sequence[int], field_names: dict[str, str]) -> list[FieldError]:
    """Errors of a service call over a list (loc [..., 'items', i, field]) as errors of sheet rows."""
    out: list[FieldError] = []
    for e in exc.errors:
        loc = list(e.loc)
        if "items" in loc:
            loc = loc[loc.index("items") + 1:]
        if loc and isinstance(loc[0], int) and 0 <= loc[0] < len(numbers):
            name = str(loc[1]) if len(loc) > 1 else "value"
            out.append(FieldError(["rows", numbers[loc[0]], field_names.get(name, name)], e.msg, e.type))
        else:
            out.append(FieldError(["file"], e.msg, e.type))
    return out or [FieldError(["file"], exc.message)]


# ---------------------------------------------------------------------------------------------------------------
# the import


def import_indicators(
    session: Session, *, actor: Actor, data: bytes, filename: str = "", progress: Progress | None = None,
) -> ImportReport:
    """Import values and targets from an XLSX or CSV file in the caller's transaction, all or nothing.

    Raises ValidationFailed listing every refused row (loc ['rows', row number, column]); nothing is written then.
    """
    say = progress or (lambda _label, _fraction: None)
    say("Đọc tệp / reading", 0.0)
    rows = read_rows(data, filename=filename)
    if not rows:
        raise ValidationFailed("the file holds no data rows", [FieldError(["file"], "no data rows")])
    has_values = any(_number(r.cells.get("value")) is not None for r in rows)
    has_targets = any(_number(r.cells.get("target")) is not None for r in rows)
    if has_values:
        actor.require("observations:write")
    if has_targets:
        actor.require("targets:write")
    say("Kiểm tra / checking", 0.2)
    errors: list[FieldError] = []
    checked = _check(rows, errors)
    _check_references(session, actor, checked, errors)
    if errors:
        raise _refused(errors, len(rows))

    # Values become observations at the start of their period; one ingest call per chunk.
    values = [r for r in checked if r.value is not None]
    accepted = duplicates = 0
    for start in range(0, len(values), MAX_BATCH):
        chunk = values[start:start + MAX_BATCH]
        items = [{"indicator": r.indicator, "unit": r.unit, "ts": r.start, "value": r.value} for r in chunk]
        try:
            result = observations.ingest(session, actor=actor, items=items)
        except ValidationFailed as exc:
            errors.extend(_remap(exc, [r.number for r in chunk], {"ts": "period", "entity": "unit"}))
            continue
        except Forbidden as exc:
            errors.append(FieldError(["file"], exc.message, "forbidden"))
            continue
        accepted += result.accepted
        duplicates += result.duplicates
        say("Ghi số liệu / writing values", 0.3 + 0.4 * min(1.0, (start + len(chunk)) / max(1, len(values))))

    targets = [r for r in checked if r.target is not None]
    by_indicator: dict[str, list[_Checked]] = {}
    for r in targets:
        by_indicator.setdefault(r.indicator, []).append(r)
    written = 0
    for k, (code, group) in enumerate(sorted(by_indicator.items())):
        items_in: list[TargetIn] = []
        for r in group:
            try:
                items_in.append(TargetIn(unit=r.unit, period=r.period, target_value=r.target, note=r.note))
            except ValidationError as exc:
                errors.extend(FieldError(["rows", r.number, "target"], e["msg"], e["type"]) for e in exc.errors())
        if len(items_in) != len(group):
            continue
        try:
            upsert_targets(session, actor=actor, code=code, items=items_in)
        except ValidationFailed as exc:
            errors.extend(_remap(exc, [r.number for r in group], {"target_value": "target"}))
            continue
        written += len({(r.unit, r.period) for r in group})
        say("Ghi kế hoạch / writing targets", 0.7 + 0.3 * (k + 1) / len(by_indicator))
    if errors:
        raise _refused(errors, len(rows))
    say("Xong / done", 1.0)
    return ImportReport(rows=len(rows), values=len(values), values_accepted=accepted,
                        values_unchanged=duplicates, targets=written)


def _refused(errors: list[FieldError], total: int) -> ValidationFailed:
    errors.sort(key=lambda e: (e.loc[1] if len(e.loc) > 1 and isinstance(e.loc[1], int) else 0, str(e.loc)))
    bad = len({e.loc[1] for e in errors if len(e.loc) > 1 and isinstance(e.loc[1], int)})
    return ValidationFailed(f"{bad or len(errors)} of {total} row(s) refused; nothing was imported", errors[:1000])


def rows_of(errors: Iterable[FieldError]) -> list[int]:
    """The sheet row numbers named by errors, in order."""
    return sorted({e.loc[1] for e in errors if len(e.loc) > 1 and isinstance(e.loc[1], int)})
