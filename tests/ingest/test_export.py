"""CSV and XLSX export of series and latest values: local times with their offset, scope, the same parameters."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import openpyxl
from fastapi.testclient import TestClient

from saola.core.auth.context import system_actor
from saola.core.observations import service
from saola.db.engine import transaction
from tests.ingest.conftest import T0, WARD, WARD2, make_indicator


def test_series_and_latest_export(client: TestClient, session_factory, user_headers) -> None:
    code = make_indicator(session_factory)
    items = [{"indicator": code, "unit": u, "ts": (T0 + timedelta(minutes=30 * k)).isoformat(), "value": k}
             for k in range(4) for u in (WARD, WARD2)]
    with transaction(session_factory) as session:
        service.ingest(session, actor=system_actor("test"), items=items)
    headers = user_headers("viewer", "68")
    params = {"indicator": code, "within": "68", "bucket": "hour", "agg": "sum",
              "start": T0.isoformat(), "end": (T0 + timedelta(hours=2)).isoformat()}

    r = client.get("/api/observations/export.csv", params=params, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert f'filename="{code}.csv"' in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][0].startswith("Mã chỉ tiêu")
    assert rows[1:] == [[code, "2026-09-01T07:00:00+07:00", "2.0", "4"],
                        [code, "2026-09-01T08:00:00+07:00", "10.0", "4"]]
    # The same numbers as the JSON query.
    points = client.get("/api/observations", params=params, headers=headers).json()["points"]
    assert [p["value"] for p in points] == [2.0, 10.0]

    r = client.get("/api/observations/export.xlsx", params=params, headers=headers)
    assert r.status_code == 200
    ws = openpyxl.load_workbook(io.BytesIO(r.content)).active
    values = list(ws.iter_rows(values_only=True))
    start = next(i for i, row in enumerate(values) if row[0] and str(row[0]).startswith("Mã chỉ tiêu"))
    assert values[start + 1][:4] == (code, datetime(2026, 9, 1, 7, 0), 2.0, 4)
    assert "+07:00" in ws.cell(row=start + 2, column=2).number_format

    r = client.get("/api/observations/latest/export.csv", params={"indicator": code, "within": "68"}, headers=headers)
    latest = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))[1:]
    assert sorted((row[2], row[5], row[6]) for row in latest) == [
        (WARD, "2026-09-01T08:30:00+07:00", "3.0"), (WARD2, "2026-09-01T08:30:00+07:00", "3.0")]
    r = client.get("/api/observations/latest/export.xlsx", params={"indicator": code}, headers=headers)
    assert r.status_code == 200 and openpyxl.load_workbook(io.BytesIO(r.content)).active.max_row >= 6


def test_export_respects_scope_and_validation(client: TestClient, session_factory, user_headers) -> None:
    code = make_indicator(session_factory)
    ward = user_headers("agency_staff", WARD)
    r = client.get("/api/observations/export.csv", params={"indicator": code, "unit": WARD2}, headers=ward)
    assert r.status_code == 404
    r = client.get("/api/observations/export.xlsx", params={"indicator": code, "unit": WARD, "bucket": "week"},
                   headers=ward)
    assert r.status_code == 422
    r = client.get("/api/observations/latest/export.csv", params={"indicator": code, "within": "68"}, headers=ward)
    assert r.status_code == 404
    assert client.get("/api/observations/export.csv", params={"indicator": code, "unit": WARD}).status_code == 401
