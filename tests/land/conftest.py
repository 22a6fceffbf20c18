"""Shared land fixtures: files written with pyogrio, a small known dataset, and helpers.

Every test module works in its own map sheets (and places), because the database is shared by the session.
Coordinates of the grids are multiples of 1/4096 degree, exact in binary, so shared edges are exactly shared
and a point on an edge is exactly on it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pytest
import shapely
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from saola.core.auth.context import system_actor
from saola.db.engine import transaction
from saola.domains.land.importer import ImportReport, import_parcels
from saola.domains.land.models import LandParcel

STEP = 1 / 4096  # about 27 m
COMMUNE = "24781"  # Phường Xuân Hương - Đà Lạt (province 68)
HOLDER = "Nguyễn Văn Thửanghiệm"
CERTIFICATE = "CS 424242"
DRIVERS = {".geojson": "GeoJSON", ".gpkg": "GPKG", ".shp": "ESRI Shapefile"}


def square(lon0: float, lat0: float, col: int, row: int, size: int = 1) -> shapely.Polygon:
    """The grid square at (col, row) of a grid whose south-west corner is (lon0, lat0)."""
    x, y = lon0 + col * STEP, lat0 + row * STEP
    return shapely.box(x, y, x + size * STEP, y + size * STEP)


def write_layer(path: Path, geoms: list[Any], fields: dict[str, list[Any]], *, crs: str | None = "EPSG:4326",
                geometry_type: str = "Polygon") -> Path:
    """Write geometries (shapely or None) and attribute columns to a GeoJSON, GeoPackage or Shapefile."""
    wkb = np.array([None if g is None else shapely.to_wkb(g) for g in geoms], dtype=object)
    data = []
    for values in fields.values():
        if all(isinstance(v, bool | np.bool_) for v in values):
            data.append(np.array(values, dtype=bool))
        elif all(isinstance(v, int) for v in values):
            data.append(np.array(values, dtype=np.int64))
        elif all(isinstance(v, int | float) for v in values):
            data.append(np.array(values, dtype=np.float64))
        else:
            data.append(np.array([None if v is None else str(v) for v in values], dtype=object))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyogrio warns when a file is written without a CRS, which tests want
        pyogrio.raw.write(str(path), wkb, data, list(fields), driver=DRIVERS[path.suffix], crs=crs,
                          geometry_type=geometry_type)
    return path


def run_import(session_factory: sessionmaker[Session], path: Path, **kwargs: Any) -> ImportReport:
    """Import a file in its own transaction as the system actor."""
    with transaction(session_factory) as session:
        return import_parcels(session, actor=system_actor("test"), path=path, **kwargs)


def count_sheet(session_factory: sessionmaker[Session], sheet_no: int, commune: str = COMMUNE) -> int:
    """How many parcels a sheet holds."""
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(LandParcel).where(
            LandParcel.unit_code == commune, LandParcel.sheet_no == sheet_no)) or 0


@dataclass(frozen=True)
class BaseData:
    """The known dataset: a 4 x 3 grid of squares (sheet 9001), a triangle and a round parcel."""

    lon0: float
    lat0: float
    sheet_no: int
    ids: dict[int, str]  # parcel_no -> id

    def centre(self, parcel_no: int) -> tuple[float, float]:
        """The centre of a grid square by parcel number (1..12, row by row from the south-west)."""
        col, row = (parcel_no - 1) % 4, (parcel_no - 1) // 4
        return self.lon0 + (col + 0.5) * STEP, self.lat0 + (row + 0.5) * STEP

    def corner(self, col: int, row: int) -> tuple[float, float]:
        """A grid vertex."""
        return self.lon0 + col * STEP, self.lat0 + row * STEP


BASE_LON, BASE_LAT, BASE_SHEET = 108.25, 11.75, 9001


@pytest.fixture(scope="session")
def base_parcels(session_factory: sessionmaker[Session], tmp_path_factory: pytest.TempPathFactory) -> BaseData:
    """Twelve grid parcels (1..12) with planning and holders, a triangle (13) and a round parcel (14)."""
    geoms: list[Any] = [square(BASE_LON, BASE_LAT, c, r) for r in range(3) for c in range(4)]
    triangle = shapely.Polygon([(BASE_LON + 6 * STEP, BASE_LAT), (BASE_LON + 8 * STEP, BASE_LAT),
                                (BASE_LON + 6 * STEP, BASE_LAT + 2 * STEP)])
    circle = shapely.Point(BASE_LON + 12 * STEP, BASE_LAT + STEP).buffer(STEP, quad_segs=32)
    geoms += [triangle, circle]
    n = len(geoms)
    fields = {
        "commune": [COMMUNE] * n,
        "sheet_no": [BASE_SHEET] * n,
        "parcel_no": list(range(1, n + 1)),
        "land_use": ["ODT+CLN" if i == 0 else "ODT" if i % 2 else "CLN" for i in range(n)],
        "land_use_area": ["300+429.7" if i == 0 else None for i in range(n)],
        "allowed_use": ["ODT"] * n,
        "building_density_pct": [80.0] * n,
        "floors": ["2-5"] * n,
        "land_use_coefficient": [4.0] * n,
        "setback_m": [3.0] * n,
        "holder_name": [HOLDER] * n,
        "certificate_no": [CERTIFICATE] * n,
        "certificate_issued_on": ["2019-05-20"] * n,
    }
    path = write_layer(tmp_path_factory.mktemp("land-base") / "base.gpkg", geoms, fields)
    report = run_import(session_factory, path)
    assert not report.rejected, report.rejected
    with session_factory() as session:
        rows = session.execute(select(LandParcel.parcel_no, LandParcel.id).where(
            LandParcel.unit_code == COMMUNE, LandParcel.sheet_no == BASE_SHEET)).all()
    return BaseData(lon0=BASE_LON, lat0=BASE_LAT, sheet_no=BASE_SHEET, ids={p: str(i) for p, i in rows})


@pytest.fixture
def files(tmp_path: Path) -> Callable[..., Path]:
    """Write a test file into this test's temporary folder: files('x.gpkg', geoms, fields, crs=...)."""

    def _write(name: str, geoms: list[Any], fields: dict[str, list[Any]], **kwargs: Any) -> Path:
        return write_layer(tmp_path / name, geoms, fields, **kwargs)

    return _write


@pytest.fixture
def headers_for(make_user: Callable[..., dict[str, str]]) -> Iterator[Callable[[str, str], dict[str, str]]]:
    """Authorization headers for a new user with this role and scope."""
    yield make_user
