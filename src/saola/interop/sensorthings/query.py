"""Reads of the SensorThings door: resource paths, $filter compiled to SQL, paging, $select and $expand.

Filters become SQL on the kernel's tables (never rows fetched and filtered in Python): a to-one navigation
path is a correlated scalar subquery (or the join the set already makes), a to-many path an EXISTS.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Float,
    Integer,
    Select,
    String,
    Uuid,
    and_,
    case,
    cast,
    exists,
    extract,
    false,
    func,
    literal,
    not_,
    or_,
    true,
)

from saola.core.errors import NotFound
from saola.db.types import UTCDateTime
from saola.interop.sensorthings.odata import (
    BadRequest,
    BinOp,
    Call,
    Expand,
    Lit,
    Neg,
    Node,
    Not,
    Path,
    QueryOptions,
    Segment,
    format_key,
    parse_time,
)
from saola.interop.sensorthings.sets import SETS, Ctx, EntitySet, observation_key

Condition = Callable[[Any], ColumnElement[bool]]
Wrap = Callable[[ColumnElement[bool]], ColumnElement[bool]]
DATA_ARRAY_COMPONENTS = ("id", "phenomenonTime", "result", "resultTime", "resultQuality")


@dataclass(frozen=True)
class Typed:
    """A compiled operand: SQL expression (or Python value for literals), its kind and how to wrap conditions.

    wrap turns a condition on a to-many path's value into EXISTS(...) over the path; json holds a JSON column
    and the keys inside it until a comparison says which type to extract.
    """

    expr: Any
    kind: str
    wrap: Wrap | None = None
    json: tuple[Any, tuple[str, ...]] | None = None
    literal: bool = False


_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
}
_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "mod": lambda a, b: a % b,
}
_STRING_FUNCTIONS = ("substringof", "contains", "startswith", "endswith", "length", "indexof", "substring",
                     "tolower", "toupper", "trim", "concat")
_TIME_PARTS = {"year": "year", "month": "month", "day": "day", "hour": "hour", "minute": "minute",
               "second": "second"}


def _combine_wraps(*items: Typed) -> Wrap | None:
    wraps = [t.wrap for t in items if t.wrap is not None]
    if len(wraps) > 1:
        raise BadRequest("$filter: one comparison may use only one to-many path (e.g. Datastreams/name)")
    return wraps[0] if wraps else None


class FilterCompiler:
    """Turns $filter and $orderby syntax into SQLAlchemy expressions over one set's root."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.dialect = ctx.dialect

    # --- conditions and values ----------------------------------------------------------------------------

    def condition(self, spec: EntitySet, root: Any, node: Node) -> ColumnElement[bool]:
        """A boolean SQL condition for a $filter tree."""
        t = self.value(spec, root, node)
        if t.kind != "bool":
            raise BadRequest("$filter must be a condition, e.g. result gt 10 or startswith(name, 'Tr')")
        expr = t.expr if not t.literal else (true() if t.expr else false())
        return t.wrap(expr) if t.wrap else expr

    def value(self, spec: EntitySet, root: Any, node: Node) -> Typed:
        """Compile any node to a typed operand."""
        if isinstance(node, Lit):
            return Typed(node.value, node.kind, literal=True)
        if isinstance(node, Path):
            return self.path(spec, root, node.segments)
        if isinstance(node, Not):
            return Typed(not_(self.condition(spec, root, node.operand)), "bool")
        if isinstance(node, Neg):
            t = self.value(spec, root, node.operand)
            return replace(t, expr=-self.sql(t, "num")) if not t.literal else Typed(-self._number(t), "num",
                                                                                     literal=True)
        if isinstance(node, Call):
            return self.call(spec, root, node)
        assert isinstance(node, BinOp)
        if node.op in ("and", "or"):
            left = self.condition(spec, root, node.left)
            right = self.condition(spec, root, node.right)
            return Typed(and_(left, right) if node.op == "and" else or_(left, right), "bool")
        left, right = self.value(spec, root, node.left), self.value(spec, root, node.right)
        if node.op in _OPS:
            return self.compare(spec, node.op, left, right)
        wrap = _combine_wraps(left, right)
        a, b = self.sql(left, "num"), self.sql(right, "num")
        if node.op in ("div", "mod"):
            b = func.nullif(b, 0)  # x div 0 is null on both databases (PostgreSQL would raise)
        return Typed(_ARITH[node.op](a, b), "num", wrap=wrap)

    def _number(self, t: Typed) -> float | int:
        if t.kind != "num":
            raise BadRequest(f"$filter: expected a number, got {t.kind} {t.expr!r}")
        return t.expr  # type: ignore[no-any-return]

    def compare(self, spec: EntitySet, op: str, a: Typed, b: Typed) -> Typed:
        """A comparison of two operands, coercing literals to the other side's kind."""
        wrap = _combine_wraps(a, b)
        if a.literal and not b.literal:
            a, b = b, a
            op = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}.get(op, op)
        if b.literal and b.kind == "null":
            if op not in ("eq", "ne"):
                raise BadRequest(f"$filter: only eq and ne compare with null, not {op}")
            expr = self._null_operand(a)
            return Typed(expr.is_(None) if op == "eq" else expr.is_not(None), "bool", wrap=wrap)
        if a.kind == "obsid":
            if not b.literal or op not in ("eq", "ne"):
                raise BadRequest("$filter: an Observation id compares only with eq or ne and a quoted id")
            cond = SETS["Observations"].key_condition(a.expr, b.expr)
            return Typed(cond if op == "eq" else not_(cond), "bool", wrap=wrap)
        kind = self._common_kind(a, b)
        return Typed(_OPS[op](self.sql(a, kind), self.sql(b, kind)), "bool", wrap=wrap)

    def _null_operand(self, t: Typed) -> Any:
        if t.json is not None:
            column, keys = t.json
            if not keys:
                return column
            return func.json_extract(column, _sqlite_path(keys)) if self.dialect == "sqlite" else column[keys]
        if t.kind == "obsid":
            return t.expr.obs.ts
        return t.expr if not t.literal else literal(t.expr)

    def _common_kind(self, a: Typed, b: Typed) -> str:
        kinds = {a.kind, b.kind}
        if len(kinds) == 1:
            return a.kind if a.kind != "json" else "str"
        if "json" in kinds:
            other = b if a.kind == "json" else a
            if not other.literal:
                raise BadRequest("$filter: compare a JSON member with a literal, e.g. properties/owner eq 'x'")
            return other.kind
        if "null" in kinds:
            return (kinds - {"null"}).pop()
        if kinds <= {"int", "num"}:
            return "num"
        if kinds == {"time", "str"} and (b.literal or a.literal):
            return "time"
        if kinds == {"uuid", "str"} and (b.literal or a.literal):
            return "uuid"
        if kinds == {"int", "str"} and (b.literal or a.literal):
            return "int"
        raise BadRequest(f"$filter: cannot compare {_describe(a)} with {_describe(b)}")

    def sql(self, t: Typed, kind: str) -> Any:
        """The SQL for an operand used as `kind` (literals converted, JSON members extracted)."""
        if t.literal:
            return literal(self._literal_value(t, kind), _SQL_TYPES[kind])
        if t.json is not None:
            return self._json_value(t.json, kind)
        if t.kind == "null":
            return t.expr
        if t.kind != kind and not (kind == "num" and t.kind == "int"):
            raise BadRequest(f"$filter: expected {kind}, got {_describe(t)}")
        return t.expr

    def _literal_value(self, t: Typed, kind: str) -> Any:
        value = t.expr
        if kind == t.kind or (kind == "num" and t.kind == "int"):
            return value
        if kind == "time" and t.kind == "str":
            return parse_time(value)
        if kind == "uuid" and t.kind == "str":
            try:
                return uuid.UUID(value)
            except ValueError as exc:
                raise BadRequest(f"$filter: {value!r} is not an id of this set (a UUID)") from exc
        if kind == "int" and t.kind in ("str", "num"):
            if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
                return int(value)
            raise BadRequest(f"$filter: {value!r} is not an integer id")
        if kind == "str" and t.kind == "num":
            raise BadRequest(f"$filter: expected text, got the number {value!r}; quote it: '{value}'")
        raise BadRequest(f"$filter: expected {kind}, got {t.kind} {value!r}")

    def _json_value(self, json: tuple[Any, tuple[str, ...]], kind: str) -> Any:
        column, keys = json
        if not keys:
            raise BadRequest("$filter: compare a member of a JSON property, e.g. properties/owner eq 'x'")
        if self.dialect == "sqlite":
            path = _sqlite_path(keys)
            value, json_type = func.json_extract(column, path), func.json_type(column, path)
            if kind == "num":
                return case((json_type.in_(("integer", "real")), value))
            if kind == "bool":
                return case((json_type.in_(("true", "false")), json_type == "true"))
            return case((json_type == "text", value))
        node, text = column[keys], column[keys].as_string()
        json_type = func.jsonb_typeof(node)
        if kind == "num":
            return case((json_type == "number", cast(text, Float)))
        if kind == "bool":
            return case((json_type == "boolean", cast(text, Boolean)))
        return case((json_type == "string", text))

    # --- paths --------------------------------------------------------------------------------------------

    def path(self, spec: EntitySet, root: Any, segments: tuple[str, ...]) -> Typed:
        """A property path from one set: its own properties, JSON members and navigation paths."""
        head, rest = segments[0], segments[1:]
        special = spec.specials.get(tuple(segments))
        if special is not None:
            return Typed(special.expr(root), special.kind)
        if head in spec.props:
            prop = spec.props[head]
            if prop.kind == "unsupported":
                raise BadRequest(f"{spec.singular} {head} cannot be used in $filter or $orderby here")
            if prop.kind == "json":
                column, prefix = prop.expr(root)
                return Typed(None, "json", json=(column, prefix + tuple(rest)))
            if rest:
                raise BadRequest(f"{spec.singular} {head} has no member {rest[0]!r}")
            return Typed(prop.expr(root), prop.kind)
        if head not in spec.navs:
            names = ", ".join([*spec.props, *spec.navs])
            raise BadRequest(f"{spec.singular} has no property {head!r}; it has {names}")
        nav = spec.navs[head]
        target = SETS[nav.target]
        self.ctx.actor.require(target.permission)
        if not rest:
            raise BadRequest(f"name a property of {head}, e.g. {head}/id")
        if not nav.many:
            if rest == ("id",) and nav.fk is not None:
                return Typed(nav.fk(root), target.props["id"].kind)
            if nav.joined is not None:
                return self.path(target, nav.joined(root), rest)
        inner = target.root()
        t = self.path(target, inner, rest)
        if not nav.many and t.wrap is None and t.json is None and t.kind != "obsid":
            sub = target.select(self.ctx, inner, t.expr).where(nav.link(root, inner)).limit(1).scalar_subquery()
            return Typed(sub, t.kind)
        inner_wrap = t.wrap

        def wrap(cond: ColumnElement[bool]) -> ColumnElement[bool]:
            body = inner_wrap(cond) if inner_wrap else cond
            return exists(target.select(self.ctx, inner, literal(1)).where(nav.link(root, inner), body))

        return replace(t, wrap=wrap)

    # --- functions ----------------------------------------------------------------------------------------

    def call(self, spec: EntitySet, root: Any, node: Call) -> Typed:
        """String, time and arithmetic functions of OData."""
        name = node.name
        if name == "now":
            return Typed(self.ctx.now, "time", literal=True)
        args = [self.value(spec, root, a) for a in node.args]
        wrap = _combine_wraps(*args)
        if name in _STRING_FUNCTIONS:
            s = [self.sql(a, "str") for a in (args[:1] if name == "substring" else args)]
            if name in ("substringof", "contains"):
                hay, needle = (s[1], s[0]) if name == "substringof" else (s[0], s[1])
                return Typed(self._position(hay, needle) > 0, "bool", wrap=wrap)
            if name == "startswith":
                return Typed(func.substr(s[0], 1, func.length(s[1])) == s[1], "bool", wrap=wrap)
            if name == "endswith":
                start = func.length(s[0]) - func.length(s[1]) + 1
                return Typed(and_(start >= 1, func.substr(s[0], start) == s[1]), "bool", wrap=wrap)
            if name == "length":
                return Typed(func.length(s[0]), "num", wrap=wrap)
            if name == "indexof":
                return Typed(self._position(s[0], s[1]) - 1, "num", wrap=wrap)
            if name == "substring":
                start = cast(self.sql(args[1], "num"), Integer) + 1
                expr = func.substr(s[0], start) if len(args) == 2 else func.substr(
                    s[0], start, cast(self.sql(args[2], "num"), Integer))
                return Typed(expr, "str", wrap=wrap)
            if name == "concat":
                return Typed(s[0].concat(s[1]), "str", wrap=wrap)
            return Typed({"tolower": func.lower, "toupper": func.upper, "trim": func.trim}[name](s[0]), "str",
                         wrap=wrap)
        if name in _TIME_PARTS:
            ts = self.sql(args[0], "time")
            if self.dialect == "postgresql":
                ts = func.timezone("UTC", ts)
            return Typed(cast(extract(_TIME_PARTS[name], ts), Float), "num", wrap=wrap)
        n = self.sql(args[0], "num")
        return Typed({"round": func.round, "floor": func.floor, "ceiling": func.ceiling}[name](n), "num", wrap=wrap)

    def _position(self, hay: Any, needle: Any) -> Any:
        # instr/strpos compare case-sensitively on both databases (LIKE would not on SQLite).
        return func.instr(hay, needle) if self.dialect == "sqlite" else func.strpos(hay, needle)

    # --- order --------------------------------------------------------------------------------------------

    def order(self, spec: EntitySet, root: Any, path: tuple[str, ...], desc: bool) -> list[Any]:
        """ORDER BY terms for one $orderby key."""
        t = self.path(spec, root, path)
        if t.wrap is not None:
            raise BadRequest(f"$orderby: {'/'.join(path)} leads to many entities; order by a to-one path")
        if t.kind == "obsid":
            exprs = [t.expr.ds.id, t.expr.obs.ts]
        elif t.json is not None:
            column, keys = t.json
            if not keys:
                raise BadRequest(f"$orderby: order by a member of {path[0]}, e.g. {path[0]}/name")
            exprs = [func.json_extract(column, _sqlite_path(keys)) if self.dialect == "sqlite" else column[keys]]
        else:
            exprs = [t.expr]
        return [e.desc() if desc else e.asc() for e in exprs]


