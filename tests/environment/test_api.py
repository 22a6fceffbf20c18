"""The environment API: the map's GeoJSON and its scope, the public endpoint, series, ranking, the calculator,
QCVN 05 reports and water quality."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from saola.domains.environment import aqi
from saola.domains.environment.engine import AqiEngine
from saola.domains.environment.service import PUBLIC_FIELDS
from tests.environment.conftest import CAM_LY, XUAN_HUONG

PM = [14.0, 18.0, 25.0, 31.0, 40.0, 38.0, 33.0, 29.0, 45.0, 52.0, 61.0, 58.0]


def _air(make_station: Callable[..., str], send: Any, base: datetime, unit: str = XUAN_HUONG,
         scale: float = 1.0) -> str:
    sid = make_station("air", unit)
    send([r for i, v in enumerate(PM) for r in (("env.pm25", sid, base + timedelta(hours=i), v * scale),
                                                 ("env.no2", sid, base + timedelta(hours=i), 40.0))])
    return sid


def test_map_geojson_carries_the_contracted_properties(
        engine: AqiEngine, client: TestClient, admin_headers: dict[str, str], make_station: Callable[..., str],
        send: Any, base_hour: datetime) -> None:
    sid = _air(make_station, send, base_hour)
    r = client.get("/api/environment/stations.geojson", headers=admin_headers)
    assert r.status_code == 200
    body = r.json()
    assert body["type"] == "FeatureCollection"
    feature = next(f for f in body["features"] if f["id"] == sid)
    assert feature["geometry"]["type"] == "Point"
    props = feature["properties"]
    expected = aqi.vn_hourly({"pm25": PM, "no2": [40.0]})
    assert props["aqi"] == expected.aqi and props["aqi_level"] == expected.level
    assert props["aqi_label_vi"] == expected.label_vi and props["aqi_color"] == expected.color
    assert props["dominant"] == "pm25" and props["kind"] == "air" and props["unit_code"] == XUAN_HUONG
    assert props["latest"] == {"env.pm25": PM[-1], "env.no2": 40.0}
    assert props["status"] == "silent"  # the newest reading is 3 hours old
    assert props["observed_at"].startswith((base_hour + timedelta(hours=11)).strftime("%Y-%m-%dT%H:00:00"))
    for key in ("id", "code", "name", "kind", "unit_code", "aqi", "aqi_level", "aqi_label_vi", "aqi_label_en",
                "aqi_color", "dominant", "status", "observed_at", "latest"):
        assert key in props
    kinds = client.get("/api/environment/stations.geojson", params={"kind": "water"}, headers=admin_headers).json()
    assert all(f["properties"]["kind"] == "water" for f in kinds["features"])
    bad = client.get("/api/environment/stations.geojson", params={"kind": "fire"}, headers=admin_headers)
    assert bad.status_code == 422 and "kind" in str(bad.json()["errors"][0]["loc"])


def test_scope_keeps_a_commune_to_its_own_stations(
        engine: AqiEngine, client: TestClient, make_user: Callable[..., dict[str, str]],
        make_station: Callable[..., str], send: Any, base_hour: datetime) -> None:
    mine = _air(make_station, send, base_hour, XUAN_HUONG)
    theirs = _air(make_station, send, base_hour, CAM_LY, scale=2.0)
    staff = make_user("agency_staff", XUAN_HUONG)
    ids = {f["id"] for f in client.get("/api/environment/stations.geojson", headers=staff).json()["features"]}
    assert mine in ids and theirs not in ids
    for path in (f"/api/environment/stations/{theirs}/aqi", f"/api/environment/stations/{theirs}/flags",
                 f"/api/environment/stations/{theirs}/water-quality",
                 f"/api/environment/stations/{theirs}/series?indicator=env.pm25"):
        assert client.get(path, headers=staff).status_code == 404, path
    ranked = client.get("/api/environment/ranking", headers=staff).json()
    assert theirs not in {r["id"] for r in ranked} and mine in {r["id"] for r in ranked}
    other = client.get("/api/environment/stations.geojson", params={"within": CAM_LY}, headers=staff)
    assert other.status_code == 404
    assert client.get("/api/environment/stations.geojson").status_code == 401


def test_public_air_quality_is_open_read_only_and_air_only(
        engine: AqiEngine, client: TestClient, make_station: Callable[..., str], send: Any,
        base_hour: datetime) -> None:
    sid = _air(make_station, send, base_hour)
    water = make_station("water")
    send([("env.ph", water, base_hour, 7.2)])
    r = client.get("/api/public/air-quality")
    assert r.status_code == 200
    features = {f["id"]: f for f in r.json()["features"]}
    assert sid in features and water not in features
    assert set(features[sid]["properties"]) == set(PUBLIC_FIELDS)
    assert "unit_code" not in features[sid]["properties"]
    assert client.post("/api/public/air-quality").status_code == 405


def test_series_and_ranking(engine: AqiEngine, client: TestClient, admin_headers: dict[str, str],
                            make_station: Callable[..., str], send: Any, base_hour: datetime) -> None:
    low = _air(make_station, send, base_hour, CAM_LY, scale=0.5)
    high = _air(make_station, send, base_hour, CAM_LY, scale=3.0)
    start = (base_hour - timedelta(hours=1)).isoformat()
    hourly = client.get(f"/api/environment/stations/{high}/aqi", params={"start": start},
                        headers=admin_headers).json()
    assert [p["aqi_vn"] for p in hourly["points"]] == [
        aqi.vn_hourly({"pm25": [v * 3 for v in PM[:i + 1]], "no2": [40.0]}).aqi for i in range(1, len(PM))]
    assert all(p["aqi_us"] is not None and p["color"] for p in hourly["points"])
    daily = client.get(f"/api/environment/stations/{high}/aqi", params={"period": "day", "start": start},
                       headers=admin_headers).json()
    assert daily["points"] and daily["points"][-1]["aqi_vn"] is not None
    pm = client.get(f"/api/environment/stations/{high}/series", params={"indicator": "env.pm25", "start": start},
                    headers=admin_headers).json()
    assert [p["value"] for p in pm["points"]] == [v * 3 for v in PM]
    ranked = client.get("/api/environment/ranking", params={"within": CAM_LY}, headers=admin_headers).json()
    order = [r["id"] for r in ranked]
    assert order.index(high) < order.index(low) and ranked[0]["rank"] == 1
    communes = client.get("/api/environment/ranking", params={"by": "commune"}, headers=admin_headers).json()
    cam_ly = next(c for c in communes if c["unit_code"] == CAM_LY)
    assert cam_ly["aqi"] >= next(r["aqi"] for r in ranked if r["id"] == high)


def test_calculator(client: TestClient, make_user: Callable[..., dict[str, str]]) -> None:
    headers = make_user("integrator", "68")
    body = {"hourly": {"pm25": [26.9, 24.7, 20.5, 23.5, 19.5, 16.5, 19.0, 16.5, 20.3, 22.4, 19.6, 20.6],
                       "o3": [136.1], "no2": [118.7]},
            "daily_values": {"o3": {"max_1h": 114.6, "max_8h": 89.3}, "no2": {"max_1h": 130.8},
                             "pm25": {"mean_24h": 55.7}}}
    r = client.post("/api/environment/aqi/calculate", json=body, headers=headers)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["hourly"]["vn"]["sub_indices"] == {"pm25": 41, "o3": 43, "no2": 59}
    assert round(out["hourly"]["vn"]["concentrations"]["pm25"], 1) == 20.3
    assert out["daily"]["vn"]["aqi"] == 110 and out["daily"]["vn"]["label_vi"] == "Kém"
    assert out["hourly"]["us"]["aqi"] is not None and out["daily"]["us"]["dominant"] is not None
    series = client.post("/api/environment/aqi/calculate", json={"daily": {"pm25": [55.7] * 24}}, headers=headers)
    assert series.json()["daily"]["vn"]["aqi"] == 110
    bad = client.post("/api/environment/aqi/calculate", json={"hourly": {"pm25": [10, -5]}}, headers=headers)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"][:4] == ["body", "hourly", "pm25", 1]
    unknown = client.post("/api/environment/aqi/calculate", json={"hourly": {"benzene": [1.0]}}, headers=headers)
    assert unknown.status_code == 422 and "benzene" in str(unknown.json()["errors"])
    assert client.post("/api/environment/aqi/calculate", json={}, headers=headers).status_code == 422
    assert client.post("/api/environment/aqi/calculate", json=body).status_code == 401


def test_qcvn05_report(engine: AqiEngine, client: TestClient, admin_headers: dict[str, str],
                       make_station: Callable[..., str], send: Any, base_hour: datetime) -> None:
    sid = make_station("air")
    send([r for i in range(10) for r in (("env.no2", sid, base_hour + timedelta(hours=i), 150.0 + 20 * i),
                                         ("env.pm25", sid, base_hour + timedelta(hours=i), 70.0))])
    r = client.get(f"/api/environment/stations/{sid}/qcvn05",
                   params={"start": (base_hour - timedelta(days=1)).isoformat(),
                           "end": (base_hour + timedelta(hours=12)).isoformat()}, headers=admin_headers)
    assert r.status_code == 200, r.text
    params = r.json()["parameters"]
    # NO2 1-hour limit 200: 170+ ... hours 3..9 (210 .. 330) are above
    assert params["no2"]["periods"]["1h"]["exceeded"] == 7
    assert params["no2"]["periods"]["1h"]["worst"]["value"] == 330.0
    assert params["pm25"]["periods"]["24h"]["exceeded"] >= 1
    assert params["pm25"]["limits"]["24h"] in (45.0, 50.0)
    wide = client.get(f"/api/environment/stations/{sid}/qcvn05",
                      params={"start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, headers=admin_headers)
    assert wide.status_code == 422
    missing = client.get(f"/api/environment/stations/{uuid.uuid4()}/qcvn05",
                         params={"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"},
                         headers=admin_headers)
    assert missing.status_code == 404


def test_water_quality(engine: AqiEngine, client: TestClient, admin_headers: dict[str, str],
                       make_station: Callable[..., str], send: Any, base_hour: datetime) -> None:
    sid = make_station("water")
    values = {"ph": 7.2, "do": 6.5, "bod5": 5.0, "cod": 12.0, "tss": 30.0, "nh4_n": 0.4, "coliform": 3000.0}
    send([(f"env.{k}", sid, base_hour, v) for k, v in values.items()])
    r = client.get(f"/api/environment/stations/{sid}/water-quality", headers=admin_headers)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["qcvn08"]["class"] == "B" and out["qcvn08"]["verified"] is False
    assert out["qcvn08"]["health_exceeded"] == {"nh4_n": {"value": 0.4, "limit": 0.3}}
    assert 51 <= out["wqi"]["wqi"] <= 100 and out["wqi"]["verified"] is False
    partial = client.post("/api/environment/water/calculate", json={"values": {"bod5": 3.0}}, headers=admin_headers)
    assert partial.json()["wqi"]["wqi"] is None and partial.json()["wqi"]["missing_groups"] == ["I", "V"]
    bad = client.post("/api/environment/water/calculate", json={"values": {"mercury": 1}}, headers=admin_headers)
    assert bad.status_code == 422
