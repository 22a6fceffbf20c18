"""Reads over plain HTTP: $filter in SQL, $orderby, paging, $select, $expand, $count, dataArray and paths."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import unique
from tests.sensorthings.conftest import make_thing

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def _rows(n: int, start: datetime = T0) -> list[list[Any]]:
    return [[(start + timedelta(hours=h)).isoformat(), float(h)] for h in range(n)]


@pytest.fixture(scope="module")
def data(http: httpx.Client) -> dict[str, Any]:
    """Two Things with a Datastream each: Alpha with 24 hourly readings 0..23, Beta with 5 readings 100..104."""
    tag = unique("x")
    alpha = make_thing(http, name=f"Trạm Alpha {tag}")
    beta = make_thing(http, name=f"Trạm Beta {tag}")
    r = http.patch(f"/Things('{beta['@iot.id']}')", json={"properties": {"owner": "EVN", "floors": 7}})
    assert r.status_code == 200, r.text
    ds_a, ds_b = alpha["Datastreams"][0]["@iot.id"], beta["Datastreams"][0]["@iot.id"]
    body = [{"Datastream": {"@iot.id": ds_a}, "components": ["phenomenonTime", "result"], "dataArray": _rows(24)},
            {"Datastream": {"@iot.id": ds_b}, "components": ["phenomenonTime", "result", "resultQuality"],
             "dataArray": [[(T0 + timedelta(days=1, hours=h)).isoformat(), 100.0 + h, "good" if h else "suspect"]
                           for h in range(5)]}]
    r = http.post("/CreateObservations", json=body)
    assert r.status_code == 201, r.text
    return {"tag": tag, "alpha": alpha, "beta": beta, "ds_a": ds_a, "ds_b": ds_b,
            "code_a": alpha["Datastreams"][0]["ObservedProperty"]["definition"]}


def values(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    return r.json()["value"]  # type: ignore[no-any-return]


def names(r: httpx.Response) -> list[str]:
    return [v["name"] for v in values(r)]


def test_service_root_lists_sets_and_conformance(http: httpx.Client) -> None:
    r = httpx.get(str(http.base_url).rstrip("/"))  # no credentials needed for the root
    assert r.status_code == 200
    body = r.json()
    assert [v["name"] for v in body["value"]] == ["Things", "Locations", "HistoricalLocations", "Datastreams",
                                                  "Sensors", "ObservedProperties", "Observations",
                                                  "FeaturesOfInterest"]
    assert body["value"][0]["url"].endswith("/sta/v1.1/Things")
    conformance = body["serverSettings"]["conformance"]
    assert "http://www.opengis.net/spec/iot_sensing/1.1/req/data-array/data-array" in conformance
    assert "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data" in conformance


def test_reads_need_credentials(http: httpx.Client) -> None:
    r = httpx.get(f"{http.base_url}Things")
    assert r.status_code == 401 and r.json()["type"] == "error" and "bearer" in r.json()["message"].lower()


@pytest.mark.parametrize(("expr", "expected"), [
    ("startswith(name, 'Trạm Alpha')", ["alpha"]),
    ("substringof('Beta', name)", ["beta"]),
    ("endswith(name, '{tag}') and not (properties/owner eq 'EVN')", ["alpha"]),
    ("properties/owner eq 'EVN' or properties/owner eq 'nobody'", ["beta"]),
    ("properties/floors gt 5", ["beta"]),
    ("tolower(name) eq 'trạm alpha {tag}'", ["alpha"]),
    ("length(name) ge length('Trạm Beta {tag}')", ["alpha", "beta"]),
    ("substring(name, 5, 4) eq 'Beta' or indexof(name, 'Alpha') eq 5", ["alpha", "beta"]),
    ("substring(name, 5) eq concat('Alpha ', '{tag}')", ["alpha"]),
    ("properties/floors div 0 eq null and toupper(trim(' beta ')) eq 'BETA'", ["alpha", "beta"]),
    ("Datastreams/ObservedProperty/definition eq '{code_a}'", ["alpha"]),
    ("Datastreams/Observations/result ge 100", ["beta"]),
    ("Locations/location ne null and properties/saola:unit_code eq '24781'", ["alpha", "beta"]),
])
def test_filter_on_things(http: httpx.Client, data: dict[str, Any], expr: str, expected: list[str]) -> None:
    expr = expr.format(**data)
    r = http.get("/Things", params={"$filter": f"({expr}) and endswith(name, '{data['tag']}')", "$orderby": "name"})
    assert names(r) == [data[k]["name"] for k in expected]


@pytest.mark.parametrize(("expr", "results"), [
    ("result lt 3", [0.0, 1.0, 2.0]),
    ("result mul 2 ge 44", [22.0, 23.0]),
    ("phenomenonTime ge 2026-10-01T20:00:00Z", [20.0, 21.0, 22.0, 23.0]),
    ("phenomenonTime lt 2026-10-01T10:00:00+07:00", [0.0, 1.0, 2.0]),  # 03:00 UTC
    ("phenomenonTime gt '2026-10-01T21:30:00Z'", [22.0, 23.0]),
    ("hour(phenomenonTime) eq 5 or (result gt 21.5 and result lt 22.5)", [5.0, 22.0]),
    ("year(phenomenonTime) eq 2026 and day(phenomenonTime) eq 1 and result le 1", [0.0, 1.0]),
    ("resultTime eq null and result eq 0", [0.0]),
    ("round(result div 10) eq 2 and floor(result) eq ceiling(result) and result sub 1 gt 19", [21.0, 22.0, 23.0]),
    ("Datastream/Thing/name eq 'no such thing'", []),
])
def test_filter_on_observations(http: httpx.Client, data: dict[str, Any], expr: str, results: list[float]) -> None:
    r = http.get(f"/Datastreams({data['ds_a']})/Observations", params={"$filter": expr, "$orderby": "result"})
    assert [o["result"] for o in values(r)] == results


def test_filter_across_all_observations_by_navigation(http: httpx.Client, data: dict[str, Any]) -> None:
    r = http.get("/Observations", params={
        "$filter": f"Datastream/Thing/name eq '{data['beta']['name']}' and resultQuality eq 1", "$count": "true"})
    body = r.json()
    assert body["@iot.count"] == 1 and [o["result"] for o in body["value"]] == [100.0]
    r = http.get("/Observations", params={"$filter": f"Datastream/id eq {data['ds_b']}", "$orderby": "result desc",
                                          "$top": "2"})
    assert [o["result"] for o in values(r)] == [104.0, 103.0]
    r = http.get("/Observations", params={
        "$filter": f"Datastream/ObservedProperty/definition eq '{data['code_a']}' and result eq 7"})
    assert [o["result"] for o in values(r)] == [7.0]


def test_filter_by_ids_and_json_members(http: httpx.Client, data: dict[str, Any]) -> None:
    alpha, beta = data["alpha"]["@iot.id"], data["beta"]["@iot.id"]
    r = http.get("/Datastreams", params={"$filter": f"unitOfMeasurement/symbol eq 'µg/m³' and Thing/id eq '{alpha}'"})
    assert [d["@iot.id"] for d in values(r)] == [data["ds_a"]]
    r = http.get("/Things", params={"$filter": f"id eq '{beta}'", "$select": "id"})
    assert values(r) == [{"@iot.id": beta}]
    first = values(http.get(f"/Datastreams({data['ds_b']})/Observations", params={"$top": "1"}))[0]
    r = http.get("/Observations", params={"$filter": f"id eq '{first['@iot.id']}'"})
    assert [o["@iot.id"] for o in values(r)] == [first["@iot.id"]]
    r = http.get(f"/Datastreams({data['ds_b']})/Observations", params={"$filter": f"id ne '{first['@iot.id']}'",
                                                                        "$count": "true"})
    assert r.json()["@iot.count"] == 4
    r = http.get("/Datastreams", params={"$filter": f"Thing/name eq '{data['beta']['name']}'",
                                         "$orderby": "Thing/name desc,id"})
    assert [d["@iot.id"] for d in values(r)] == [data["ds_b"]]


def test_paging_count_and_next_link(http: httpx.Client, data: dict[str, Any]) -> None:
    url, seen, pages = f"/Datastreams({data['ds_a']})/Observations?$top=10&$count=true&$orderby=phenomenonTime", [], 0
    while url:
        r = http.get(url)
        body = r.json()
        assert body["@iot.count"] == 24
        seen += [o["result"] for o in body["value"]]
        url = body.get("@iot.nextLink")
        pages += 1
    assert pages == 3 and seen == [float(h) for h in range(24)]
    r = http.get(f"/Datastreams({data['ds_a']})/Observations", params={"$top": "0", "$count": "true"})
    assert r.json() == {"@iot.count": 24, "value": []}
    r = http.get(f"/Datastreams({data['ds_a']})/Observations", params={"$skip": "22", "$orderby": "result"})
    assert [o["result"] for o in values(r)] == [22.0, 23.0] and "@iot.nextLink" not in r.json()


def test_select_and_expand(http: httpx.Client, data: dict[str, Any]) -> None:
    thing_id = data["alpha"]["@iot.id"]
    r = http.get(f"/Things('{thing_id}')", params={
        "$select": "name,Datastreams",
        "$expand": "Datastreams($select=id,name;$expand=Observations($top=2;$orderby=phenomenonTime desc;"
                   "$select=result;$count=true),Sensor($select=name))"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"name", "Datastreams"}
    (ds,) = body["Datastreams"]
    assert set(ds) == {"@iot.id", "name", "Observations", "Observations@iot.count", "Observations@iot.nextLink",
                       "Sensor"}
    assert ds["Observations"] == [{"result": 23.0}, {"result": 22.0}] and ds["Observations@iot.count"] == 24
    assert ds["Sensor"] == {"name": "SDS011"}
    assert http.get(ds["Observations@iot.nextLink"]).json()["value"][0]["result"] == 21.0
    r = http.get(f"/Datastreams({data['ds_a']})/Observations", params={
        "$top": "1", "$expand": "Datastream/Thing/Locations,FeatureOfInterest"})
    obs = values(r)[0]
    assert obs["Datastream"]["Thing"]["Locations"][0]["location"]["type"] == "Point"
    assert obs["FeatureOfInterest"]["feature"]["coordinates"] == [108.4419, 11.9404]
    r = http.get("/Things", params={"$filter": f"name eq '{data['alpha']['name']}'",
                                    "$expand": "Datastreams($filter=name eq 'nothing')"})
    assert values(r)[0]["Datastreams"] == []


def test_data_array_results(http: httpx.Client, data: dict[str, Any]) -> None:
    r = http.get("/Observations", params={
        "$resultFormat": "dataArray", "$filter": f"Datastream/id eq {data['ds_b']} and result le 101",
        "$select": "id,phenomenonTime,result,resultQuality", "$orderby": "phenomenonTime", "$count": "true"})
    body = r.json()
    assert body["@iot.count"] == 2
    (group,) = body["value"]
    assert group["Datastream@iot.navigationLink"].endswith(f"/Datastreams({data['ds_b']})")
    assert group["components"] == ["id", "phenomenonTime", "result", "resultQuality"]
    assert group["dataArray@iot.count"] == 2
    assert [row[2:] for row in group["dataArray"]] == [[100.0, 1], [101.0, 0]]
    assert group["dataArray"][0][1] == "2026-10-02T00:00:00Z"


def test_paths_properties_values_and_refs(http: httpx.Client, data: dict[str, Any]) -> None:
    thing_id = data["alpha"]["@iot.id"]
    obs = values(http.get(f"/Datastreams({data['ds_a']})/Observations", params={"$top": "1"}))[0]
    assert http.get(f"/Observations('{obs['@iot.id']}')/Datastream/Thing").json()["@iot.id"] == thing_id
    assert http.get(f"/Observations('{obs['@iot.id']}')").json()["result"] == 0.0
    assert http.get(f"/Things('{thing_id}')/name").json() == {"name": data["alpha"]["name"]}
    r = http.get(f"/Things('{thing_id}')/name/$value")
    assert r.text == data["alpha"]["name"] and r.headers["content-type"].startswith("text/plain")
    refs = values(http.get(f"/Things('{thing_id}')/Datastreams/$ref"))
    assert refs == [{"@iot.selfLink": data["alpha"]["Datastreams"][0]["@iot.selfLink"]}]
    location = data["alpha"]["Locations"][0]["@iot.id"]
    assert names(http.get(f"/Locations('{location}')/Things")) == [data["alpha"]["name"]]
    history = values(http.get(f"/Things('{thing_id}')/HistoricalLocations"))
    assert len(history) == 1
    assert http.get(f"/HistoricalLocations({history[0]['@iot.id']})/Thing").json()["@iot.id"] == thing_id
    assert len(values(http.get(f"/HistoricalLocations({history[0]['@iot.id']})/Locations"))) == 1
    sensor = http.get(f"/Datastreams({data['ds_a']})/Sensor").json()
    assert [d["@iot.id"] for d in values(http.get(f"/Sensors({sensor['@iot.id']})/Datastreams"))] == [data["ds_a"]]
    prop = http.get(f"/Datastreams({data['ds_a']})/ObservedProperty").json()
    assert prop["properties"]["saola:code"] == data["code_a"]
    feature = http.get(f"/Observations('{obs['@iot.id']}')/FeatureOfInterest").json()
    r = http.get(f"/FeaturesOfInterest('{feature['@iot.id']}')/Observations", params={"$count": "true", "$top": "1"})
    assert r.json()["@iot.count"] == 24
    ds = http.get(f"/Datastreams({data['ds_a']})").json()
    assert ds["phenomenonTime"] == "2026-10-01T00:00:00Z/2026-10-01T23:00:00Z"


@pytest.mark.parametrize(("path", "params", "fragment"), [
    ("/Things", {"$filter": "name eq"}, "ends too early"),
    ("/Things", {"$filter": "name eq 'a' and"}, "ends too early"),
    ("/Things", {"$filter": "nmae eq 'a'"}, "has no property 'nmae'"),
    ("/Things", {"$filter": "name eq 5"}, "cannot compare a text property with the number 5"),
    ("/Things", {"$filter": "name"}, "must be a condition"),
    ("/Things", {"$filter": "frobnicate(name)"}, "unknown function"),
    ("/Things", {"$filter": "geo.intersects(Locations/location, geography'POINT(1 2)')"}, "not supported"),
    ("/Things", {"$filter": "name eq 'unterminated"}, "unexpected character"),
    ("/Things", {"$filter": "id eq 'not-a-uuid'"}, "not an id"),
    ("/Observations", {"$filter": "phenomenonTime gt 'yesterday'"}, "not an ISO 8601 time"),
    ("/Observations", {"$filter": "result gt 1 eq true"}, "do not chain"),
    ("/Things", {"$orderby": "name sideways"}, "$orderby"),
    ("/Things", {"$orderby": "Datastreams/name"}, "leads to many"),
    ("/Things", {"$top": "-1"}, "$top must be a non-negative integer"),
    ("/Things", {"$skip": "many"}, "$skip must be"),
    ("/Things", {"$count": "yes"}, "$count must be true or false"),
    ("/Things", {"$select": "name,colour"}, "no property 'colour'"),
    ("/Things", {"$expand": "Sensors"}, "no navigation property 'Sensors'"),
    ("/Things", {"$expand": "Datastreams($top=x)"}, "$top must be"),
    ("/Things", {"$expand": "Datastreams($format=json)"}, "unsupported query option"),
    ("/Things", {"$search": "x"}, "unsupported query option"),
    ("/Things", {"$resultFormat": "dataArray"}, "Observations only"),
    ("/Things(1", {}, "unbalanced parentheses"),
    ("/Things(1.5)", {}, "cannot read path segment"),
])
def test_bad_queries_are_400_with_a_reason(http: httpx.Client, path: str, params: dict[str, str],
                                          fragment: str) -> None:
    r = http.get(path, params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == 400 and body["type"] == "error" and fragment in body["message"], body


@pytest.mark.parametrize("path", [
    "/Things('018f0000-0000-7000-8000-000000000000')", "/Things(12)", "/Datastreams(999999999)",
    "/Datastreams(999999999)/Observations", "/Observations('1-0')", "/Observations('garbage')",
    "/Sensors(999999999)", "/ObservedProperties(999999999)", "/HistoricalLocations(999999999)",
    "/FeaturesOfInterest('018f0000-0000-7000-8000-000000000000')", "/Gadgets", "/Things('x')/Gizmo",
])
def test_unknown_entities_are_404(http: httpx.Client, path: str) -> None:
    r = http.get(path)
    assert r.status_code == 404, r.text
    assert r.json()["type"] == "error"


def test_a_datastreams_readings_are_read_through_the_primary_key(
        data: dict[str, Any], session_factory: Any, backend: str) -> None:
    """Datastreams(x)/Observations walks the observations primary key: no scan of the table, no sort."""
    from saola.core.auth.context import system_actor
    from saola.interop.sensorthings.odata import parse_options
    from saola.interop.sensorthings.query import load, nav_conditions, statements
    from saola.interop.sensorthings.sets import SETS, Ctx

    with session_factory() as session:
        ctx = Ctx(session=session, actor=system_actor("test"), base="http://x", now=T0)
        ds = load(ctx, SETS["Datastreams"], [lambda r: r.id == data["ds_a"]], "Datastream")
        opts = parse_options([("$orderby", "phenomenonTime desc"), ("$filter", "result gt 3"), ("$top", "10")])
        page, _ = statements(ctx, SETS["Observations"], opts, nav_conditions(ctx, SETS["Datastreams"], ds,
                                                                             "Observations"))
        sql = page.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        if backend == "sqlite":
            plan = " | ".join(r[-1] for r in session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert re.search(r"SEARCH observations_1 USING (PRIMARY KEY|INDEX sqlite_autoindex_observations_1) "
                             r"\(indicator_id=\? AND subject_id=\?\)", plan), plan
            assert "TEMP B-TREE" not in plan, plan
        else:
            session.execute(text("SET LOCAL enable_seqscan = off"))  # tables are tiny in tests; ask for the index
            plan = " | ".join(r[0] for r in session.connection().exec_driver_sql(f"EXPLAIN {sql}"))
            assert "Index Scan Backward using pk_observations" in plan, plan
