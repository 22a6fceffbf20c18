"""Importing parcels from GeoJSON, GeoPackage and Shapefile files the tests write: mapping, CRS, repairs, errors."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
import shapely.affinity
from pyproj import Transformer
from sqlalchemy import select

from saola.core.errors import ValidationFailed
from saola.domains.land.crs import WGS84, parse_crs
from saola.domains.land.models import LandParcel, LandParcelPrivate
from tests.land.conftest import COMMUNE, STEP, count_sheet, run_import, square

LON, LAT = 108.30, 11.70  # this module's corner of the map; each test takes its own sheet numbers


def _grid(col0: int, n: int = 3) -> list[shapely.Polygon]:
    return [square(LON, LAT, col0 + i, 0) for i in range(n)]


def _parcel(session_factory, sheet_no: int, parcel_no: int) -> LandParcel | None:  # type: ignore[no-untyped-def]
    with session_factory() as session:
        return session.scalar(select(LandParcel).where(LandParcel.unit_code == COMMUNE,
                                                       LandParcel.sheet_no == sheet_no,
                                                       LandParcel.parcel_no == parcel_no))


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".shp"])
def test_each_format_imports_with_a_mapping(files, session_factory, suffix: str) -> None:
    sheet = {".geojson": 9101, ".gpkg": 9102, ".shp": 9103}[suffix]
    geoms = _grid(10 * (sheet - 9100))
    # Column names of a hypothetical cadastral export (Shapefile names are at most 10 characters).
    fields = {"MA_XA": [int(COMMUNE)] * 3, "TO_X": [sheet] * 3, "THUA_X": [1, 2, 3],
              "LDAT": ["ODT", "CLN", "ODT+CLN"], "DT_LDAT": [None, None, "100+200"], "DTICH": [700.5, 701.0, 300.0],
              "MDXD": [80, 0, 60], "TANG": ["1-5", "0-1", "3"], "HSSDD": [4.0, 0.05, 1.8], "KLUI": [3, 0, 2.4]}
    path = files(f"parcels{suffix}", geoms, fields)
    mapping = {"commune": "MA_XA", "sheet_no": "TO_X", "parcel_no": "THUA_X", "land_use": "LDAT",
               "land_use_area": "DT_LDAT", "area_m2": "DTICH", "building_density_pct": "MDXD", "floors": "TANG",
               "land_use_coefficient": "HSSDD", "setback_m": "KLUI"}
    report = run_import(session_factory, path, mapping=mapping)
    assert (report.rows, report.created, report.updated, report.rejected) == (3, 3, 0, [])
    third = _parcel(session_factory, sheet, 3)
    assert third is not None
    assert third.land_use == [{"code": "ODT", "area_m2": 100.0}, {"code": "CLN", "area_m2": 200.0}]
    assert third.primary_use == "CLN" and third.area_m2 == 300.0
    assert (third.floors_min, third.floors_max) == (None, 3)
    first = _parcel(session_factory, sheet, 1)
    assert first is not None and (first.floors_min, first.floors_max, first.building_density_pct) == (1, 5, 80.0)
    assert shapely.equals(shapely.from_wkb(first.geom_wkb), geoms[0])  # Shapefile rings may turn the other way
    assert (first.min_lon, first.min_lat) == geoms[0].bounds[:2]


def test_our_own_names_and_common_aliases_need_no_mapping(files, session_factory) -> None:
    path = files("aliases.gpkg", _grid(40, 2), {"ma_xa": [COMMUNE] * 2, "so_to": [9104] * 2, "so_thua": [1, 2],
                                                "loai_dat": ["ODT", "TMD"]})
    report = run_import(session_factory, path)
    assert report.created == 2
    parcel = _parcel(session_factory, 9104, 2)
    assert parcel is not None and parcel.primary_use == "TMD"
    assert 650 < parcel.area_m2 < 800  # computed from the geometry: one 1/4096° square at 11.7° N


def _project(geoms: list[shapely.Polygon], crs) -> list[shapely.Polygon]:  # type: ignore[no-untyped-def]
    forward = Transformer.from_crs(WGS84, crs, always_xy=True)
    return [shapely.transform(g, lambda c: np.column_stack(forward.transform(c[:, 0], c[:, 1]))) for g in geoms]


def _stored_matches(session_factory, sheet: int, expected: shapely.Polygon) -> bool:  # type: ignore[no-untyped-def]
    stored = shapely.from_wkb(_parcel(session_factory, sheet, 1).geom_wkb)
    return bool(shapely.equals_exact(shapely.normalize(stored), shapely.normalize(shapely.MultiPolygon([expected])),
                                     1e-8))  # about a millimetre


def test_vn2000_coordinates_are_reprojected(files, session_factory) -> None:
    """A Lâm Đồng cadastral file in VN-2000 (central meridian 107°45'), read with --crs VN2000:..."""
    wgs = _grid(50, 2)
    projected = _project(wgs, parse_crs("VN2000:107.75"))
    x, y = projected[0].exterior.coords[0]
    assert 550_000 < x < 600_000 and 1_290_000 < y < 1_300_000  # metres east and north, not degrees
    fields = {"commune": [COMMUNE] * 2, "sheet_no": [9105] * 2, "parcel_no": [1, 2], "land_use": ["ODT", "ODT"]}
    report = run_import(session_factory, files("vn2000.geojson", projected, fields), crs="VN2000:107°45'")
    assert report.created == 2 and report.crs == "VN2000:107°45'"
    assert _stored_matches(session_factory, 9105, wgs[0])


def test_the_files_own_crs_is_used_without_crs_option(files, session_factory) -> None:
    """EPSG:5899 is VN-2000 / TM-3 107-45; the GeoPackage declares it, PROJ applies EPSG's datum shift."""
    wgs = _grid(55, 1)
    fields = {"commune": [COMMUNE], "sheet_no": [9106], "parcel_no": [1], "land_use": ["ODT"]}
    path = files("epsg5899.gpkg", _project(wgs, "EPSG:5899"), fields, crs="EPSG:5899")
    report = run_import(session_factory, path)
    assert report.created == 1 and "5899" in report.crs
    assert _stored_matches(session_factory, 9106, wgs[0])


def test_a_small_self_intersection_is_repaired_and_a_bow_tie_rejected(files, session_factory) -> None:
    x, y, s = LON + 60 * STEP, LAT, STEP
    twisted = shapely.Polygon([(x, y), (x + s, y), (x + s, y + s), (x, y + s), (x + 0.02 * s, y - 0.01 * s)])
    bow_tie = shapely.Polygon([(x + 2 * s, y), (x + 3 * s, y + s), (x + 3 * s, y), (x + 2 * s, y + s)])
    good = square(LON, LAT, 64, 0)
    assert not twisted.is_valid and not bow_tie.is_valid
    fields = {"commune": [COMMUNE] * 3, "sheet_no": [9107] * 3, "parcel_no": [1, 2, 3], "land_use": ["ODT"] * 3}
    report = run_import(session_factory, files("bad.gpkg", [twisted, bow_tie, good], fields))
    assert report.created == 2
    assert [(i.row, i.key) for i in report.repaired] == [(1, f"{COMMUNE}/9107/1")]
    assert "Self-intersection" in report.repaired[0].reason
    assert [(i.row, i.key) for i in report.rejected] == [(2, f"{COMMUNE}/9107/2")]
    assert "split it into 2 pieces" in report.rejected[0].reason
    repaired = shapely.from_wkb(_parcel(session_factory, 9107, 1).geom_wkb)
    assert repaired.is_valid and abs(repaired.area - twisted.area) / twisted.area < 0.02


def test_a_missing_required_attribute_imports_nothing(files, session_factory) -> None:
    path = files("no_use.gpkg", _grid(70), {"commune": [COMMUNE] * 3, "sheet_no": [9108] * 3, "parcel_no": [1, 2, 3]})
    with pytest.raises(ValidationFailed) as caught:
        run_import(session_factory, path)
    assert "land_use" in caught.value.message and "nothing was imported" in caught.value.message
    assert caught.value.errors[0].loc == ["mapping", "land_use"]
    assert count_sheet(session_factory, 9108) == 0


def test_a_mapping_naming_a_missing_column_is_refused(files, session_factory) -> None:
    path = files("m.geojson", _grid(75, 1), {"commune": [COMMUNE], "sheet_no": [9109], "parcel_no": [1],
                                            "land_use": ["ODT"]})
    with pytest.raises(ValidationFailed) as caught:
        run_import(session_factory, path, mapping={"land_use": "LOAI"})
    assert "no column 'LOAI'" in caught.value.errors[0].msg
    with pytest.raises(ValidationFailed, match="does not fit"):
        run_import(session_factory, path, mapping={"colour": "land_use"})
    assert count_sheet(session_factory, 9109) == 0


def test_unknown_or_wrong_crs_is_a_clear_error(files, session_factory) -> None:
    fields = {"commune": [COMMUNE], "sheet_no": [9110], "parcel_no": [1], "land_use": ["ODT"]}
    no_prj = files("no_prj.shp", _grid(80, 1), fields, crs=None)
    with pytest.raises(ValidationFailed, match="does not say its coordinate system"):
        run_import(session_factory, no_prj)
    for bad in ("EPSG:999999", "VN2000:abc", "not a crs"):
        with pytest.raises(ValidationFailed, match="unknown CRS"):
            run_import(session_factory, no_prj, crs=bad)
    with pytest.raises(ValidationFailed, match="central meridian"):
        run_import(session_factory, no_prj, crs="VN2000:45")
    # Metres read as degrees: nothing lands in Vietnam, so the file is refused whole.
    projected = [shapely.affinity.translate(g, 560_000, 1_295_000) for g in _grid(80, 1)]
    with pytest.raises(ValidationFailed, match="lies inside Vietnam"):
        run_import(session_factory, files("metres.gpkg", projected, fields))
    assert count_sheet(session_factory, 9110) == 0


def test_reimport_updates_and_never_duplicates(files, session_factory) -> None:
    fields = {"commune": [COMMUNE] * 3, "sheet_no": [9111] * 3, "parcel_no": [1, 2, 3], "land_use": ["CLN"] * 3,
              "holder_name": ["Trần Thị A", "Lê Văn B", "Phạm C"], "certificate_no": ["CS 1", "CS 2", "CS 3"]}
    first = run_import(session_factory, files("v1.gpkg", _grid(90), fields))
    assert (first.created, first.updated) == (3, 0)
    before = {p: _parcel(session_factory, 9111, p).id for p in (1, 2, 3)}
    fields.update(land_use=["ODT"] * 3, holder_name=["Trần Thị A", None, "Phạm C"],
                  certificate_no=["CS 1", None, "CS 9"])
    second = run_import(session_factory, files("v2.geojson", _grid(90), fields))
    assert (second.created, second.updated) == (0, 3)
    assert count_sheet(session_factory, 9111) == 3
    assert {p: _parcel(session_factory, 9111, p).id for p in (1, 2, 3)} == before
    assert _parcel(session_factory, 9111, 2).primary_use == "ODT"
    with session_factory() as session:
        holders = {row.parcel_id: row for row in session.scalars(
            select(LandParcelPrivate).where(LandParcelPrivate.parcel_id.in_(list(before.values()))))}
    assert before[2] not in holders  # an emptied holder is removed, not kept
    assert holders[before[3]].certificate_no == "CS 9"


def test_bad_rows_are_rejected_with_reasons_and_the_rest_imported(files, session_factory) -> None:
    geoms = [*_grid(100, 6), None, shapely.LineString([(LON, LAT), (LON + STEP, LAT)])]
    fields = {
        "commune": [COMMUNE, COMMUNE, "99999", COMMUNE, COMMUNE, "79", COMMUNE, COMMUNE],
        "sheet_no": [9112, 9112, 9112, 9112, "x", 9112, 9112, 9112],
        "parcel_no": [1, 1, 3, 4, 5, 6, 7, 8],
        "land_use": ["ODT", "ODT", "ODT", "XYZ", "ODT", "ODT", "ODT", "ODT"],
    }
    report = run_import(session_factory, files("rows.geojson", geoms, fields, geometry_type="Unknown"))
    reasons = {i.row: i.reason for i in report.rejected}
    assert report.created == 1
    assert "duplicate of row 1" in reasons[2]
    assert "unknown commune '99999'" in reasons[3]
    assert "unknown land-use code 'XYZ'" in reasons[4]
    assert "sheet_no must be a whole number" in reasons[5]
    assert "unknown commune '79'" in reasons[6]  # a province is not a commune
    assert reasons[7] == "no geometry" and "LineString" in reasons[8]


def test_strict_mode_refuses_a_file_with_any_bad_row(files, session_factory) -> None:
    fields = {"commune": [COMMUNE] * 2, "sheet_no": [9113] * 2, "parcel_no": [1, 2], "land_use": ["ODT", "BAD"]}
    with pytest.raises(ValidationFailed, match="--strict"):
        run_import(session_factory, files("strict.gpkg", _grid(110, 2), fields), strict=True)
    assert count_sheet(session_factory, 9113) == 0


def test_parcels_outside_vietnam_are_rejected(files, session_factory) -> None:
    outside = shapely.box(100.0, 11.7, 100.001, 11.701)  # Thailand
    fields = {"commune": [COMMUNE] * 2, "sheet_no": [9114] * 2, "parcel_no": [1, 2], "land_use": ["ODT"] * 2}
    report = run_import(session_factory, files("mixed.gpkg", [square(LON, LAT, 120, 0), outside], fields))
    assert report.created == 1 and "outside Vietnam" in report.rejected[0].reason
