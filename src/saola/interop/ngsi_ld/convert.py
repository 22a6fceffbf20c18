"""NGSI-LD entities <-> kernel entities: parsing payloads into the stored form, and rendering stored entities.

Stored form (one kernel entity row per NGSI-LD entity):

- id -> external_id (the kernel's UUID stays internal); type -> the kernel type (see typemap);
- location (GeoProperty) -> geometry, checked by the kernel; administrativeUnit (Property) -> unit_code;
- every other attribute -> attributes[key] = its value (Property value, Relationship object, GeoProperty
  GeoJSON ...), where key is the attribute's name under the core context (its IRI compacted: 'temperature',
  or a full IRI for names outside the default vocabulary), so kernel readers see plain values;
- what NGSI-LD needs besides the value (attribute type when not Property, observedAt, unitCode, datasetId,
  sub-attributes) -> attributes["@ngsi"][key]; createdAt and modifiedAt too once attributes change one by one
  (an entity written whole keeps none: its attributes date from its last write).

Entities written through the kernel's own API have no "@ngsi" member; their attributes read as Properties and
their name as a 'name' Property.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from saola.core.entities.schemas import json_problem
from saola.core.entities.service import validate_geometry
from saola.core.errors import FieldError
from saola.interop.ngsi_ld.context import DEFAULT_VOCAB, NGSI_LD, LdContext, core_context

META = "@ngsi"
LOCATION = NGSI_LD + "location"
UNIT = DEFAULT_VOCAB + "administrativeUnit"
NAME = DEFAULT_VOCAB + "name"
SAOLA_ID_PREFIX = "urn:saola:entity:"
MAX_ID = 120  # the kernel's external_id column
MAX_DEPTH = 6

MAIN_MEMBER = {
    "Property": "value", "GeoProperty": "value", "Relationship": "object", "LanguageProperty": "languageMap",
    "JsonProperty": "json", "VocabProperty": "vocab", "ListProperty": "valueList", "ListRelationship": "objectList",
}
_CONCISE_ORDER = (("object", "Relationship"), ("languageMap", "LanguageProperty"), ("json", "JsonProperty"),
                  ("vocab", "VocabProperty"), ("valueList", "ListProperty"), ("objectList", "ListRelationship"),
                  ("value", "Property"))
MEMBERS = frozenset({*MAIN_MEMBER.values(), "type", "observedAt", "unitCode", "datasetId", "createdAt",
                     "modifiedAt", "deletedAt", "instanceId", "previousValue", "previousObject", "lang"})
SYSTEM = frozenset({"createdAt", "modifiedAt", "deletedAt", "instanceId", "previousValue", "previousObject"})
ENTITY_SKIP = frozenset({"@context", "createdAt", "modifiedAt", "deletedAt"})
# Kernel attribute keys NGSI-LD cannot show as attributes of their own.
_HIDDEN = frozenset({"id", "type", "location", "administrativeUnit", "createdAt", "modifiedAt", "@context"})
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\x00-\x20\x7f<>\"{}|\\^`]+$")
GEOMETRY_TYPES = frozenset({"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"})
_UNIT = re.compile(r"^[A-Za-z0-9]{1,16}$")

Loc = list[str | int]


def is_uri(value: Any) -> bool:
    """True for an absolute URI (what NGSI-LD ids and relationship objects must be)."""
    return isinstance(value, str) and len(value) <= 2048 and bool(_URI.match(value))


def iso(ts: datetime) -> str:
    """A time as NGSI-LD writes it: UTC with a Z, milliseconds or microseconds only when present."""
    ts = ts.astimezone(UTC)
    text = ts.strftime("%Y-%m-%dT%H:%M:%S")
    if ts.microsecond:
        text += f".{ts.microsecond // 1000:03d}" if ts.microsecond % 1000 == 0 else f".{ts.microsecond:06d}"
    return text + "Z"


def parse_time(value: Any) -> datetime | None:
    """An aware datetime from an ISO 8601 text with a time zone, or None."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def ngsi_id(external_id: str | None, entity_id: uuid.UUID) -> str:
    """The NGSI-LD id of a kernel entity: its external_id when that is a URI, else urn:saola:entity:<uuid>."""
    return external_id if external_id and is_uri(external_id) else f"{SAOLA_ID_PREFIX}{entity_id}"


