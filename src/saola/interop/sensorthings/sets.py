"""The eight SensorThings entity sets as views over kernel and mapping tables.

Each set knows its SQL root (fresh aliases per query), the rows the caller may see (type and unit scope),
its filterable properties, its navigation links and how one row looks in STA JSON. A link is a function of
(outer, inner) that works both on aliases (inside one SQL statement) and on loaded rows (their attributes
are plain values), so the same definition serves $filter, $expand and paths like Things(1)/Datastreams.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, null, select
from sqlalchemy.orm import Session, aliased

from saola.core.auth.context import Actor
from saola.core.entities.models import Entity
from saola.core.indicators.models import Indicator
from saola.core.observations.models import Observation, Subject
from saola.core.units.service import units_in_scope
from saola.interop.sensorthings.models import (
    StaDatastream,
    StaHistoricalLocation,
    StaHistoricalLocationLocation,
    StaObservedProperty,
    StaSensor,
    StaThingLocation,
)
from saola.interop.sensorthings.odata import format_key

THING, LOCATION, FEATURE = "sta.thing", "sta.location", "sta.feature"
UNIT_KEY = "saola:unit_code"
CODE_KEY = "saola:code"
GEOJSON = "application/geo+json"
OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/"
OM_MEASUREMENT = OM + "OM_Measurement"
NUMERIC_TYPES = (OM_MEASUREMENT, OM + "OM_CountObservation", OM + "OM_Observation")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OBS_KEY = re.compile(r"^(\d{1,12})-(\d{1,17})$")


@dataclass
class Ctx:
    """What one request needs everywhere: its session, caller, service root URL and small caches."""

    session: Session
    actor: Actor
    base: str
    now: datetime
    registry: Any = None
    subjects: dict[uuid.UUID, int | None] = field(default_factory=dict)
    cache: dict[Any, Any] = field(default_factory=dict)

    @property
    def dialect(self) -> str:
        """sqlite or postgresql."""
        return self.session.get_bind().dialect.name

    def subject_id(self, entity_id: uuid.UUID) -> int | None:
        """The kernel subject id of an entity (None until it has readings), cached for the request."""
        if entity_id not in self.subjects:
            self.subjects[entity_id] = self.session.scalar(select(Subject.id).where(Subject.key == f"e:{entity_id}"))
        return self.subjects[entity_id]


@dataclass(frozen=True)
class Prop:
    """A filterable property: its kind (int, uuid, obsid, str, num, time, json, null) and its SQL expression."""

    kind: str
    expr: Callable[[Any], Any]


@dataclass(frozen=True)
class Nav:
    """A navigation property: target set, cardinality, the link condition and shortcuts.

    joined gives the target's root when the outer root already joins it (Observation -> Datastream);
    fk gives the target's key on an outer root or loaded row (to-one links only).
    """

    target: str
    many: bool
    link: Callable[[Any, Any], ColumnElement[bool]]
    joined: Callable[[Any], Any] | None = None
    fk: Callable[[Any], Any] | None = None


def iso(ts: datetime | None) -> str | None:
    """A UTC time as ISO 8601 with a Z, keeping microseconds only when there are some."""
    if ts is None:
        return None
    ts = ts.astimezone(UTC)
    return ts.isoformat(timespec="microseconds" if ts.microsecond else "seconds").replace("+00:00", "Z")


def micros(ts: datetime) -> int:
    """Microseconds since 1970 (exact, unlike float timestamps)."""
    return (ts.astimezone(UTC) - EPOCH) // timedelta(microseconds=1)


def observation_key(datastream_id: int, ts: datetime) -> str:
    """An Observation's id: its Datastream and its time, e.g. '12-1764032400000000'."""
    return f"{datastream_id}-{micros(ts)}"


def parse_observation_key(key: int | str) -> tuple[int, datetime] | None:
    """(datastream id, time) of an Observation id, or None when it is not one."""
    m = _OBS_KEY.match(str(key))
    if m is None:
        return None
    try:
        return int(m.group(1)), EPOCH + timedelta(microseconds=int(m.group(2)))
    except OverflowError:
        return None