_SQL_TYPES: dict[str, Any] = {"str": String(), "num": Float(), "bool": Boolean(), "time": UTCDateTime(),
                               "uuid": Uuid(), "int": Integer(), "null": String()}


def _sqlite_path(keys: tuple[str, ...]) -> str:
    return "$" + "".join('."' + k.replace('"', '\\"') + '"' for k in keys)


def _describe(t: Typed) -> str:
    if t.literal:
        noun = {"str": "text", "num": "number", "time": "time", "bool": "boolean"}.get(t.kind, t.kind)
        return f"the {noun} {t.expr!r}"
    return {"str": "a text property", "num": "a number property", "int": "an integer id", "uuid": "an id",
            "time": "a time property", "bool": "a condition", "json": "a JSON property"}.get(t.kind, t.kind)


# --- collections, entities and expansion --------------------------------------------------------------------


@dataclass
class Page:
    """One page of a collection: loaded rows, the total when asked for, and whether more follow."""

    items: list[Any]
    count: int | None
    more: bool


def check_select(spec: EntitySet, opts: QueryOptions) -> None:
    """Refuse $select names the set does not have."""
    if opts.select is None:
        return
    known = {*spec.props, *spec.navs, "selfLink"}
    unknown = [n for n in opts.select if n not in known]
    if unknown:
        raise BadRequest(f"$select: {spec.singular} has no property {unknown[0]!r}; it has {', '.join(sorted(known))}")


