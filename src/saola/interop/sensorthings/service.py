"""Writes of the SensorThings door: deep inserts, updates and deletes, all through the kernel's services.

Things, Locations and FeaturesOfInterest are written with the entity service, ObservedProperties with the
indicator service and Observations with ONE call of the observations ingest per request (deep inserts and
CreateObservations included), so scope, allowed_writes, audit, outbox and bus apply as for every door. A
request runs in one transaction: a bad part anywhere rejects the whole request and nothing is written.
"""

from __future__ import annotations

import copy
import math
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from saola.core.audit.service import audit
from saola.core.auth.context import system_actor
from saola.core.entities import service as entities
from saola.core.entities.models import Entity
from saola.core.entities.schemas import EntityCreate, EntityUpdate, json_problem
from saola.core.errors import Conflict, DomainError, FieldError, Forbidden, NotFound, ValidationFailed
from saola.core.indicators import service as indicators
from saola.core.indicators.models import Indicator
from saola.core.indicators.schemas import CODE_PATTERN, IndicatorCreate, IndicatorUpdate
from saola.core.observations import service as observations
from saola.core.observations.models import Subject
from saola.core.observations.schemas import MAX_BATCH
from saola.core.text import fold
from saola.db.outbox import record_change
from saola.interop.sensorthings.models import (
    StaDatastream,
    StaHistoricalLocation,
    StaHistoricalLocationLocation,
    StaObservedProperty,
    StaSensor,
    StaThingLocation,
)
from saola.interop.sensorthings.odata import BadRequest, QueryOptions, format_key, parse_time
from saola.interop.sensorthings.query import Target, key_condition, load, render
from saola.interop.sensorthings.sets import (
    FEATURE,
    GEOJSON,
    LOCATION,
    NUMERIC_TYPES,
    OM_MEASUREMENT,
    SETS,
    THING,
    UNIT_KEY,
    Ctx,
    EntitySet,
    micros,
    observation_key,
)
from saola.packs.manager import Registry

Loc = list[str | int]
MAX_ROW_ERRORS = 200
QUALITY_NAMES = {"good": 0, "suspect": 1, "bad": 2}
# POST into a navigation collection: which property of the new child points back at the parent.
BACK_LINKS: dict[tuple[str, str], tuple[str, bool]] = {
    ("Things", "Locations"): ("Things", True),
    ("Things", "Datastreams"): ("Thing", False),
    ("Locations", "Things"): ("Locations", True),
    ("Sensors", "Datastreams"): ("Sensor", False),
    ("ObservedProperties", "Datastreams"): ("ObservedProperty", False),
    ("Datastreams", "Observations"): ("Datastream", False),
    ("FeaturesOfInterest", "Observations"): ("FeatureOfInterest", False),
}
GEOMETRY_NAMES = {LOCATION: "location", FEATURE: "feature"}
_INGEST_FIELDS = {"ts": "phenomenonTime", "value": "result", "quality": "resultQuality", "indicator": "Datastream",
                  "entity": "Datastream", "unit": "Datastream"}


class MethodNotAllowed(DomainError):
    """The operation does not exist for this resource (405)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 405, "method_not_allowed")


def invalid(loc: Loc, message: str) -> ValidationFailed:
    """A 400 naming the STA path of the bad value."""
    where = "/".join(str(p) for p in loc)
    return ValidationFailed(f"{where}: {message}" if where else message, [FieldError(list(loc), message)])


def _sta_path(kernel_loc: Sequence[Any], geometry: str) -> Loc:
    """A kernel field path in STA words: geometry is location or feature, unit_code a property."""
    out: Loc = []
    for p in kernel_loc:
        if p == "geometry":
            out.append(geometry)
        elif p == "unit_code":
            out.extend(["properties", UNIT_KEY])
        else:
            out.append(p if isinstance(p, int) else str(p))
    return out


def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and "@iot.id" in value


class _Body:
    """One JSON object of a request, read field by field; errors name the path of the field."""

    def __init__(self, data: Any, loc: Loc, what: str, allowed: set[str]) -> None:
        if not isinstance(data, dict):
            raise invalid(loc, f"a {what} must be a JSON object")
        unknown = [k for k in data if k not in allowed and not k.startswith("@iot.") and "@iot." not in k]
        if unknown:
            raise invalid([*loc, unknown[0]], f"{what} has no property {unknown[0]!r}; "
                                              f"it has {', '.join(sorted(allowed))}")
        self.data, self.loc, self.what = data, loc, what

    def has(self, key: str) -> bool:
        return key in self.data

    def text(self, key: str, *, required: bool = False, max_length: int = 255, default: str = "") -> str:
        value = self.data.get(key)
        if value is None:
            if required:
                raise invalid([*self.loc, key], f"a {self.what} needs {key}")
            return default
        if not isinstance(value, str):
            raise invalid([*self.loc, key], "must be text")
        if required and not value.strip():
            raise invalid([*self.loc, key], "must not be empty")
        if len(value) > max_length:
            raise invalid([*self.loc, key], f"must be at most {max_length} characters")
        problem = json_problem(value)
        if problem:
            raise invalid([*self.loc, key], problem)
        return value

    def obj(self, key: str) -> dict[str, Any] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise invalid([*self.loc, key], "must be a JSON object")
        problem = json_problem(value)
        if problem:
            raise invalid([*self.loc, key], problem)
        return value

    def items(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise invalid([*self.loc, key], "must be a JSON array")
        return value


@dataclass
class _Pending:
    """An Observation waiting for the request's single ingest call."""

    ds: StaDatastream
    ts: datetime
    value: float
    quality: int
    loc: Loc


