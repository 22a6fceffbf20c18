"""Demo parcels around Đà Lạt: 97,751 irregular parcels in the city's wards, with roads, Xuân Hương lake,
land uses that change from the centre outwards, planning attributes and (personal, demo-only) holders.

Vectorised end to end (numpy and shapely 2): Voronoi cells of a jittered grid that is denser in the centre,
cut by the road network and the lake and clipped to the wards, then written in one bulk transaction.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import shapely
from sqlalchemy import select

from saola.core.auth.context import system_actor
from saola.core.units.models import Unit
from saola.db.engine import transaction
from saola.domains.land import service
from saola.packs.context import PackContext

DEMO_PARCELS = 97_751
CENTRE = (108.4370, 11.9435)  # Chợ Đà Lạt, west of Hồ Xuân Hương
RADII = (0.105, 0.085)  # degrees lon, lat of the demo area (about 23 x 19 km)
LAKE = (108.4465, 11.9418, 0.0075, 0.0032, 25.0)  # centre, semi-axes, rotation (degrees)
ROAD_HALF_WIDTH = 0.00005  # about 5.5 m: roads of 11 m
SHEET_SIZE = (0.0060, 0.0050)  # map sheet footprint, degrees lon, lat
KM_PER_DEG = (108.9, 110.6)  # at 12° N

# The five wards of Đà Lạt (post-2025 codes) and a seed point each; wards are Voronoi regions of the seeds.
DALAT_WARDS: tuple[tuple[str, tuple[float, float]], ...] = (
    ("24781", (108.4450, 11.9400)),  # Xuân Hương - Đà Lạt
    ("24787", (108.3950, 11.9300)),  # Cam Ly - Đà Lạt
    ("24778", (108.4750, 11.9700)),  # Lâm Viên - Đà Lạt
    ("24805", (108.5050, 11.9150)),  # Xuân Trường - Đà Lạt
    ("24846", (108.4300, 12.0050)),  # Lang Biang - Đà Lạt
)

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ",
          "Ngô", "Dương", "Lý", "K'", "Ka"]
MIDDLE = ["Văn", "Thị", "Hữu", "Minh", "Ngọc", "Thanh", "Quốc", "Đức", "Thu", "Hoài", "Xuân", "Kim"]
GIVEN = ["An", "Bình", "Cường", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Hùng", "Hương", "Khánh", "Lan", "Linh",
         "Long", "Mai", "Minh", "Nam", "Nga", "Phúc", "Phương", "Quân", "Sơn", "Tâm", "Thảo", "Trang", "Tuấn",
         "Vy", "Yến", "Đông", "Thư"]
PUBLIC_HOLDERS = {"DGT": "UBND {ward}", "MNC": "UBND {ward}", "DGD": "Trường học trên địa bàn {ward}",
                  "DYT": "Trạm Y tế {ward}", "TSC": "UBND {ward}", "DVH": "UBND {ward}",
                  "RPH": "Ban Quản lý rừng phòng hộ", "RSX": "Công ty Lâm nghiệp Đà Lạt"}

# Land-use mix by distance from the centre (km): (upper bound, {code: weight}).
USE_ZONES: tuple[tuple[float, dict[str, float]], ...] = (
    (2.0, {"ODT": 70, "TMD": 12, "TSC": 3, "DGD": 3, "DYT": 1.5, "DVH": 2, "TON": 1.5, "CLN": 7}),
    (5.0, {"ODT": 45, "CLN": 22, "HNK": 20, "TMD": 3, "DGD": 2, "TIN": 1, "NKH": 5, "DTT": 1, "SKC": 1}),
    (99.0, {"HNK": 28, "CLN": 24, "RSX": 22, "RPH": 8, "ODT": 12, "NKH": 4, "TIN": 1, "DCS": 1}),
)


@dataclass(frozen=True)
class Planning:
    """Planning ranges for one land use: density %, floors and setback choices."""

    density: tuple[float, ...]
    floors_min: int | None
    floors_max: tuple[int, ...]
    setback: tuple[float, ...]


PLANNING: dict[str, Planning] = {
    "ODT": Planning((60, 70, 80, 90, 100), 1, (3, 4, 5, 6, 7), (0.0, 2.4, 3.0)),
    "TMD": Planning((40, 50, 60, 70), 2, (5, 7, 9, 12), (6.0,)),
    "TSC": Planning((40,), 2, (3, 5), (6.0,)),
    "DGD": Planning((40,), 1, (3, 4), (6.0,)),
    "DYT": Planning((40,), 1, (3, 5), (6.0,)),
    "DVH": Planning((40,), 1, (2, 3), (6.0,)),
    "DTT": Planning((20,), 1, (2,), (6.0,)),
    "SKC": Planning((60,), 1, (2, 3), (6.0,)),
    "TON": Planning((30, 40), 1, (2,), (3.0,)),
    "TIN": Planning((30, 40), 1, (1,), (3.0,)),
    "CLN": Planning((0, 5), 0, (1,), (0.0,)),
    "HNK": Planning((0, 5), 0, (1,), (0.0,)),
    "NKH": Planning((5, 10), 0, (1,), (0.0,)),
}


def _ellipse(cx: float, cy: float, a: float, b: float, angle: float = 0.0, n: int = 96) -> shapely.Polygon:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = a * np.cos(t), b * np.sin(t)
    r = np.radians(angle)
    return shapely.Polygon(np.column_stack([cx + x * np.cos(r) - y * np.sin(r), cy + x * np.sin(r) + y * np.cos(r)]))


def _region() -> shapely.Geometry:
    """The demo area: a wobbly ellipse around the centre."""
    t = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    wobble = 1 + 0.06 * np.sin(3 * t + 0.7) + 0.04 * np.cos(5 * t)
    cx, cy = CENTRE[0] + 0.013, CENTRE[1] + 0.009
    return shapely.Polygon(np.column_stack([cx + RADII[0] * wobble * np.cos(t), cy + RADII[1] * wobble * np.sin(t)]))


def _wards(region: shapely.Geometry, codes: Sequence[str]) -> list[shapely.Geometry]:
    """One region per ward code: Voronoi cells of the Đà Lạt seeds (cycled when more codes are given)."""
    seeds = [DALAT_WARDS[i % len(DALAT_WARDS)][1] for i in range(len(codes))]
    seeds = [(x + 0.01 * (i // len(DALAT_WARDS)), y) for i, (x, y) in enumerate(seeds)]
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=region.envelope))
    out = []
    for x, y in seeds:
        cell = next(c for c in cells if c.contains(shapely.Point(x, y)))
        out.append(shapely.intersection(cell, region))
    return out


def _roads(region: shapely.Geometry) -> shapely.Geometry:
    """Radial roads from the centre and two ring roads, as one polygon mask."""
    cx, cy = LAKE[0], LAKE[1] - 0.004
    lines = []
    for k, angle in enumerate(np.linspace(0, 2 * np.pi, 11, endpoint=False)):
        bend = 0.15 * np.sin(2 * k)
        t = np.linspace(0.0, 1.3, 40)
        a = angle + bend * t
        lines.append(shapely.LineString(np.column_stack([cx + RADII[0] * t * np.cos(a),
                                                         cy + RADII[1] * t * np.sin(a)])))
    for scale in (0.18, 0.45):
        ring = _ellipse(cx, cy, RADII[0] * scale, RADII[1] * scale, 10.0, 120).exterior
        lines.append(shapely.LineString(ring.coords))
    roads = shapely.buffer(shapely.union_all(lines), ROAD_HALF_WIDTH, cap_style="flat", quad_segs=2)
    return shapely.intersection(roads, region)


def _points(n: int, region: shapely.Geometry, holes: shapely.Geometry | None, rng: np.random.Generator) -> np.ndarray:
    """Exactly n points in the region outside the holes: jittered grids in rings, denser towards the centre.

    The density falls off as (r + 0.4 km)^-1.6, so lots are a few hundred m² in the centre and several
    thousand m² of farms and forest at the edge; each ring has its own square grid, so cells stay
    roughly isotropic.
    """
    edges = np.array([0.0, 0.4, 0.8, 1.2, 1.7, 2.3, 3.0, 3.8, 4.8, 6.0, 7.5, 9.5, 12.0, 16.0])
    scale = n / 40.0  # first guess of the density constant, corrected below
    kx, ky = KM_PER_DEG
    for _ in range(12):
        xs, ys = [], []
        for r_in, r_out in itertools.pairwise(edges):
            density = scale * ((r_in + r_out) / 2 + 0.4) ** -1.6  # parcels per km²
            step = 1.0 / np.sqrt(density)
            g = np.arange(-r_out, r_out + step, step)
            gx, gy = np.meshgrid(g + rng.uniform(0, step), g + rng.uniform(0, step))
            gx = gx.ravel() + rng.uniform(-0.35, 0.35, gx.size) * step
            gy = gy.ravel() + rng.uniform(-0.35, 0.35, gy.size) * step
            r = np.hypot(gx, gy)
            ring = (r >= r_in) & (r < r_out)
            xs.append(CENTRE[0] + gx[ring] / kx)
            ys.append(CENTRE[1] + gy[ring] / ky)
        x, y = np.concatenate(xs), np.concatenate(ys)
        inside = shapely.contains_xy(region, x, y)
        if holes is not None:
            inside &= ~shapely.intersects_xy(holes, x, y)
        x, y = x[inside], y[inside]
        if n <= len(x) <= n * 1.04:
            keep = np.sort(rng.choice(len(x), n, replace=False))
            return shapely.points(x[keep], y[keep])
        scale *= n / max(len(x), 1) * 1.02
    raise RuntimeError("could not place the demo parcels")


def _cut(cells: np.ndarray, mask: shapely.Geometry) -> np.ndarray:
    """Cells minus the mask, touching only cells that intersect it."""
    pieces = shapely.get_parts(shapely.segmentize(mask, 0.004)) if not mask.is_empty else []
    if not len(pieces):
        return cells
    # Split the mask into small tiles so each difference only sees the few roads near its cell.
    x0, y0, x1, y1 = mask.bounds
    grid = [shapely.box(x, y, x + 0.004, y + 0.004) for x in np.arange(x0, x1, 0.004) for y in np.arange(y0, y1, 0.004)]
    tiles = shapely.intersection(mask, np.array(grid))
    tiles = tiles[~shapely.is_empty(tiles)]
    tree = shapely.STRtree(tiles)
    cell_idx, tile_idx = tree.query(cells, predicate="intersects")
    out = cells.copy()
    order = np.argsort(cell_idx, kind="stable")
    cell_idx, tile_idx = cell_idx[order], tile_idx[order]
    while len(cell_idx):
        first = np.r_[True, cell_idx[1:] != cell_idx[:-1]]
        out[cell_idx[first]] = shapely.difference(out[cell_idx[first]], tiles[tile_idx[first]])
        cell_idx, tile_idx = cell_idx[~first], tile_idx[~first]
    return out


def _polygonal(geoms: np.ndarray) -> np.ndarray:
    """Each geometry's polygon pieces as one MultiPolygon (None where nothing polygonal is left)."""
    parts, index = shapely.get_parts(geoms, return_index=True)
    polygonal = shapely.get_type_id(parts) == 3
    out = np.empty(len(geoms), dtype=object)
    return shapely.multipolygons(parts[polygonal], indices=index[polygonal], out=out)