def statements(ctx: Ctx, spec: EntitySet, opts: QueryOptions, conditions: list[Condition]
               ) -> tuple[Select[Any], Select[Any]]:
    """The page query (one row more than asked, to know whether more follow) and the count query."""
    compiler = FilterCompiler(ctx)
    root = spec.root()
    where = [c(root) for c in conditions]
    if opts.filter is not None:
        where.append(compiler.condition(spec, root, opts.filter))
    counted = spec.select(ctx, root, literal(1)).where(*where).subquery()
    order = [term for key in opts.orderby for term in compiler.order(spec, root, key.path, key.desc)]
    page = (spec.select(ctx, root, *spec.columns(root)).where(*where).order_by(*order, *spec.order(root))
            .offset(opts.skip).limit(opts.limit + 1))
    return page, func.count().select().select_from(counted)


def fetch(ctx: Ctx, spec: EntitySet, opts: QueryOptions, conditions: list[Condition]) -> Page:
    """A page of a set under conditions, with $filter, $orderby, $top, $skip and $count applied in SQL."""
    ctx.actor.require(spec.permission)
    check_select(spec, opts)
    page, counter = statements(ctx, spec, opts, conditions)
    count = (ctx.session.scalar(counter) or 0) if opts.count else None
    limit = opts.limit
    if limit == 0:
        return Page([], count, False)
    rows = ctx.session.execute(page).all()
    return Page([spec.wrap(r) for r in rows[:limit]], count, len(rows) > limit)


