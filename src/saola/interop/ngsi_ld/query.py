"""The NGSI-LD query language (q), geo-queries and id patterns, evaluated on entity views in Python.

q supports: attr, attr.subAttr, attr[key][key2], attr.observedAt (and unitCode, datasetId, createdAt,
modifiedAt); operators == != > < >= <= ~= (regular expression) !~=; values as "text", numbers, true/false,
date-times, unquoted text, lists (a,b,c) and ranges (a..b) with == and !=; ';' (and) binds tighter than '|'
(or); parentheses group. A name with dots is first read as one attribute name ('env.pm25'), then as an
attribute and its sub-attribute.

Geo-queries: georel near;maxDistance==m or near;minDistance==m (metres), within, contains, intersects, equals,
disjoint, overlaps, with geometry and coordinates (GeoJSON positions, longitude first) on 'location'. The
entity bounding-box columns prefilter in SQL; the exact test runs here with shapely (distances in metres on
the sphere for points, on a local plane around the reference point for other shapes).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import transform

from saola.interop.ngsi_ld.context import LdContext, core_context
from saola.interop.ngsi_ld.convert import UNIT, EntityView, parse_time
from saola.interop.ngsi_ld.errors import NgsiError, bad_request

MAX_Q = 2_000
MAX_PATTERN = 256
EARTH_RADIUS_M = 6_371_008.8
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*[+*{?]")
_BACKREF = re.compile(r"\\[1-9]|\(\?P=")
_NUMBER = re.compile(r"^-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_NAME = re.compile(r"^[A-Za-z0-9_@:/#.\-]+$")
_OPS = ("!~=", "==", "!=", ">=", "<=", "~=", ">", "<")
_META_MEMBERS = frozenset({"observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt"})


def safe_regex(pattern: str, what: str) -> re.Pattern[str]:
    """Compile a client's regular expression, refusing long ones and the shapes that backtrack without end."""
    if len(pattern) > MAX_PATTERN:
        raise bad_request(f"{what} is longer than {MAX_PATTERN} characters")
    if _NESTED_QUANTIFIER.search(pattern) or _BACKREF.search(pattern):
        raise bad_request(f"{what}: nested quantifiers and back-references are not allowed")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise bad_request(f"{what} is not a valid regular expression: {exc}") from exc


# --- q -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Literal:
    value: Any
    time: datetime | None
    raw: str | None = None  # the text of an unquoted number, for comparison with stored text (unit codes)


@dataclass(frozen=True)
class _Term:
    paths: tuple[tuple[str, tuple[str, ...]], ...]  # (stored key, rest of the path) readings, most specific first
    compound: tuple[str, ...]
    op: str | None
    values: tuple[_Literal, ...]
    low: _Literal | None
    high: _Literal | None
    pattern: re.Pattern[str] | None


Node = tuple[str, Any]  # ("and"|"or", [nodes]) or ("term", _Term)