class EntitySet:
    """Base of the eight sets; subclasses fill in the table-specific parts."""

    name: str
    singular: str
    permission: str
    key_kind: str = "int"
    props: dict[str, Prop]
    specials: dict[tuple[str, ...], Prop] = {}  # noqa: RUF012 - fixed per class
    navs: dict[str, Nav]

    def root(self) -> Any:
        """Fresh aliases for one use of this set in a statement."""
        raise NotImplementedError

    def select(self, ctx: Ctx, root: Any, *columns: Any) -> Select[Any]:
        """SELECT columns (default: the row) FROM this set's rows the caller may see."""
        raise NotImplementedError

    def columns(self, root: Any) -> list[Any]:
        """What a row is made of."""
        return [root]

    def wrap(self, row: Any) -> Any:
        """A loaded row as the object links and rendering read."""
        return row[0]

    def key(self, obj: Any) -> int | str:
        """The @iot.id of a loaded row."""
        return obj.id  # type: ignore[no-any-return]

    def key_condition(self, root: Any, key: int | str) -> ColumnElement[bool]:
        """The SQL condition selecting one key (false for a key that cannot exist)."""
        return root.id == key if isinstance(key, int) else false()  # type: ignore[no-any-return]

    def order(self, root: Any) -> list[Any]:
        """A unique default order, so pages never overlap."""
        return [root.id]

    def render(self, ctx: Ctx, obj: Any) -> dict[str, Any]:
        """The STA properties of a row (without @iot.id, links and expansions)."""
        raise NotImplementedError

    def self_link(self, ctx: Ctx, obj: Any) -> str:
        """The absolute URL of a row."""
        return f"{ctx.base}/{self.name}({format_key(self.key(obj))})"


def _scoped_entities(ctx: Ctx, root: Any, entity_type: str, columns: tuple[Any, ...]) -> Select[Any]:
    return (select(*columns).select_from(root)
            .where(root.type == entity_type, root.unit_code.in_(units_in_scope(ctx.actor))))


def _uuid_condition(root: Any, key: int | str) -> ColumnElement[bool]:
    try:
        return root.id == uuid.UUID(str(key))  # type: ignore[no-any-return]
    except ValueError:
        return false()


def _attr(name: str) -> Callable[[Any], Any]:
    return lambda r: r.attributes[name].as_string()


def _json_prop(column: Callable[[Any], Any], prefix: tuple[str, ...] = ()) -> Prop:
    """A JSON property: the expression gives (JSON column, keys leading to the property inside it)."""
    return Prop("json", lambda r: (column(r), prefix))


def _entity_props(extra: dict[str, Prop]) -> dict[str, Prop]:
    return {
        "id": Prop("uuid", lambda r: r.id),
        "name": Prop("str", lambda r: r.name),
        "description": Prop("str", _attr("description")),
        "properties": _json_prop(lambda r: r.attributes, ("properties",)),
        **extra,
    }


def _properties(obj: Any) -> dict[str, Any]:
    attributes = obj.attributes or {}
    return {**attributes.get("properties", {}), UNIT_KEY: obj.unit_code}


class _EntityBacked(EntitySet):
    entity_type: str
    key_kind = "uuid"
    permission = "entities:read"
    specials = {("properties", UNIT_KEY): Prop("str", lambda r: r.unit_code)}  # noqa: RUF012

    def root(self) -> Any:
        return aliased(Entity)

    def select(self, ctx: Ctx, root: Any, *columns: Any) -> Select[Any]:
        return _scoped_entities(ctx, root, self.entity_type, columns or (root,))

    def key(self, obj: Any) -> int | str:
        return str(obj.id)

    def key_condition(self, root: Any, key: int | str) -> ColumnElement[bool]:
        return _uuid_condition(root, key)


def _thing_location_link(o: Any, i: Any) -> ColumnElement[bool]:
    return i.id.in_(select(StaThingLocation.location_id).where(StaThingLocation.thing_id == o.id))  # type: ignore[no-any-return]


def _location_thing_link(o: Any, i: Any) -> ColumnElement[bool]:
    return i.id.in_(select(StaThingLocation.thing_id).where(StaThingLocation.location_id == o.id))  # type: ignore[no-any-return]


class Things(_EntityBacked):
    """Things: kernel entities of type sta.thing."""

    name, singular, entity_type = "Things", "Thing", THING
    props = _entity_props({})
    navs = {  # noqa: RUF012
        "Locations": Nav("Locations", True, _thing_location_link),
        "HistoricalLocations": Nav("HistoricalLocations", True, lambda o, i: i.thing_id == o.id),
        "Datastreams": Nav("Datastreams", True, lambda o, i: i.thing_id == o.id),
    }

    def render(self, ctx: Ctx, obj: Any) -> dict[str, Any]:
        return {"name": obj.name, "description": (obj.attributes or {}).get("description", ""),
                "properties": _properties(obj)}