def load(ctx: Ctx, spec: EntitySet, conditions: list[Condition], what: str) -> Any:
    """The one row the conditions name; NotFound (404) otherwise."""
    ctx.actor.require(spec.permission)
    root = spec.root()
    row = ctx.session.execute(spec.select(ctx, root, *spec.columns(root))
                              .where(*[c(root) for c in conditions]).limit(1)).first()
    if row is None:
        raise NotFound(f"{what} not found")
    return spec.wrap(row)


def key_condition(spec: EntitySet, key: int | str) -> Condition:
    """A condition selecting one key of a set."""
    return lambda r: spec.key_condition(r, key)


def nav_conditions(ctx: Ctx, spec: EntitySet, obj: Any, nav_name: str) -> list[Condition]:
    """Conditions on the target set for the entities a loaded row links to through one navigation property."""
    nav = spec.navs[nav_name]
    conditions: list[Condition] = [lambda r: nav.link(obj, r)]
    if spec.name == "Datastreams" and nav_name == "Observations":
        # The same rows, said in the terms of the observations primary key so that both databases walk it.
        sid = ctx.subject_id(obj.thing_id)
        conditions.append(lambda r: and_(r.obs.indicator_id == obj.indicator_id, r.obs.subject_id == sid)
                          if sid is not None else false())
    return conditions


