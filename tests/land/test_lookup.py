"""The citizen-facing lookups: by point, by commune/sheet/parcel, by box for the map; and bad input."""

from __future__ import annotations

import pytest
import shapely
from fastapi.testclient import TestClient

from tests.land.conftest import COMMUNE, STEP, BaseData

LOOKUP = "/api/public/land/lookup"


def _keys(body: dict, field: str = "parcels") -> list[int]:
    return [p["parcel_no"] for p in body[field]]


def test_a_point_inside_a_parcel_tells_what_is_there(client: TestClient, base_parcels: BaseData) -> None:
    lon, lat = base_parcels.centre(1)
    r = client.get(LOOKUP, params={"lon": lon, "lat": lat})
    assert r.status_code == 200, r.text
    body = r.json()
    assert _keys(body) == [1] and body["neighbours"] is None
    parcel = body["parcels"][0]
    assert parcel["id"] == base_parcels.ids[1]
    assert parcel["commune"] == {"code": COMMUNE, "name": "Phường Xuân Hương - Đà Lạt"}
    assert parcel["province"] == {"code": "68", "name": "Lâm Đồng"}
    assert (parcel["sheet_no"], parcel["parcel_no"]) == (base_parcels.sheet_no, 1)
    assert parcel["land_use"] == [
        {"code": "ODT", "name_vi": "Đất ở tại đô thị", "name_en": "Urban residential land", "area_m2": 300.0},
        {"code": "CLN", "name_vi": "Đất trồng cây lâu năm", "name_en": "Perennial crop land", "area_m2": 429.7},
    ]
    assert parcel["primary_use"] == "CLN" and 650 < parcel["area_m2"] < 800
    assert parcel["planning"] == {
        "allowed_use": "ODT", "allowed_use_name_vi": "Đất ở tại đô thị",
        "allowed_use_name_en": "Urban residential land", "building_density_pct": 80.0, "floors_min": 2,
        "floors_max": 5, "land_use_coefficient": 4.0, "setback_m": 3.0,
    }
    assert shapely.geometry.shape(parcel["geometry"]).contains(shapely.Point(lon, lat))
    x0, y0, x1, y1 = parcel["bbox"]
    assert x0 <= parcel["label_point"][0] <= x1 and y0 <= parcel["label_point"][1] <= y1


def test_a_point_on_a_shared_edge_or_corner_belongs_to_every_parcel_there(client: TestClient,
                                                                         base_parcels: BaseData) -> None:
    lon, _ = base_parcels.corner(1, 0)
    _, lat = base_parcels.centre(1)
    assert _keys(client.get(LOOKUP, params={"lon": lon, "lat": lat, "geometry": False}).json()) == [1, 2]
    lon, lat = base_parcels.corner(1, 1)
    assert _keys(client.get(LOOKUP, params={"lon": lon, "lat": lat, "geometry": False}).json()) == [1, 2, 5, 6]


def test_neighbours_are_the_parcels_touching_it(client: TestClient, base_parcels: BaseData) -> None:
    lon, lat = base_parcels.centre(6)
    body = client.get(LOOKUP, params={"lon": lon, "lat": lat, "neighbours": True, "geometry": False}).json()
    assert _keys(body) == [6]
    assert _keys(body, "neighbours") == [1, 2, 3, 5, 7, 9, 10, 11]


def test_between_parcels_the_answer_is_empty(client: TestClient, base_parcels: BaseData) -> None:
    lon, lat = base_parcels.lon0 + 7.5 * STEP, base_parcels.lat0 + 1.5 * STEP  # beside the triangle, in its box
    r = client.get(LOOKUP, params={"lon": lon, "lat": lat})
    assert r.status_code == 200 and r.json()["parcels"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"lon": 100.5, "lat": 13.75}, "lon"),  # Bangkok
        ({"lon": 105.8, "lat": 30.0}, "lat"),  # north of Vietnam
        ({"lon": "abc", "lat": 11.9}, "lon"),
        ({"lon": 108.4, "lat": "11,9"}, "lat"),
        ({"lon": 200, "lat": 11.9}, "lon"),
        ({"lat": 11.9}, "lon"),
        ({"lon": "nan", "lat": 11.9}, "lon"),
    ],
)
def test_bad_points_get_422_naming_the_field(client: TestClient, params: dict, field: str) -> None:
    r = client.get(LOOKUP, params=params)
    assert r.status_code == 422, r.text
    assert ["query", field] in [e["loc"] for e in r.json()["errors"]]


def test_lookup_by_commune_sheet_and_parcel(client: TestClient, base_parcels: BaseData) -> None:
    r = client.get(f"/api/public/land/parcels/{COMMUNE}/{base_parcels.sheet_no}/6")
    assert r.status_code == 200 and r.json()["id"] == base_parcels.ids[6]
    assert client.get(f"/api/public/land/parcels/24781/{base_parcels.sheet_no}/999").status_code == 404
    unknown = client.get(f"/api/public/land/parcels/99999/{base_parcels.sheet_no}/6")
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["loc"] == ["path", "commune"]
    assert client.get(f"/api/public/land/parcels/68/{base_parcels.sheet_no}/6").status_code == 422  # a province
    assert client.get(f"/api/public/land/parcels/{COMMUNE}/abc/6").status_code == 422


def test_map_geojson_in_a_box_is_simplified_at_low_zoom(client: TestClient, base_parcels: BaseData) -> None:
    x0, y0 = base_parcels.corner(0, 0)
    bbox = f"{x0},{y0},{x0 + 14 * STEP},{y0 + 3 * STEP}"
    fine = client.get("/api/public/land/map", params={"bbox": bbox, "zoom": 19})
    assert fine.status_code == 200 and fine.headers["content-type"] == "application/geo+json"
    body = fine.json()
    by_no = {f["properties"]["parcel_no"]: f for f in body["features"] if f["properties"]["sheet_no"] == 9001}
    assert sorted(by_no) == list(range(1, 15)) and body["truncated"] is False
    coarse = client.get("/api/public/land/map", params={"bbox": bbox, "zoom": 14}).json()
    round_fine = len(by_no[14]["geometry"]["coordinates"][0][0])
    round_coarse = next(len(f["geometry"]["coordinates"][0][0]) for f in coarse["features"]
                        if f["properties"]["parcel_no"] == 14 and f["properties"]["sheet_no"] == 9001)
    assert round_fine > 100 and round_coarse < round_fine / 4
    few = client.get("/api/public/land/map", params={"bbox": bbox, "limit": 3}).json()
    assert few["numberReturned"] == 3 and few["truncated"] is True


@pytest.mark.parametrize("bbox", ["1,2,3", "a,b,c,d", "108.3,11.8,108.2,11.9", "108,95,109,96"])
def test_map_refuses_bad_boxes(client: TestClient, bbox: str) -> None:
    r = client.get("/api/public/land/map", params={"bbox": bbox})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "bbox"]


def test_land_use_codes_are_a_public_table(client: TestClient) -> None:
    codes = {c["code"]: c for c in client.get("/api/public/land/use-codes").json()}
    assert len(codes) == 34 and codes["RSX"]["name_vi"] == "Đất rừng sản xuất"
    assert codes["ODT"]["group"] == "non_agricultural" and codes["ODT"]["status"] == "unverified"