class Locations(_EntityBacked):
    """Locations: kernel entities of type sta.location whose geometry is the location."""

    name, singular, entity_type = "Locations", "Location", LOCATION
    props = _entity_props({"encodingType": Prop("str", _attr("encodingType")),
                           "location": _json_prop(lambda r: r.geometry)})
    navs = {  # noqa: RUF012
        "Things": Nav("Things", True, _location_thing_link),
        "HistoricalLocations": Nav("HistoricalLocations", True, lambda o, i: i.id.in_(
            select(StaHistoricalLocationLocation.hl_id).where(StaHistoricalLocationLocation.location_id == o.id))),
    }

    def render(self, ctx: Ctx, obj: Any) -> dict[str, Any]:
        attributes = obj.attributes or {}
        return {"name": obj.name, "description": attributes.get("description", ""),
                "encodingType": attributes.get("encodingType", GEOJSON), "location": obj.geometry,
                "properties": _properties(obj)}


class FeaturesOfInterest(_EntityBacked):
    """FeaturesOfInterest: kernel entities of type sta.feature whose geometry is the feature."""

    name, singular, entity_type = "FeaturesOfInterest", "FeatureOfInterest", FEATURE
    props = _entity_props({"encodingType": Prop("str", _attr("encodingType")),
                           "feature": _json_prop(lambda r: r.geometry)})
    navs = {"Observations": Nav("Observations", True, lambda o, i: i.ds.feature_id == o.id)}  # noqa: RUF012

    def render(self, ctx: Ctx, obj: Any) -> dict[str, Any]:
        attributes = obj.attributes or {}
        return {"name": obj.name, "description": attributes.get("description", ""),
                "encodingType": attributes.get("encodingType", GEOJSON), "feature": obj.geometry,
                "properties": _properties(obj)}


def _things_in_scope(ctx: Ctx) -> Select[Any]:
    return select(Entity.id).where(Entity.type == THING, Entity.unit_code.in_(units_in_scope(ctx.actor)))


class HistoricalLocations(EntitySet):
    """HistoricalLocations: when a Thing was put at its Locations (a mapping table)."""

    name, singular, permission = "HistoricalLocations", "HistoricalLocation", "entities:read"
    props = {"id": Prop("int", lambda r: r.id), "time": Prop("time", lambda r: r.time)}  # noqa: RUF012
    navs = {  # noqa: RUF012
        "Thing": Nav("Things", False, lambda o, i: i.id == o.thing_id, fk=lambda o: o.thing_id),
        "Locations": Nav("Locations", True, lambda o, i: i.id.in_(
            select(StaHistoricalLocationLocation.location_id).where(StaHistoricalLocationLocation.hl_id == o.id))),
    }

    def root(self) -> Any:
        return aliased(StaHistoricalLocation)

    def select(self, ctx: Ctx, root: Any, *columns: Any) -> Select[Any]:
        return select(*(columns or (root,))).select_from(root).where(root.thing_id.in_(_things_in_scope(ctx)))

    def render(self, ctx: Ctx, obj: Any) -> dict[str, Any]:
        return {"time": iso(obj.time)}


