"""The SensorThings door driven by frost-sta-client (the Fraunhofer client) against a live server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import frost_sta_client as fsc
import geojson
import httpx
import pytest
from frost_sta_client.model.ext.data_array_document import DataArrayDocument
from frost_sta_client.model.ext.data_array_value import DataArrayValue

from tests.conftest import unique
from tests.sensorthings.conftest import OM, WARD

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def _series(sta: fsc.SensorThingsService) -> tuple[fsc.Thing, fsc.Datastream, str]:
    """A Thing at a Location (deep insert), a Sensor, an ObservedProperty and a Datastream, made one by one."""
    place = fsc.Location(name=unique("Hồ "), description="Hồ Xuân Hương", encoding_type="application/geo+json",
                         location=geojson.Point((108.4419, 11.9404)))
    thing = fsc.Thing(name=unique("Trạm "), description="Trạm quan trắc", properties={"saola:unit_code": WARD},
                      locations=[place])
    sta.create(thing)
    sensor = fsc.Sensor(name="SDS011", description="laser particle counter", encoding_type="application/pdf",
                        metadata="https://example.org/sds011.pdf")
    sta.create(sensor)
    code = f"test.{unique('pm')}"
    prop = fsc.ObservedProperty(name="PM2.5", definition=code, description="fine particulate matter")
    sta.create(prop)
    uom = fsc.UnitOfMeasurement(name="microgram per cubic metre", symbol="µg/m³", definition="ucum:ug/m3")
    stream = fsc.Datastream(name="PM2.5 " + thing.name, description="hourly PM2.5", observation_type=OM,
                            unit_of_measurement=uom, thing=thing, sensor=sensor, observed_property=prop)
    sta.create(stream)
    return thing, stream, code


def test_deep_insert_and_entities_by_id(sta: fsc.SensorThingsService) -> None:
    thing, stream, code = _series(sta)
    assert isinstance(thing.id, str) and isinstance(stream.id, int)
    found = sta.things().find(thing.id)
    assert found.name == thing.name and found.properties["saola:unit_code"] == WARD
    places = list(found.get_locations().query().list())
    assert len(places) == 1 and places[0].location["coordinates"] == [108.4419, 11.9404]
    history = list(found.get_historical_locations().query().list())
    assert len(history) == 1
    ds = sta.datastreams().find(stream.id)
    assert ds.unit_of_measurement.symbol == "µg/m³" and ds.observation_type == OM
    prop = sta.datastreams().query().filter(f"id eq {stream.id}").expand("ObservedProperty").list().get(0)
    assert prop.observed_property.definition == code


def test_observations_singly_and_as_data_array(sta: fsc.SensorThingsService) -> None:
    _, stream, _ = _series(sta)
    sta.create(fsc.Observation(result=12.5, phenomenon_time=T0.isoformat(), datastream=stream))
    sta.create(fsc.Observation(result=14, phenomenon_time=(T0 + timedelta(hours=1)).isoformat(), datastream=stream))

    dav = DataArrayValue()
    dav.datastream = stream
    dav.components = {DataArrayValue.Property.PHENOMENON_TIME, DataArrayValue.Property.RESULT}
    for h in range(2, 12):
        dav.add_observation(fsc.Observation(phenomenon_time=(T0 + timedelta(hours=h)).isoformat(), result=float(h)))
    doc = DataArrayDocument()
    doc.add_data_array_value(dav)
    created = sta.observations().create(doc)
    assert len(created) == 10 and all("/Observations('" in o.self_link for o in created)

    readings = list(stream.get_observations().query().orderby("phenomenonTime", "ASC").top(4).list())
    assert len(readings) == 12  # the client follows @iot.nextLink three times
    assert [r.result for r in readings[:3]] == [12.5, 14.0, 2.0]
    assert readings[0].phenomenon_time.startswith("2026-10-01T00:00:00")

    high = sta.observations().query().filter(f"Datastream/id eq {stream.id} and result ge 10").count() \
        .orderby("result", "DESC").list()
    assert high.count == 4 and [o.result for o in high] == [14.0, 12.5, 11.0, 10.0]

    # The FeatureOfInterest was made from the Thing's Location.
    foi = sta.observations().find(readings[0].id)
    feature = httpx.get(foi.self_link + "/FeatureOfInterest", auth=sta.auth_handler.add_auth_header()).json()
    assert feature["feature"]["coordinates"] == [108.4419, 11.9404]


def test_expand_with_nested_options(sta: fsc.SensorThingsService) -> None:
    thing, stream, _ = _series(sta)
    for h in range(3):
        sta.create(fsc.Observation(result=float(h), phenomenon_time=(T0 + timedelta(hours=h)).isoformat(),
                                   datastream=stream))
    things = sta.things().query().filter(f"name eq '{thing.name}'") \
        .expand("Locations,Datastreams($expand=Observations($top=1;$orderby=phenomenonTime desc))").list()
    assert len(things.entities) == 1
    got = things.get(0)
    assert got.locations.get(0).name.startswith("Hồ ")
    newest = got.datastreams.get(0).observations
    assert len(newest.entities) == 1 and newest.get(0).result == 2.0
    assert newest.next_link is not None  # more readings follow


def test_update_patch_and_delete(sta: fsc.SensorThingsService) -> None:
    thing, stream, _ = _series(sta)
    sta.patch(thing, [{"op": "replace", "path": "/name", "value": "Trạm đã đổi tên"}])
    assert sta.things().find(thing.id).name == "Trạm đã đổi tên"
    stream.description = "PM2.5 mỗi giờ"
    sta.update(stream)
    assert sta.datastreams().find(stream.id).description == "PM2.5 mỗi giờ"
    sensor = fsc.Sensor(name="spare", description="unused", encoding_type="application/pdf", metadata="x")
    sta.create(sensor)
    sta.delete(sensor)
    with pytest.raises(Exception):  # noqa: B017 - the client raises requests' HTTPError for the 404
        sta.sensors().find(sensor.id)