def next_link(url: str, opts: QueryOptions) -> str:
    """The URL of the following page: the same options with $skip moved on."""
    params = {k: v for k, v in opts.raw.items() if k not in ("$top", "$skip")}
    params["$top"] = str(opts.limit)
    params["$skip"] = str(opts.skip + opts.limit)
    return f"{url}?{urlencode(params, quote_via=quote, safe='$,()')}"


def render(ctx: Ctx, spec: EntitySet, obj: Any, opts: QueryOptions) -> dict[str, Any]:
    """One entity in STA JSON: @iot.id, @iot.selfLink, properties, navigation links and expansions."""
    selected = set(opts.select) if opts.select is not None else None
    key = spec.key(obj)
    link = f"{ctx.base}/{spec.name}({format_key(key)})"
    out: dict[str, Any] = {}
    if selected is None or "id" in selected:
        out["@iot.id"] = key
    if selected is None or "selfLink" in selected:
        out["@iot.selfLink"] = link
    if selected is None or selected & set(spec.props):
        for name, value in spec.render(ctx, obj).items():
            if selected is None or name in selected:
                out[name] = value
    expanded = {e.nav for e in opts.expand}
    for nav_name in spec.navs:
        if nav_name not in expanded and (selected is None or nav_name in selected):
            out[f"{nav_name}@iot.navigationLink"] = f"{link}/{nav_name}"
    for item in opts.expand:
        out.update(_expand(ctx, spec, obj, link, item))
    return out


def _expand(ctx: Ctx, spec: EntitySet, obj: Any, link: str, item: Expand) -> dict[str, Any]:
    nav = spec.navs.get(item.nav)
    if nav is None:
        raise BadRequest(f"$expand: {spec.singular} has no navigation property {item.nav!r}; "
                         f"it has {', '.join(spec.navs)}")
    target = SETS[nav.target]
    if not nav.many:
        check_select(target, item.options)
        fk = nav.fk(obj) if nav.fk is not None else None
        if nav.fk is not None and fk is None:
            return {item.nav: None}
        cache_key = ("expand", nav.target, fk, id(item))
        if fk is None or cache_key not in ctx.cache:
            page = fetch(ctx, target, replace(item.options, top=1, skip=0, count=False),
                         nav_conditions(ctx, spec, obj, item.nav))
            value = render(ctx, target, page.items[0], item.options) if page.items else None
            if fk is None:
                return {item.nav: value}
            ctx.cache[cache_key] = value
        return {item.nav: ctx.cache[cache_key]}
    page = fetch(ctx, target, item.options, nav_conditions(ctx, spec, obj, item.nav))
    out: dict[str, Any] = {item.nav: [render(ctx, target, o, item.options) for o in page.items]}
    if page.count is not None:
        out[f"{item.nav}@iot.count"] = page.count
    if page.more:
        out[f"{item.nav}@iot.nextLink"] = next_link(f"{link}/{item.nav}", item.options)
    return out