@dataclass
class Writer:
    """The state of one writing request: what was created and the Observations to ingest at the end."""

    ctx: Ctx
    registry: Registry
    pending: list[_Pending] = field(default_factory=list)
    features: dict[int, uuid.UUID | None] = field(default_factory=dict)
    # A dataArray repeats few distinct times (a network reports all at once): each is parsed once.
    _instants: dict[str, datetime] = field(default_factory=dict)

    @property
    def session(self) -> Any:
        """The request's session."""
        return self.ctx.session

    @property
    def actor(self) -> Any:
        """The caller."""
        return self.ctx.actor

    # --- references -----------------------------------------------------------------------------------

    def existing(self, set_name: str, value: dict[str, Any], loc: Loc) -> Any:
        """The entity an {"@iot.id": ...} names; 400 when it does not exist (or lies outside the scope)."""
        spec = SETS[set_name]
        key = value["@iot.id"]
        if isinstance(key, bool) or not isinstance(key, int | str):
            raise invalid([*loc, "@iot.id"], "must be a number or a text id")
        try:
            return load(self.ctx, spec, [key_condition(spec, key)], f"{spec.singular} {format_key(key)}")
        except NotFound as exc:
            raise invalid([*loc, "@iot.id"], f"{spec.singular} {format_key(key)} does not exist") from exc

    def ref_or_create(self, set_name: str, value: Any, loc: Loc, **kw: Any) -> Any:
        """Link an existing entity ({"@iot.id": ...}, other fields ignored) or create the nested one."""
        if _is_ref(value):
            return self.existing(set_name, value, loc)
        return self.create(set_name, value, loc, **kw)

    def create(self, set_name: str, body: Any, loc: Loc, **kw: Any) -> Any:
        """Create one entity of a set (and whatever it nests)."""
        creators = {"Things": self.thing, "Locations": self.location, "FeaturesOfInterest": self.feature,
                    "Datastreams": self.datastream, "Sensors": self.sensor,
                    "ObservedProperties": self.observed_property, "Observations": self.observation}
        if set_name not in creators:
            raise MethodNotAllowed(f"{set_name} are written by the server; they cannot be created")
        return creators[set_name](body, loc, **kw)

    # --- kernel entities ----------------------------------------------------------------------------------

    @contextmanager
    def _kernel(self, loc: Loc, geometry: str = "geometry") -> Iterator[None]:
        """Re-address the kernel's validation errors (['body', 'geometry', ...]) to the STA path."""
        try:
            yield
        except ValidationFailed as exc:
            errors = []
            for e in exc.errors:
                rest = e.loc[1:] if e.loc[:1] == ["body"] else e.loc
                errors.append(FieldError([*loc, *_sta_path(rest, geometry)], e.msg, e.type))
            first = errors[0] if errors else None
            message = f"{'/'.join(str(p) for p in first.loc)}: {first.msg}" if first else exc.message
            raise ValidationFailed(message, errors) from exc

    def _entity_data(self, loc: Loc, **fields: Any) -> EntityCreate:
        try:
            return EntityCreate(**fields)
        except ValidationError as exc:
            geometry = GEOMETRY_NAMES.get(fields.get("type", ""), "geometry")
            errors = [FieldError([*loc, *_sta_path(list(e["loc"]), geometry)], e["msg"])
                      for e in exc.errors(include_url=False)]
            raise ValidationFailed(f"{'/'.join(str(p) for p in errors[0].loc)}: {errors[0].msg}", errors) from exc

    def _props_and_unit(self, b: _Body, default_unit: str | None) -> tuple[dict[str, Any], str]:
        props = dict(b.obj("properties") or {})
        unit = props.pop(UNIT_KEY, None)
        if unit is not None and (not isinstance(unit, str | int) or isinstance(unit, bool)):
            raise invalid([*b.loc, "properties", UNIT_KEY], "must be a unit code such as '68' or '24781'")
        return props, str(unit) if unit is not None else (default_unit or self.actor.scope_code)

    def _new_entity(self, loc: Loc, entity_type: str, name: str, unit: str, geometry: dict[str, Any] | None,
                    attributes: dict[str, Any], external_id: str | None = None, as_system: bool = False) -> Entity:
        data = self._entity_data(loc, type=entity_type, name=name, unit_code=unit, geometry=geometry,
                                 attributes=attributes, external_id=external_id)
        actor = system_actor("sensorthings") if as_system else self.actor
        with self._kernel(loc, GEOMETRY_NAMES.get(entity_type, "geometry")):
            return entities.create_entity(self.session, actor=actor, registry=self.registry, data=data)

    def thing(self, body: Any, loc: Loc) -> Entity:
        """A Thing, its Locations (created or linked) and its Datastreams."""
        b = _Body(body, loc, "Thing", {"name", "description", "properties", "Locations", "Datastreams",
                                        "HistoricalLocations"})
        if b.has("HistoricalLocations"):
            raise invalid([*loc, "HistoricalLocations"], "HistoricalLocations are written by the server")
        name = b.text("name", required=True)
        description = b.text("description", max_length=2000)
        props, unit = self._props_and_unit(b, None)
        places = [self.ref_or_create("Locations", item, [*loc, "Locations", i], unit=unit)
                  for i, item in enumerate(b.items("Locations"))]
        thing = self._new_entity(loc, THING, name, unit, _first_geometry(places),
                                 {"description": description, "properties": props})
        if places:
            self.set_locations(thing, places)
        for i, item in enumerate(b.items("Datastreams")):
            self.ref_or_link_datastream(item, [*loc, "Datastreams", i], thing=thing)
        return thing

    def ref_or_link_datastream(self, item: Any, loc: Loc, **kw: Any) -> StaDatastream:
        """A Datastream nested in its Thing, Sensor or ObservedProperty: always a new one."""
        if _is_ref(item):
            raise invalid([*loc, "@iot.id"], "a Datastream belongs to one Thing, Sensor and ObservedProperty; "
                                             "create it here or change it with PATCH")
        return self.datastream(item, loc, **kw)  # type: ignore[no-any-return]

    def location(self, body: Any, loc: Loc, unit: str | None = None) -> Entity:
        """A Location (kernel entity of type sta.location) and, when named, the Things now placed there."""
        b = _Body(body, loc, "Location", {"name", "description", "encodingType", "location", "properties",
                                           "Things", "HistoricalLocations"})
        if b.has("HistoricalLocations"):
            raise invalid([*loc, "HistoricalLocations"], "HistoricalLocations are written by the server")
        name = b.text("name", required=True)
        description = b.text("description", max_length=2000)
        encoding = b.text("encodingType", max_length=120, default=GEOJSON)
        geometry = _geometry(b.data.get("location"), [*loc, "location"])
        props, unit = self._props_and_unit(b, unit)
        place = self._new_entity(loc, LOCATION, name, unit, geometry,
                                 {"description": description, "encodingType": encoding, "properties": props})
        for i, item in enumerate(b.items("Things")):
            thing = self.ref_or_create("Things", item, [*loc, "Things", i])
            self.set_locations(thing, [place])
        return place

    def feature(self, body: Any, loc: Loc, unit: str | None = None) -> Entity:
        """A FeatureOfInterest (kernel entity of type sta.feature) and any Observations nested in it."""
        b = _Body(body, loc, "FeatureOfInterest", {"name", "description", "encodingType", "feature", "properties",
                                                    "Observations"})
        name = b.text("name", required=True)
        description = b.text("description", max_length=2000)
        encoding = b.text("encodingType", max_length=120, default=GEOJSON)
        geometry = _geometry(b.data.get("feature"), [*loc, "feature"])
        props, unit = self._props_and_unit(b, unit)
        feature = self._new_entity(loc, FEATURE, name, unit, geometry,
                                   {"description": description, "encodingType": encoding, "properties": props})
        for i, item in enumerate(b.items("Observations")):
            self.observation(item, [*loc, "Observations", i], feature=feature)
        return feature

    def set_locations(self, thing: Entity, places: Sequence[Entity]) -> None:
        """Put a Thing at these Locations: replace its current ones, write a HistoricalLocation, move its geometry."""
        current = set(self.session.scalars(select(StaThingLocation.location_id)
                                           .where(StaThingLocation.thing_id == thing.id)))
        if current == {p.id for p in places}:
            return  # the same place again (a PUT of the whole Thing): no move, no history
        self.session.execute(delete(StaThingLocation).where(StaThingLocation.thing_id == thing.id))
        self.session.add_all([StaThingLocation(thing_id=thing.id, location_id=p.id) for p in {p.id: p for p in
                                                                                              places}.values()])
        history = StaHistoricalLocation(thing_id=thing.id, time=self.ctx.now)
        self.session.add(history)
        self.session.flush()
        self.session.add_all([StaHistoricalLocationLocation(hl_id=history.id, location_id=p_id)
                              for p_id in {p.id for p in places}])
        geometry = _first_geometry(places)
        if geometry is not None and geometry != thing.geometry:
            with self._kernel(["Thing"]):
                entities.update_entity(self.session, actor=self.actor, registry=self.registry, entity_id=thing.id,
                                       data=EntityUpdate(geometry=geometry))  # type: ignore[arg-type]
        self.session.flush()

    # --- mapping tables -----------------------------------------------------------------------------------

    def require_write(self, kind: str) -> None:
        """entities:write and, for source systems, an allowed_writes pattern matching entities:<kind>."""
        self.actor.require("entities:write")
        if not self.actor.may_write("entities", kind):
            raise Forbidden(f"{self.actor.kind} {self.actor.name!r} may not write entities of type {kind!r}")

    def _record(self, action: str, target_type: str, target_id: Any, detail: dict[str, Any]) -> None:
        audit(self.session, actor=self.actor, action=f"sta.{target_type}.{action}", target_type=f"sta.{target_type}",
              target_id=str(target_id), detail=detail)
        record_change(self.session, topic=f"sta.{target_type}s.{action}d", aggregate_type=f"sta.{target_type}",
                      aggregate_id=str(target_id), payload=detail)

    def datastream(self, body: Any, loc: Loc, thing: Entity | None = None, sensor: StaSensor | None = None,
                   observed: Any = None) -> StaDatastream:
        """A Datastream: one indicator about one Thing, with its Sensor; nested Observations are ingested."""
        b = _Body(body, loc, "Datastream", {"name", "description", "unitOfMeasurement", "observationType",
                                             "observedArea", "phenomenonTime", "resultTime", "properties", "Thing",
                                             "Sensor", "ObservedProperty", "Observations"})
        self.require_write("sta.datastream")
        name = b.text("name", required=True)
        description = b.text("description", max_length=2000)
        observation_type = _observation_type(b, OM_MEASUREMENT)
        uom = _unit_of_measurement(b)
        props = b.obj("properties") or {}
        for key, given in (("Thing", thing), ("Sensor", sensor), ("ObservedProperty", observed)):
            if given is None and b.data.get(key) is None:
                raise invalid([*loc, key], f"a Datastream needs its {key}")
        thing = thing or self.ref_or_create("Things", b.data["Thing"], [*loc, "Thing"])
        sensor = sensor or self.ref_or_create("Sensors", b.data["Sensor"], [*loc, "Sensor"])
        observed = observed or self.ref_or_create("ObservedProperties", b.data["ObservedProperty"],
                                                  [*loc, "ObservedProperty"])
        assert thing is not None and sensor is not None and observed is not None
        indicator = observed.ind
        clash = self.session.scalar(select(StaDatastream.id).where(StaDatastream.thing_id == thing.id,
                                                                   StaDatastream.indicator_id == indicator.id))
        if clash is not None:
            raise Conflict(f"Thing {thing.name!r} already has Datastream {clash} for ObservedProperty "
                           f"{indicator.code!r}; the kernel keeps one series per thing and property")
        ds = StaDatastream(thing_id=thing.id, indicator_id=indicator.id, sensor_id=sensor.id, name=name,
                           description=description, observation_type=observation_type, unit_of_measurement=uom,
                           properties=props)
        self.session.add(ds)
        self.session.flush()
        self._record("create", "datastream", ds.id, {"thing": str(thing.id), "indicator": indicator.code,
                                                     "unit_code": thing.unit_code})
        for i, item in enumerate(b.items("Observations")):
            self.observation(item, [*loc, "Observations", i], ds=ds)
        return ds

    def sensor(self, body: Any, loc: Loc) -> StaSensor:
        """A Sensor and any Datastreams nested in it."""
        b = _Body(body, loc, "Sensor", {"name", "description", "encodingType", "metadata", "properties",
                                         "Datastreams"})
        self.require_write("sta.sensor")
        sensor = StaSensor(name=b.text("name", required=True), description=b.text("description", max_length=2000),
                           encoding_type=b.text("encodingType", max_length=120),
                           metadata_=_metadata(b), properties=b.obj("properties") or {})
        self.session.add(sensor)
        self.session.flush()
        self._record("create", "sensor", sensor.id, {"name": sensor.name})
        for i, item in enumerate(b.items("Datastreams")):
            self.ref_or_link_datastream(item, [*loc, "Datastreams", i], sensor=sensor)
        return sensor

    def observed_property(self, body: Any, loc: Loc) -> SimpleNamespace:
        """An ObservedProperty: the indicator its definition names (a code or a URI given before), or a new one."""
        b = _Body(body, loc, "ObservedProperty", {"name", "definition", "description", "properties", "Datastreams"})
        name = b.text("name", required=True)
        definition = b.text("definition", max_length=500)
        description = b.text("description", max_length=1000)
        props = b.obj("properties") or {}
        found = self._indicator_for(definition) if definition else None
        if found is None:
            code = definition if re.fullmatch(CODE_PATTERN, definition) and len(definition) <= 80 else \
                self._new_code(name)
            try:
                data = IndicatorCreate(code=code, name_vi=_one_line(name), name_en=_one_line(name), domain="sta",
                                       description=description)
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                raise invalid([*loc, *[str(p) for p in first["loc"]]], first["msg"]) from exc
            with self._kernel(loc):
                found = indicators.create_indicator(self.session, actor=self.actor, data=data)
            self.session.add(StaObservedProperty(indicator_id=found.id, definition=definition or code,
                                                 properties=props))
            self.session.flush()
        observed = SimpleNamespace(ind=found, op=self.session.get(StaObservedProperty, found.id))
        for i, item in enumerate(b.items("Datastreams")):
            self.ref_or_link_datastream(item, [*loc, "Datastreams", i], observed=observed)
        return observed

    def _indicator_for(self, definition: str) -> Indicator | None:
        by_code = self.session.scalar(select(Indicator).where(Indicator.code == definition))
        if by_code is not None:
            return by_code
        return self.session.scalar(select(Indicator).join(StaObservedProperty,
                                                          StaObservedProperty.indicator_id == Indicator.id)
                                   .where(StaObservedProperty.definition == definition).limit(1))

    def _new_code(self, name: str) -> str:
        slug = re.sub(r"[^a-z0-9_]+", "_", fold(name)).strip("_")[:60] or "property"
        code, n = f"sta.{slug}", 1
        while self.session.scalar(select(Indicator.id).where(Indicator.code == code)) is not None:
            n += 1
            code = f"sta.{slug}_{n}"
        return code

    # --- observations -------------------------------------------------------------------------------------

    def observation(self, body: Any, loc: Loc, ds: StaDatastream | None = None,
                    feature: Entity | None = None) -> _Pending:
        """An Observation, kept for the request's one ingest call (numeric results only)."""
        b = _Body(body, loc, "Observation", {"phenomenonTime", "result", "resultTime", "resultQuality", "validTime",
                                              "parameters", "Datastream", "MultiDatastream", "FeatureOfInterest"})
        if b.data.get("MultiDatastream") is not None:
            raise invalid([*loc, "MultiDatastream"], "MultiDatastreams are not supported by this server")
        if b.data.get("validTime") is not None:
            raise invalid([*loc, "validTime"], "validTime is not stored by this server; leave it out")
        if b.data.get("parameters"):
            raise invalid([*loc, "parameters"], "parameters are not stored by this server; leave them out")
        if ds is None:
            if b.data.get("Datastream") is None:
                raise invalid([*loc, "Datastream"], "an Observation needs its Datastream")
            ds = self.ref_or_create("Datastreams", b.data["Datastream"], [*loc, "Datastream"])
        assert ds is not None
        ts = instant(b.data.get("phenomenonTime"), [*loc, "phenomenonTime"], self.ctx.now)
        value = result(b.data.get("result"), [*loc, "result"], "result" in b.data)
        quality = result_quality(b.data.get("resultQuality"), [*loc, "resultQuality"])
        if b.data.get("resultTime") is not None:
            instant(b.data["resultTime"], [*loc, "resultTime"], self.ctx.now)  # checked, not stored
        if feature is None and b.data.get("FeatureOfInterest") is not None:
            thing = self.session.get(Entity, ds.thing_id)
            feature = self.ref_or_create("FeaturesOfInterest", b.data["FeatureOfInterest"],
                                         [*loc, "FeatureOfInterest"], unit=thing.unit_code if thing else None)
        if feature is not None:
            self.features[ds.id] = feature.id
        item = _Pending(ds, ts, value, quality, loc)
        self.pending.append(item)
        return item

    def finish(self) -> None:
        """Give each Datastream its FeatureOfInterest, then ingest every pending Observation in one call."""
        if not self.pending:
            return
        streams = {p.ds.id: p.ds for p in self.pending}
        for ds_id, ds in streams.items():
            chosen = self.features.get(ds_id)
            if chosen is not None and chosen != ds.feature_id:
                ds.feature_id = chosen
            elif ds.feature_id is None:
                ds.feature_id = self._feature_from_location(ds, next(p.loc for p in self.pending if p.ds is ds))
        self.session.flush()
        codes = dict(self.session.execute(select(Indicator.id, Indicator.code)
                                          .where(Indicator.id.in_({ds.indicator_id for ds in streams.values()}))).all())
        # Per Datastream once, not per row: the indicator code and the Thing's id as text.
        subject = {ds_id: (codes[ds.indicator_id], str(ds.thing_id)) for ds_id, ds in streams.items()}
        items = [{"indicator": code, "entity": thing, "ts": p.ts, "value": p.value, "quality": p.quality}
                 for p in self.pending for code, thing in (subject[p.ds.id],)]
        try:
            observations.ingest(self.session, actor=self.actor, items=items, now=self.ctx.now)
        except ValidationFailed as exc:
            errors = []
            for e in exc.errors:
                if len(e.loc) >= 2 and isinstance(e.loc[1], int) and e.loc[1] < len(self.pending):
                    field_name = _INGEST_FIELDS.get(str(e.loc[2]), str(e.loc[2])) if len(e.loc) > 2 else ""
                    errors.append(FieldError([*self.pending[e.loc[1]].loc, field_name], e.msg, e.type))
                else:
                    errors.append(e)
            first = errors[0] if errors else None
            where = f"{'/'.join(str(p) for p in first.loc)}: {first.msg}; " if first else ""
            raise ValidationFailed(f"{where}{exc.message}", errors) from exc
        self.ctx.subjects.clear()  # first readings of a Thing created its subject

    def _feature_from_location(self, ds: StaDatastream, loc: Loc) -> uuid.UUID:
        """The FeatureOfInterest made from the Thing's Location (created once per Location, as STA says)."""
        place = self.session.scalar(select(Entity).join(StaThingLocation, StaThingLocation.location_id == Entity.id)
                                    .where(StaThingLocation.thing_id == ds.thing_id).order_by(Entity.id).limit(1))
        if place is None or place.geometry is None:
            raise invalid([*loc, "FeatureOfInterest"], f"Datastream {ds.id}'s Thing has no Location to derive a "
                                                       "FeatureOfInterest from; give one")
        external_id = f"location:{place.id}"
        made = self.session.scalar(select(Entity.id).where(Entity.type == FEATURE, Entity.external_id == external_id))
        if made is not None:
            return made  # type: ignore[no-any-return]
        attributes = {"description": (place.attributes or {}).get("description", ""), "encodingType": GEOJSON,
                      "properties": {"saola:location": str(place.id)}}
        # The server derives it (the STA rule), so it is written as the server: a gateway key that may only
        # write observations still gets its readings a feature.
        return self._new_entity([*loc, "FeatureOfInterest"], FEATURE, place.name, place.unit_code, place.geometry,
                                attributes, external_id=external_id, as_system=True).id

    # --- CreateObservations ---------------------------------------------------------------------------------

    def data_arrays(self, body: Any) -> list[str]:
        """The dataArray extension: validate every row first, then ingest all of them in one call."""
        loc: Loc = ["CreateObservations"]
        if not isinstance(body, list) or not body:
            raise invalid(loc, "expected a JSON array of {Datastream, components, dataArray} objects")
        rows = sum(len(g["dataArray"]) for g in body if isinstance(g, dict) and isinstance(g.get("dataArray"), list))
        if rows > MAX_BATCH:
            raise invalid(loc, f"at most {MAX_BATCH} observations per request, got {rows}")
        errors: list[FieldError] = []
        parsed: list[tuple[StaDatastream, list[tuple[datetime, float, int, Any, Loc]]]] = []
        features: dict[str, Loc] = {}
        known = self._datastreams(body)
        for gi, group in enumerate(body):
            gloc: Loc = [*loc, gi]
            b = _Body(group, gloc, "dataArray group", {"Datastream", "MultiDatastream", "components", "dataArray"})
            if b.data.get("MultiDatastream") is not None:
                raise invalid([*gloc, "MultiDatastream"], "MultiDatastreams are not supported by this server")
            if not _is_ref(b.data.get("Datastream")):
                raise invalid([*gloc, "Datastream"], 'give the Datastream as {"@iot.id": ...}')
            ref = b.data["Datastream"]["@iot.id"]
            ds = known.get(ref) if type(ref) is int else None
            if ds is None:  # not found in one go: the single look-up says why
                ds = self.existing("Datastreams", b.data["Datastream"], [*gloc, "Datastream"])
            components = _components(b.data.get("components"), [*gloc, "components"])
            data = b.data.get("dataArray")
            if not isinstance(data, list):
                raise invalid([*gloc, "dataArray"], "must be a JSON array of rows")
            group_rows: list[tuple[datetime, float, int, Any, Loc]] = []
            for ri, row in enumerate(data):
                rloc: Loc = [*gloc, "dataArray", ri]
                try:
                    group_rows.append(self._row(components, row, rloc))
                except ValidationFailed as exc:
                    errors.extend(exc.errors)
                    if len(errors) >= MAX_ROW_ERRORS:
                        break
            for *_, foi, rloc in group_rows:
                if foi is not None:
                    features.setdefault(str(foi), rloc)
            parsed.append((ds, group_rows))
            if len(errors) >= MAX_ROW_ERRORS:
                break
        errors.extend(self._missing_features(features))
        if errors:
            bad = len({tuple(e.loc[:4]) for e in errors})
            first = errors[0]
            raise ValidationFailed(f"{bad} invalid row(s), nothing was written; first: "
                                   f"{'/'.join(str(p) for p in first.loc)}: {first.msg}", errors[:MAX_ROW_ERRORS])
        links: list[str] = []
        stamps: dict[datetime, int] = {}
        base = f"{self.ctx.base}/Observations('"
        for ds, group_rows in parsed:
            for ts, value, quality, foi, rloc in group_rows:
                if foi is not None:
                    self.features[ds.id] = uuid.UUID(str(foi))
                self.pending.append(_Pending(ds, ts, value, quality, rloc))
                micro = stamps.get(ts)
                if micro is None:
                    micro = stamps[ts] = micros(ts)
                # The same text as format_key(observation_key(ds.id, ts)), without the per-row calls.
                links.append(f"{base}{ds.id}-{micro}')")
        self.finish()
        return links

    def _datastreams(self, body: list[Any]) -> dict[int, Any]:
        """The Datastreams the groups name by number, visible to the caller, in one query (not one per group)."""
        keys = {g["Datastream"]["@iot.id"] for g in body
                if isinstance(g, dict) and _is_ref(g.get("Datastream")) and type(g["Datastream"]["@iot.id"]) is int}
        if not keys:
            return {}
        spec = SETS["Datastreams"]
        self.ctx.actor.require(spec.permission)
        root = spec.root()
        rows = self.session.execute(spec.select(self.ctx, root, *spec.columns(root)).where(root.id.in_(keys)))
        return {spec.key(obj): obj for obj in map(spec.wrap, rows)}

    def _row(self, components: list[str], row: Any, loc: Loc) -> tuple[datetime, float, int, Any, Loc]:
        if not isinstance(row, list) or len(row) != len(components):
            raise invalid(loc, f"a row holds {len(components)} values ({', '.join(components)})")
        values = dict(zip(components, row, strict=True))
        raw_ts = values.get("phenomenonTime")
        ts = self._instants.get(raw_ts) if type(raw_ts) is str else None
        if ts is None:
            ts = instant(raw_ts, [*loc, "phenomenonTime"], self.ctx.now)
            if type(raw_ts) is str:
                self._instants[raw_ts] = ts
        value = values.get("result")
        if type(value) is not float or not math.isfinite(value):  # the common case needs no further check
            value = result(value, [*loc, "result"], True)
        quality = values.get("resultQuality")
        quality = result_quality(quality, [*loc, "resultQuality"]) if quality is not None else 0
        if values.get("resultTime") is not None:
            instant(values["resultTime"], [*loc, "resultTime"], self.ctx.now)
        foi = values.get("FeatureOfInterest/id")
        if foi is not None and (isinstance(foi, bool) or not isinstance(foi, str | int)):
            raise invalid([*loc, "FeatureOfInterest/id"], "must be a FeatureOfInterest id")
        return ts, value, quality, foi, loc

    def _missing_features(self, features: Mapping[str, Loc]) -> list[FieldError]:
        if not features:
            return []
        wanted: dict[uuid.UUID, Loc] = {}
        errors: list[FieldError] = []
        for raw, loc in features.items():
            try:
                wanted[uuid.UUID(raw)] = loc
            except ValueError:
                errors.append(FieldError([*loc, "FeatureOfInterest/id"], f"FeatureOfInterest {raw!r} does not exist"))
        spec = SETS["FeaturesOfInterest"]
        root = spec.root()
        found = set(self.session.scalars(spec.select(self.ctx, root, root.id).where(root.id.in_(list(wanted)))))
        errors.extend(FieldError([*loc, "FeatureOfInterest/id"], f"FeatureOfInterest '{fid}' does not exist")
                      for fid, loc in wanted.items() if fid not in found)
        return errors


