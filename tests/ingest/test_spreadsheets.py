"""Indicator spreadsheets: the template, uploads with Vietnamese or English headers, row errors, the CLI."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from saola.core.spreadsheets.service import COLUMNS
from tests.ingest.conftest import OTHER, WARD, WARD2, make_indicator, stored

VI = [vi for vi, _en, _help in COLUMNS.values()]
URL = "/api/indicators/import"


def xlsx(rows: list[list[Any]], header: list[str] = VI, title: str = "Dữ liệu", skip: int = 0) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = title
    for _ in range(skip):
        ws.append(["Báo cáo chỉ tiêu kinh tế - xã hội"])
    ws.append(header)
    for row in rows:
        ws.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def upload(client: TestClient, headers: dict[str, str], data: bytes, name: str = "chi-tieu.xlsx") -> Any:
    return client.post(URL, files={"file": (name, data)}, headers=headers)


def targets(client: TestClient, headers: dict[str, str], code: str) -> dict[tuple[str, str], float]:
    r = client.get(f"/api/indicators/{code}/targets", headers=headers)
    assert r.status_code == 200, r.text
    return {(t["unit_code"], t["period"]): t["target_value"] for t in r.json()}


def test_templates_open_in_openpyxl_and_list_what_the_user_may_fill(client: TestClient, session_factory,
                                                                     user_headers) -> None:
    code = make_indicator(session_factory)
    r = client.get(f"{URL}/template.xlsx", headers=user_headers("integrator", WARD))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.openxmlformats")
    wb = openpyxl.load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["Dữ liệu", "Hướng dẫn"]
    assert [c.value for c in wb["Dữ liệu"][1]] == VI
    guide = [row[0] for row in wb["Hướng dẫn"].iter_rows(values_only=True)]
    assert code in guide and WARD in guide and WARD2 not in guide  # units of the caller's scope only
    r = client.get(f"{URL}/template.csv", headers=user_headers("viewer", "68"))
    assert r.status_code == 200 and r.content.startswith(b"\xef\xbb\xbf")
    assert r.content.decode("utf-8-sig").strip() == ",".join(VI)
    assert client.get(f"{URL}/template.csv").status_code == 401


def test_upload_with_vietnamese_headers_writes_values_and_targets(client: TestClient, session_factory,
                                                                  user_headers) -> None:
    code = make_indicator(session_factory)
    headers = user_headers("integrator", "68")
    data = xlsx([
        [code, WARD, "2026-01", 10.5, 12, "tháng 1"],
        [code, WARD, "2026-02", 11, None, None],
        [code, 68, "2026", None, 150, "cả năm"],
        [code, WARD2, datetime(2026, 3, 1), "7,25", "8", ""],  # Excel turned 2026-03 into a date; decimal comma
        [None, None, None, None, None, None],  # blank rows are skipped
        [code, WARD2, "2026-q2", None, 9, None],
    ], skip=2)
    r = upload(client, headers, data)
    assert r.status_code == 200, r.text
    assert r.json() == {"rows": 5, "values": 3, "values_accepted": 3, "values_unchanged": 0, "targets": 4}
    assert stored(session_factory, code) == 3
    assert targets(client, headers, code) == {(WARD, "2026-01"): 12.0, ("68", "2026"): 150.0,
                                              (WARD2, "2026-03"): 8.0, (WARD2, "2026-Q2"): 9.0}
    # The value sits at the start of its period, local time (UTC+7).
    r = client.get("/api/observations", headers=headers, params={
        "indicator": code, "unit": WARD2, "bucket": "raw", "start": "2026-02-01T00:00:00+07:00",
        "end": "2026-04-01T00:00:00+07:00"})
    assert [(p["ts"], p["value"]) for p in r.json()["points"]] == [("2026-02-28T17:00:00Z", 7.25)]
    # Importing the same file again changes nothing and says so.
    again = upload(client, headers, data).json()
    assert (again["values_accepted"], again["values_unchanged"], again["targets"]) == (0, 3, 4)


def test_english_csv_with_semicolons(client: TestClient, session_factory, user_headers) -> None:
    code = make_indicator(session_factory)
    text = f"Indicator;Unit;Period;Value;Target;Note\n{code};{WARD};2026-05;3,5;;\n{code};{WARD};2026-06;4;5;x\n"
    r = upload(client, user_headers("admin", "VN"), text.encode("utf-8"), "values.csv")
    assert r.status_code == 200, r.text
    assert r.json()["values_accepted"] == 2 and r.json()["targets"] == 1


def test_row_errors_name_sheet_rows_and_nothing_is_half_imported(client: TestClient, session_factory,
                                                                 user_headers) -> None:
    code = make_indicator(session_factory)
    headers = user_headers("integrator", "68")
    data = xlsx([
        [code, WARD, "2026-01", 1, None, None],           # row 2: fine
        [code, WARD, "2026-13", 1, None, None],           # row 3: no such month
        [code, "99999", "2026-01", 1, None, None],        # row 4: unknown unit
        ["test.nope", WARD, "2026-01", 1, None, None],    # row 5: unknown indicator
        [code, WARD, "2026-02", "nhiều", None, None],     # row 6: not a number
        [code, WARD, "2026-03", None, None, None],        # row 7: neither value nor target
        [code, OTHER, "2026-01", 1, None, None],          # row 8: outside the province
        [code, WARD, "2099", 1, 5, None],                 # row 9: a value in the future (a target is fine)
        [code, WARD2, "2026-04", None, 3, None],          # row 10: fine
    ])
    r = upload(client, headers, data)
    assert r.status_code == 422, r.text
    found = {(e["loc"][1], e["loc"][2]) for e in r.json()["errors"]}
    assert found == {(3, "period"), (4, "unit"), (5, "indicator"), (6, "value"), (7, "value"), (8, "unit")}
    assert "nothing was imported" in r.json()["detail"]
    # Fix those rows: the value in the future is still refused (by the kernel's ingest), mapped to its row.
    fixed = xlsx([[code, WARD, "2026-01", 1, None, None], [code, WARD, "2099", 1, 5, None],
                  [code, WARD2, "2026-04", None, 3, None]])
    r = upload(client, headers, fixed)
    assert r.status_code == 422 and [e["loc"][:3] for e in r.json()["errors"]] == [["rows", 3, "period"]]
    assert stored(session_factory, code) == 0 and targets(client, headers, code) == {}


def test_files_that_are_not_spreadsheets_and_missing_rights(client: TestClient, session_factory,
                                                            user_headers) -> None:
    code = make_indicator(session_factory)
    admin = user_headers("admin", "VN")
    r = upload(client, admin, b"PK\x03\x04 not really a zip", "x.xlsx")
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["file"]
    r = upload(client, admin, xlsx([[code, WARD, "2026-01", 1]], header=["a", "b", "c", "d"]))
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["file", "header"]
    r = upload(client, admin, xlsx([]))
    assert r.status_code == 422
    # A leader may set plan targets but not write readings.
    leader = user_headers("leader", "68")
    assert upload(client, leader, xlsx([[code, WARD, "2026-01", 1, None, None]])).status_code == 403
    assert upload(client, leader, xlsx([[code, WARD, "2026-01", None, 2, None]])).status_code == 200


@pytest.fixture
def cli_env(settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"SAOLA_DATABASE_URL": settings.url, "SAOLA_DATA_DIR": str(settings.data_dir),
            "SAOLA_SECRET_KEY": settings.secret_key}


def test_cli_imports_with_a_progress_bar_next_to_the_land_pack(tmp_path: Path, session_factory, cli_env) -> None:
    import typer

    from saola.core.spreadsheets.cli import register
    from saola.domains.land.cli import register as register_land

    app = typer.Typer()
    app.command("noop")(lambda: None)
    register_land(app)
    register(app)
    register(app)  # idempotent, and tolerant of who created the group
    [group] = [g for g in app.registered_groups if g.name == "import"]
    assert sorted(c.name for c in group.typer_instance.registered_commands) == ["indicators", "parcels"]

    from saola.cli import app as cli_app

    register(cli_app)
    code = make_indicator(session_factory)
    good = tmp_path / "chi-tieu.xlsx"
    good.write_bytes(xlsx([[code, WARD, "2026-01", 1, 2, None], [code, WARD2, "2026-01", 3, None, None]]))
    result = CliRunner().invoke(cli_app, ["import", "indicators", str(good)], env=cli_env)
    assert result.exit_code == 0, result.output
    assert "2 values stored" in result.output and "1 targets" in result.output and "100%" in result.output
    assert stored(session_factory, code) == 2
    bad = tmp_path / "loi.csv"
    bad.write_text(f"Mã chỉ tiêu,Mã đơn vị,Kỳ,Giá trị\n{code},{WARD},2026-02,1\n{code},{WARD},2026-99,1\n",
                   encoding="utf-8")
    result = CliRunner().invoke(cli_app, ["import", "indicators", str(bad)], env=cli_env)
    assert result.exit_code == 2 and "nothing was imported" in result.output and "│ 3" in result.output
    assert stored(session_factory, code) == 2