def data_array(ctx: Ctx, page: Page, opts: QueryOptions) -> list[dict[str, Any]]:
    """Observations grouped per Datastream as {components, dataArray} ($resultFormat=dataArray)."""
    components = opts.select or list(DATA_ARRAY_COMPONENTS)
    bad = [c for c in components if c not in DATA_ARRAY_COMPONENTS]
    if bad:
        raise BadRequest(f"$resultFormat=dataArray: {bad[0]!r} is not a component; "
                         f"use {', '.join(DATA_ARRAY_COMPONENTS)}")
    groups: dict[int, list[list[Any]]] = {}
    for o in page.items:
        values = {"id": observation_key(o.ds.id, o.obs.ts), **SETS["Observations"].render(ctx, o)}
        groups.setdefault(o.ds.id, []).append([values[c] for c in components])
    return [{"Datastream@iot.navigationLink": f"{ctx.base}/Datastreams({ds})", "components": components,
             "dataArray@iot.count": len(rows), "dataArray": rows} for ds, rows in groups.items()]


# --- resource paths -----------------------------------------------------------------------------------------


@dataclass
class Target:
    """What a resource path names: a set under conditions, one entity, or one property of one entity."""

    spec: EntitySet
    conditions: list[Condition]
    single: bool
    what: str
    parent: tuple[EntitySet, Any, str] | None = None
    prop: str | None = None
    raw_value: bool = False
    ref: bool = False


def resolve(ctx: Ctx, segments: list[Segment]) -> Target:
    """Walk a resource path, loading each entity it passes through (404 when one does not exist)."""
    first = segments[0]
    spec = SETS.get(first.name)
    if spec is None:
        raise NotFound(f"no entity set {first.name!r}; the sets are {', '.join(SETS)}")
    target = Target(spec, [], False, spec.name)
    if first.key is not None:
        target = Target(spec, [key_condition(spec, first.key)], True, f"{spec.singular} {format_key(first.key)}")
    rest = segments[1:]
    for i, seg in enumerate(rest):
        last = i == len(rest) - 1
        if seg.name == "$ref":
            if not last or target.prop:
                raise BadRequest("$ref ends a path to an entity or a collection")
            target.ref = True
        elif seg.name == "$value":
            if not last or target.prop is None:
                raise BadRequest("$value follows a property, e.g. Things(1)/name/$value")
            target.raw_value = True
        elif not target.single or target.prop:
            raise BadRequest(f"{seg.name} must follow one entity, e.g. {target.spec.name}(1)/{seg.name}")
        elif seg.name in target.spec.navs:
            spec = target.spec
            obj = load(ctx, spec, target.conditions, target.what)
            nav = spec.navs[seg.name]
            child = SETS[nav.target]
            what = f"{seg.name} of {target.what}"
            target = Target(child, nav_conditions(ctx, spec, obj, seg.name), not nav.many, what, (spec, obj, seg.name))
            if seg.key is not None:
                if not nav.many:
                    raise BadRequest(f"{seg.name} is a single entity; it takes no key")
                target.conditions.append(key_condition(child, seg.key))
                target.single, target.what = True, f"{child.singular} {format_key(seg.key)} of {what}"
        elif seg.name in target.spec.props and seg.name != "id" and seg.key is None:
            target.prop = seg.name
        else:
            names = ", ".join([p for p in target.spec.props if p != "id"] + list(target.spec.navs))
            raise NotFound(f"{target.spec.singular} has no property or navigation {seg.name!r}; it has {names}")
    return target


def read(ctx: Ctx, segments: list[Segment], opts: QueryOptions, url: str) -> dict[str, Any] | str:
    """The answer to GET on a resource path: an entity, a property, a collection page or links."""
    target = resolve(ctx, segments)
    spec = target.spec
    if target.single:
        obj = load(ctx, spec, target.conditions, target.what)
        if target.prop is not None:
            value = spec.render(ctx, obj).get(target.prop)
            if target.raw_value:
                return "" if value is None else value if isinstance(value, str) else _json_text(value)
            return {target.prop: value}
        if target.ref:
            return {"@iot.selfLink": spec.self_link(ctx, obj)}
        check_select(spec, opts)
        return render(ctx, spec, obj, opts)
    if opts.result_format and spec.name != "Observations":
        raise BadRequest("$resultFormat=dataArray applies to Observations only")
    page = fetch(ctx, spec, opts, target.conditions)
    body: dict[str, Any] = {}
    if page.count is not None:
        body["@iot.count"] = page.count
    if page.more:
        body["@iot.nextLink"] = next_link(url, opts)
    if target.ref:
        body["value"] = [{"@iot.selfLink": spec.self_link(ctx, o)} for o in page.items]
    elif opts.result_format:
        body["value"] = data_array(ctx, page, opts)
    else:
        body["value"] = [render(ctx, spec, o, opts) for o in page.items]
    return body


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()