class Datastreams(EntitySet):
    """Datastreams: a Thing and an indicator (a mapping table); their readings are the kernel's."""

    name, singular, permission = "Datastreams", "Datastream", "entities:read"
    props = {  # noqa: RUF012
        "id": Prop("int", lambda r: r.id),
        "name": Prop("str", lambda r: r.name),
        "description": Prop("str", lambda r: r.description),
        "observationType": Prop("str", lambda r: r.observation_type),
        "unitOfMeasurement": _json_prop(lambda r: r.unit_of_measurement),
        "properties": _json_prop(lambda r: r.properties),
        "phenomenonTime": Prop("unsupported", lambda r: null()),
        "resultTime": Prop("null", lambda r: null()),
        "observedArea": Prop("unsupported", lambda r: null()),
    }
    navs = {  # noqa: RUF012
        "Thing": Nav("Things", False, lambda o, i: i.id == o.thing_id, fk=lambda o: o.thing_id),
        "Sensor": Nav("Sensors", False, lambda o, i: i.id == o.sensor_id, fk=lambda o: o.sensor_id),
        "ObservedProperty": Nav("ObservedProperties", False, lambda o, i: i.ind.id == o.indicator_id,
                                fk=lambda o: o.indicator_id),
        "Observations": Nav("Observations", True, lambda o, i: i.ds.id == o.id),
    }

    def root(self) -> Any:
        return aliased(StaDatastream)

    def select(self, ctx: Ctx, root: Any, *columns: Any) -> Select[Any]:
        return select(*(columns or (root,))).select_from(root).where(root.thing_id.in_(_things_in_scope(ctx)))

    def render(self, ctx: Ctx, obj: Any) -> dict[str, Any]:
        return {"name": obj.name, "description": obj.description, "unitOfMeasurement": obj.unit_of_measurement,
                "observationType": obj.observation_type, "phenomenonTime": phenomenon_time(ctx, obj),
                "resultTime": None, "properties": obj.properties or {}}


def phenomenon_time(ctx: Ctx, ds: StaDatastream) -> str | None:
    """first/last time of a Datastream's readings, each found through the primary key."""
    sid = ctx.subject_id(ds.thing_id)
    if sid is None:
        return None
    where = (Observation.indicator_id == ds.indicator_id, Observation.subject_id == sid)
    first = ctx.session.scalar(select(func.min(Observation.ts)).where(*where))
    if first is None:
        return None
    last = ctx.session.scalar(select(func.max(Observation.ts)).where(*where))
    return f"{iso(first)}/{iso(last)}"


class Sensors(EntitySet):
    """Sensors: instrument metadata (a mapping table, visible to every reader)."""

    name, singular, permission = "Sensors", "Sensor", "entities:read"
    props = {  # noqa: RUF012
        "id": Prop("int", lambda r: r.id),
        "name": Prop("str", lambda r: r.name),
        "description": Prop("str", lambda r: r.description),
        "encodingType": Prop("str", lambda r: r.encoding_type),
        "metadata": Prop("str", lambda r: r.metadata_),
        "properties": _json_prop(lambda r: r.properties),
    }
    navs = {"Datastreams": Nav("Datastreams", True, lambda o, i: i.sensor_id == o.id)}  # noqa: RUF012

    def root(self) -> Any:
        return aliased(StaSensor)

    def select(self, ctx: Ctx, root: Any, *columns: Any) -> Select[Any]:
        return select(*(columns or (root,))).select_from(root)

    def render(self, ctx: Ctx, obj: Any) -> dict[str, Any]:
        return {"name": obj.name, "description": obj.description, "encodingType": obj.encoding_type,
                "metadata": obj.metadata_, "properties": obj.properties or {}}


def indicator_name(indicator: Indicator) -> str:
    """The English name of an indicator, or its Vietnamese one when it has none."""
    return indicator.name_en or indicator.name_vi


class ObservedProperties(EntitySet):
    """ObservedProperties: the kernel's indicator catalog; definition is a URI given over STA, else the code."""

    name, singular, permission = "ObservedProperties", "ObservedProperty", "indicators:read"
    props = {  # noqa: RUF012
        "id": Prop("int", lambda r: r.ind.id),
        "name": Prop("str", lambda r: func.coalesce(func.nullif(r.ind.name_en, ""), r.ind.name_vi)),
        "definition": Prop("str", lambda r: func.coalesce(r.op.definition, r.ind.code)),
        "description": Prop("str", lambda r: r.ind.description),
        "properties": _json_prop(lambda r: r.op.properties),
    }
    specials = {("properties", CODE_KEY): Prop("str", lambda r: r.ind.code)}  # noqa: RUF012
    navs = {"Datastreams": Nav("Datastreams", True, lambda o, i: i.indicator_id == o.ind.id)}  # noqa: RUF012

    def root(self) -> Any:
        return SimpleNamespace(ind=aliased(Indicator), op=aliased(StaObservedProperty))

    def select(self, ctx: Ctx, root: Any, *columns: Any) -> Select[Any]:
        return (select(*(columns or (root.ind, root.op))).select_from(root.ind)
                .outerjoin(root.op, root.op.indicator_id == root.ind.id))

    def columns(self, root: Any) -> list[Any]:
        return [root.ind, root.op]

    def wrap(self, row: Any) -> Any:
        return SimpleNamespace(ind=row[0], op=row[1])

    def key(self, obj: Any) -> int | str:
        return obj.ind.id  # type: ignore[no-any-return]

    def key_condition(self, root: Any, key: int | str) -> ColumnElement[bool]:
        return root.ind.id == key if isinstance(key, int) else false()  # type: ignore[no-any-return]

    def order(self, root: Any) -> list[Any]:
        return [root.ind.id]

    def render(self, ctx: Ctx, obj: Any) -> dict[str, Any]:
        ind, op = obj.ind, obj.op
        return {"name": indicator_name(ind), "definition": op.definition if op else ind.code,
                "description": ind.description, "properties": {**(op.properties if op else {}), CODE_KEY: ind.code}}


