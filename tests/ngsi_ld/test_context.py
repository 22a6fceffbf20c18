"""JSON-LD term handling, the q language and geo-queries, without a database."""

from __future__ import annotations

import pytest

from saola.interop.ngsi_ld.context import (
    CORE_CONTEXT_URL,
    DEFAULT_VOCAB,
    context_of,
    core_context,
    link_context_url,
    wants_ld,
)
from saola.interop.ngsi_ld.errors import NgsiError
from saola.interop.ngsi_ld.query import haversine_m, parse_geo, parse_q, safe_regex

NGSI = "https://uri.etsi.org/ngsi-ld/"


def test_core_terms_expand_and_compact() -> None:
    core = core_context()
    assert core.expand("location") == NGSI + "location"
    assert core.expand("observedAt") == NGSI + "observedAt"
    assert core.expand("value") == NGSI + "hasValue" and core.expand("object") == NGSI + "hasObject"
    assert core.expand("temperature") == DEFAULT_VOCAB + "temperature"
    assert core.expand("id") == "@id" and core.expand("type") == "@type"
    assert core.expand("urn:x:y") == "urn:x:y" and core.expand("https://a.b/c") == "https://a.b/c"
    assert core.compact(DEFAULT_VOCAB + "temperature") == "temperature"
    assert core.compact(NGSI + "location") == "location"
    assert core.compact("https://schema.org/name") == "https://schema.org/name"
    assert core.compact(NGSI + "somethingNew") == "ngsi-ld:somethingNew"
    assert core.coercion("observedAt") == "DateTime" and core.coercion("object") == "@id"


def test_every_published_core_url_is_the_bundled_context() -> None:
    for url in (CORE_CONTEXT_URL, "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld",
                "http://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.3.jsonld"):
        assert context_of(url) is core_context()
    assert context_of([CORE_CONTEXT_URL]) is core_context() and context_of(None) is core_context()


def test_inline_contexts_with_prefixes_and_the_protected_core() -> None:
    ctx = context_of([{"schema": "https://schema.org/", "name": "schema:name", "pm": {"@id": "https://x.org/pm25"},
                       "location": "https://evil.example/location", "@vocab": "https://ignored.example/"},
                      CORE_CONTEXT_URL])
    assert ctx.expand("name") == "https://schema.org/name" and ctx.compact("https://schema.org/name") == "name"
    assert ctx.expand("schema:address") == "https://schema.org/address"
    assert ctx.compact("https://schema.org/address") == "schema:address"
    assert ctx.expand("pm") == "https://x.org/pm25"
    assert ctx.expand("location") == NGSI + "location"  # core terms cannot be redefined
    assert ctx.expand("other") == DEFAULT_VOCAB + "other"  # and the core @vocab applies
    assert ctx.url == CORE_CONTEXT_URL  # an inline context is linked to as the core one


def test_remote_contexts_are_never_fetched() -> None:
    with pytest.raises(NgsiError) as found:
        context_of("https://example.org/context.jsonld")
    assert found.value.kind == "LdContextNotAvailable" and found.value.status_code == 503
    with pytest.raises(NgsiError) as bad:
        context_of([{"term": 5}])
    assert bad.value.kind == "BadRequestData"


def test_link_header_and_accept() -> None:
    header = f'<{CORE_CONTEXT_URL}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    assert link_context_url(header) == CORE_CONTEXT_URL
    assert link_context_url('<https://a/b>; rel="next"') is None and link_context_url(None) is None
    with pytest.raises(NgsiError):
        link_context_url(f"{header}, {header}")
    assert wants_ld("application/ld+json") and not wants_ld("application/json") and not wants_ld("*/*")
    assert wants_ld("application/json;q=0.5, application/ld+json") and not wants_ld(None)


@pytest.mark.parametrize("text", ["a==1;b==2|c==3", "(a==1|b==2);c>=3", 'a~="^x.*"', "a.b.c<=2026-01-01T00:00:00Z",
                                  "a[k][l]!=x", "a", "a==1..2", 'a=="x,y",z'])
def test_q_parses(text: str) -> None:
    parse_q(text, core_context())


@pytest.mark.parametrize("text", ["", "a==", "==1", "(a==1", "a==1)", "a>>1", "a b==1", 'a=="x', "a==1,2;b>1,2"])
def test_q_errors_are_400(text: str) -> None:
    with pytest.raises(NgsiError) as found:
        parse_q(text, core_context())
    assert found.value.kind == "BadRequestData"


@pytest.mark.parametrize("pattern", ["(a+)+", "(x*)*y", r"(a)\1", "a" * 300, "[unclosed"])
def test_dangerous_or_broken_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(NgsiError):
        safe_regex(pattern, "idPattern")


def test_geo_parsing_and_distance() -> None:
    near = parse_geo("near;maxDistance==1000", "Point", "[108.44,11.94]")
    assert near is not None and near.max_distance == 1000 and near.box is not None
    assert near.box[0] < 108.44 < near.box[2]
    assert parse_geo(None, None, None) is None
    assert 1080 < haversine_m(108.44, 11.94, 108.45, 11.94) < 1100
    for args in (("near", "Point", "[1,2]"), ("near;maxDistance==-1", "Point", "[1,2]"),
                 ("within", "Point", "[1]"), ("sideways", "Point", "[1,2]"), ("within", None, "[1,2]")):
        with pytest.raises(NgsiError):
            parse_geo(*args)
    with pytest.raises(NgsiError) as other:
        parse_geo("within", "Point", "[1,2]", "observationSpace")
    assert other.value.kind == "OperationNotSupported"
