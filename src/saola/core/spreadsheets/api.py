"""Routes of indicator spreadsheets: the template (XLSX, CSV) and the upload."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, UploadFile
from fastapi.responses import Response

from saola.core.spreadsheets import service
from saola.core.spreadsheets.schemas import ImportReport
from saola.deps import ActorDep, SessionDep

router = APIRouter(prefix="/api/indicators/import", tags=["indicators"])

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
XLSX_FILE: dict[int | str, dict[str, Any]] = {
    200: {"content": {XLSX: {"schema": {"type": "string", "format": "binary"}}}, "description": "The file"}}
CSV_FILE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "The file"}}


@router.get("/template.xlsx", summary="Spreadsheet template for indicator values and plan targets",
            response_class=Response, responses=XLSX_FILE)
def template_xlsx(session: SessionDep, actor: ActorDep) -> Response:
    """Headers in Vietnamese, and a guide sheet listing active indicators and the units in the caller's scope."""
    return Response(service.template_xlsx(session, actor=actor), media_type=XLSX,
                    headers={"Content-Disposition": 'attachment; filename="saola-chi-tieu.xlsx"'})


@router.get("/template.csv", summary="CSV template for indicator values and plan targets",
            response_class=Response, responses=CSV_FILE)
def template_csv(actor: ActorDep) -> Response:
    """The header line (UTF-8 with BOM, so Excel keeps the diacritics)."""
    actor.require("indicators:read")
    return Response(service.template_csv(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="saola-chi-tieu.csv"'})


@router.post("", response_model=ImportReport, summary="Import indicator values and plan targets (XLSX or CSV)")
def import_file(
    session: SessionDep, actor: ActorDep,
    file: Annotated[UploadFile, File(description="XLSX or CSV with the template's columns")],
) -> ImportReport:
    """All or nothing: a refused file answers 422 with errors at ['rows', row number as in the sheet, column]."""
    data = file.file.read()
    return service.import_indicators(session, actor=actor, data=data, filename=file.filename or "")