class Observations(EntitySet):
    """Observations: rows of the kernel's observations table, reached through their Datastream.

    The statement joins observations -> subjects -> datastreams on (indicator, thing), so a Datastream's
    readings are read through the observations primary key (indicator_id, subject_id, ts).
    """

    name, singular, permission, key_kind = "Observations", "Observation", "observations:read", "obsid"
    props = {  # noqa: RUF012
        "id": Prop("obsid", lambda r: r),
        "phenomenonTime": Prop("time", lambda r: r.obs.ts),
        "result": Prop("num", lambda r: r.obs.value),
        "resultQuality": Prop("num", lambda r: r.obs.quality),
        "resultTime": Prop("null", lambda r: null()),
        "validTime": Prop("null", lambda r: null()),
        "parameters": Prop("null", lambda r: null()),
    }
    navs = {  # noqa: RUF012
        "Datastream": Nav("Datastreams", False, lambda o, i: i.id == o.ds.id, joined=lambda r: r.ds,
                          fk=lambda o: o.ds.id),
        "FeatureOfInterest": Nav("FeaturesOfInterest", False, lambda o, i: i.id == o.ds.feature_id,
                                 fk=lambda o: o.ds.feature_id),
    }

    def root(self) -> Any:
        return SimpleNamespace(obs=aliased(Observation), subj=aliased(Subject), ds=aliased(StaDatastream))

    def select(self, ctx: Ctx, root: Any, *columns: Any) -> Select[Any]:
        obs, subj, ds = root.obs, root.subj, root.ds
        return (select(*(columns or self.columns(root))).select_from(obs)
                .join(subj, subj.id == obs.subject_id)
                .join(ds, and_(ds.indicator_id == obs.indicator_id, ds.thing_id == subj.entity_id))
                .where(subj.unit_code.in_(units_in_scope(ctx.actor))))

    def columns(self, root: Any) -> list[Any]:
        # Plain columns, not ORM objects: a page may hold 10,000 readings.
        obs, ds = root.obs, root.ds
        return [obs.indicator_id, obs.subject_id, obs.ts, obs.value, obs.quality, ds.id, ds.feature_id]

    def wrap(self, row: Any) -> Any:
        return SimpleNamespace(
            obs=SimpleNamespace(indicator_id=row[0], subject_id=row[1], ts=row[2], value=row[3], quality=row[4]),
            ds=SimpleNamespace(id=row[5], feature_id=row[6], indicator_id=row[0]))

    def key(self, obj: Any) -> int | str:
        return observation_key(obj.ds.id, obj.obs.ts)

    def key_condition(self, root: Any, key: int | str) -> ColumnElement[bool]:
        parsed = parse_observation_key(key)
        if parsed is None:
            return false()
        return and_(root.ds.id == parsed[0], root.obs.ts == parsed[1])

    def order(self, root: Any) -> list[Any]:
        # The primary key's order: with a Datastream's indicator and subject fixed, an index walk in time.
        return [root.obs.indicator_id, root.obs.subject_id, root.obs.ts]

    def render(self, ctx: Ctx, obj: Any) -> dict[str, Any]:
        o = obj.obs
        return {"phenomenonTime": iso(o.ts), "resultTime": None, "result": o.value, "resultQuality": o.quality}


SETS: dict[str, EntitySet] = {s.name: s for s in (
    Things(), Locations(), HistoricalLocations(), Datastreams(), Sensors(), ObservedProperties(), Observations(),
    FeaturesOfInterest(),
)}
SINGULAR: dict[str, str] = {s.singular: s.name for s in SETS.values()}