def is_geometry(value: Any) -> bool:
    """True for something shaped like a GeoJSON geometry."""
    return isinstance(value, dict) and value.get("type") in GEOMETRY_TYPES and "coordinates" in value


@dataclass(slots=True)
class Attr:
    """One attribute, parsed: stored key, IRI, kind, main value and the members NGSI-LD needs besides."""

    key: str
    iri: str
    kind: str
    value: Any
    meta: dict[str, Any]
    observed_at: datetime | None = None


@dataclass(slots=True)
class Fragment:
    """Attributes of an entity as a request gives them (location and unit apart)."""

    attrs: dict[str, Attr] = field(default_factory=dict)
    location: Attr | None = None
    unit: str | None = None

    @property
    def iris(self) -> set[str]:
        """The IRIs of every attribute given (location and administrativeUnit included)."""
        found = {a.iri for a in self.attrs.values()}
        if self.location is not None:
            found.add(LOCATION)
        if self.unit is not None:
            found.add(UNIT)
        return found


@dataclass(slots=True)
class ParsedEntity(Fragment):
    """A whole entity from a request: id, type IRI and its attributes."""

    id: str = ""
    type_iri: str = ""


def value_problem(value: Any) -> str | None:
    """Why a value cannot be stored (None when it can): json_problem, with a fast path for plain scalars."""
    kind = type(value)
    if kind is str:
        # ASCII text can hold no lone surrogate; only NUL is left to refuse.
        return None if "\x00" not in value and value.isascii() else json_problem(value)
    if kind is int or kind is bool:
        return None
    if kind is float:
        return None if math.isfinite(value) else "numbers must be finite"
    return json_problem(value)


def _point_ok(value: Any) -> bool:
    """True for a well-formed GeoJSON Point (the common location), checked without the general walker."""
    if type(value) is not dict or value.get("type") != "Point" or len(value) != 2:
        return False
    coords = value.get("coordinates")
    if type(coords) is not list or not 2 <= len(coords) <= 3:
        return False
    for n in coords:
        if type(n) is not float and type(n) is not int:
            return False
        if not math.isfinite(n):
            return False
    return -180.0 <= coords[0] <= 180.0 and -90.0 <= coords[1] <= 90.0


_TIMES: dict[str, tuple[datetime, str]] = {}
_MISSING = object()
_NAME_PROBLEM = "names must be text without NUL characters"


def _observed(item: Any) -> tuple[datetime, str] | None:
    """(time, normalized text) of an observedAt, cached: a batch repeats a few instants many times."""
    if type(item) is not str:
        return None
    found = _TIMES.get(item)
    if found is None:
        when = parse_time(item)
        if when is None:
            return None
        if len(_TIMES) > 10_000:
            _TIMES.clear()
        found = _TIMES[item] = (when, iso(when))
    return found


def _storable_text(value: str) -> bool:
    """What value_problem accepts of text: no NUL character, and no lone surrogate (ASCII holds none)."""
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _plain_attribute(key: str, iri: str, raw: dict[str, Any]) -> Attr | None:
    """The common attributes read without the general path: a Property with a number or text (unitCode and
    observedAt besides), a Relationship to one URI, a GeoProperty holding a Point. None sends anything else (and
    anything wrong) to the general path, which reads these the same way."""
    kind = raw.get("type")
    if kind == "Property":
        return _plain_property(key, iri, raw)
    if len(raw) != 2:
        return None
    if kind == "Relationship":
        target = raw.get("object")
        if type(target) is str and is_uri(target) and _storable_text(target):
            return Attr(key, iri, "Relationship", target, {"type": "Relationship"})
    elif kind == "GeoProperty":
        value = raw.get("value")
        if _point_ok(value):
            return Attr(key, iri, "GeoProperty", value, {"type": "GeoProperty"})
    return None


def _plain_property(key: str, iri: str, raw: dict[str, Any]) -> Attr | None:
    """A Property with a number or text, unitCode and observedAt, read without the general path; None sends
    anything else (and anything wrong) there."""
    value = raw.get("value")
    kind = type(value)
    if not ((kind is float and math.isfinite(value)) or kind is int or (kind is str and _storable_text(value))):
        return None
    meta: dict[str, Any] = {}
    observed: datetime | None = None
    for member, item in raw.items():
        if member == "value" or member == "type":
            continue
        if member == "observedAt":
            hit = _observed(item)
            if hit is None:
                return None
            observed, meta["observedAt"] = hit
        elif (member == "unitCode" and type(item) is str and 0 < len(item) <= 40 and item.isascii()
              and "\x00" not in item):
            meta["unitCode"] = item
        else:
            return None
    return Attr(key, iri, "Property", value, meta, observed)


