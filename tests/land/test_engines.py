"""The two spatial engines: the in-process STRtree follows changes at once, and PostGIS gives the same answers."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from sqlalchemy.orm import Session, sessionmaker

from saola.core.auth.context import system_actor
from saola.core.errors import Conflict
from saola.db.engine import transaction
from saola.domains.land import demo, service
from saola.domains.land.spatial import POSTGIS, STRTREE, ParcelFilter, engine_for, postgis_ready
from tests.land.conftest import COMMUNE, STEP, BaseData, run_import, square

LON, LAT = 108.35, 11.65


def test_the_embedded_store_uses_the_strtree(session_factory: sessionmaker[Session], backend: str) -> None:
    with session_factory() as session:
        engine = engine_for(session)
        if backend == "sqlite":
            assert engine.name == "strtree"
            with pytest.raises(Conflict):
                engine_for(session, "postgis")
        else:
            assert engine.name == ("postgis" if postgis_ready(session) else "strtree")


def test_the_index_follows_imports_at_once(session_factory: sessionmaker[Session], files) -> None:  # type: ignore[no-untyped-def]
    lon, lat = LON + 0.5 * STEP, LAT + 0.5 * STEP
    with session_factory() as session:
        assert STRTREE.at_point(session, lon, lat) == []  # builds (or reuses) the index
    fields = {"commune": [COMMUNE], "sheet_no": [9301], "parcel_no": [1], "land_use": ["ODT"]}
    run_import(session_factory, files("new.gpkg", [square(LON, LAT, 0, 0)], fields))
    with session_factory() as session:
        found = STRTREE.at_point(session, lon, lat)
        assert len(found) == 1
    moved = [square(LON, LAT, 5, 0)]
    run_import(session_factory, files("moved.gpkg", moved, fields))
    with session_factory() as session:
        assert STRTREE.at_point(session, lon, lat) == []
        assert STRTREE.at_point(session, LON + 5.5 * STEP, lat) == found  # same parcel, same id, new place


@pytest.fixture(scope="module")
def parity_data(session_factory: sessionmaker[Session]) -> np.ndarray:
    """3,000 demo parcels (Đà Lạt style shapes) written to the session's database; returns their geometries."""
    rows = demo.generate(3000, ward_codes=["24846"], seed=7)
    for row in rows:
        row["sheet_no"] += 9400  # clear of the other tests' sheets
    with transaction(session_factory) as session:
        service.store_parcels(session, actor=system_actor("test"), rows=rows, with_private=False, source="parity")
    return shapely.from_wkb([r["geom_wkb"] for r in rows])


def _needs_postgis(session: Session) -> None:
    if not postgis_ready(session):
        pytest.skip("PostGIS is not available on this database")


def test_postgis_and_strtree_give_identical_answers(session_factory: sessionmaker[Session], parity_data: np.ndarray,
                                                    base_parcels: BaseData) -> None:
    rng = np.random.default_rng(2024)
    x0, y0, x1, y1 = shapely.total_bounds(parity_data)
    random_points = np.column_stack([rng.uniform(x0, x1, 300), rng.uniform(y0, y1, 300)])
    vertices = shapely.get_coordinates(parity_data[:100])[::3]  # on shared edges and corners
    grid_edges = [base_parcels.corner(c, r) for c in range(5) for r in range(4)]
    points = [*map(tuple, random_points), *map(tuple, vertices), *grid_edges]
    with session_factory() as session:
        _needs_postgis(session)
        hits = 0
        for lon, lat in points:
            expected = STRTREE.at_point(session, float(lon), float(lat))
            assert POSTGIS.at_point(session, float(lon), float(lat)) == expected, (lon, lat)
            hits += bool(expected)
        assert hits > 250
        boxes = [(x0 + d, y0 + d, x0 + d + 0.002, y0 + d + 0.0015) for d in np.linspace(0, 0.01, 8)]
        boxes += [(float(x), float(y), float(x), float(y)) for x, y in random_points[:20]]  # zero-size boxes
        for box in boxes:
            geometry = service.area_geometry(box)
            for where in (ParcelFilter(), ParcelFilter(unit_codes=frozenset({"24846"}), primary_use="CLN")):
                expected = STRTREE.search(session, geometry=geometry, where=where, limit=50, offset=3)
                assert POSTGIS.search(session, geometry=geometry, where=where, limit=50, offset=3) == expected
        for geom in parity_data[:50]:
            assert POSTGIS.near(session, geom, 1e-6) == STRTREE.near(session, geom, 1e-6)


def test_the_service_answers_the_same_through_either_engine(session_factory: sessionmaker[Session],
                                                            base_parcels: BaseData) -> None:
    with session_factory() as session:
        _needs_postgis(session)
        for parcel_no in (1, 6, 13):
            lon, lat = base_parcels.centre(parcel_no)
            by_tree = service.lookup_point(session, actor=None, lon=lon, lat=lat, neighbours=True, engine="strtree")
            by_postgis = service.lookup_point(session, actor=None, lon=lon, lat=lat, neighbours=True,
                                              engine="postgis")
            assert by_tree == by_postgis