# --- values ---------------------------------------------------------------------------------------------------


def instant(value: Any, loc: Loc, now: datetime) -> datetime:
    """A phenomenonTime: an ISO 8601 instant (no zone means UTC); absent means now; intervals are refused."""
    if value is None:
        return now
    if not isinstance(value, str):
        raise invalid(loc, "must be an ISO 8601 time such as 2026-11-25T08:00:00+07:00")
    if "/" in value:
        raise invalid(loc, "time intervals are not stored by this server (readings have one time); give an instant")
    try:
        return parse_time(value)
    except BadRequest as exc:
        raise invalid(loc, exc.message) from exc


def result(value: Any, loc: Loc, given: bool) -> float:
    """A numeric result: the kernel stores numbers only."""
    if not given or value is None:
        raise invalid(loc, "an Observation needs a numeric result")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(loc, f"result must be a number: this server stores numeric results only (got {value!r:.60})")
    try:
        number = float(value)
    except OverflowError as exc:
        raise invalid(loc, "result is too large") from exc
    if not math.isfinite(number):
        raise invalid(loc, "result must be a finite number")
    return number


def result_quality(value: Any, loc: Loc) -> int:
    """resultQuality as the kernel's flag: 0 good, 1 suspect, 2 bad (the names are accepted too)."""
    if value is None:
        return 0
    if isinstance(value, str) and value.lower() in QUALITY_NAMES:
        return QUALITY_NAMES[value.lower()]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2:
        return value
    raise invalid(loc, "resultQuality must be 0 (good), 1 (suspect) or 2 (bad), or one of those names")