class _Parser:
    """Parses attribute payloads against a context, collecting every error with its path."""

    def __init__(self, ctx: LdContext, errors: list[FieldError], now: str) -> None:
        self.ctx = ctx
        self.core = core_context()
        self.errors = errors
        self.now = now
        # name -> (IRI, stored key, problem): the same few names come back in every entity of a batch.
        self.names: dict[str, tuple[str, str, str | None]] = ctx.__dict__.setdefault("_attribute_names", {})

    def fail(self, loc: Loc, msg: str) -> None:
        self.errors.append(FieldError(list(loc), msg))

    def name(self, name: str) -> tuple[str, str, str | None]:
        """IRI, stored key and what is wrong with the name (None when nothing)."""
        found = self.names.get(name)
        if found is None:
            iri = self.ctx.expand(name)
            key = self.core.compact(iri) if iri and not iri.startswith("@") else ""
            problem: str | None = None
            if json_problem(name) or json_problem(iri):
                problem = _NAME_PROBLEM
            elif not iri or iri.startswith("@"):
                problem = f"{name!r} is not an attribute name"
            elif key.startswith("@") or (key in _HIDDEN and iri not in (LOCATION, UNIT)):
                problem = f"{name!r} is reserved"
            found = (iri, key, problem)
            if len(self.names) < 5_000:
                self.names[name] = found
        return found

    def attribute(self, name: str, raw: Any, loc: Loc) -> Attr | None:
        iri, key, problem = self.name(name)
        if problem:
            self.fail(loc, problem)
            return None
        return self._attribute(key, iri, raw, loc, 0)

    def _attribute(self, key: str, iri: str, raw: Any, loc: Loc, depth: int) -> Attr | None:
        if type(raw) is dict:
            found = _plain_attribute(key, iri, raw)
            if found is not None:
                return found
        if depth > MAX_DEPTH:
            self.fail(loc, f"attributes nest deeper than {MAX_DEPTH} levels")
            return None
        if type(raw) is not dict:
            if isinstance(raw, list) and raw and all(isinstance(r, dict) and "type" in r for r in raw):
                self.fail(loc, "multi-attribute instances (arrays of attributes with datasetId) are not supported")
                return None
            if raw is None:
                self.fail(loc, "an attribute cannot be null")
                return None
            raw = {"type": "GeoProperty" if is_geometry(raw) else "Property", "value": raw}
        kind = raw.get("type")
        if kind is None:
            # Concise form: the kind follows from the member given; any other object is a Property value.
            kind = next((k for member, k in _CONCISE_ORDER if member in raw), None)
            if kind is None:
                raw = {"type": "GeoProperty" if is_geometry(raw) else "Property", "value": raw}
                kind = raw["type"]
            elif kind == "Property" and is_geometry(raw.get("value")):
                kind = "GeoProperty"
        main = MAIN_MEMBER.get(kind) if type(kind) is str else None
        if main is None:
            self.fail([*loc, "type"], f"attribute type must be one of {', '.join(MAIN_MEMBER)}")
            return None
        value = raw.get(main, _MISSING)
        if value is _MISSING:
            self.fail(loc, f"a {kind} needs a {main!r} member")
            return None
        ok = self._check_value(kind, value, loc, main)
        meta: dict[str, Any] = {} if kind == "Property" else {"type": kind}
        observed: datetime | None = None
        for member, item in raw.items():
            if member == main or member == "type":
                continue
            if member == "observedAt":
                hit = _observed(item)
                if hit is None:
                    self.fail([*loc, member], "observedAt must be a date-time with a time zone, e.g. "
                                              "2026-11-25T08:00:00Z")
                    ok = False
                else:
                    observed, meta[member] = hit
            elif member == "unitCode":
                if type(item) is not str or not 0 < len(item) <= 40 or value_problem(item):
                    self.fail([*loc, member], "unitCode must be a short text (a UN/CEFACT code such as CEL)")
                    ok = False
                else:
                    meta[member] = item
            elif member in SYSTEM:
                continue
            elif member == "datasetId":
                if not is_uri(item):
                    self.fail([*loc, member], "datasetId must be a URI")
                    ok = False
                else:
                    meta[member] = item
            elif member in MEMBERS:
                problem = value_problem(item)
                if problem:
                    self.fail([*loc, member], problem)
                    ok = False
                else:
                    meta[member] = item
            else:
                sub_iri, sub_key, problem = self.name(member)
                if problem and problem != _NAME_PROBLEM and sub_key in _HIDDEN:
                    problem = None  # sub-attributes may reuse names that are reserved at the entity level
                if problem:
                    self.fail([*loc, member], problem)
                    ok = False
                    continue
                sub = self._attribute(sub_key, sub_iri, item, [*loc, member], depth + 1)
                if sub is None:
                    ok = False
                else:
                    meta.setdefault("sub", {})[sub_key] = stored_attribute(sub)
        if not ok:
            return None
        return Attr(key, iri, kind, value, meta, observed)

    def _check_value(self, kind: str, value: Any, loc: Loc, main: str) -> bool:
        if value is None:
            self.fail([*loc, main], "the value cannot be null")
            return False
        if kind == "GeoProperty" and _point_ok(value):
            return True
        problem = value_problem(value)
        if problem:
            self.fail([*loc, main], problem)
            return False
        if kind == "Property":
            return True
        loc = [*loc, main]
        if kind == "Relationship":
            targets = value if isinstance(value, list) else [value]
            if not targets or not all(is_uri(t) for t in targets):
                self.fail(loc, "a Relationship's object must be a URI (or a list of URIs)")
                return False
        elif kind == "GeoProperty":
            if not isinstance(value, dict):
                self.fail(loc, "a GeoProperty's value must be a GeoJSON geometry")
                return False
            problems, _ = validate_geometry(value, loc=loc)
            if problems:
                self.errors.extend(problems)
                return False
        elif kind == "LanguageProperty":
            if not isinstance(value, dict) or not all(isinstance(v, str | list) for v in value.values()):
                self.fail(loc, "a languageMap maps language tags to text")
                return False
        elif kind in ("ListProperty", "ListRelationship") and not isinstance(value, list):
            self.fail(loc, f"a {kind}'s list must be an array")
            return False
        return True

    def fragment(self, payload: Mapping[str, Any], loc: Loc, *, out: Fragment) -> None:
        attrs = out.attrs
        for name, raw in payload.items():
            if name in ENTITY_SKIP:
                continue
            iri, key, problem = self.name(name)
            if iri in ("@id", "@type", "@context"):
                continue
            if problem:
                self.fail([*loc, name], problem)
                continue
            attr = self._attribute(key, iri, raw, [*loc, name], 0)
            if attr is None:
                continue
            if iri == LOCATION:
                if attr.kind != "GeoProperty":
                    self.fail([*loc, name], "location must be a GeoProperty with a GeoJSON geometry")
                else:
                    out.location = attr
            elif iri == UNIT:
                code = attr.value
                if isinstance(code, int) and not isinstance(code, bool):
                    code = str(code)
                if attr.kind != "Property" or not isinstance(code, str) or not _UNIT.match(code):
                    self.fail([*loc, name], "administrativeUnit is a Property whose value is a unit code, e.g. "
                                            "'68' (Lâm Đồng) or '24781' (a ward)")
                else:
                    out.unit = code
            elif key in attrs:
                self.fail([*loc, name], f"attribute {key!r} is given twice")
            else:
                attrs[key] = attr


