"""Writes over plain HTTP: bad input rejected whole, the kernel's scope and permissions, both doors on one store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import unique
from tests.sensorthings.conftest import OM, OTHER_PROVINCE_WARD, WARD, make_thing, thing_body

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def count(http: httpx.Client, path: str, **filters: str) -> int:
    r = http.get(path, params={"$count": "true", "$top": "0", **filters})
    assert r.status_code == 200, r.text
    return r.json()["@iot.count"]  # type: ignore[no-any-return]


def error(r: httpx.Response, status: int = 400) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == status and body["type"] == "error"
    return body["message"]  # type: ignore[no-any-return]


def test_post_answers_201_with_location(http: httpx.Client) -> None:
    r = http.post("/Sensors", json={"name": "BME280", "description": "T/RH/p", "encodingType": "application/pdf",
                                    "metadata": "https://example.org/bme280.pdf"})
    assert r.status_code == 201
    assert r.headers["location"] == r.json()["@iot.selfLink"] and r.headers["location"].endswith(
        f"/Sensors({r.json()['@iot.id']})")
    thing = make_thing(http)
    ds = thing["Datastreams"][0]["@iot.id"]
    r = http.post(f"/Datastreams({ds})/Observations", json={"phenomenonTime": "2026-10-01T07:00:00+07:00",
                                                            "result": 3, "resultQuality": "suspect"})
    assert r.status_code == 201, r.text
    assert r.headers["location"].endswith(f"/Observations('{r.json()['@iot.id']}')")
    assert r.json()["phenomenonTime"] == "2026-10-01T00:00:00Z" and r.json()["resultQuality"] == 1


def test_non_numeric_result_is_refused(http: httpx.Client) -> None:
    ds = make_thing(http)["Datastreams"][0]["@iot.id"]
    for bad, why in (("twelve", "numeric results only"), (True, "numeric results only"), (None, "needs a numeric"),
                     ({"v": 1}, "numeric results only")):
        message = error(http.post("/Observations", json={"Datastream": {"@iot.id": ds}, "result": bad,
                                                         "phenomenonTime": T0.isoformat()}))
        assert why in message and "Observation/result" in message
    assert count(http, f"/Datastreams({ds})/Observations") == 0


@pytest.mark.parametrize(("body", "fragment"), [
    ({"result": 1, "phenomenonTime": "2026-10-01T00:00:00Z/2026-10-01T01:00:00Z"}, "intervals are not stored"),
    ({"result": 1, "phenomenonTime": "yesterday"}, "not an ISO 8601 time"),
    ({"result": 1, "phenomenonTime": "2999-01-01T00:00:00Z"}, "more than one day in the future"),
    ({"result": 1, "resultQuality": "great"}, "resultQuality must be"),
    ({"result": 1, "parameters": {"a": 1}}, "parameters are not stored"),
    ({"result": 1, "colour": "red"}, "has no property 'colour'"),
    ({"result": 1, "MultiDatastream": {"@iot.id": 1}}, "MultiDatastreams are not supported"),
])
def test_bad_observations_are_400(http: httpx.Client, body: dict[str, Any], fragment: str) -> None:
    ds = make_thing(http)["Datastreams"][0]["@iot.id"]
    message = error(http.post(f"/Datastreams({ds})/Observations", json=body))
    assert fragment in message
    assert count(http, f"/Datastreams({ds})/Observations") == 0


@pytest.mark.parametrize(("path", "body", "fragment"), [
    ("/Things", {"description": "no name"}, "a Thing needs name"),
    ("/Things", {"name": "x", "properties": {"saola:unit_code": "99999"}}, "unknown unit"),
    ("/Things", {"name": "x", "Locations": [{"name": "l", "location": {"type": "Point",
                                                                      "coordinates": [200, 10]}}]}, "longitude"),
    ("/Things", {"name": "x", "Locations": [{"name": "l", "location": "here"}]}, "GeoJSON geometry"),
    ("/Things", ["not", "an", "object"], "must be a JSON object"),
    ("/Datastreams", {"name": "d"}, "needs its Thing"),
    ("/Datastreams", {"name": "d", "observationType": OM[:-14] + "OM_CategoryObservation", "Thing": {},
                      "Sensor": {}, "ObservedProperty": {}}, "numeric results only"),
    ("/Datastreams", {"name": "d", "Thing": {"@iot.id": "018f0000-0000-7000-8000-000000000000"},
                      "Sensor": {"@iot.id": 1}, "ObservedProperty": {"@iot.id": 1}}, "does not exist"),
    ("/Sensors", {"name": "s", "metadata": {"url": 1}}, "metadata must be text"),
    ("/HistoricalLocations", {"time": "2026-10-01T00:00:00Z"}, "written by the server"),
])
def test_malformed_payloads_are_4xx(http: httpx.Client, path: str, body: Any, fragment: str) -> None:
    r = http.post(path, json=body)
    assert r.status_code in (400, 403, 405), r.text
    assert fragment in r.json()["message"], r.json()


def test_methods_that_do_not_apply_are_405(http: httpx.Client) -> None:
    assert error(http.post("/", json={}), 405)
    assert error(http.get("/CreateObservations"), 405)
    ds = make_thing(http)["Datastreams"][0]["@iot.id"]
    assert error(http.post(f"/Datastreams({ds})", json={"name": "x"}), 405)
    assert error(http.patch("/Things", json={"name": "x"}), 405)
    assert error(http.delete(f"/Datastreams({ds})/name"), 405)


def test_invalid_json_body(http: httpx.Client) -> None:
    r = http.post("/Things", content=b"{not json", headers={"Content-Type": "application/json"})
    assert "not valid JSON" in error(r)
    assert "empty" in error(http.post("/Things", content=b""))


def test_a_bad_nested_part_rejects_the_whole_deep_insert(http: httpx.Client) -> None:
    name = unique("Trạm hỏng ")
    sensors_before = count(http, "/Sensors")
    body = thing_body(name=name, observations=[{"phenomenonTime": T0.isoformat(), "result": 1.0},
                                               {"phenomenonTime": T0.isoformat(), "result": "n/a"}])
    message = error(http.post("/Things", json=body))
    assert "Thing/Datastreams/0/Observations/1/result" in message
    assert count(http, "/Things", **{"$filter": f"name eq '{name}'"}) == 0
    assert count(http, "/Sensors") == sensors_before
    assert count(http, "/Locations", **{"$filter": f"startswith(name, '{body['Locations'][0]['name']}')"}) == 0


def test_a_reading_the_kernel_refuses_rolls_back_the_deep_insert(http: httpx.Client) -> None:
    name = unique("Trạm tương lai ")
    body = thing_body(name=name, observations=[{"phenomenonTime": "2999-01-01T00:00:00Z", "result": 1.0}])
    message = error(http.post("/Things", json=body))
    assert "Thing/Datastreams/0/Observations/0/phenomenonTime" in message and "future" in message
    assert count(http, "/Things", **{"$filter": f"name eq '{name}'"}) == 0
    assert count(http, "/ObservedProperties", **{
        "$filter": f"definition eq '{body['Datastreams'][0]['ObservedProperty']['definition']}'"}) == 0


def test_create_observations_with_one_bad_row_writes_nothing(http: httpx.Client) -> None:
    ds = make_thing(http)["Datastreams"][0]["@iot.id"]
    rows = [[(T0 + timedelta(hours=h)).isoformat(), float(h)] for h in range(50)]
    rows[17][1] = "NaN?"
    rows[33] = [rows[33][0]]
    r = http.post("/CreateObservations", json=[{"Datastream": {"@iot.id": ds}, "components": ["phenomenonTime",
                                                                                              "result"],
                                                "dataArray": rows}])
    message = error(r)
    assert "2 invalid row(s), nothing was written" in message
    locs = [e["loc"] for e in r.json()["errors"]]
    assert locs == [["CreateObservations", 0, "dataArray", 17, "result"], ["CreateObservations", 0, "dataArray", 33]]
    assert count(http, f"/Datastreams({ds})/Observations") == 0
    # The same batch, mended, goes in whole; the answer is one self link per row, in order.
    rows[17][1], rows[33] = 17.0, [rows[33][0], 33.0]
    r = http.post("/CreateObservations", json=[{"Datastream": {"@iot.id": ds}, "components": ["phenomenonTime",
                                                                                              "result"],
                                                "dataArray": rows}])
    assert r.status_code == 201, r.text
    links = r.json()
    assert len(links) == 50 and http.get(links[17]).json()["result"] == 17.0
    assert count(http, f"/Datastreams({ds})/Observations") == 50
    # Sending it again is harmless: readings are keyed by (indicator, subject, time).
    assert http.post("/CreateObservations", json=[{"Datastream": {"@iot.id": ds}, "components": [
        "phenomenonTime", "result"], "dataArray": rows}]).status_code == 201
    assert count(http, f"/Datastreams({ds})/Observations") == 50


def test_create_observations_refuses_unknown_datastreams_and_components(http: httpx.Client) -> None:
    assert "does not exist" in error(http.post("/CreateObservations", json=[
        {"Datastream": {"@iot.id": 999999999}, "components": ["result"], "dataArray": [[1]]}]))
    ds = make_thing(http)["Datastreams"][0]["@iot.id"]
    assert "unknown or unsupported component" in error(http.post("/CreateObservations", json=[
        {"Datastream": {"@iot.id": ds}, "components": ["result", "validTime"], "dataArray": [[1, None]]}]))
    assert "FeatureOfInterest" in error(http.post("/CreateObservations", json=[
        {"Datastream": {"@iot.id": ds}, "components": ["result", "FeatureOfInterest/id"],
         "dataArray": [[1, "018f0000-0000-7000-8000-000000000000"]]}]))
    assert "JSON array" in error(http.post("/CreateObservations", json={"Datastream": {"@iot.id": ds}}))
    assert count(http, f"/Datastreams({ds})/Observations") == 0


def test_sta_observations_appear_in_the_kernel_api_and_back(http: httpx.Client, api: httpx.Client) -> None:
    thing = make_thing(http)
    ds = thing["Datastreams"][0]["@iot.id"]
    code = thing["Datastreams"][0]["ObservedProperty"]["definition"]
    assert http.post(f"/Datastreams({ds})/Observations", json={"phenomenonTime": T0.isoformat(),
                                                              "result": 41.5}).status_code == 201
    window = {"indicator": code, "entity": thing["@iot.id"], "bucket": "raw",
              "start": (T0 - timedelta(hours=1)).isoformat(), "end": (T0 + timedelta(hours=3)).isoformat()}
    r = api.get("/observations", params=window)
    assert r.status_code == 200, r.text
    assert [(p["ts"][:19], p["value"]) for p in r.json()["points"]] == [("2026-10-01T00:00:00", 41.5)]
    # ... and a reading written through the kernel's own API is an Observation of the Datastream.
    r = api.post("/observations", json={"items": [{"indicator": code, "entity": thing["@iot.id"],
                                                   "ts": (T0 + timedelta(hours=1)).isoformat(), "value": 42.5}]})
    assert r.status_code == 200, r.text
    readings = http.get(f"/Datastreams({ds})/Observations", params={"$orderby": "phenomenonTime"}).json()["value"]
    assert [o["result"] for o in readings] == [41.5, 42.5]
    latest = api.get("/observations/latest", params={"indicator": code}).json()
    assert [(x["entity_id"], x["value"]) for x in latest] == [(thing["@iot.id"], 42.5)]
    # The Thing is a kernel entity of type sta.thing, placed at its Location.
    entity = api.get(f"/entities/{thing['@iot.id']}").json()
    assert entity["type"] == "sta.thing" and entity["unit_code"] == WARD
    assert entity["geometry"] == {"type": "Point", "coordinates": [108.4419, 11.9404]}


def test_observed_properties_are_the_indicator_catalog(http: httpx.Client, api: httpx.Client) -> None:
    code = f"test.{unique('no2')}"
    r = http.post("/ObservedProperties", json={"name": "NO₂", "definition": code, "description": "nitrogen dioxide"})
    assert r.status_code == 201, r.text
    again = http.post("/ObservedProperties", json={"name": "NO2 again", "definition": code})
    assert again.json()["@iot.id"] == r.json()["@iot.id"]  # the definition names the same indicator
    assert api.get(f"/indicators/{code}").json()["name_en"] == "NO₂"
    url = "http://dd.eionet.europa.eu/vocabulary/aq/pollutant/" + unique()
    r = http.post("/ObservedProperties", json={"name": "Ôzôn mặt đất", "definition": url})
    assert r.status_code == 201 and r.json()["definition"] == url
    made = r.json()["properties"]["saola:code"]
    assert made.startswith("sta.ozon_mat_dat") and api.get(f"/indicators/{made}").status_code == 200
    assert http.post("/ObservedProperties", json={"name": "x", "definition": url}).json()["@iot.id"] == \
        r.json()["@iot.id"]
    # Every kernel indicator is readable as an ObservedProperty, with its code as definition.
    r = http.get("/ObservedProperties", params={"$filter": "properties/saola:code eq 'land.parcels'"})
    assert [p["definition"] for p in r.json()["value"]] == ["land.parcels"]
    r = http.patch(f"/ObservedProperties({again.json()['@iot.id']})", json={"description": "NO₂ 1h",
                                                                           "properties": {"who": 25}})
    assert r.status_code == 200 and r.json()["description"] == "NO₂ 1h" and r.json()["properties"]["who"] == 25
    assert error(http.delete(f"/ObservedProperties({again.json()['@iot.id']})"), 405)


def test_one_datastream_per_thing_and_property(http: httpx.Client) -> None:
    thing = make_thing(http)
    ds = thing["Datastreams"][0]
    r = http.post(f"/Things('{thing['@iot.id']}')/Datastreams", json={
        "name": "PM2.5 bis", "unitOfMeasurement": {"symbol": "µg/m³"}, "Sensor": {"@iot.id": 1},
        "ObservedProperty": {"@iot.id": ds["ObservedProperty"]["@iot.id"]}})
    assert "one series per thing and property" in error(r, 409)


def test_locations_move_things_and_write_history(http: httpx.Client, api: httpx.Client) -> None:
    thing = make_thing(http)
    tid = thing["@iot.id"]
    r = http.post(f"/Things('{tid}')/Locations", json={"name": "Chợ Đà Lạt", "encodingType": "application/geo+json",
                                                       "location": {"type": "Point", "coordinates": [108.437, 11.943]}})
    assert r.status_code == 201, r.text
    assert r.json()["properties"]["saola:unit_code"] == WARD
    places = http.get(f"/Things('{tid}')/Locations").json()["value"]
    assert [p["name"] for p in places] == ["Chợ Đà Lạt"]
    assert len(http.get(f"/Things('{tid}')/HistoricalLocations").json()["value"]) == 2
    assert api.get(f"/entities/{tid}").json()["geometry"]["coordinates"] == [108.437, 11.943]
    r = http.patch(f"/Things('{tid}')", json={"Locations": [{"@iot.id": thing["Locations"][0]["@iot.id"]}]})
    assert r.status_code == 200, r.text
    assert api.get(f"/entities/{tid}").json()["geometry"]["coordinates"] == [108.4419, 11.9404]
    r = http.patch(f"/Locations('{thing['Locations'][0]['@iot.id']}')",
                   json={"location": {"type": "Point", "coordinates": [108.45, 11.95]}})
    assert r.status_code == 200 and r.json()["location"]["coordinates"] == [108.45, 11.95]
    assert api.get(f"/entities/{tid}").json()["geometry"]["coordinates"] == [108.45, 11.95]


def test_updates(http: httpx.Client) -> None:
    thing = make_thing(http)
    tid, ds = thing["@iot.id"], thing["Datastreams"][0]["@iot.id"]
    r = http.patch(f"/Things('{tid}')", json={"name": "Trạm mới", "properties": {"owner": "UBND"}})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Trạm mới" and r.json()["properties"] == {"owner": "UBND", "saola:unit_code": WARD}
    r = http.patch(f"/Datastreams({ds})", json={"unitOfMeasurement": {"name": "ppb", "symbol": "ppb"}})
    assert r.json()["unitOfMeasurement"] == {"name": "ppb", "symbol": "ppb", "definition": None}
    assert "cannot move to another Thing" in error(http.patch(f"/Datastreams({ds})", json={
        "Thing": {"@iot.id": make_thing(http)["@iot.id"]}}))
    r = http.patch(f"/Things('{tid}')", json=[{"op": "add", "path": "/properties/floors", "value": 3}],
                   headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200 and r.json()["properties"]["floors"] == 3
    assert "test failed" in error(http.patch(f"/Things('{tid}')", json=[
        {"op": "test", "path": "/name", "value": "other"}], headers={"Content-Type": "application/json-patch+json"}),
        409)
    obs = http.post(f"/Datastreams({ds})/Observations", json={"result": 1}).json()
    assert error(http.patch(f"/Observations('{obs['@iot.id']}')", json={"result": 2}), 405)
    assert error(http.delete(f"/Observations('{obs['@iot.id']}')"), 405)


def test_deletes(http: httpx.Client) -> None:
    quiet = make_thing(http)
    sensor = http.get(f"/Datastreams({quiet['Datastreams'][0]['@iot.id']})/Sensor").json()
    assert "used by Datastream" in error(http.delete(f"/Sensors({sensor['@iot.id']})"), 409)
    assert http.delete(f"/Things('{quiet['@iot.id']}')").status_code == 200
    assert http.get(f"/Things('{quiet['@iot.id']}')").status_code == 404
    assert http.get(f"/Datastreams({quiet['Datastreams'][0]['@iot.id']})").status_code == 404
    assert http.delete(f"/Sensors({sensor['@iot.id']})").status_code == 200
    assert http.delete(f"/Locations('{quiet['Locations'][0]['@iot.id']}')").status_code == 200
    busy = make_thing(http, observations=[{"result": 5.0, "phenomenonTime": T0.isoformat()}])
    assert "never deleted" in error(http.delete(f"/Things('{busy['@iot.id']}')"), 409)
    feature = http.get(f"/Datastreams({busy['Datastreams'][0]['@iot.id']})/Observations",
                       params={"$expand": "FeatureOfInterest"}).json()["value"][0]["FeatureOfInterest"]
    assert "it stays while they observe it" in error(http.delete(f"/FeaturesOfInterest('{feature['@iot.id']}')"),
                                                     409)
    assert http.delete(f"/Datastreams({busy['Datastreams'][0]['@iot.id']})").status_code == 200
    assert http.get(f"/Things('{busy['@iot.id']}')").status_code == 200


def test_scope_limits_what_is_seen_and_written(http: httpx.Client, as_user: Callable[..., httpx.Client]) -> None:
    thing = make_thing(http)
    ds = thing["Datastreams"][0]["@iot.id"]
    http.post(f"/Datastreams({ds})/Observations", json={"result": 1.0, "phenomenonTime": T0.isoformat()})
    elsewhere = as_user("operator", OTHER_PROVINCE_WARD)
    assert elsewhere.get(f"/Things('{thing['@iot.id']}')").status_code == 404
    assert elsewhere.get(f"/Datastreams({ds})").status_code == 404
    assert count(elsewhere, "/Observations", **{"$filter": f"Datastream/id eq {ds}"}) == 0
    assert count(elsewhere, "/Things", **{"$filter": f"name eq '{thing['name']}'"}) == 0
    assert elsewhere.post(f"/Datastreams({ds})/Observations", json={"result": 2.0}).status_code == 404
    r = elsewhere.post("/Things", json={"name": "x", "properties": {"saola:unit_code": WARD}})
    assert "outside the scope" in error(r, 403)
    # Without a unit, a Thing lands in the caller's own unit.
    r = elsewhere.post("/Things", json={"name": unique("Trạm ")})
    assert r.status_code == 201 and r.json()["properties"]["saola:unit_code"] == OTHER_PROVINCE_WARD
    local = as_user("viewer", WARD)
    assert local.get(f"/Things('{thing['@iot.id']}')").status_code == 200
    assert "lacks permission 'entities:write'" in error(local.post("/Things", json={"name": "x"}), 403)
    assert "lacks permission 'observations:write'" in error(
        local.post(f"/Datastreams({ds})/Observations", json={"result": 1.0}), 403)


def test_source_keys_write_what_they_are_allowed(http: httpx.Client, as_source: Callable[..., httpx.Client]) -> None:
    thing = make_thing(http)
    ds = thing["Datastreams"][0]["@iot.id"]
    code = thing["Datastreams"][0]["ObservedProperty"]["definition"]
    with as_source("68", [f"observations:{code}"]) as gateway:
        r = gateway.post("/CreateObservations", json=[{"Datastream": {"@iot.id": ds}, "components": [
            "phenomenonTime", "result"], "dataArray": [[T0.isoformat(), 1.0], [(T0 + timedelta(hours=1)).isoformat(),
                                                                            2.0]]}])
        assert r.status_code == 201, r.text
        assert "may not write entities of type 'sta.thing'" in error(gateway.post("/Things", json={"name": "x"}), 403)
    with as_source("68", ["observations:other.*"]) as stranger:
        assert f"may not write observations of {code}" in error(stranger.post(
            f"/Datastreams({ds})/Observations", json={"result": 1.0}), 403)
    assert count(http, f"/Datastreams({ds})/Observations") == 2