def _components(value: Any, loc: Loc) -> list[str]:
    allowed = ("phenomenonTime", "result", "resultTime", "resultQuality", "FeatureOfInterest/id")
    if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
        raise invalid(loc, "must be a non-empty array of component names")
    for c in value:
        if c == "id":
            raise invalid(loc, "ids are given by the server; leave the id component out")
        if c not in allowed:
            raise invalid(loc, f"unknown or unsupported component {c!r}; use {', '.join(allowed)}")
    if len(set(value)) != len(value):
        raise invalid(loc, "a component is named twice")
    if "result" not in value:
        raise invalid(loc, "the result component is required")
    return list(value)


def _geometry(value: Any, loc: Loc) -> dict[str, Any]:
    if isinstance(value, dict) and value.get("type") == "Feature":
        value = value.get("geometry")
    if not isinstance(value, dict) or "type" not in value or "coordinates" not in value:
        raise invalid(loc, "expected a GeoJSON geometry (Point, LineString, Polygon ...) or a Feature with one")
    return {"type": value["type"], "coordinates": value["coordinates"]}


def _first_geometry(places: Sequence[Entity]) -> dict[str, Any] | None:
    return next((p.geometry for p in places if p.geometry), None)


def _one_line(text: str) -> str:
    return re.sub(r"[\x00-\x1f]+", " ", text)[:255]