def parser_for(ctx: LdContext, now: str) -> _Parser:
    """A parser to reuse for many entities read with the same context (within one request)."""
    return _Parser(ctx, [], now)


def parse_entity(payload: Any, ctx: LdContext, *, loc: Loc, errors: list[FieldError], now: str,
                 parser: _Parser | None = None) -> ParsedEntity | None:
    """A whole entity (id, type, attributes) from a request body; errors are appended, None when it is bad."""
    if not isinstance(payload, dict):
        errors.append(FieldError(list(loc), "an entity must be a JSON object"))
        return None
    before = len(errors)
    entity_id = payload.get("id", payload.get("@id"))
    if not is_uri(entity_id) or value_problem(entity_id):
        errors.append(FieldError([*loc, "id"], "the entity id must be a URI, e.g. urn:ngsi-ld:Station:001"))
    elif len(entity_id) > MAX_ID:
        errors.append(FieldError([*loc, "id"], f"entity ids are at most {MAX_ID} characters here"))
    elif entity_id.startswith(SAOLA_ID_PREFIX):
        errors.append(FieldError([*loc, "id"], f"ids starting {SAOLA_ID_PREFIX} are Saola's own"))
    raw_type = payload.get("type", payload.get("@type"))
    if isinstance(raw_type, list) and len(raw_type) == 1:
        raw_type = raw_type[0]
    type_iri = ctx.expand(raw_type) if isinstance(raw_type, str) and raw_type else None
    if type_iri is None or type_iri.startswith("@") or len(type_iri) > 512:
        errors.append(FieldError([*loc, "type"], "the entity type must be a name or an IRI (one type only)"))
    if parser is None or parser.ctx is not ctx:
        parser = _Parser(ctx, errors, now)
    parser.errors = errors
    entity = ParsedEntity(id=entity_id if isinstance(entity_id, str) else "", type_iri=type_iri or "")
    parser.fragment(payload, loc, out=entity)
    return entity if len(errors) == before else None


