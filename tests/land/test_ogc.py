"""OGC API – Features under /ogc, driven by OWSLib (owslib.ogcapi.features.Features) against a live server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import shapely
from owslib.ogcapi.features import Features

from tests.land.conftest import COMMUNE, STEP, BaseData
from tests.live import serve_in_thread


@pytest.fixture(scope="module")
def live_url(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The test application served by uvicorn on a free local port, in a background thread."""
    with serve_in_thread(app, lifespan="on") as url:
        yield url


@pytest.fixture(scope="module")
def api(live_url: str) -> Features:
    """OWSLib's client on the landing page."""
    return Features(f"{live_url}/ogc", timeout=120)  # generous: CI machines can be busy


def test_landing_page_and_conformance(api: Features, live_url: str) -> None:
    rels = {link["rel"]: link for link in api.links}
    assert {"self", "service-desc", "service-doc", "conformance", "data"} <= set(rels)
    assert rels["data"]["href"] == f"{live_url}/ogc/collections"
    assert httpx.get(rels["service-desc"]["href"]).status_code == 200
    conforms = api.conformance()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in conforms
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson" in conforms


def test_collections_list_parcels_with_their_extent(api: Features, base_parcels: BaseData) -> None:
    assert "parcels" in api.feature_collections()
    parcels = api.collection("parcels")
    assert parcels["itemType"] == "feature" and "Thửa đất" in parcels["title"]
    (x0, y0, x1, y1), = parcels["extent"]["spatial"]["bbox"]
    assert x0 <= base_parcels.lon0 <= x1 and y0 <= base_parcels.lat0 <= y1
    assert parcels["extent"]["spatial"]["crs"].endswith("/CRS84")
    assert {"sheet_no", "commune_code", "land_use"} <= set(api.collection_queryables("parcels")["properties"])


def test_items_by_bbox_with_paging(api: Features, base_parcels: BaseData) -> None:
    x0, y0 = base_parcels.corner(0, 0)
    x1, y1 = base_parcels.corner(4, 3)
    bbox = [x0 + STEP / 4, y0 + STEP / 4, x1 - STEP / 4, y1 - STEP / 4]  # inside the 4 x 3 grid only
    page = api.collection_items("parcels", bbox=bbox, limit=5)
    assert page["type"] == "FeatureCollection"
    assert (page["numberMatched"], page["numberReturned"]) == (12, 5)
    assert [f["properties"]["parcel_no"] for f in page["features"]] == [1, 2, 3, 4, 5]
    assert any(link["rel"] == "next" for link in page["links"])
    last = api.collection_items("parcels", bbox=bbox, limit=5, offset=10)
    assert [f["properties"]["parcel_no"] for f in last["features"]] == [11, 12]
    assert not any(link["rel"] == "next" for link in last["links"])
    feature = page["features"][0]
    assert feature["id"] == base_parcels.ids[1]
    assert feature["properties"]["commune_code"] == COMMUNE and feature["properties"]["land_use"] == "CLN"
    assert shapely.geometry.shape(feature["geometry"]).equals(shapely.box(x0, y0, x0 + STEP, y0 + STEP))


def test_property_filters(api: Features, base_parcels: BaseData) -> None:
    page = api.collection_items("parcels", sheet_no=base_parcels.sheet_no, land_use="odt", limit=100)
    assert [f["properties"]["parcel_no"] for f in page["features"]] == [2, 4, 6, 8, 10, 12, 14]
    one = api.collection_items("parcels", commune_code=COMMUNE, sheet_no=base_parcels.sheet_no, parcel_no=7)
    assert [f["id"] for f in one["features"]] == [base_parcels.ids[7]]


def test_a_zero_size_bbox_is_a_point_on_the_real_geometry(api: Features, base_parcels: BaseData) -> None:
    inside = (base_parcels.lon0 + 6.25 * STEP, base_parcels.lat0 + 0.25 * STEP)  # in the triangle (13)
    in_envelope_only = (base_parcels.lon0 + 7.75 * STEP, base_parcels.lat0 + 1.75 * STEP)
    hit = api.collection_items("parcels", bbox=[*inside, *inside])
    assert [f["properties"]["parcel_no"] for f in hit["features"]] == [13]
    miss = api.collection_items("parcels", bbox=[*in_envelope_only, *in_envelope_only])
    assert miss["numberMatched"] == 0 and miss["features"] == []


def test_item_by_id(api: Features, base_parcels: BaseData) -> None:
    item = api.collection_item("parcels", base_parcels.ids[9])
    assert item["type"] == "Feature" and item["properties"]["parcel_no"] == 9
    assert {link["rel"] for link in item["links"]} == {"self", "collection"}


def test_errors_follow_the_standard(api: Features, live_url: str) -> None:
    items = f"{live_url}/ogc/collections/parcels/items"
    for params in ({"limit": 0}, {"limit": "ten"}, {"offset": -1}, {"bbox": "1,2,3"}, {"bbox": "a,b,c,d"},
                   {"bbox": "108.3,11.9,108.2,11.8"}, {"colour": "red"}, {"sheet_no": "x"}, {"f": "html"},
                   {"bbox-crs": "EPSG:3857", "bbox": "1,1,2,2"}):
        r = httpx.get(items, params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["code"] == "InvalidParameterValue"
    assert httpx.get(items, params={"limit": 100_000}).json()["numberReturned"] <= 10_000  # clamped, not refused
    assert httpx.get(f"{items}/not-a-uuid").status_code == 404
    assert httpx.get(f"{items}/01936b2c-0000-7000-8000-000000000000").status_code == 404
    assert httpx.get(f"{live_url}/ogc/collections/rivers").status_code == 404
    with pytest.raises(RuntimeError):
        api.collection("rivers")


def test_items_answer_geojson(live_url: str, base_parcels: BaseData) -> None:
    r = httpx.get(f"{live_url}/ogc/collections/parcels/items", params={"limit": 1}, headers={"Accept": "*/*"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    assert httpx.get(f"{live_url}/ogc").json()["links"]
