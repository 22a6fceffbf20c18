"""Coordinate reference systems of cadastral files (VN-2000, EPSG codes, PROJ strings) and Vietnam's bounds."""

from __future__ import annotations

import math
import re

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from saola.core.errors import FieldError, ValidationFailed

# Datum shift VN-2000 -> WGS84: the 7-parameter Helmert transformation commonly used for VN-2000 maps.
VN2000_TOWGS84 = "-191.90441429,-39.30318279,-111.45032835,-0.00928836,0.01975479,-0.00427372,0.252906278"
WGS84 = CRS.from_epsg(4326)

# Mainland and coastal islands, plus the Hoàng Sa and Trường Sa archipelagos (rough boxes: a sanity check for
# coordinates, not a border).
VIETNAM_BOXES: tuple[tuple[float, float, float, float], ...] = (
    (102.1, 8.3, 109.5, 23.4),
    (111.0, 15.7, 113.0, 17.2),
    (111.4, 6.0, 117.9, 11.6),
)

_VN2000 = re.compile(r"^VN-?2000:(?P<lon>[0-9.]+)(?:[°d](?P<min>[0-9.]+)'?)?(?::(?P<k>0\.999\d*))?$", re.I)


def vn2000(central_meridian: float, scale: float = 0.9999) -> CRS:
    """VN-2000 transverse Mercator of a province (3-degree zone k=0.9999 by default) with its shift to WGS84."""
    return CRS.from_proj4(
        f"+proj=tmerc +lat_0=0 +lon_0={central_meridian} +k={scale} +x_0=500000 +y_0=0 +ellps=WGS84 "
        f"+towgs84={VN2000_TOWGS84} +units=m +no_defs +type=crs"
    )


def parse_crs(text: str, *, loc: tuple[str, ...] = ("crs",)) -> CRS:
    """A CRS from 'VN2000:107.75' (or 107°45'), 'VN2000:105:0.9996', an EPSG code or a PROJ/WKT string."""
    value = (text or "").strip()
    match = _VN2000.match(value.replace(" ", ""))
    if match:
        lon = float(match["lon"]) + (float(match["min"]) / 60 if match["min"] else 0.0)
        if not 100.0 <= lon <= 120.0:
            raise ValidationFailed(f"VN-2000 central meridian {lon} is not in Vietnam's range 100-120",
                                   [FieldError(list(loc), "central meridian out of range")])
        return vn2000(lon, float(match["k"]) if match["k"] else 0.9999)
    if value.isdigit():
        value = f"EPSG:{value}"
    try:
        crs = CRS.from_user_input(value)
    except CRSError as exc:
        raise ValidationFailed(
            f"unknown CRS {text!r}: give EPSG:4326, VN2000:<central meridian> (e.g. VN2000:107.75) or a PROJ string",
            [FieldError(list(loc), f"unknown CRS: {exc}")],
        ) from None
    if not (crs.is_geographic or crs.is_projected):
        raise ValidationFailed(f"CRS {text!r} is neither geographic nor projected",
                               [FieldError(list(loc), "not a 2D horizontal CRS")])
    return crs


def to_wgs84(geoms: np.ndarray, source: CRS) -> np.ndarray:
    """Reproject an array of shapely geometries to WGS84 longitude/latitude."""
    if source.equals(WGS84, ignore_axis_order=True) or source.to_epsg() == 4326 or _is_crs84(source):
        return geoms
    transformer = Transformer.from_crs(source, WGS84, always_xy=True)

    def _transform(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, _transform)


def _is_crs84(crs: CRS) -> bool:
    return crs.name in {"WGS 84 (CRS84)", "WGS84 (CRS84)"} or "CRS84" in (crs.srs or "")


def inside_vietnam(min_lon: np.ndarray, min_lat: np.ndarray, max_lon: np.ndarray, max_lat: np.ndarray) -> np.ndarray:
    """For each bounding box, True when it lies entirely inside one of Vietnam's boxes."""
    ok = np.zeros(np.shape(min_lon), dtype=bool)
    for x0, y0, x1, y1 in VIETNAM_BOXES:
        ok |= (min_lon >= x0) & (max_lon <= x1) & (min_lat >= y0) & (max_lat <= y1)
    return ok


def point_in_vietnam(lon: float, lat: float) -> bool:
    """True when a longitude/latitude lies inside Vietnam's boxes."""
    return any(x0 <= lon <= x1 and y0 <= lat <= y1 for x0, y0, x1, y1 in VIETNAM_BOXES)


def check_point(lon: float, lat: float, *, loc: tuple[str, ...] = ("query",)) -> None:
    """Raise 422 naming the field when a point is not finite or lies outside Vietnam."""
    errors = []
    if not math.isfinite(lon) or not -180 <= lon <= 180:
        errors.append(FieldError([*loc, "lon"], f"longitude {lon} is not a valid number"))
    if not math.isfinite(lat) or not -90 <= lat <= 90:
        errors.append(FieldError([*loc, "lat"], f"latitude {lat} is not a valid number"))
    if errors:
        raise ValidationFailed("invalid coordinates", errors)
    if not point_in_vietnam(lon, lat):
        lon_ok = any(x0 <= lon <= x1 for x0, _, x1, _ in VIETNAM_BOXES)
        field = "lat" if lon_ok else "lon"
        raise ValidationFailed(
            f"point ({lon}, {lat}) is outside Vietnam",
            [FieldError([*loc, field], f"({lon}, {lat}) is outside Vietnam (lon 102.1-117.9, lat 6.0-23.4)")],
        )