class _QParser:
    def __init__(self, text: str, ctx: LdContext) -> None:
        self.text, self.pos, self.ctx, self.core = text, 0, ctx, core_context()

    def error(self, msg: str) -> NgsiError:
        return bad_request(f"q: {msg} at position {self.pos}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> Node:
        node = self.disjunction()
        if self.pos != len(self.text):
            raise self.error(f"unexpected {self.peek()!r}")
        return node

    def disjunction(self) -> Node:
        items = [self.conjunction()]
        while self.peek() == "|":
            self.pos += 1
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else ("or", items)

    def conjunction(self) -> Node:
        items = [self.factor()]
        while self.peek() == ";":
            self.pos += 1
            items.append(self.factor())
        return items[0] if len(items) == 1 else ("and", items)

    def factor(self) -> Node:
        if self.peek() == "(":
            self.pos += 1
            node = self.disjunction()
            if self.peek() != ")":
                raise self.error("missing ')'")
            self.pos += 1
            return node
        return ("term", self.term())

    def term(self) -> _Term:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in "=!<>~;|()":
            self.pos += 1
        path_text = self.text[start:self.pos].strip()
        if not path_text:
            raise self.error("expected an attribute name")
        name, compound = self.path(path_text)
        op = next((o for o in _OPS if self.text.startswith(o, self.pos)), None)
        if op is None:
            if self.peek() and self.peek() not in ";|)":
                raise self.error(f"unknown operator starting {self.peek()!r}")
            return _Term(self.readings(name), compound, None, (), None, None, None)
        self.pos += len(op)
        raw = self.value_text()
        values: tuple[_Literal, ...] = ()
        low = high = None
        pattern = None
        if op in ("~=", "!~="):
            literal = self.literal(raw)
            if not isinstance(literal.value, str):
                raise self.error("~= needs a pattern")
            pattern = safe_regex(literal.value, "q pattern")
        elif ".." in raw and not raw.startswith('"') and op in ("==", "!="):
            a, _, b = raw.partition("..")
            low, high = self.literal(a), self.literal(b)
        else:
            values = tuple(self.literal(v) for v in self.split_list(raw))
            if len(values) > 1 and op not in ("==", "!="):
                raise self.error("a list of values only goes with == or !=")
        return _Term(self.readings(name), compound, op, values, low, high, pattern)

    def path(self, text: str) -> tuple[str, tuple[str, ...]]:
        name, _, rest = text.partition("[")
        if not _NAME.match(name):
            raise self.error(f"{name!r} is not an attribute name")
        compound: list[str] = []
        if rest:
            for part in ("[" + rest).split("[")[1:]:
                if not part.endswith("]") or len(part) < 2:
                    raise self.error("a compound path is attr[key][key2]")
                compound.append(part[:-1])
        return name, tuple(compound)

    def readings(self, name: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
        parts = name.split(".")
        readings = []
        for cut in range(len(parts), 0, -1):
            attr = ".".join(parts[:cut])
            readings.append((self.core.compact(self.ctx.expand(attr)), tuple(parts[cut:])))
        return tuple(readings)

    def value_text(self) -> str:
        start = self.pos
        quoted = False
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == '"' and (self.pos == start or self.text[self.pos - 1] != "\\"):
                quoted = not quoted
            elif not quoted and ch in ";|)":
                break
            self.pos += 1
        if quoted:
            raise self.error("unterminated text value")
        raw = self.text[start:self.pos].strip()
        if not raw or raw[0] in "=<>!~":
            raise self.error("expected a value")
        return raw

    def split_list(self, raw: str) -> list[str]:
        items, current, quoted = [], [], False
        for ch in raw:
            if ch == '"':
                quoted = not quoted
            if ch == "," and not quoted:
                items.append("".join(current))
                current = []
            else:
                current.append(ch)
        items.append("".join(current))
        return [i.strip() for i in items]

    def literal(self, raw: str) -> _Literal:
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            text = raw[1:-1].replace('\\"', '"')
            return _Literal(text, parse_time(text))
        if raw in ("true", "false"):
            return _Literal(raw == "true", None)
        if _NUMBER.match(raw):
            number = float(raw)
            return _Literal(int(number) if number.is_integer() and "." not in raw and "e" not in raw.lower()
                            else number, None, raw)
        return _Literal(raw, parse_time(raw))


def parse_q(text: str, ctx: LdContext) -> Node:
    """Parse a q expression against a context (attribute names are expanded with it)."""
    if len(text) > MAX_Q:
        raise bad_request(f"q is longer than {MAX_Q} characters")
    return _QParser(text.strip(), ctx).parse()


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict) and "@value" in value:
        return value["@value"]
    return value


def _targets(view: EntityView, term: _Term) -> list[Any] | None:
    """The values a term looks at in an entity, or None when the entity lacks the attribute."""
    meta = view.meta
    for key, rest in term.paths:
        if key == "administrativeUnit" or key == core_context().compact(UNIT):
            found: Any = view.unit_code
            m: dict[str, Any] = meta.get("administrativeUnit") or {}
        else:
            if key.startswith("@") or key not in view.attribute_keys():
                continue
            found = view.value_of(key)
            m = meta.get(key) or {}
        for part in rest:
            if part in _META_MEMBERS and part in m:
                found, m = m[part], {}
                continue
            sub = (m.get("sub") or {}).get(core_context().compact(core_context().expand(part)))
            if not isinstance(sub, dict):
                found = None
                break
            found = sub.get("value", sub.get("object"))
            m = {k: v for k, v in sub.items() if k in _META_MEMBERS}
        if found is None:
            return None
        for k in term.compound:
            found = _unwrap(found)
            if isinstance(found, dict) and k in found:
                found = found[k]
            else:
                return None
        found = _unwrap(found)
        return found if isinstance(found, list) else [found]
    return None


def _compare(target: Any, literal: _Literal) -> int | None:
    """-1, 0 or 1 comparing a stored value with a literal, None when they cannot be compared."""
    value = literal.value
    if isinstance(target, bool) or isinstance(value, bool):
        if isinstance(target, bool) and isinstance(value, bool):
            return (target > value) - (target < value)
        return None
    if isinstance(target, int | float) and isinstance(value, int | float):
        return (target > value) - (target < value)
    if isinstance(target, str):
        if literal.time is not None:
            when = parse_time(target)
            if when is not None:
                return (when > literal.time) - (when < literal.time)
        if isinstance(value, str):
            return (target > value) - (target < value)
        if literal.raw is not None:
            return (target > literal.raw) - (target < literal.raw)
    return None


def _term_matches(view: EntityView, term: _Term) -> bool:
    targets = _targets(view, term)
    if targets is None:
        return False
    if term.op is None:
        return True
    if term.pattern is not None:
        hit = any(isinstance(t, str) and term.pattern.search(t) for t in targets)
        return hit if term.op == "~=" else not hit and any(isinstance(t, str) for t in targets)
    if term.low is not None and term.high is not None:
        low, high = term.low, term.high

        def within(t: Any) -> bool:
            a, b = _compare(t, low), _compare(t, high)
            return a is not None and b is not None and a >= 0 and b <= 0

        hit = any(within(t) for t in targets)
        return hit if term.op == "==" else not hit
    if term.op in ("==", "!="):
        hit = any(_compare(t, v) == 0 for t in targets for v in term.values)
        return hit if term.op == "==" else not hit
    wanted: Callable[[int], bool] = {">": lambda c: c > 0, "<": lambda c: c < 0, ">=": lambda c: c >= 0,
                                     "<=": lambda c: c <= 0}[term.op]
    return any((c := _compare(t, term.values[0])) is not None and wanted(c) for t in targets)


def q_matches(node: Node, view: EntityView) -> bool:
    """True when the entity satisfies the parsed q expression."""
    kind, body = node
    if kind == "and":
        return all(q_matches(n, view) for n in body)
    if kind == "or":
        return any(q_matches(n, view) for n in body)
    return _term_matches(view, body)


# --- geo ---------------------------------------------------------------------------------------------------------

GEORELS = ("near", "within", "contains", "intersects", "equals", "disjoint", "overlaps")


@dataclass(frozen=True)
class GeoQuery:
    """A checked geo-query: relation, distances for near, the reference shape and a prefilter box (or None)."""

    georel: str
    max_distance: float | None
    min_distance: float | None
    geometry: dict[str, Any]
    shape: BaseGeometry
    box: tuple[float, float, float, float] | None


def parse_geo(georel: str | None, geometry: str | None, coordinates: str | Any | None,
              geoproperty: str | None = None) -> GeoQuery | None:
    """A GeoQuery from the query parameters (or a subscription's geoQ); None when no georel is given."""
    from saola.core.entities.service import validate_geometry

    if not georel and not geometry and coordinates is None:
        return None
    if not georel or not geometry or coordinates is None:
        raise bad_request("a geo-query needs georel, geometry and coordinates together")
    if geoproperty not in (None, "", "location"):
        raise NgsiError("OperationNotSupported", "geo-queries run on 'location' only")
    rel, *modifiers = georel.split(";")
    if rel not in GEORELS:
        raise bad_request(f"georel must be one of {', '.join(GEORELS)}")
    max_d = min_d = None
    for modifier in modifiers:
        name, _, number = modifier.partition("==")
        try:
            distance = float(number)
        except ValueError:
            distance = -1.0
        if name not in ("maxDistance", "minDistance") or not math.isfinite(distance) or distance < 0:
            raise bad_request("near takes maxDistance==<metres> or minDistance==<metres>")
        max_d, min_d = (distance, min_d) if name == "maxDistance" else (max_d, distance)
    if rel == "near" and max_d is None and min_d is None:
        raise bad_request("near needs maxDistance or minDistance, e.g. near;maxDistance==2000")
    if rel != "near" and modifiers:
        raise bad_request(f"{rel} takes no distance")
    if isinstance(coordinates, str):
        try:
            coordinates = orjson.loads(coordinates)
        except orjson.JSONDecodeError:
            raise bad_request("coordinates must be a JSON array of positions, e.g. [108.44,11.94]") from None
    geo = {"type": geometry, "coordinates": coordinates}
    problems, bbox = validate_geometry(geo, loc=["query", "coordinates"])
    if problems:
        raise NgsiError("BadRequestData", f"bad geometry: {problems[0].msg}", errors=problems)
    if rel == "near" and geometry != "Point":
        raise bad_request("near needs geometry=Point")
    assert bbox is not None
    reference = shape(geo)
    box: tuple[float, float, float, float] | None = bbox
    if rel == "near":
        if max_d is None:
            box = None
        else:
            lon, lat = reference.x, reference.y
            dlat = math.degrees(max_d / EARTH_RADIUS_M)
            dlon = 180.0 if abs(lat) + dlat >= 89.9 else dlat / max(math.cos(math.radians(lat)), 1e-6)
            box = (lon - dlon, lat - dlat, lon + dlon, lat + dlat)
    elif rel == "disjoint":
        box = None
    return GeoQuery(rel, max_d, min_d, geo, reference, box)


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """The great-circle distance in metres between two positions."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def _distance_m(point: Any, other: BaseGeometry) -> float:
    if other.geom_type == "Point":
        return haversine_m(point.x, point.y, other.x, other.y)
    lon0, lat0 = point.x, point.y
    k = math.radians(1) * EARTH_RADIUS_M
    c = math.cos(math.radians(lat0))

    def local(x: Any, y: Any, z: Any = None) -> tuple[Any, Any]:
        return (x - lon0) * k * c, (y - lat0) * k

    return float(transform(local, other).distance(transform(local, point)))


def geo_matches(query: GeoQuery, geometry: dict[str, Any] | None) -> bool:
    """The exact test of an entity's location against a geo-query (entities without location never match)."""
    if not geometry:
        return False
    try:
        candidate = shape(geometry)
    except Exception:  # a stored geometry shapely cannot read matches nothing
        return False
    ref = query.shape
    if query.georel == "near":
        distance = _distance_m(ref, candidate)
        return ((query.max_distance is None or distance <= query.max_distance)
                and (query.min_distance is None or distance >= query.min_distance))
    test: Callable[[BaseGeometry], bool] = {
        "within": candidate.within, "contains": candidate.contains, "intersects": candidate.intersects,
        "equals": candidate.equals, "disjoint": candidate.disjoint, "overlaps": candidate.overlaps,
    }[query.georel]
    return bool(test(ref))


def has_any_attribute(view: EntityView, iris: set[str]) -> bool:
    """True when the entity has at least one of the attributes (attrs selects as well as projects)."""
    return bool(view.iris() & iris)