def parse_fragment(payload: Any, ctx: LdContext, *, loc: Loc, errors: list[FieldError], now: str) -> Fragment:
    """Attributes to add or change (id and type, when present, are ignored)."""
    out = Fragment()
    if not isinstance(payload, dict):
        errors.append(FieldError(list(loc), "attributes come as a JSON object"))
        return out
    _Parser(ctx, errors, now).fragment(payload, loc, out=out)
    return out


def parse_attribute(name: str, payload: Any, ctx: LdContext, *, loc: Loc, errors: list[FieldError], now: str
                    ) -> Attr | None:
    """One attribute given by name (PATCH .../attrs/{attrId})."""
    return _Parser(ctx, errors, now).attribute(name, payload, loc)


def stored_attribute(attr: Attr) -> dict[str, Any]:
    """An attribute in normalized form with core-context keys (how sub-attributes are kept)."""
    body = {"type": attr.kind, MAIN_MEMBER[attr.kind]: attr.value}
    for member, item in attr.meta.items():
        if member == "sub":
            body.update(item)
        elif member != "type":
            body[member] = item
    return body


# --- rendering --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class EntityView:
    """What rendering and matching need of a stored entity (from a row, or from a write about to be stored)."""

    uuid: uuid.UUID
    ngsi_id: str
    kernel_type: str
    type_iri: str
    name: str
    unit_code: str
    geometry: dict[str, Any] | None
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @property
    def meta(self) -> dict[str, Any]:
        """The NGSI-LD members kept beside the values."""
        found = self.attributes.get(META)
        return found if isinstance(found, dict) else {}

    def attribute_keys(self) -> list[str]:
        """Stored keys of the attributes NGSI-LD shows (location and administrativeUnit apart)."""
        keys = [k for k in self.attributes if not k.startswith("@") and k not in _HIDDEN]
        if META not in self.attributes and "name" not in self.attributes:
            keys.append("name")
        return keys

    def value_of(self, key: str) -> Any:
        """The stored value of an attribute (the kernel name stands in for a missing 'name')."""
        if key == "name" and "name" not in self.attributes:
            return self.name
        return self.attributes.get(key)

    def iris(self) -> set[str]:
        """IRIs of every attribute the entity has."""
        core = core_context()
        found = {core.expand(k) for k in self.attribute_keys()}
        found.add(UNIT)
        if self.geometry:
            found.add(LOCATION)
        return found


def _rekey(body: Any, ctx: LdContext, core: LdContext) -> Any:
    """Sub-attribute names of a stored normalized attribute, compacted for the answer's context."""
    if not isinstance(body, dict):
        return body
    if ctx is core:
        return body
    return {k if k in MEMBERS else ctx.compact(core.expand(k)): (v if k in MEMBERS else _rekey(v, ctx, core))
            for k, v in body.items()}