def _observation_type(b: _Body, default: str) -> str:
    value = b.text("observationType", max_length=200, default=default)
    if value not in NUMERIC_TYPES:
        raise invalid([*b.loc, "observationType"], "this server stores numeric results only: observationType must be "
                                                   f"one of {', '.join(NUMERIC_TYPES)}")
    return value


def _unit_of_measurement(b: _Body) -> dict[str, Any]:
    uom = b.obj("unitOfMeasurement") or {}
    for key, value in uom.items():
        if key not in ("name", "symbol", "definition"):
            raise invalid([*b.loc, "unitOfMeasurement", key], "unitOfMeasurement has name, symbol and definition")
        if value is not None and not isinstance(value, str):
            raise invalid([*b.loc, "unitOfMeasurement", key], "must be text")
    return {"name": uom.get("name"), "symbol": uom.get("symbol"), "definition": uom.get("definition")}


def _metadata(b: _Body) -> str:
    value = b.data.get("metadata")
    if value is not None and not isinstance(value, str):
        raise invalid([*b.loc, "metadata"], "metadata must be text (a URL or the document itself)")
    return b.text("metadata", max_length=100_000)


# --- the operations the routes call ---------------------------------------------------------------------------


def create(ctx: Ctx, *, registry: Registry, target: Target, body: Any) -> tuple[EntitySet, Any]:
    """POST to a collection (or a navigation collection): create, deep-insert, ingest; returns the new entity."""
    if target.single or target.prop is not None or target.ref:
        raise MethodNotAllowed("POST creates entities in a collection, e.g. POST /Things or /Datastreams(1)/"
                               "Observations")
    spec = target.spec
    w = Writer(ctx, registry)
    kw: dict[str, Any] = {}
    if target.parent is not None:
        parent_spec, parent, nav = target.parent
        back = BACK_LINKS.get((parent_spec.name, nav))
        if back is None:
            raise MethodNotAllowed(f"{parent_spec.name}(...)/{nav} cannot be created through this path")
        key, many = back
        if not isinstance(body, dict):
            raise invalid([spec.singular], f"a {spec.singular} must be a JSON object")
        ref = {"@iot.id": parent_spec.key(parent)}
        body = {**body, key: [ref] if many else ref}
        if parent_spec.name == "Things" and spec.name == "Locations":
            kw["unit"] = parent.unit_code  # a Thing's new Location lies in the Thing's unit unless told otherwise
    created = w.create(spec.name, body, [spec.singular], **kw)
    w.finish()
    if spec.name == "Observations":
        key = observation_key(created.ds.id, created.ts)
        return spec, load(ctx, spec, [key_condition(spec, key)], f"Observation {key}")
    if spec.name in ("Things", "Locations", "FeaturesOfInterest"):
        return spec, created
    if spec.name == "ObservedProperties":
        return spec, load(ctx, spec, [key_condition(spec, created.ind.id)], "ObservedProperty")
    return spec, created


