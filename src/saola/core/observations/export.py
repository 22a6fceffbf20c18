"""CSV and XLSX export of the observation queries: a series (GET /api/observations) and latest values.

Times are written in the configured zone (Asia/Ho_Chi_Minh) with their offset; rows are bounded by the queries
themselves (a series has at most MAX_POINTS points, latest at most 10,000 rows); scope is the query's.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from openpyxl import Workbook
from openpyxl.styles import Font
from pydantic import AwareDatetime, StringConstraints

from saola.core.indicators.schemas import CODE_PATTERN
from saola.core.observations import service
from saola.core.observations.schemas import Agg, Bucket, LatestRead, Series, SubjectKind
from saola.deps import ActorDep, SessionDep, SettingsDep

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
XLSX_FILE: dict[int | str, dict[str, Any]] = {
    200: {"content": {XLSX: {"schema": {"type": "string", "format": "binary"}}}, "description": "The file"}}
CSV_FILE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "The file"}}
UNIT = r"^[A-Za-z0-9]{1,16}$"

SERIES_HEADERS = ("Mã chỉ tiêu / indicator", "Thời điểm / time", "Giá trị / value", "Số lần đo / count")
LATEST_HEADERS = ("Mã chỉ tiêu / indicator", "Loại đối tượng / subject kind", "Mã đơn vị / unit",
                  "Mã thực thể / entity", "Tên / label", "Thời điểm / time", "Giá trị / value",
                  "Chất lượng / quality", "Tuổi (giây) / age seconds")


def _local(ts: datetime, zone: ZoneInfo) -> datetime:
    return ts.astimezone(zone)


def series_rows(series: Series, zone: ZoneInfo) -> list[tuple[Any, ...]]:
    """(indicator, local time, value, count) per point."""
    return [(series.indicator, _local(p.ts, zone), p.value, p.count) for p in series.points]


def latest_rows(rows: Sequence[LatestRead], zone: ZoneInfo) -> list[tuple[Any, ...]]:
    """One row per latest reading, in the header order."""
    return [(r.indicator, r.subject_kind, r.unit_code, str(r.entity_id) if r.entity_id else "", r.label,
             _local(r.ts, zone), r.value, r.quality, r.age_seconds) for r in rows]


def to_csv(headers: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> bytes:
    """CSV in UTF-8 with a byte-order mark (Excel), times as ISO 8601 with their offset."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(headers)
    for row in rows:
        writer.writerow([v.isoformat(timespec="seconds") if isinstance(v, datetime) else v for v in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def to_xlsx(title: str, headers: Sequence[str], rows: Sequence[tuple[Any, ...]], notes: Sequence[str]) -> bytes:
    """One sheet: a few lines saying what was asked, the headers, then the rows; times as local date-times."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = title[:31]
    for line in notes:
        ws.append([line])
    ws.append(list(headers))
    header_row = ws.max_row
    for cell in ws[header_row]:
        cell.font = Font(bold=True)
    for row in rows:
        ws.append([_naive(v) for v in row])
        for value, cell in zip(row, ws[ws.max_row], strict=True):
            if isinstance(value, datetime):
                # Excel has no time zones: show the local time with its offset spelled out in the format.
                offset = value.strftime("%z")
                cell.number_format = f'yyyy-mm-dd hh:mm:ss"{offset[:3]}:{offset[3:]}"'
    for letter in "ABCDEFGHI":
        ws.column_dimensions[letter].width = 22
    ws.freeze_panes = ws.cell(row=header_row + 1, column=1)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _naive(value: Any) -> Any:
    return value.replace(tzinfo=None) if isinstance(value, datetime) else value


# ---------------------------------------------------------------------------------------------------------------
# routes (mounted by observations.api)

router = APIRouter(prefix="/api", tags=["observations"])


class SeriesQuery:
    """The parameters of GET /api/observations."""

    def __init__(
        self,
        indicator: Annotated[str, Query(min_length=3, max_length=80, pattern=CODE_PATTERN)],
        unit: Annotated[str | None, Query(pattern=UNIT)] = None,
        entity: uuid.UUID | None = None,
        within: Annotated[str | None, Query(pattern=UNIT)] = None,
        kind: SubjectKind | None = None,
        start: AwareDatetime | None = None,
        end: AwareDatetime | None = None,
        bucket: Bucket = "hour",
        agg: Agg | None = None,
        max_quality: Annotated[int, Query(ge=0, le=2)] = 0,
    ) -> None:
        self.values = dict(indicator=indicator, unit=unit, entity=entity, within=within, kind=kind, start=start,
                           end=end, bucket=bucket, agg=agg, max_quality=max_quality)


class LatestQuery:
    """The parameters of GET /api/observations/latest."""

    def __init__(
        self,
        indicator: Annotated[list[Annotated[str, StringConstraints(max_length=80, pattern=CODE_PATTERN)]],
                             Query(min_length=1, max_length=50)],
        within: Annotated[str | None, Query(pattern=UNIT)] = None,
        kind: SubjectKind | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> None:
        self.values = dict(indicators=indicator, within=within, kind=kind, limit=limit)


def _notes(what: str, values: dict[str, Any], zone: str) -> list[str]:
    asked = ", ".join(f"{k}={v.isoformat() if isinstance(v, datetime) else v}" for k, v in values.items()
                      if v is not None)
    return [what, asked, f"Giờ theo {zone} / times in {zone}"]


def _file(data: bytes, media_type: str, name: str) -> Response:
    return Response(data, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _series(session: Any, actor: Any, query: SeriesQuery, settings: Any) -> tuple[Series, ZoneInfo]:
    return service.query_series(session, actor=actor, **query.values), ZoneInfo(settings.timezone)


@router.get("/observations/export.csv", summary="A series as CSV (same parameters as GET /api/observations)",
            response_class=Response, responses=CSV_FILE)
def export_series_csv(session: SessionDep, actor: ActorDep, settings: SettingsDep,
                      query: Annotated[SeriesQuery, Depends()]) -> Response:
    """Points with local times and their offset."""
    series, zone = _series(session, actor, query, settings)
    return _file(to_csv(SERIES_HEADERS, series_rows(series, zone)), "text/csv; charset=utf-8",
                 f"{series.indicator}.csv")


@router.get("/observations/export.xlsx", summary="A series as XLSX (same parameters as GET /api/observations)",
            response_class=Response, responses=XLSX_FILE)
def export_series_xlsx(session: SessionDep, actor: ActorDep, settings: SettingsDep,
                       query: Annotated[SeriesQuery, Depends()]) -> Response:
    """Points with local times (the offset shown in the cell format)."""
    series, zone = _series(session, actor, query, settings)
    notes = _notes(f"Chuỗi số liệu / series {series.indicator} ({series.bucket}, {series.agg})", query.values,
                   settings.timezone)
    return _file(to_xlsx(series.indicator, SERIES_HEADERS, series_rows(series, zone), notes), XLSX,
                 f"{series.indicator}.xlsx")


@router.get("/observations/latest/export.csv", summary="Latest values as CSV (same parameters as .../latest)",
            response_class=Response, responses=CSV_FILE)
def export_latest_csv(session: SessionDep, actor: ActorDep, settings: SettingsDep,
                      query: Annotated[LatestQuery, Depends()]) -> Response:
    """One row per subject and indicator, inside the caller's scope."""
    rows = service.latest(session, actor=actor, **query.values)
    return _file(to_csv(LATEST_HEADERS, latest_rows(rows, ZoneInfo(settings.timezone))), "text/csv; charset=utf-8",
                 "latest.csv")


@router.get("/observations/latest/export.xlsx", summary="Latest values as XLSX (same parameters as .../latest)",
            response_class=Response, responses=XLSX_FILE)
def export_latest_xlsx(session: SessionDep, actor: ActorDep, settings: SettingsDep,
                       query: Annotated[LatestQuery, Depends()]) -> Response:
    """One row per subject and indicator, inside the caller's scope."""
    rows = service.latest(session, actor=actor, **query.values)
    notes = _notes("Giá trị mới nhất / latest values", query.values, settings.timezone)
    return _file(to_xlsx("latest", LATEST_HEADERS, latest_rows(rows, ZoneInfo(settings.timezone)), notes), XLSX,
                 "latest.xlsx")
