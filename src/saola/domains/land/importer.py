"""Import cadastral parcels from GeoJSON, GeoPackage or Shapefile, reprojected to WGS84, one transaction per file.

File-level problems (unreadable file, unknown CRS, a required attribute with no column, nothing inside
Vietnam) raise ValidationFailed and write nothing. Row-level problems reject that row with a reason in the
report; invalid polygons are repaired with make_valid when the repair keeps the parcel one piece of about the
same area, and rejected otherwise.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from sqlalchemy.orm import Session

from saola.core.auth.context import Actor
from saola.core.errors import FieldError, ValidationFailed
from saola.core.text import fold
from saola.core.units.service import normalize_code
from saola.domains.land import service
from saola.domains.land.codes import describe
from saola.domains.land.crs import WGS84, inside_vietnam, parse_crs, to_wgs84

Progress = Callable[[str, float], None]

REPAIR_AREA_TOLERANCE = 0.02  # a repair may change the area by at most 2 %
SLIVER_SHARE = 0.005  # pieces under 0.5 % of the repaired area are digitising slivers and are dropped
MAX_ISSUES = 10_000


@dataclass(frozen=True)
class FieldSpec:
    """One of our attributes: how to read it, whether it is required, and common column names for it."""

    kind: str
    required: bool
    label: str
    aliases: tuple[str, ...] = ()


# Column names seen in Vietnamese cadastral exports are guesses (unverified); --field/--mapping always win.
FIELDS: dict[str, FieldSpec] = {
    "commune": FieldSpec("str", True, "mã xã / commune code", ("unit_code", "ma_xa", "maxa", "ma_dvhc", "madvhc")),
    "sheet_no": FieldSpec("int", True, "số tờ / map sheet", ("so_to", "soto", "to_bd", "shbando", "sohieutobando")),
    "parcel_no": FieldSpec("int", True, "số thửa / parcel", ("so_thua", "sothua", "shthua", "sothututhua")),
    "land_use": FieldSpec("codes", True, "loại đất / land-use code(s)", ("loai_dat", "loaidat", "mdsd", "kh_mdsd")),
    "land_use_area": FieldSpec("areas", False, "diện tích theo loại đất / area per use", ("dt_loai_dat",)),
    "area_m2": FieldSpec("float", False, "diện tích / area (m²)", ("area", "dien_tich", "dientich", "dtich")),
    "allowed_use": FieldSpec("code", False, "chức năng quy hoạch / allowed use", ("chuc_nang", "qh_loai_dat")),
    "building_density_pct": FieldSpec("float", False, "mật độ xây dựng (%)", ("mat_do", "matdo", "mdxd")),
    "floors_min": FieldSpec("int", False, "tầng cao tối thiểu", ("tang_min",)),
    "floors_max": FieldSpec("int", False, "tầng cao tối đa", ("tang_max",)),
    "floors": FieldSpec("floors", False, "tầng cao (min-max)", ("tang_cao", "tangcao")),
    "land_use_coefficient": FieldSpec("float", False, "hệ số sử dụng đất", ("he_so", "hssdd")),
    "setback_m": FieldSpec("float", False, "khoảng lùi (m)", ("khoang_lui", "khoanglui")),
    "holder_name": FieldSpec("str", False, "chủ sử dụng / holder", ("chu_su_dung", "chusudung", "ten_chu")),
    "certificate_no": FieldSpec("str", False, "số giấy chứng nhận", ("so_gcn", "sogcn", "so_seri")),
    "certificate_issued_on": FieldSpec("date", False, "ngày cấp GCN", ("ngay_cap", "ngaycap")),
}
PRIVATE = ("holder_name", "certificate_no", "certificate_issued_on")


@dataclass
class ImportIssue:
    """A row that was repaired or rejected, by its position in the file (from 1) and its key."""

    row: int
    key: str | None
    reason: str


@dataclass
class ImportReport:
    """What an import read, created, updated, repaired and rejected."""

    file: str
    layer: str | None
    crs: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    repaired: list[ImportIssue] = field(default_factory=list)
    rejected: list[ImportIssue] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def imported(self) -> int:
        """Rows written (created or updated)."""
        return self.created + self.updated

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


class _RowError(Exception):
    pass


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", fold(name).lower())


def resolve_mapping(columns: list[str], mapping: Mapping[str, str] | None, *, commune_given: bool) -> dict[str, str]:
    """Our field -> the file's column: explicit mapping first, then our own names and common aliases."""
    mapping = dict(mapping or {})
    errors: list[FieldError] = []
    for ours, theirs in mapping.items():
        if ours not in FIELDS:
            errors.append(FieldError(["mapping", ours], f"unknown field {ours!r}; known: {', '.join(FIELDS)}"))
        elif theirs not in columns:
            errors.append(FieldError(["mapping", ours], f"the file has no column {theirs!r}; "
                                                        f"columns: {', '.join(columns) or '(none)'}"))
    if errors:
        raise ValidationFailed("the field mapping does not fit the file", errors)
    by_norm = {_norm(c): c for c in columns}
    resolved = dict(mapping)
    for ours, spec in FIELDS.items():
        if ours in resolved:
            continue
        for candidate in (ours, *spec.aliases):
            if _norm(candidate) in by_norm:
                resolved[ours] = by_norm[_norm(candidate)]
                break
    missing = [f for f, s in FIELDS.items() if s.required and f not in resolved
               and not (f == "commune" and commune_given)]
    if missing:
        raise ValidationFailed(
            f"the file lacks required attributes: {', '.join(missing)}; nothing was imported",
            [FieldError(["mapping", f], f"no column for {f} ({FIELDS[f].label}): map one with --field {f}=<column>; "
                                        f"columns: {', '.join(columns) or '(none)'}") for f in missing],
        )
    return resolved