def create_observations(ctx: Ctx, *, registry: Registry, body: Any) -> list[str]:
    """POST CreateObservations: all rows or none; the answer lists one self link per row, in order."""
    return Writer(ctx, registry).data_arrays(body)


def _apply_json_patch(document: dict[str, Any], ops: Any) -> dict[str, Any]:
    """RFC 6902 add, replace, remove and test on a copy of the entity's JSON."""
    if not isinstance(ops, list):
        raise BadRequest("a JSON Patch is an array of operations")
    doc = copy.deepcopy(document)
    for i, op in enumerate(ops):
        if not isinstance(op, dict) or op.get("op") not in ("add", "replace", "remove", "test") or \
                not isinstance(op.get("path"), str) or not op["path"].startswith("/"):
            raise BadRequest(f"JSON Patch operation {i}: expected op add, replace, remove or test with a /path")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"][1:].split("/")]
        parent: Any = doc
        for p in parts[:-1]:
            if not isinstance(parent, dict) or p not in parent:
                raise BadRequest(f"JSON Patch operation {i}: path {op['path']} does not exist")
            parent = parent[p]
        last = parts[-1]
        if not isinstance(parent, dict):
            raise BadRequest(f"JSON Patch operation {i}: only object members can be patched")
        if op["op"] == "test":
            if parent.get(last) != op.get("value"):
                raise Conflict(f"JSON Patch test failed at {op['path']}")
        elif op["op"] == "remove":
            if last not in parent:
                raise BadRequest(f"JSON Patch operation {i}: path {op['path']} does not exist")
            del parent[last]
        else:
            if "value" not in op:
                raise BadRequest(f"JSON Patch operation {i}: {op['op']} needs a value")
            if op["op"] == "replace" and last not in parent:
                raise BadRequest(f"JSON Patch operation {i}: path {op['path']} does not exist")
            parent[last] = op["value"]
    return {k: v for k, v in doc.items() if document.get(k) != v or k not in document}