def _numbering(ward: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sheet numbers per ward (a grid, numbered from the north-west) and parcel numbers per sheet."""
    col = np.floor((x - x.min()) / SHEET_SIZE[0]).astype(np.int64)
    row = np.floor((y.max() - y) / SHEET_SIZE[1]).astype(np.int64)
    cell = row * 10_000 + col
    sheet = np.zeros(len(x), dtype=np.int64)
    for w in np.unique(ward):
        members = np.flatnonzero(ward == w)
        _, numbered = np.unique(cell[members], return_inverse=True)
        sheet[members] = numbered + 1
    order = np.lexsort((x, -y, sheet, ward))
    key = ward[order] * 1_000_000 + sheet[order]
    starts = np.r_[0, np.flatnonzero(key[1:] != key[:-1]) + 1]
    counts = np.diff(np.r_[starts, len(order)])
    within = np.arange(len(order)) - np.repeat(starts, counts)
    parcel = np.empty(len(x), dtype=np.int64)
    parcel[order] = within + 1
    return sheet, parcel


def generate(n: int = DEMO_PARCELS, *, ward_codes: Sequence[str] = tuple(c for c, _ in DALAT_WARDS),
             ward_names: dict[str, str] | None = None, seed: int = 68, holders: bool = True) -> list[dict[str, Any]]:
    """Exactly n parcel rows (for service.store_parcels) around Đà Lạt, reproducible for a seed."""
    rng = np.random.default_rng(seed)
    region = _region()
    wards = _wards(region, ward_codes)
    with_city = n >= 5_000  # roads and the lake only make sense at city scale
    lake = _ellipse(*LAKE) if with_city else None
    roads = _roads(region) if with_city else None
    # Road parcels: the network cut by ward and sheet grid, each piece one DGT parcel.
    special: list[tuple[int, shapely.Geometry, str]] = []
    if with_city:
        assert roads is not None and lake is not None
        roads = shapely.difference(roads, lake)
        x0, y0, x1, y1 = region.bounds
        sheet_grid = np.array([shapely.box(x, y, x + SHEET_SIZE[0] * 2, y + SHEET_SIZE[1] * 2)
                               for x in np.arange(x0, x1, SHEET_SIZE[0] * 2)
                               for y in np.arange(y0, y1, SHEET_SIZE[1] * 2)])
        for w, ward_geom in enumerate(wards):
            road_pieces = shapely.intersection(shapely.intersection(roads, ward_geom), sheet_grid)
            for piece in road_pieces[~shapely.is_empty(road_pieces)]:
                if piece.area > 1e-8:
                    special.append((w, piece, "DGT"))
        for w, ward_geom in enumerate(wards):
            water = shapely.intersection(lake, ward_geom)
            if not water.is_empty and water.area > 1e-8:
                special.append((w, water, "MNC"))
    holes = shapely.union(roads, lake) if with_city else None
    n_cells = n - len(special)
    pts = _points(n_cells, region, holes, rng)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=region.envelope,
                                                       ordered=True))
    px, py = shapely.get_x(pts), shapely.get_y(pts)
    ward_of = np.zeros(n_cells, dtype=np.int64)
    for w, ward_geom in enumerate(wards):
        ward_of[shapely.contains_xy(ward_geom, px, py)] = w
    clipped = cells.copy()
    for w, ward_geom in enumerate(wards):
        members = np.flatnonzero(ward_of == w)
        shapely.prepare(ward_geom)
        crossing = members[~shapely.contains(ward_geom, cells[members])]
        clipped[crossing] = shapely.intersection(cells[crossing], ward_geom)
    if holes is not None:
        clipped = _cut(clipped, holes)
    geoms = _polygonal(clipped)
    empty = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    if empty.any():  # a cell swallowed by a road: give it a tiny lot around its point instead
        geoms[empty] = [shapely.MultiPolygon([shapely.box(x - 2e-5, y - 2e-5, x + 2e-5, y + 2e-5)])
                        for x, y in zip(px[empty], py[empty], strict=True)]
    uses = _assign_uses(px, py, rng)
    if special:
        geoms = np.concatenate([geoms, _polygonal(np.array([g for _, g, _ in special]))])
        ward_of = np.concatenate([ward_of, np.array([w for w, _, _ in special])])
        uses = np.concatenate([uses, np.array([u for _, _, u in special])])
    rows = _rows(geoms, ward_of, uses, ward_codes, ward_names or {}, rng, holders)
    assert len(rows) == n, (len(rows), n)
    return rows


def _assign_uses(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Land uses by distance from the centre, with pine forest in patches (a smooth random field)."""
    dist = np.hypot((x - CENTRE[0]) * KM_PER_DEG[0], (y - CENTRE[1]) * KM_PER_DEG[1])
    field = np.zeros(len(x))
    for _ in range(10):  # waves 2-6 km long in random directions: patches a few km across
        k, angle = rng.uniform(100, 300), rng.uniform(0, np.pi)
        field += np.sin(k * (np.cos(angle) * x + np.sin(angle) * y) + rng.uniform(0, 2 * np.pi))
    field /= np.sqrt(5.0)
    uses = np.empty(len(x), dtype=object)
    low = 0.0
    for high, weights in USE_ZONES:
        members = np.flatnonzero((dist >= low) & (dist < high))
        codes = np.array(list(weights))
        p = np.array(list(weights.values()), dtype=float)
        uses[members] = rng.choice(codes, size=len(members), p=p / p.sum())
        low = high
    forest = (dist > 2.5) & (field > 0.9 - 0.12 * np.minimum(dist, 10.0))  # more forest further out
    uses[forest] = np.where(rng.random(int(forest.sum())) < 0.8, "RSX", "RPH")
    not_forest = ~forest & np.isin(uses, ["RSX", "RPH"])
    uses[not_forest] = rng.choice(["HNK", "CLN"], size=int(not_forest.sum()))
    return uses


def _rows(geoms: np.ndarray, ward_of: np.ndarray, uses: np.ndarray, ward_codes: Sequence[str],
          ward_names: dict[str, str], rng: np.random.Generator, holders: bool) -> list[dict[str, Any]]:
    """Parcel rows with numbering, uses, planning and holders (numpy draws, then one plain-Python pass)."""
    n = len(geoms)
    bounds = shapely.bounds(geoms).tolist()
    label = shapely.point_on_surface(geoms)
    lx, ly = shapely.get_x(label), shapely.get_y(label)
    area_arr = np.round(shapely.area(geoms) * KM_PER_DEG[0] * KM_PER_DEG[1] * 1e6, 1)
    sheet, parcel = _numbering(ward_of, lx, ly)
    wkb = shapely.to_wkb(geoms).tolist()
    dist_arr = np.hypot((lx - CENTRE[0]) * KM_PER_DEG[0], (ly - CENTRE[1]) * KM_PER_DEG[1])
    mixed = ((uses == "ODT") & (dist_arr > 1.0) & (rng.random(n) < 0.4) & (area_arr > 250)).tolist()
    residential = np.minimum(area_arr, rng.choice([100.0, 150.0, 200.0, 300.0], n)).tolist()
    converted = (np.isin(uses, ["HNK", "CLN"]) & (dist_arr < 4.5) & (rng.random(n) < 0.08)).tolist()
    picks = rng.random((n, 3)).tolist()
    certified = (rng.random(n) < 0.85).tolist()
    issued = rng.integers(0, (date(2024, 12, 31) - date(1995, 1, 1)).days, n).tolist()
    people = [f"{FAMILY[a]} {MIDDLE[b]} {GIVEN[c]}" for a, b, c in zip(
        rng.integers(0, len(FAMILY), n).tolist(), rng.integers(0, len(MIDDLE), n).tolist(),
        rng.integers(0, len(GIVEN), n).tolist(), strict=True)]
    serial = rng.integers(0, 999_999, n).tolist()
    codes = [ward_codes[w] for w in ward_of.tolist()]
    area, dist, use_list = area_arr.tolist(), dist_arr.tolist(), [str(u) for u in uses]
    label_x, label_y = lx.tolist(), ly.tolist()
    sheets, parcels = sheet.tolist(), parcel.tolist()
    start = date(1995, 1, 1)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        use, a = use_list[i], area[i]
        if mixed[i]:
            land_use = [{"code": "ODT", "area_m2": residential[i]},
                        {"code": "CLN", "area_m2": round(a - residential[i], 1)}]
            primary = "ODT" if residential[i] * 2 >= a else "CLN"
        else:
            land_use = [{"code": use, "area_m2": a}]
            primary = use
        allowed = "ODT" if converted[i] else use
        plan = PLANNING.get(allowed)
        x0, y0, x1, y1 = bounds[i]
        row: dict[str, Any] = {
            "unit_code": codes[i], "sheet_no": sheets[i], "parcel_no": parcels[i], "area_m2": a,
            "land_use": land_use, "primary_use": primary, "allowed_use": allowed, "building_density_pct": None,
            "floors_min": None, "floors_max": None, "land_use_coefficient": None, "setback_m": None,
            "geom_wkb": wkb[i], "min_lon": x0, "min_lat": y0, "max_lon": x1, "max_lat": y1,
            "label_lon": label_x[i], "label_lat": label_y[i],
        }
        if plan is not None:
            pick = picks[i]
            density = plan.density[int(pick[0] * len(plan.density))]
            floors_choices = plan.floors_max
            if allowed == "ODT":  # small central lots may cover more of their land; outskirts stay low
                density = 100.0 if a < 90 else 90.0 if a < 150 and dist[i] < 2 else min(density, 80.0)
                if dist[i] > 4.5:
                    floors_choices = (2, 3)
            floors_max = floors_choices[int(pick[1] * len(floors_choices))]
            row["building_density_pct"] = float(density)
            row["floors_min"] = plan.floors_min
            row["floors_max"] = floors_max
            row["land_use_coefficient"] = round(density / 100 * floors_max, 2)
            row["setback_m"] = plan.setback[int(pick[2] * len(plan.setback))]
        elif use in ("RSX", "RPH", "DCS", "MNC"):
            row["building_density_pct"], row["floors_min"], row["floors_max"] = 0.0, 0, 0
            row["land_use_coefficient"] = 0.0
        if holders:
            public = PUBLIC_HOLDERS.get(use)
            row["holder_name"] = (public.format(ward=ward_names.get(codes[i], f"phường {codes[i]}"))
                                  if public else people[i])
            if certified[i]:
                row["certificate_no"] = f"C{'SD'[i % 2]} {serial[i]:06d}"
                row["certificate_issued_on"] = start + timedelta(days=issued[i])
            else:
                row["certificate_no"] = row["certificate_issued_on"] = None
        rows.append(row)
    return rows


def dalat_wards(context: PackContext) -> dict[str, str]:
    """Codes and names of the demo province's communes whose name contains 'Đà Lạt'."""
    with context.session_factory() as session:
        rows = session.execute(select(Unit.code, Unit.name).where(Unit.parent_code == context.province_code,
                                                                  Unit.name.contains("Đà Lạt"))
                               .order_by(Unit.code)).all()
    return {code: name for code, name in rows}


def seed(context: PackContext, *, n: int = DEMO_PARCELS) -> float:
    """Generate and write the demo parcels; returns the seconds it took."""
    label = "Đất đai / land parcels"
    started = time.perf_counter()
    context.progress(label, 0.0)
    wards = dalat_wards(context)
    if not wards:
        return 0.0
    known = [c for c, _ in DALAT_WARDS if c in wards] + [c for c in wards if c not in dict(DALAT_WARDS)]
    rows = generate(n, ward_codes=known, ward_names=wards)
    context.progress(label, 0.35)

    def on_write(done: int, total: int) -> None:
        context.progress(label, 0.35 + 0.6 * done / max(total, 1))

    with transaction(context.session_factory) as session:
        service.store_parcels(session, actor=system_actor("demo"), rows=rows, with_private=True,
                              source="demo:dalat", progress=on_write, chunk=5000)
    _count_observations(context, known)
    context.progress(label, 1.0)
    return time.perf_counter() - started


def _count_observations(context: PackContext, communes: list[str]) -> None:
    """Parcel counts per ward and for the province, for the wallboard tile."""
    if "land" not in context.source_ids:
        return
    from saola.core.observations.service import ingest

    with transaction(context.session_factory) as session:
        counts = service.count_parcels(session, unit_codes=communes)
        items = [{"indicator": "land.parcels", "unit": code, "ts": context.now, "value": counts.get(code, 0)}
                 for code in communes]
        items.append({"indicator": "land.parcels", "unit": context.province_code, "ts": context.now,
                      "value": sum(counts.values())})
        ingest(session, actor=context.source_actor(session, "land"), items=items)