def normalized(kind: str, value: Any, meta: Mapping[str, Any], ctx: LdContext, *, sys_attrs: bool,
               created: datetime, modified: datetime) -> dict[str, Any]:
    """An attribute in normalized form for an answer."""
    core = core_context()
    body: dict[str, Any] = {"type": kind, MAIN_MEMBER.get(kind, "value"): value}
    for member, item in meta.items():
        if member == "type":
            continue
        if member == "sub":
            for sub_key, sub in item.items():
                body[ctx.compact(core.expand(sub_key))] = _rekey(sub, ctx, core)
        elif member in ("createdAt", "modifiedAt"):
            continue
        else:
            body[member] = item
    if sys_attrs:
        body["createdAt"] = meta.get("createdAt") or iso(modified)
        body["modifiedAt"] = meta.get("modifiedAt") or iso(modified)
    return body


def simplified(kind: str, value: Any) -> Any:
    """An attribute in keyValues (simplified) form."""
    if kind in ("Property", "GeoProperty", "Relationship"):
        return value
    return {MAIN_MEMBER.get(kind, "value"): value}


def render(view: EntityView, ctx: LdContext, *, key_values: bool = False, sys_attrs: bool = False,
           only: set[str] | None = None) -> dict[str, Any]:
    """An entity as NGSI-LD JSON for the answer's context: normalized, or keyValues; sysAttrs on request."""
    core = core_context()
    out: dict[str, Any] = {"id": view.ngsi_id, "type": ctx.compact(view.type_iri)}
    if sys_attrs and not key_values:
        out["createdAt"], out["modifiedAt"] = iso(view.created_at), iso(view.updated_at)
    meta = view.meta
    for key in view.attribute_keys():
        iri = core.expand(key)
        if only is not None and iri not in only:
            continue
        m = meta.get(key) or {}
        kind = m.get("type", "Property")
        value = view.value_of(key)
        name = ctx.compact(iri)
        out[name] = simplified(kind, value) if key_values else normalized(
            kind, value, m, ctx, sys_attrs=sys_attrs, created=view.created_at, modified=view.updated_at)
    if view.geometry and (only is None or LOCATION in only):
        m = meta.get("location") or {}
        out[ctx.compact(LOCATION)] = view.geometry if key_values else normalized(
            "GeoProperty", view.geometry, m, ctx, sys_attrs=sys_attrs, created=view.created_at,
            modified=view.updated_at)
    if only is None or UNIT in only:
        m = meta.get("administrativeUnit") or {}
        out[ctx.compact(UNIT)] = view.unit_code if key_values else normalized(
            "Property", view.unit_code, m, ctx, sys_attrs=sys_attrs, created=view.created_at,
            modified=view.updated_at)
    return out


def attribute_instance(view: EntityView, key: str) -> tuple[str, Any, dict[str, Any]] | None:
    """(kind, value, meta) of one stored attribute, or None when the entity lacks it."""
    if key == "location":
        return ("GeoProperty", view.geometry, view.meta.get("location") or {}) if view.geometry else None
    if key == "administrativeUnit":
        return "Property", view.unit_code, view.meta.get("administrativeUnit") or {}
    if key not in view.attribute_keys():
        return None
    m = view.meta.get(key) or {}
    return m.get("type", "Property"), view.value_of(key), m


def store_attrs(attrs: Mapping[str, Attr], *, now: str | None, previous: Mapping[str, Any] | None = None
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Values and NGSI-LD members of parsed attributes.

    With `now` (a change to some attributes of an entity) each gets createdAt (kept from `previous`) and
    modifiedAt; without (a whole entity written at once) they carry none and read as the entity's last write,
    which keeps the stored rows small. Attributes with no members at all get no entry.
    """
    values: dict[str, Any] = {}
    metas: dict[str, Any] = {}
    for key, attr in attrs.items():
        values[key] = attr.value
        if now is None:
            if attr.meta:
                metas[key] = attr.meta
            continue
        created = (previous or {}).get(key, {}).get("createdAt") if previous else None
        metas[key] = {**attr.meta, "createdAt": created or now, "modifiedAt": now}
    return values, metas


def stamped_meta(attributes: Mapping[str, Any], meta: Mapping[str, Any], *, has_location: bool, when: str
                 ) -> dict[str, Any]:
    """The members of an entity's attributes with createdAt and modifiedAt written out where they were implicit
    (before some of its attributes change and the entity's last write moves on)."""
    out = dict(meta)
    keys = [k for k in attributes if not k.startswith("@") and k not in _HIDDEN]
    if has_location:
        keys.append("location")
    for key in keys:
        current = out.get(key) or {}
        if "createdAt" not in current:
            out[key] = {**current, "createdAt": when, "modifiedAt": when}
    return out
