"""`saola import parcels FILE ...` on the command line, and the same import as an HTTP upload."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from saola.cli import app as cli_app
from saola.packs.manager import get_plugin_manager
from tests.land.conftest import COMMUNE, count_sheet, square

LON, LAT = 108.40, 11.62
runner = CliRunner()


@pytest.fixture
def env(settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Environment pointing the CLI at the test database, with the packs' commands added."""
    get_plugin_manager(()).hook.saola_cli(app=cli_app)
    return {"SAOLA_DATABASE_URL": settings.url, "SAOLA_DATA_DIR": str(settings.data_dir),
            "SAOLA_SECRET_KEY": settings.secret_key}


def _fields(sheet: int, n: int = 3) -> dict[str, list]:
    return {"TO": [sheet] * n, "THUA": list(range(1, n + 1)), "LOAI": ["ODT"] * n}


def test_import_parcels_command(env, files, session_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = files("cli.gpkg", [square(LON, LAT, i, 0) for i in range(3)], _fields(9501))
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"sheet_no": "TO", "parcel_no": "THUA"}), encoding="utf-8")
    args = ["import", "parcels", str(path), "--crs", "EPSG:4326", "--mapping", str(mapping), "--field",
            "land_use=LOAI", "--commune", COMMUNE]
    result = runner.invoke(cli_app, args, env=env)
    assert result.exit_code == 0, result.output
    assert "created" in result.output and "parcels/s" in result.output
    assert count_sheet(session_factory, 9501) == 3
    again = runner.invoke(cli_app, args, env=env)
    assert again.exit_code == 0 and count_sheet(session_factory, 9501) == 3
    get_plugin_manager(()).hook.saola_cli(app=cli_app)  # registering twice is harmless
    groups = [g for g in cli_app.registered_groups if g.name == "import"]
    assert len(groups) == 1  # the group is shared with other packs' imports
    assert [c.name for c in groups[0].typer_instance.registered_commands].count("parcels") == 1


@pytest.mark.parametrize(("extra", "message"), [
    (["--crs", "EPSG:999999"], "unknown CRS"),
    (["--field", "land_use"], "ours=theirs"),
    (["--commune", "99999"], "unknown commune"),
    ([], "land_use"),
])
def test_import_parcels_command_refuses_bad_input(env, files, session_factory, extra: list[str],  # type: ignore[no-untyped-def]
                                                  message: str) -> None:
    path = files("bad.geojson", [square(LON, LAT, 10, 0)], _fields(9502, 1))
    base = ["import", "parcels", str(path), "--field", "sheet_no=TO", "--field", "parcel_no=THUA"]
    if "--commune" not in extra:
        base += ["--commune", COMMUNE]
    result = runner.invoke(cli_app, [*base, *extra], env=env)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert count_sheet(session_factory, 9502) == 0


def test_upload_a_zipped_shapefile(client: TestClient, files, session_factory,  # type: ignore[no-untyped-def]
                                   headers_for: Callable[[str, str], dict[str, str]]) -> None:
    shp = files("upload.shp", [square(LON, LAT, 20 + i, 0) for i in range(2)], _fields(9503, 2))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for part in shp.parent.glob("upload.*"):
            archive.write(part, part.name)
    form = {"mapping": json.dumps({"sheet_no": "TO", "parcel_no": "THUA", "land_use": "LOAI"}), "commune": COMMUNE}
    upload = {"file": ("thua-dat.zip", buffer.getvalue(), "application/zip")}
    assert client.post("/api/land/imports", data=form, files=upload,
                       headers=headers_for("viewer", "68")).status_code == 403
    outside = client.post("/api/land/imports", data={**form, "commune": "26506"}, files=upload,
                          headers=headers_for("integrator", "68"))
    assert outside.status_code == 200 and outside.json()["created"] == 0  # a commune of another province
    assert "outside the scope" in outside.json()["rejected"][0]["reason"]
    r = client.post("/api/land/imports", data=form, files=upload, headers=headers_for("integrator", "68"))
    assert r.status_code == 200, r.text
    assert r.json()["file"] == "thua-dat.zip" and r.json()["created"] == 2
    assert count_sheet(session_factory, 9503) == 2
    wrong = client.post("/api/land/imports", data=form, files={"file": ("x.txt", b"hello", "text/plain")},
                        headers=headers_for("integrator", "68"))
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["loc"] == ["body", "file"]