def update(ctx: Ctx, *, registry: Registry, target: Target, body: Any, json_patch: bool = False) -> tuple[
        EntitySet, Any]:
    """PATCH (JSON merge or JSON Patch) or PUT of one entity; fields left out stay as they are."""
    if not target.single or target.prop is not None or target.ref:
        raise MethodNotAllowed("PATCH and PUT change one entity, e.g. PATCH /Things(1)")
    spec = target.spec
    if spec.name in ("Observations", "HistoricalLocations"):
        raise MethodNotAllowed(f"{spec.name} cannot be changed: readings and location history are kept as written")
    obj = load(ctx, spec, target.conditions, target.what)
    if json_patch:
        body = _apply_json_patch(spec.render(ctx, obj), body)
    w = Writer(ctx, registry)
    loc: Loc = [spec.singular]
    if spec.name in ("Things", "Locations", "FeaturesOfInterest"):
        _entity_updater(w, spec, obj, body, loc)
        obj = ctx.session.get(Entity, obj.id)
    elif spec.name == "Datastreams":
        _update_datastream(w, obj, body, loc)
    elif spec.name == "Sensors":
        _update_sensor(w, obj, body, loc)
    else:
        _update_observed_property(w, obj, body, loc)
        obj = load(ctx, spec, target.conditions, target.what)
    w.finish()
    return spec, obj


def _entity_updater(w: Writer, spec: EntitySet, entity: Entity, body: Any, loc: Loc) -> None:
    allowed = {"Things": {"name", "description", "properties", "Locations", "Datastreams", "HistoricalLocations"},
               "Locations": {"name", "description", "encodingType", "location", "properties", "Things",
                             "HistoricalLocations"},
               "FeaturesOfInterest": {"name", "description", "encodingType", "feature", "properties",
                                      "Observations"}}[spec.name]
    b = _Body(body, loc, spec.singular, allowed)
    w.require_write(entity.type)
    for nav in ("Datastreams", "HistoricalLocations", "Things", "Observations"):
        if b.has(nav):
            raise invalid([*loc, nav], f"{nav} are changed through their own resources, not in a {spec.singular}")
    attributes = dict(entity.attributes or {})
    changes: dict[str, Any] = {}
    if b.has("name"):
        changes["name"] = b.text("name", required=True)
    new_attributes: dict[str, Any] = {}
    if b.has("description"):
        new_attributes["description"] = b.text("description", max_length=2000)
    if b.has("encodingType"):
        new_attributes["encodingType"] = b.text("encodingType", max_length=120, default=GEOJSON)
    if b.has("properties"):
        props, unit = w._props_and_unit(b, entity.unit_code)
        new_attributes["properties"] = props
        if unit != entity.unit_code:
            changes["unit_code"] = unit
    geometry_key = {"Locations": "location", "FeaturesOfInterest": "feature"}.get(spec.name)
    if geometry_key and b.has(geometry_key):
        changes["geometry"] = _geometry(b.data[geometry_key], [*loc, geometry_key])
    if new_attributes and any(attributes.get(k) != v for k, v in new_attributes.items()):
        changes["attributes"] = new_attributes
    if changes:
        try:
            data = EntityUpdate(**changes)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise invalid([*loc, *[str(p) for p in first["loc"]]], first["msg"]) from exc
        with w._kernel(loc):
            entities.update_entity(w.session, actor=w.actor, registry=w.registry, entity_id=entity.id, data=data)
    if spec.name == "Things" and b.has("Locations"):
        places = [w.ref_or_create("Locations", item, [*loc, "Locations", i], unit=entity.unit_code)
                  for i, item in enumerate(b.items("Locations"))]
        w.set_locations(entity, places)
    if spec.name == "Locations" and "geometry" in changes:
        _move_things_at(w, entity)


def _move_things_at(w: Writer, place: Entity) -> None:
    """Things whose first Location moved follow it on the map."""
    things = w.session.scalars(select(Entity).join(StaThingLocation, StaThingLocation.thing_id == Entity.id)
                               .where(StaThingLocation.location_id == place.id)).all()
    for thing in things:
        first = w.session.scalar(select(Entity).join(StaThingLocation, StaThingLocation.location_id == Entity.id)
                                 .where(StaThingLocation.thing_id == thing.id).order_by(Entity.id).limit(1))
        if first is not None and first.geometry and first.geometry != thing.geometry:
            entities.update_entity(w.session, actor=w.actor, registry=w.registry, entity_id=thing.id,
                                   data=EntityUpdate(geometry=first.geometry))  # type: ignore[arg-type]


def _update_datastream(w: Writer, ds: StaDatastream, body: Any, loc: Loc) -> None:
    b = _Body(body, loc, "Datastream", {"name", "description", "unitOfMeasurement", "observationType", "properties",
                                         "observedArea", "phenomenonTime", "resultTime", "Thing", "Sensor",
                                         "ObservedProperty", "Observations"})
    w.require_write("sta.datastream")
    changed: list[str] = []
    if b.has("name"):
        ds.name = b.text("name", required=True)
        changed.append("name")
    if b.has("description"):
        ds.description = b.text("description", max_length=2000)
        changed.append("description")
    if b.has("observationType"):
        ds.observation_type = _observation_type(b, OM_MEASUREMENT)
        changed.append("observationType")
    if b.has("unitOfMeasurement"):
        ds.unit_of_measurement = _unit_of_measurement(b)
        changed.append("unitOfMeasurement")
    if b.has("properties"):
        ds.properties = b.obj("properties") or {}
        changed.append("properties")
    for key, current in (("Thing", str(ds.thing_id)), ("ObservedProperty", ds.indicator_id)):
        value = b.data.get(key)
        if value is not None and not (_is_ref(value) and str(value["@iot.id"]) == str(current)):
            raise invalid([*loc, key], f"a Datastream cannot move to another {key}: its readings are stored under "
                                       f"the {key} it has; create a new Datastream")
    if b.data.get("Sensor") is not None:
        sensor = w.ref_or_create("Sensors", b.data["Sensor"], [*loc, "Sensor"])
        if sensor.id != ds.sensor_id:
            ds.sensor_id = sensor.id
            changed.append("Sensor")
    if b.items("Observations"):
        raise invalid([*loc, "Observations"], "add Observations with POST /Datastreams(id)/Observations")
    if changed:
        w.session.flush()
        w._record("update", "datastream", ds.id, {"fields": changed})


