"""The OData subset SensorThings uses: resource paths, $filter expressions and the other query options.

Pure parsing, no database: the answer is a small syntax tree (Lit, Path, Call, BinOp, Not, Neg) and a
QueryOptions value that the query module turns into SQL. Every syntax error is a BadRequest naming where
the problem is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from saola.core.errors import DomainError

MAX_FILTER_LENGTH = 4000
MAX_DEPTH = 40
DEFAULT_TOP = 100
MAX_TOP = 10_000

COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
ARITHMETIC = ("add", "sub", "mul", "div", "mod")
FUNCTIONS = {
    # name: (min args, max args)
    "substringof": (2, 2), "contains": (2, 2), "startswith": (2, 2), "endswith": (2, 2), "length": (1, 1),
    "indexof": (2, 2), "substring": (2, 3), "tolower": (1, 1), "toupper": (1, 1), "trim": (1, 1),
    "concat": (2, 2), "year": (1, 1), "month": (1, 1), "day": (1, 1), "hour": (1, 1), "minute": (1, 1),
    "second": (1, 1), "now": (0, 0), "round": (1, 1), "floor": (1, 1), "ceiling": (1, 1),
}
SPATIAL_PREFIXES = ("geo.", "st_")


class BadRequest(DomainError):
    """A request the SensorThings door cannot understand: 400 with the reason."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 400, "bad_request")


# --- $filter syntax tree ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lit:
    """A literal: kind is str, num, time, bool or null."""

    value: Any
    kind: str


@dataclass(frozen=True)
class Path:
    """A property path such as name, properties/owner or Datastream/Thing/name."""

    segments: tuple[str, ...]


@dataclass(frozen=True)
class Call:
    """A function call such as startswith(name, 'Tr')."""

    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class BinOp:
    """A binary operator: a comparison, and/or, or arithmetic."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    """Logical negation."""

    operand: Node


@dataclass(frozen=True)
class Neg:
    """Arithmetic negation."""

    operand: Node


Node = Lit | Path | Call | BinOp | Not | Neg

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>'(?:[^']|'')*')
  | (?P<time>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|z|[+-]\d{2}:?\d{2})?)
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\w:]))
  | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_@$][\w.:@$]*(?:/[A-Za-z_@$][\w.:@$]*)*)
  | (?P<punct>[(),-])
""", re.VERBOSE)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def parse_time(text: str) -> datetime:
    """An ISO 8601 instant; a time without a zone is taken as UTC, a date as its UTC midnight."""
    try:
        value = datetime.fromisoformat(text.replace("z", "Z"))
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise BadRequest(f"{text!r} is not an ISO 8601 time, e.g. 2026-11-25T08:00:00+07:00") from exc