def _read(path: Path, layer: str | None) -> tuple[dict[str, Any], np.ndarray, dict[str, np.ndarray], str | None]:
    if not path.exists():
        raise ValidationFailed(f"no such file: {path}", [FieldError(["file"], "file not found")])
    try:
        layers = pyogrio.list_layers(path)
        if layer is None and len(layers) > 1:
            names = ", ".join(str(n) for n, _ in layers)
            raise ValidationFailed(f"the file has several layers ({names}); choose one with --layer",
                                   [FieldError(["layer"], f"one of: {names}")])
        meta, _fids, geometry, field_data = pyogrio.raw.read(path, layer=layer)
    except ValidationFailed:
        raise
    except Exception as exc:  # GDAL reports unreadable files with several exception types
        raise ValidationFailed(f"cannot read {path.name}: {exc}", [FieldError(["file"], str(exc))]) from None
    if geometry is None:
        raise ValidationFailed(f"{path.name} has no geometry column", [FieldError(["file"], "no geometry")])
    columns = {str(name): data for name, data in zip(meta["fields"], field_data, strict=True)}
    return meta, geometry, columns, layer or (str(layers[0][0]) if len(layers) else None)


def _source_crs(crs: str | None, meta: dict[str, Any]) -> tuple[CRS, str]:
    if crs:
        return parse_crs(crs), crs
    declared = meta.get("crs")
    if not declared:
        raise ValidationFailed("the file does not say its coordinate system; give one with --crs "
                               "(EPSG:4326, VN2000:107.75, ...)", [FieldError(["crs"], "unknown CRS")])
    try:
        parsed = CRS.from_user_input(declared)
    except CRSError as exc:
        raise ValidationFailed(f"the file's coordinate system is not understood: {exc}; give one with --crs",
                               [FieldError(["crs"], "unknown CRS")]) from None
    return parsed, parsed.to_string()


# --- values ------------------------------------------------------------------------------------------------


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float | np.floating) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _int(value: Any, name: str, *, positive: bool = True) -> int:
    try:
        number = float(str(value).strip().replace(",", "."))
    except ValueError:
        raise _RowError(f"{name} must be a whole number, got {value!r}") from None
    if not number.is_integer() or (positive and number <= 0) or number < 0:
        raise _RowError(f"{name} must be a {'positive ' if positive else ''}whole number, got {value!r}")
    return int(number)


