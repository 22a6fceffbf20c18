"""The demo's 97,751 parcels around Đà Lạt, and what the pack declares through the hooks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from sqlalchemy import func, select

from saola.config import Settings
from saola.core.units.service import load_official_units
from saola.db.engine import make_engine, make_session_factory, transaction
from saola.db.types import utcnow
from saola.domains.land import demo, service
from saola.domains.land.models import LandParcel, LandParcelPrivate
from saola.packs.context import PackContext
from saola.packs.manager import build_plugin_manager, build_registry


def test_generated_parcels_are_valid_unique_and_varied() -> None:
    rows = demo.generate(6000, seed=11)
    assert len(rows) == 6000
    geoms = shapely.from_wkb([r["geom_wkb"] for r in rows])
    assert shapely.is_valid(geoms).all() and not shapely.is_empty(geoms).any()
    assert len({(r["unit_code"], r["sheet_no"], r["parcel_no"]) for r in rows}) == 6000
    assert {r["unit_code"] for r in rows} == {code for code, _ in demo.DALAT_WARDS}
    uses = {r["primary_use"] for r in rows}
    assert {"ODT", "CLN", "HNK", "RSX", "DGT", "MNC"} <= uses
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    assert 108.3 < x0 < x1 < 108.6 and 11.8 < y0 < y1 < 12.1
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="overlaps")
    overlap = shapely.area(shapely.intersection(geoms[left], geoms[right])) if len(left) else np.zeros(1)
    assert overlap.max() < 1e-12  # neighbours share edges; at most rounding slivers where roads were cut out
    odt = [r for r in rows if r["allowed_use"] == "ODT"]
    assert all(r["floors_max"] >= 1 and 0 < r["building_density_pct"] <= 100 for r in odt)
    assert demo.generate(500, seed=3)[0] == demo.generate(500, seed=3)[0]  # reproducible


def test_demo_seed_writes_97751_parcels(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, secret_key="x" * 40)
    from saola.cli import upgrade_database

    upgrade_database(settings)
    engine = make_engine(settings)
    factory = make_session_factory(engine)
    with transaction(factory) as session:
        load_official_units(session)
    context = PackContext(settings=settings, session_factory=factory, now=utcnow())
    progress: list[float] = []
    context.progress = lambda _label, fraction: progress.append(fraction)
    # How long this takes is measured by the demo's progress bar and benchmarks, never asserted here.
    demo.seed(context)
    assert progress[0] == 0.0 and progress[-1] == 1.0 and progress == sorted(progress)
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(LandParcel)) == demo.DEMO_PARCELS
        assert session.scalar(select(func.count()).select_from(LandParcelPrivate)) == demo.DEMO_PARCELS
        market = service.lookup_point(session, actor=None, lon=demo.CENTRE[0], lat=demo.CENTRE[1])
    parcel = market["parcels"][0]
    assert parcel["commune"]["name"].endswith("Đà Lạt") and parcel["planning"]["floors_max"] is not None
    engine.dispose()


def test_the_pack_declares_itself_through_the_hooks() -> None:
    pm = build_plugin_manager()
    registry = build_registry(pm)
    assert registry.packs["land"].name_vi == "Đất đai"
    assert "land.parcels" in registry.indicators
    assert {"land:read", "land:private:read"} <= registry.permissions["leader"]
    assert "land:private:read" not in registry.permissions["agency_staff"] | registry.permissions["viewer"]
    assert "land:write" in registry.permissions["integrator"] and "land:write" not in registry.permissions["operator"]
    layers = [layer for group in pm.hook.saola_map_layers() for layer in group]
    assert any(layer.url == "/api/public/land/map" for layer in layers)
    panels = [panel for group in pm.hook.saola_dashboard_panels() for panel in group]
    assert any(panel.key == "land" for panel in panels)
    collections = [c for group in pm.hook.saola_feature_collections() for c in group]
    assert [c.id for c in collections] == ["parcels"]


@pytest.mark.parametrize("crs", ["VN2000:107.75", "VN2000:107°45'", "VN-2000:105:0.9996", "EPSG:5899", "4326",
                                 "+proj=utm +zone=48 +datum=WGS84"])
def test_crs_shorthands(crs: str) -> None:
    from saola.domains.land.crs import parse_crs

    assert parse_crs(crs).is_projected or parse_crs(crs).is_geographic