def _tokens(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise BadRequest(f"$filter: unexpected character {text[pos]!r} at position {pos}")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    return tokens


class _Parser:
    """Recursive descent over the tokens, lowest precedence first: or, and, not, comparison, add, mul, unary."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def word(self) -> str | None:
        tok = self.peek()
        return tok.text.lower() if tok is not None and tok.kind == "name" else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise BadRequest("$filter: the expression ends too early")
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        if self.peek() is None:
            raise BadRequest(f"$filter: expected {text!r} but the expression ends")
        tok = self.take()
        if tok.text != text:
            raise BadRequest(f"$filter: expected {text!r} at position {tok.pos}, found {tok.text!r}")

    def parse(self) -> Node:
        node = self.or_()
        tok = self.peek()
        if tok is not None:
            raise BadRequest(f"$filter: unexpected {tok.text!r} at position {tok.pos}")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.word() == "or":
            self.take()
            node = BinOp("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.word() == "and":
            self.take()
            node = BinOp("and", node, self.not_())
        return node

    def not_(self) -> Node:
        if self.word() == "not":
            self.take()
            return Not(self.not_())
        return self.comparison()

    def comparison(self) -> Node:
        node = self.additive()
        if self.word() in COMPARISONS:
            op = self.take().text.lower()
            node = BinOp(op, node, self.additive())
            if self.word() in COMPARISONS:
                raise BadRequest(f"$filter: comparisons do not chain; use and (position {self.take().pos})")
        return node

    def additive(self) -> Node:
        node = self.multiplicative()
        while self.word() in ("add", "sub"):
            op = self.take().text.lower()
            node = BinOp(op, node, self.multiplicative())
        return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while self.word() in ("mul", "div", "mod"):
            op = self.take().text.lower()
            node = BinOp(op, node, self.unary())
        return node

    def unary(self) -> Node:
        tok = self.peek()
        if tok is not None and tok.text == "-":
            self.take()
            return Neg(self.unary())
        return self.primary()

    def primary(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise BadRequest(f"$filter: nested deeper than {MAX_DEPTH} levels")
        try:
            return self._primary()
        finally:
            self.depth -= 1

    def _primary(self) -> Node:
        tok = self.take()
        if tok.text == "(":
            node = self.or_()
            self.expect(")")
            return node
        if tok.kind == "str":
            return Lit(tok.text[1:-1].replace("''", "'"), "str")
        if tok.kind == "num":
            number = float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text)
            return Lit(number, "num")
        if tok.kind in ("time", "date"):
            return Lit(parse_time(tok.text), "time")
        if tok.kind != "name":
            raise BadRequest(f"$filter: unexpected {tok.text!r} at position {tok.pos}")
        low = tok.text.lower()
        following = self.peek()
        if following is not None and following.text == "(":
            return self.call(tok, low)
        if following is not None and following.kind == "str":
            raise BadRequest(f"$filter: typed literals such as {tok.text}'...' (geometries) are not supported "
                             f"(position {tok.pos})")
        if low in ("true", "false"):
            return Lit(low == "true", "bool")
        if low == "null":
            return Lit(None, "null")
        if low in (*COMPARISONS, *ARITHMETIC, "and", "or", "not"):
            raise BadRequest(f"$filter: operator {tok.text!r} at position {tok.pos} has nothing on its left")
        return Path(tuple(tok.text.split("/")))

    def call(self, tok: _Tok, name: str) -> Node:
        if name.startswith(SPATIAL_PREFIXES):
            raise BadRequest(f"$filter: spatial function {tok.text} is not supported by this server")
        if name not in FUNCTIONS:
            raise BadRequest(f"$filter: unknown function {tok.text!r} at position {tok.pos}")
        self.expect("(")
        args: list[Node] = []
        following = self.peek()
        if following is not None and following.text == ")":
            self.take()
        else:
            args.append(self.or_())
            while (following := self.peek()) is not None and following.text == ",":
                self.take()
                args.append(self.or_())
            self.expect(")")
        low, high = FUNCTIONS[name]
        if not low <= len(args) <= high:
            wanted = str(low) if low == high else f"{low} to {high}"
            raise BadRequest(f"$filter: {name} takes {wanted} argument(s), got {len(args)}")
        return Call(name, tuple(args))


def parse_filter(text: str) -> Node:
    """The syntax tree of a $filter expression; BadRequest says what is wrong and where."""
    if not text.strip():
        raise BadRequest("$filter is empty")
    if len(text) > MAX_FILTER_LENGTH:
        raise BadRequest(f"$filter is longer than {MAX_FILTER_LENGTH} characters")
    return _Parser(text).parse()


# --- the other query options ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderBy:
    """One $orderby key."""

    path: tuple[str, ...]
    desc: bool = False


@dataclass
class Expand:
    """One navigation to expand, with the options that apply to it."""

    nav: str
    options: QueryOptions


@dataclass
class QueryOptions:
    """Parsed query options of one collection or expansion."""

    filter: Node | None = None
    top: int | None = None
    skip: int = 0
    orderby: list[OrderBy] = field(default_factory=list)
    select: list[str] | None = None
    expand: list[Expand] = field(default_factory=list)
    count: bool = False
    result_format: str | None = None
    raw: dict[str, str] = field(default_factory=dict)

    @property
    def limit(self) -> int:
        """How many rows a page holds: $top, or the default, never above the maximum."""
        return min(DEFAULT_TOP if self.top is None else self.top, MAX_TOP)


TOP_LEVEL_OPTIONS = ("$filter", "$top", "$skip", "$orderby", "$select", "$expand", "$count", "$resultFormat")
NESTED_OPTIONS = ("$filter", "$top", "$skip", "$orderby", "$select", "$expand", "$count")
_NAME = re.compile(r"^[A-Za-z_@][\w.:@]*$")


def _split(text: str, sep: str) -> list[str]:
    """Split at sep outside quotes and parentheses."""
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise BadRequest(f"unbalanced parentheses in {text!r}")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth or quoted:
        raise BadRequest(f"unbalanced parentheses or quotes in {text!r}")
    parts.append(text[start:])
    return parts


def _integer(name: str, text: str) -> int:
    if not re.fullmatch(r"\d{1,9}", text.strip()):
        raise BadRequest(f"{name} must be a non-negative integer, got {text!r}")
    return int(text)


def _orderby(text: str) -> list[OrderBy]:
    keys: list[OrderBy] = []
    for part in _split(text, ","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise BadRequest(f"$orderby: expected 'property [asc|desc]', got {part.strip()!r}")
        path = tuple(words[0].split("/"))
        if not all(_NAME.match(p) for p in path):
            raise BadRequest(f"$orderby: {words[0]!r} is not a property path")
        keys.append(OrderBy(path, len(words) == 2 and words[1].lower() == "desc"))
    return keys


def _select(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",")]
    bad = [n for n in names if not _NAME.match(n)]
    if bad:
        raise BadRequest(f"$select: {bad[0]!r} is not a property name")
    return names


def _expand(text: str) -> list[Expand]:
    items: list[Expand] = []
    for part in _split(text, ","):
        part = part.strip()
        m = re.fullmatch(r"([A-Za-z][\w/]*)(?:\((.*)\))?", part, re.DOTALL)
        if m is None:
            raise BadRequest(f"$expand: cannot read {part!r}; expected Nav, Nav/Nav or Nav($top=1;...)")
        navs = m.group(1).split("/")
        inner = _nested(m.group(2)) if m.group(2) is not None else QueryOptions()
        for nav in reversed(navs[1:]):
            inner = QueryOptions(expand=[Expand(nav, inner)])
        _merge(items, Expand(navs[0], inner))
    return items


def _merge(items: list[Expand], new: Expand) -> None:
    for item in items:
        if item.nav == new.nav:
            for sub in new.options.expand:
                _merge(item.options.expand, sub)
            if new.options.raw:
                item.options = _combine(item.options, new.options)
            return
    items.append(new)


def _combine(old: QueryOptions, new: QueryOptions) -> QueryOptions:
    expand = old.expand
    new.expand = expand
    return new


def _nested(text: str) -> QueryOptions:
    pairs: list[tuple[str, str]] = []
    for part in _split(text, ";"):
        if not part.strip():
            continue
        key, sep, value = part.strip().partition("=")
        if not sep or not key.strip().startswith("$"):
            raise BadRequest(f"$expand: expected $option=value inside parentheses, got {part.strip()!r}")
        pairs.append((key.strip(), value))
    return parse_options(pairs, nested=True)


def parse_options(pairs: list[tuple[str, str]], *, nested: bool = False) -> QueryOptions:
    """Parse $-options from (name, value) pairs; other parameters are ignored, unknown $-options refused."""
    allowed = NESTED_OPTIONS if nested else TOP_LEVEL_OPTIONS
    opts = QueryOptions()
    for key, value in pairs:
        if not key.startswith("$"):
            continue
        if key not in allowed:
            where = " inside $expand" if nested else ""
            raise BadRequest(f"unknown or unsupported query option {key!r}{where}; supported: {', '.join(allowed)}")
        if key in opts.raw:
            raise BadRequest(f"query option {key} is given twice")
        opts.raw[key] = value
        if key == "$filter":
            opts.filter = parse_filter(value)
        elif key == "$top":
            opts.top = _integer(key, value)
        elif key == "$skip":
            opts.skip = _integer(key, value)
        elif key == "$orderby":
            opts.orderby = _orderby(value)
        elif key == "$select":
            opts.select = _select(value)
        elif key == "$expand":
            opts.expand = _expand(value)
        elif key == "$count":
            if value not in ("true", "false"):
                raise BadRequest(f"$count must be true or false, got {value!r}")
            opts.count = value == "true"
        elif key == "$resultFormat":
            if value != "dataArray":
                raise BadRequest(f"$resultFormat: only dataArray is supported, got {value!r}")
            opts.result_format = value
    return opts


# --- resource paths -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One step of a resource path: a name and, for entities, the key in parentheses."""

    name: str
    key: int | str | None = None


_SEGMENT = re.compile(r"^(\$?[A-Za-z][\w]*)(?:\((\d{1,18}|'(?:[^']|'')*')\))?$")


def parse_path(path: str) -> list[Segment]:
    """Things(1)/Datastreams -> [Segment('Things', 1), Segment('Datastreams')]; quoted keys are text."""
    parts = [p for p in _split(path.strip("/"), "/")] if path.strip("/") else []
    segments: list[Segment] = []
    for part in parts:
        m = _SEGMENT.match(part)
        if m is None:
            raise BadRequest(f"cannot read path segment {part!r}; expected Name, Name(1) or Name('id')")
        key: int | str | None = None
        if m.group(2) is not None:
            raw = m.group(2)
            key = raw[1:-1].replace("''", "'") if raw.startswith("'") else int(raw)
        segments.append(Segment(m.group(1), key))
    return segments


def format_key(key: int | str) -> str:
    """A key as it appears in a path: 5 or 'text' (quotes doubled)."""
    return str(key) if isinstance(key, int) else "'" + key.replace("'", "''") + "'"