def _float(value: Any, name: str, *, low: float = 0.0, high: float = math.inf) -> float:
    try:
        number = float(str(value).strip().replace(",", "."))
    except ValueError:
        raise _RowError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise _RowError(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return number


def _code(value: Any, name: str) -> str:
    code = str(value).strip().upper()
    if describe(code) is None:
        raise _RowError(f"unknown land-use code {code!r} in {name}")
    return code


def _land_uses(value: Any, areas: Any, parcel_area: float) -> list[dict[str, Any]]:
    text = str(value).strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
            uses = [{"code": _code(i["code"], "land_use"), "area_m2": i.get("area_m2")} for i in items]
        except (ValueError, KeyError, TypeError):
            raise _RowError(f"land_use is not a list of {{code, area_m2}}: {text[:60]!r}") from None
    else:
        codes = [_code(c, "land_use") for c in re.split(r"[+,;/\s]+", text) if c]
        if not codes:
            raise _RowError("land_use is empty")
        numbers: list[float | None] = [None] * len(codes)
        if not _blank(areas):
            parts = [p for p in re.split(r"[+;/\s]+", str(areas).strip()) if p]
            if len(parts) != len(codes):
                raise _RowError(f"land_use has {len(codes)} codes but land_use_area has {len(parts)} values")
            numbers = [_float(p, "land_use_area") for p in parts]
        elif len(codes) == 1:
            numbers = [parcel_area]
        uses = [{"code": c, "area_m2": a} for c, a in zip(codes, numbers, strict=True)]
    return uses


def _date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, np.datetime64):
        return value.astype("datetime64[D]").astype(date)
    text = str(value).strip()[:10]
    for fmt in ("%Y-%m-%d", "%d/%m/%Y", "%Y/%m/%d", "%d-%m-%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise _RowError(f"certificate_issued_on is not a date: {value!r}")


def _floors(value: Any) -> tuple[int | None, int | None]:
    text = str(value).strip()
    match = re.fullmatch(r"(\d+)\s*[-–÷]\s*(\d+)", text)
    if match:
        return int(match[1]), int(match[2])
    return None, _int(text, "floors", positive=False)


# --- geometry ----------------------------------------------------------------------------------------------


def _repair(geom: Any) -> tuple[Any, str]:
    """A valid polygonal geometry for an invalid one, or _RowError when the repair is not safe."""
    why = shapely.is_valid_reason(geom)
    before = shapely.area(geom)  # the ring's own (shoelace) area; twisted lobes count negative
    parts_before = shapely.get_num_geometries(geom)
    fixed = shapely.make_valid(geom)
    pieces = [p for p in shapely.get_parts(fixed) if p.geom_type in ("Polygon", "MultiPolygon")]
    pieces = [q for p in pieces for q in shapely.get_parts(p)]
    total = sum(p.area for p in pieces)
    if total <= 0:
        raise _RowError(f"invalid polygon ({why}) with no area left after repair")
    kept = [p for p in pieces if p.area >= SLIVER_SHARE * total]
    after = sum(p.area for p in kept)
    if len(kept) > parts_before:
        raise _RowError(f"invalid polygon ({why}): repair would split it into {len(kept)} pieces")
    if abs(after - before) > REPAIR_AREA_TOLERANCE * max(after, before):
        raise _RowError(f"invalid polygon ({why}): repair would change its area by "
                        f"{abs(after - before) / max(after, before):.0%}")
    return shapely.multipolygons(kept), f"repaired: {why}"


def _area_m2(geoms: np.ndarray) -> np.ndarray:
    """Areas in m² of WGS84 geometries, in a Lambert equal-area projection centred on them."""
    if not len(geoms):
        return np.zeros(0)
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    laea = CRS.from_proj4(f"+proj=laea +lat_0={(y0 + y1) / 2} +lon_0={(x0 + x1) / 2} +ellps=WGS84 +units=m")
    transformer = Transformer.from_crs(WGS84, laea, always_xy=True)

    def _project(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.area(shapely.transform(geoms, _project))


# --- import ------------------------------------------------------------------------------------------------


def import_parcels(
    session: Session, *, actor: Actor, path: str | Path, crs: str | None = None,
    mapping: Mapping[str, str] | None = None, commune: str | None = None, layer: str | None = None,
    strict: bool = False, progress: Progress | None = None,
) -> ImportReport:
    """Read, check, reproject and write one file's parcels in the caller's transaction."""
    actor.require("land:write")
    started = time.perf_counter()
    tick = progress or (lambda _label, _fraction: None)
    path = Path(path)
    default_commune = None
    if commune:
        default_commune = service.commune_or_422(session, commune, loc=("commune",)).code
    tick("đọc tệp / reading", 0.0)
    meta, wkbs, columns, layer = _read(path, layer)
    source_crs, crs_text = _source_crs(crs, meta)
    resolved = resolve_mapping(list(columns), mapping, commune_given=default_commune is not None)
    report = ImportReport(file=path.name, layer=layer, crs=crs_text, rows=len(wkbs))
    tick("kiểm tra / checking", 0.1)

    n = len(wkbs)
    geoms = shapely.from_wkb(wkbs, on_invalid="ignore")
    reasons: dict[int, str] = {}
    type_ids = shapely.get_type_id(geoms)
    for i in np.flatnonzero(~np.isin(type_ids, (3, 6))):
        reasons[i] = "no geometry" if geoms[i] is None else f"geometry is a {geoms[i].geom_type}, not a polygon"
    for i in np.flatnonzero(np.isin(type_ids, (3, 6)) & shapely.is_empty(geoms)):
        reasons[i] = "empty geometry"
    bad = np.flatnonzero(np.isin(type_ids, (3, 6)) & ~shapely.is_empty(geoms) & ~shapely.is_valid(geoms))
    for i in bad:
        try:
            geoms[i], note = _repair(geoms[i])
            report.repaired.append(ImportIssue(int(i) + 1, None, note))
        except _RowError as exc:
            reasons[i] = str(exc)
    ok = np.array([i not in reasons for i in range(n)], dtype=bool)
    projected = np.empty(n, dtype=object)
    if ok.any():
        projected[ok] = to_wgs84(geoms[ok], source_crs)
        still_bad = np.flatnonzero(ok)[~shapely.is_valid(projected[ok])]
        for i in still_bad:
            fixed = shapely.make_valid(projected[i])
            polys = [p for p in shapely.get_parts(fixed) if p.geom_type == "Polygon"]
            if not polys:
                reasons[i] = "geometry degenerates after reprojection"
                ok[i] = False
            else:
                projected[i] = shapely.multipolygons(polys)
    bounds = np.full((n, 4), np.nan)
    if ok.any():
        bounds[ok] = shapely.bounds(projected[ok])
    in_vn = inside_vietnam(bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3])
    if ok.any() and not (ok & in_vn).any():
        x0, y0, x1, y1 = np.nanmin(bounds[:, 0]), np.nanmin(bounds[:, 1]), np.nanmax(bounds[:, 2]), np.nanmax(
            bounds[:, 3])
        raise ValidationFailed(
            f"no parcel of {path.name} lies inside Vietnam when read as {crs_text} (they span lon {x0:.4f}..{x1:.4f}, "
            f"lat {y0:.4f}..{y1:.4f}): is the CRS right? Nothing was imported",
            [FieldError(["crs"], "coordinates fall outside Vietnam with this CRS")])
    for i in np.flatnonzero(ok & ~in_vn):
        reasons[i] = f"outside Vietnam (lon {bounds[i, 0]:.4f}, lat {bounds[i, 1]:.4f})"
        ok[i] = False
    computed_area = np.full(n, np.nan)
    labels = np.full((n, 2), np.nan)
    if ok.any():
        computed_area[ok] = _area_m2(projected[ok])
        labels[ok] = shapely.get_coordinates(shapely.point_on_surface(projected[ok]))
        parts, index = shapely.get_parts(projected[ok], return_index=True)
        projected[ok] = shapely.multipolygons(parts, indices=index)
    tick("kiểm tra / checking", 0.3)

    rows: list[dict[str, Any]] = []
    seen: dict[tuple[str, int, int], int] = {}
    has_private = any(f in resolved for f in PRIVATE)
    # Plain Python lists with blanks as None, once per column: the per-row code then only reads dicts.
    get = {ours: [None if _blank(v) else v for v in columns[theirs].tolist()] for ours, theirs in resolved.items()}
    wkb = np.empty(n, dtype=object)
    if ok.any():
        wkb[ok] = shapely.to_wkb(projected[ok])
    bounds_list, labels_list, areas = bounds.tolist(), labels.tolist(), computed_area.tolist()
    for i in range(n):
        key_text = None
        try:
            if i in reasons:
                raise _RowError(reasons[i])
            row = _row(session, actor, {name: column[i] for name, column in get.items()}, default_commune, areas[i])
            key = (row["unit_code"], row["sheet_no"], row["parcel_no"])
            key_text = "/".join(str(k) for k in key)
            if key in seen:
                raise _RowError(f"duplicate of row {seen[key] + 1} ({key_text})")
            seen[key] = i
            row["geom_wkb"] = wkb[i]
            row["min_lon"], row["min_lat"], row["max_lon"], row["max_lat"] = bounds_list[i]
            row["label_lon"], row["label_lat"] = labels_list[i]
            rows.append(row)
        except _RowError as exc:
            if key_text is None:
                key_text = _key_text(get, i, default_commune)
            if len(report.rejected) < MAX_ISSUES:
                report.rejected.append(ImportIssue(i + 1, key_text, str(exc)))
    for issue in report.repaired:
        issue.key = _key_text(get, issue.row - 1, default_commune)
    if strict and report.rejected:
        raise ValidationFailed(
            f"{len(report.rejected)} of {n} rows were rejected and --strict is on; nothing was imported",
            [FieldError(["rows", r.row], r.reason) for r in report.rejected[:50]])
    tick("ghi / writing", 0.4)

    def write_progress(done: int, total: int) -> None:
        tick("ghi / writing", 0.4 + 0.6 * done / max(total, 1))

    result = service.store_parcels(session, actor=actor, rows=rows, with_private=has_private,
                                   source=f"import:{path.name}", progress=write_progress)
    report.created, report.updated = result.created, result.updated
    report.seconds = round(time.perf_counter() - started, 3)
    tick("xong / done", 1.0)
    return report


def _key_text(get: dict[str, list[Any]], i: int, default_commune: str | None) -> str | None:
    parts = []
    for name in ("commune", "sheet_no", "parcel_no"):
        value = get[name][i] if name in get else (default_commune if name == "commune" else None)
        if _blank(value):
            return None
        parts.append(str(value).removesuffix(".0"))
    return "/".join(parts)


def _row(session: Session, actor: Actor, values: dict[str, Any], default_commune: str | None,
         computed_area: float) -> dict[str, Any]:
    """Our row for one row of the file (its values by our field names), or _RowError with the first problem."""
    value = values.get

    raw_commune = value("commune")
    if raw_commune is None and default_commune is None:
        raise _RowError("commune is empty")
    code = normalize_code(str(raw_commune).removesuffix(".0")) if raw_commune is not None else default_commune
    assert code is not None
    try:
        unit = service.commune_or_422(session, code, loc=("commune",))
    except ValidationFailed:
        raise _RowError(f"unknown commune {code!r}") from None
    if not actor.sees_path(unit.path):
        raise _RowError(f"commune {code} is outside the scope of {actor.name!r}")
    for required in ("sheet_no", "parcel_no", "land_use"):
        if value(required) is None:
            raise _RowError(f"{required} is empty")
    area = _float(value("area_m2"), "area_m2", low=1e-6) if value("area_m2") is not None else round(computed_area, 2)
    uses = _land_uses(value("land_use"), value("land_use_area"), area)
    primary = max(uses, key=lambda u: u["area_m2"] or 0.0)["code"]
    floors_min = _int(value("floors_min"), "floors_min", positive=False) if value("floors_min") is not None else None
    floors_max = _int(value("floors_max"), "floors_max", positive=False) if value("floors_max") is not None else None
    if value("floors") is not None and floors_min is None and floors_max is None:
        floors_min, floors_max = _floors(value("floors"))
    if floors_min is not None and floors_max is not None and floors_min > floors_max:
        raise _RowError(f"floors_min {floors_min} is above floors_max {floors_max}")
    row: dict[str, Any] = {
        "unit_code": unit.code,
        "sheet_no": _int(value("sheet_no"), "sheet_no"),
        "parcel_no": _int(value("parcel_no"), "parcel_no"),
        "area_m2": area,
        "land_use": uses,
        "primary_use": primary,
        "allowed_use": _code(value("allowed_use"), "allowed_use") if value("allowed_use") is not None else None,
        "building_density_pct": (_float(value("building_density_pct"), "building_density_pct", high=100.0)
                                 if value("building_density_pct") is not None else None),
        "floors_min": floors_min,
        "floors_max": floors_max,
        "land_use_coefficient": (_float(value("land_use_coefficient"), "land_use_coefficient", high=100.0)
                                 if value("land_use_coefficient") is not None else None),
        "setback_m": _float(value("setback_m"), "setback_m", high=1000.0) if value("setback_m") is not None else None,
    }
    holder = value("holder_name")
    certificate = value("certificate_no")
    issued = value("certificate_issued_on")
    row["holder_name"] = str(holder).strip()[:255] if holder is not None else None
    row["certificate_no"] = str(certificate).strip()[:60] if certificate is not None else None
    row["certificate_issued_on"] = _date(issued) if issued is not None else None
    return row