def _update_sensor(w: Writer, sensor: StaSensor, body: Any, loc: Loc) -> None:
    b = _Body(body, loc, "Sensor", {"name", "description", "encodingType", "metadata", "properties", "Datastreams"})
    w.require_write("sta.sensor")
    if b.has("Datastreams"):
        raise invalid([*loc, "Datastreams"], "Datastreams are changed through their own resources")
    changed: list[str] = []
    for key, attr, read in (("name", "name", lambda: b.text("name", required=True)),
                            ("description", "description", lambda: b.text("description", max_length=2000)),
                            ("encodingType", "encoding_type", lambda: b.text("encodingType", max_length=120)),
                            ("metadata", "metadata_", lambda: _metadata(b)),
                            ("properties", "properties", lambda: b.obj("properties") or {})):
        if b.has(key):
            setattr(sensor, attr, read())
            changed.append(key)
    if changed:
        w.session.flush()
        w._record("update", "sensor", sensor.id, {"fields": changed})


def _update_observed_property(w: Writer, observed: Any, body: Any, loc: Loc) -> None:
    b = _Body(body, loc, "ObservedProperty", {"name", "definition", "description", "properties", "Datastreams"})
    if b.has("Datastreams"):
        raise invalid([*loc, "Datastreams"], "Datastreams are changed through their own resources")
    ind: Indicator = observed.ind
    kernel: dict[str, Any] = {}
    if b.has("name"):
        kernel["name_en"] = _one_line(b.text("name", required=True))
    if b.has("description"):
        kernel["description"] = b.text("description", max_length=1000)
    if kernel:
        try:
            changes = IndicatorUpdate(**kernel)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise invalid([*loc, *[str(p) for p in first["loc"]]], first["msg"]) from exc
        with w._kernel(loc):
            indicators.update_indicator(w.session, actor=w.actor, code=ind.code, changes=changes)
    if b.has("definition") or b.has("properties"):
        w.actor.require("indicators:write")
        row = w.session.get(StaObservedProperty, ind.id) or StaObservedProperty(indicator_id=ind.id,
                                                                                definition=ind.code, properties={})
        if b.has("definition"):
            row.definition = b.text("definition", required=True, max_length=500)
        if b.has("properties"):
            row.properties = b.obj("properties") or {}
        w.session.add(row)
        w.session.flush()
        w._record("update", "observed_property", ind.code, {"definition": row.definition})


def remove(ctx: Ctx, *, registry: Registry, target: Target) -> None:
    """DELETE one entity; readings are never deleted, so entities that carry some refuse with 409."""
    if not target.single or target.prop is not None:
        raise MethodNotAllowed("DELETE removes one entity, e.g. DELETE /Things(1)")
    spec = target.spec
    if spec.name in ("Observations", "HistoricalLocations"):
        raise MethodNotAllowed(f"{spec.name} cannot be deleted: readings and location history are kept as written")
    if spec.name == "ObservedProperties":
        raise MethodNotAllowed("ObservedProperties are the kernel's indicator catalog and are never deleted; "
                               "deactivate the indicator with PATCH /api/indicators/{code}")
    obj = load(ctx, spec, target.conditions, target.what)
    w = Writer(ctx, registry)
    session = ctx.session
    if spec.name == "Sensors":
        w.require_write("sta.sensor")
        used = session.scalars(select(StaDatastream.id).where(StaDatastream.sensor_id == obj.id).limit(5)).all()
        if used:
            raise Conflict(f"Sensor {obj.id} is used by Datastream(s) {', '.join(map(str, used))}; delete them first")
        session.delete(obj)
        session.flush()
        w._record("delete", "sensor", obj.id, {"name": obj.name})
        return
    if spec.name == "Datastreams":
        w.require_write("sta.datastream")
        session.delete(obj)
        session.flush()
        w._record("delete", "datastream", obj.id, {"thing": str(obj.thing_id), "indicator_id": obj.indicator_id})
        return
    w.require_write(obj.type)
    if spec.name == "Things":
        if session.scalar(select(func.count()).select_from(Subject).where(Subject.entity_id == obj.id)):
            raise Conflict(f"Thing {obj.id} has readings in the kernel's store, which are never deleted; "
                           "the Thing stays")
        for ds in session.scalars(select(StaDatastream).where(StaDatastream.thing_id == obj.id)):
            session.delete(ds)
            w._record("delete", "datastream", ds.id, {"thing": str(obj.id), "indicator_id": ds.indicator_id})
        _forget_history(session, StaHistoricalLocation.thing_id == obj.id)
        session.execute(delete(StaThingLocation).where(StaThingLocation.thing_id == obj.id))
    elif spec.name == "Locations":
        session.execute(delete(StaThingLocation).where(StaThingLocation.location_id == obj.id))
        hl_links = StaHistoricalLocationLocation
        session.execute(delete(hl_links).where(hl_links.location_id == obj.id))
        empty = select(StaHistoricalLocation.id).where(~StaHistoricalLocation.id.in_(
            select(StaHistoricalLocationLocation.hl_id)))
        session.execute(delete(StaHistoricalLocation).where(StaHistoricalLocation.id.in_(empty)))
    else:
        used = session.scalars(select(StaDatastream.id).where(StaDatastream.feature_id == obj.id).limit(5)).all()
        if used:
            raise Conflict(f"FeatureOfInterest {obj.id} is the feature of Datastream(s) "
                           f"{', '.join(map(str, used))}; it stays while they observe it")
    session.flush()
    try:
        entities.delete_entity(session, actor=ctx.actor, entity_id=obj.id)
    except IntegrityError as exc:  # pragma: no cover - the kernel maps its own; a safety net
        raise Conflict(f"{spec.singular} {obj.id} is still referred to") from exc


def _forget_history(session: Any, condition: Any) -> None:
    ids = select(StaHistoricalLocation.id).where(condition)
    session.execute(delete(StaHistoricalLocationLocation).where(StaHistoricalLocationLocation.hl_id.in_(ids)))
    session.execute(delete(StaHistoricalLocation).where(condition))


def created_body(ctx: Ctx, spec: EntitySet, obj: Any) -> dict[str, Any]:
    """The representation returned with 201 Created."""
    return render(ctx, spec, obj, QueryOptions())
