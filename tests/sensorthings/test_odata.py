"""The OData parser on its own: $filter syntax trees, query options and resource paths (no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from saola.interop.sensorthings.odata import (
    MAX_TOP,
    BadRequest,
    BinOp,
    Call,
    Lit,
    Neg,
    Not,
    Path,
    Segment,
    format_key,
    parse_filter,
    parse_options,
    parse_path,
)


def test_precedence_and_associativity() -> None:
    tree = parse_filter("a eq 1 or b eq 2 and not c eq 3")
    assert tree == BinOp("or", BinOp("eq", Path(("a",)), Lit(1, "num")),
                         BinOp("and", BinOp("eq", Path(("b",)), Lit(2, "num")),
                               Not(BinOp("eq", Path(("c",)), Lit(3, "num")))))
    assert parse_filter("result add 2 mul 3 gt -1") == BinOp(
        "gt", BinOp("add", Path(("result",)), BinOp("mul", Lit(2, "num"), Lit(3, "num"))), Neg(Lit(1, "num")))
    assert parse_filter("(a eq 1 or b eq 2) and c eq 3").op == "and"


def test_literals() -> None:
    assert parse_filter("name eq 'O''Brien'").right == Lit("O'Brien", "str")  # type: ignore[union-attr]
    assert parse_filter("x eq 1.5e3").right == Lit(1500.0, "num")  # type: ignore[union-attr]
    assert parse_filter("x eq true").right == Lit(True, "bool")  # type: ignore[union-attr]
    assert parse_filter("x eq null").right == Lit(None, "null")  # type: ignore[union-attr]
    assert parse_filter("t gt 2026-11-25T08:00:00+07:00").right == Lit(  # type: ignore[union-attr]
        datetime(2026, 11, 25, 1, tzinfo=UTC), "time")
    assert parse_filter("t gt 2026-11-25T01:00:00.5Z").right == Lit(  # type: ignore[union-attr]
        datetime(2026, 11, 25, 1, 0, 0, 500000, tzinfo=UTC), "time")
    assert parse_filter("t lt 2026-11-25").right == Lit(datetime(2026, 11, 25, tzinfo=UTC), "time")  # type: ignore


def test_paths_and_functions() -> None:
    assert parse_filter("Datastream/Thing/name eq 'x'").left == Path(  # type: ignore[union-attr]
        ("Datastream", "Thing", "name"))
    assert parse_filter("properties/saola:unit_code eq '68'").left == Path(  # type: ignore[union-attr]
        ("properties", "saola:unit_code"))
    assert parse_filter("substringof('a', name)") == Call("substringof", (Lit("a", "str"), Path(("name",))))
    assert parse_filter("year(now()) ge 2026").left == Call("year", (Call("now", ()),))  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "empty"),
    ("a eq", "ends too early"),
    ("a eq 1)", "unexpected ')'"),
    ("(a eq 1", "expected ')'"),
    ("a eq 1 eq 2", "do not chain"),
    ("eq 1", "nothing on its left"),
    ("a eq 'x", "unexpected character"),
    ("a eq #", "unexpected character"),
    ("startswith(a)", "takes 2 argument(s), got 1"),
    ("substring(a)", "takes 2 to 3"),
    ("frob(a)", "unknown function"),
    ("geo.intersects(location, geography'POINT(1 2)')", "spatial function"),
    ("st_within(location, geography'POINT(1 2)')", "spatial function"),
    ("location eq geography'POINT(1 2)'", "typed literals"),
    ("t gt 2026-13-45T00:00:00Z", "not an ISO 8601 time"),
    ("t gt 0001-01-01T00:00:00+01:00", "not an ISO 8601 time"),
    ("(" * 60 + "a eq 1" + ")" * 60, "nested deeper"),
    ("a eq '" + "x" * 5000 + "'", "longer than"),
])
def test_filter_errors(text: str, fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_filter(text)
    assert fragment in info.value.message


def test_options() -> None:
    opts = parse_options([("$top", "5"), ("$skip", "10"), ("$count", "true"), ("$select", "id,name"),
                          ("$orderby", "phenomenonTime desc, id"), ("api_key", "ignored")])
    assert (opts.top, opts.skip, opts.count, opts.select) == (5, 10, True, ["id", "name"])
    assert [(o.path, o.desc) for o in opts.orderby] == [(("phenomenonTime",), True), (("id",), False)]
    assert parse_options([("$top", "50000")]).limit == MAX_TOP
    assert parse_options([]).limit == 100


def test_nested_expand() -> None:
    opts = parse_options([("$expand", "Locations,Datastreams($top=1;$orderby=phenomenonTime desc;"
                                      "$expand=Observations($filter=result gt 2;$select=result)),Datastreams/Sensor")])
    locations, streams = opts.expand
    assert locations.nav == "Locations" and streams.nav == "Datastreams"
    assert streams.options.top == 1 and streams.options.orderby[0].desc
    assert [e.nav for e in streams.options.expand] == ["Observations", "Sensor"]
    observations = streams.options.expand[0].options
    assert observations.select == ["result"] and isinstance(observations.filter, BinOp)
    assert parse_options([("$expand", "Datastream/Thing/Locations")]).expand[0].options.expand[0].options \
        .expand[0].nav == "Locations"


@pytest.mark.parametrize(("pairs", "fragment"), [
    ([("$top", "-1")], "non-negative integer"),
    ([("$top", "1"), ("$top", "2")], "given twice"),
    ([("$format", "json")], "unsupported query option"),
    ([("$expand", "Datastreams($resultFormat=dataArray)")], "inside $expand"),
    ([("$expand", "Datastreams($top=1")], "unbalanced"),
    ([("$expand", "Datastreams(top=1)")], "expected $option=value"),
    ([("$orderby", "name up")], "$orderby"),
    ([("$select", "name,'x'")], "not a property name"),
    ([("$resultFormat", "csv")], "only dataArray"),
])
def test_option_errors(pairs: list[tuple[str, str]], fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_options(pairs)
    assert fragment in info.value.message


def test_resource_paths() -> None:
    assert parse_path("Things(1)/Datastreams") == [Segment("Things", 1), Segment("Datastreams")]
    assert parse_path("/Things('a''b')/Locations/$ref") == [Segment("Things", "a'b"), Segment("Locations"),
                                                            Segment("$ref")]
    assert parse_path("Observations('3-1764032400000000')/Datastream/Thing/name/$value")[0].key == \
        "3-1764032400000000"
    assert format_key(5) == "5" and format_key("a'b") == "'a''b'"
    for bad in ("Things(x)", "Things(1", "Things('a')x", "Th ings"):
        with pytest.raises(BadRequest):
            parse_path(bad)
