"""JSON-LD @context handling for NGSI-LD: the bundled core context, user contexts, and term expansion/compaction.

Only what NGSI-LD needs of JSON-LD is implemented: a context is a list of term definitions (a term maps to an
IRI, a compact IRI 'prefix:suffix' or {"@id": ...}) and an @vocab. The core context is always applied last, so
its terms are protected, as the specification requires. Nothing is ever fetched from the network: the core
context is bundled in this package (under every URL the ETSI publishes it at), inline contexts are processed
as given, and any other remote context answers LdContextNotAvailable (503).
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from saola.interop.ngsi_ld.errors import NgsiError, bad_request

CORE_CONTEXT_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
CORE_CONTEXT_FILE = Path(__file__).with_name("contexts") / "ngsi-ld-core-context.jsonld"
JSONLD_CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
NGSI_LD = "https://uri.etsi.org/ngsi-ld/"
DEFAULT_VOCAB = NGSI_LD + "default-context/"
LD_JSON = "application/ld+json"
JSON = "application/json"

_CORE_URL = re.compile(r"^https?://uri\.etsi\.org/ngsi-ld/v1/ngsi-ld-core-context(-v1\.\d+)?\.jsonld$")
_LINK = re.compile(r'<([^>]*)>\s*((?:;\s*[A-Za-z]+\s*=\s*(?:"[^"]*"|[^;,]*)\s*)*)')
_PARAM = re.compile(r';\s*([A-Za-z]+)\s*=\s*(?:"([^"]*)"|([^;,]*))')
MAX_TERMS = 2_000
MAX_CONTEXT_ENTRIES = 20


def is_core_url(url: str) -> bool:
    """True for the URLs the ETSI publishes the core context at (any version)."""
    return bool(_CORE_URL.match(url))


class LdContext:
    """An active context: user term definitions under the protected core ones, with cached expansion/compaction.

    `value` is what the caller gave (a URL, an object or a list), echoed in responses as @context; `url` is the
    single URL to put in a Link header (the core context's when the value is inline).
    """

    def __init__(self, terms: dict[str, str], coercions: dict[str, str], vocab: str | None, value: Any) -> None:
        self.terms = terms
        self.coercions = coercions
        self.vocab = vocab
        self.value = value
        self.url = value if isinstance(value, str) else CORE_CONTEXT_URL
        self._expanded: dict[str, str] = {}
        self._compacted: dict[str, str] = {}
        self._inverse: dict[str, str] | None = None
        self._prefixes: list[tuple[str, str]] | None = None

    @property
    def is_core(self) -> bool:
        """True when this is the core context alone."""
        return self is core_context()

    def expand(self, term: str) -> str:
        """The IRI a term (or compact IRI, or absolute IRI) stands for."""
        found = self._expanded.get(term)
        if found is None:
            found = self._expand(term)
            if len(self._expanded) < 50_000:
                self._expanded[term] = found
        return found

    def _expand(self, term: str) -> str:
        iri = self.terms.get(term)
        if iri is not None:
            return iri
        prefix, colon, suffix = term.partition(":")
        if colon:
            if suffix.startswith("//") or prefix == "_":
                return term
            base = self.terms.get(prefix)
            return base + suffix if base is not None else term
        return self.vocab + term if self.vocab else term

    def compact(self, iri: str) -> str:
        """The shortest name of an IRI under this context: a term, a vocab-relative name, a compact IRI or itself."""
        found = self._compacted.get(iri)
        if found is None:
            found = self._compact(iri)
            if len(self._compacted) < 50_000:
                self._compacted[iri] = found
        return found

    def _compact(self, iri: str) -> str:
        if self._inverse is None:
            inverse: dict[str, str] = {}
            for term, target in sorted(self.terms.items(), key=lambda kv: (len(kv[0]), kv[0])):
                inverse.setdefault(target, term)
            self._inverse = inverse
            self._prefixes = sorted(((t, i) for t, i in self.terms.items()
                                     if i.endswith(("/", "#", ":")) and ":" not in t),
                                    key=lambda ti: -len(ti[1]))
        term = self._inverse.get(iri)
        if term is not None:
            return term
        if self.vocab and iri.startswith(self.vocab):
            local = iri[len(self.vocab):]
            if local and ":" not in local and local not in self.terms:
                return local
        for prefix, base in self._prefixes or ():
            if iri.startswith(base) and len(iri) > len(base):
                compact = f"{prefix}:{iri[len(base):]}"
                if compact not in self.terms and not iri[len(base):].startswith("//"):
                    return compact
        return iri

    def coercion(self, term: str) -> str | None:
        """The @type a term's values are coerced to ("@id", "@vocab", "DateTime" ...), if any."""
        return self.coercions.get(term)


def _definitions(obj: dict[str, Any], terms: dict[str, Any], loc: str) -> str | None:
    """Add an inline context object's term definitions; returns its @vocab (None when it sets none)."""
    vocab: str | None = None
    for key, definition in obj.items():
        if key == "@vocab":
            if definition is not None and not isinstance(definition, str):
                raise bad_request(f"{loc}: @vocab must be an IRI")
            vocab = definition or None
            continue
        if key.startswith("@"):
            continue  # @version, @base, @protected, @language ...: nothing to do for term expansion
        if definition is None:
            terms.pop(key, None)
        elif isinstance(definition, str):
            terms[key] = {"@id": definition}
        elif isinstance(definition, dict):
            if "@id" in definition and not isinstance(definition["@id"], str | type(None)):
                raise bad_request(f"{loc}: the @id of term {key!r} must be an IRI")
            terms[key] = definition
        else:
            raise bad_request(f"{loc}: the definition of term {key!r} must be an IRI or an object")
        if len(terms) > MAX_TERMS:
            raise bad_request(f"{loc}: more than {MAX_TERMS} terms")
    return vocab


def _resolve_iri(value: str, raw: dict[str, dict[str, Any]], seen: frozenset[str] = frozenset()) -> str:
    """Resolve a term's @id, which may itself use a prefix or another term of the same context."""
    if value in raw and value not in seen and "@id" in raw[value] and raw[value]["@id"] != value:
        return _resolve_iri(raw[value]["@id"], raw, seen | {value})
    prefix, colon, suffix = value.partition(":")
    if colon and not suffix.startswith("//") and prefix in raw and prefix not in seen:
        base = raw[prefix].get("@id")
        if isinstance(base, str):
            return _resolve_iri(base, raw, seen | {prefix}) + suffix
    return value


def _build(entries: list[Any], value: Any) -> LdContext:
    """Process user context entries (objects and core URLs) with the core context applied last."""
    raw: dict[str, dict[str, Any]] = {}
    vocab: str | None = None
    for n, entry in enumerate(entries):
        loc = f"@context[{n}]" if len(entries) > 1 else "@context"
        if isinstance(entry, str):
            if is_core_url(entry):
                continue  # applied last anyway
            raise NgsiError("LdContextNotAvailable",
                            f"the JSON-LD context {entry!r} is not available: this server fetches no remote "
                            "contexts; send the context inline (application/ld+json) instead")
        if isinstance(entry, dict):
            vocab = _definitions(entry, raw, loc) or vocab
        elif entry is not None:
            raise bad_request(f"{loc} must be a URL or an object")
    core = _core_raw()
    raw.update(core)  # the core terms are protected: the core context comes last
    vocab = DEFAULT_VOCAB  # and it sets @vocab
    terms: dict[str, str] = {}
    coercions: dict[str, str] = {}
    for term, definition in raw.items():
        iri = definition.get("@id")
        if iri is None:
            iri = (vocab + term) if ":" not in term else term
        if not isinstance(iri, str):
            continue
        terms[term] = _resolve_iri(iri, raw)
        kind = definition.get("@type")
        if isinstance(kind, str):
            coercions[term] = kind
    return LdContext(terms, coercions, vocab, value)


@lru_cache(maxsize=1)
def _core_raw() -> dict[str, dict[str, Any]]:
    document = json.loads(CORE_CONTEXT_FILE.read_text(encoding="utf-8"))
    raw: dict[str, dict[str, Any]] = {}
    _definitions(document["@context"], raw, "core context")
    return raw


@lru_cache(maxsize=1)
def core_context() -> LdContext:
    """The NGSI-LD core context, read once from the file bundled with this package."""
    return _build([], CORE_CONTEXT_URL)


@lru_cache(maxsize=1)
def core_document() -> dict[str, Any]:
    """The bundled core context document, as served to clients."""
    return json.loads(CORE_CONTEXT_FILE.read_text(encoding="utf-8"))


class _ContextCache:
    """Processed contexts by their JSON text, least recently used dropped first."""

    def __init__(self, size: int = 128) -> None:
        self.size = size
        self.items: OrderedDict[bytes, LdContext] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, value: Any) -> LdContext:
        key = value.encode() if isinstance(value, str) else orjson.dumps(value)
        with self.lock:
            found = self.items.get(key)
            if found is not None:
                self.items.move_to_end(key)
                return found
        entries = value if isinstance(value, list) else [value]
        if len(entries) > MAX_CONTEXT_ENTRIES:
            raise bad_request(f"@context holds more than {MAX_CONTEXT_ENTRIES} entries")
        processed = _build(entries, value)
        with self.lock:
            self.items[key] = processed
            if len(self.items) > self.size:
                self.items.popitem(last=False)
        return processed


_cache = _ContextCache()


def context_of(value: Any) -> LdContext:
    """The active context for an @context value (a URL, an object, or a list of them); never fetched."""
    if value is None:
        return core_context()
    if isinstance(value, str) and is_core_url(value):
        return core_context()
    if isinstance(value, list) and all(isinstance(v, str) and is_core_url(v) for v in value):
        return core_context() if len(value) <= 1 else _cache.get(value)
    if not isinstance(value, str | list | dict):
        raise bad_request("@context must be a URL, an object or an array")
    return _cache.get(value)


def link_context_url(header: str | None) -> str | None:
    """The context URL of a Link header with rel json-ld#context; None when absent; 400 when several."""
    if not header:
        return None
    found: list[str] = []
    for match in _LINK.finditer(header):
        url, params = match.group(1), match.group(2) or ""
        rel = next((m.group(2) if m.group(2) is not None else m.group(3).strip()
                    for m in _PARAM.finditer(params) if m.group(1).lower() == "rel"), None)
        if rel == JSONLD_CONTEXT_REL:
            found.append(url.strip())
    if len(found) > 1:
        raise bad_request("more than one JSON-LD context Link header")
    return found[0] if found else None


def link_header(context: LdContext) -> str:
    """The Link header that names the context of an application/json answer."""
    return f'<{context.url}>; rel="{JSONLD_CONTEXT_REL}"; type="{LD_JSON}"'


def media_type(header: str | None) -> str:
    """The bare media type of a Content-Type or single Accept value, lower-case."""
    return (header or "").split(";", 1)[0].strip().lower()


def wants_ld(accept: str | None) -> bool:
    """True when the client prefers application/ld+json over application/json."""
    if not accept:
        return False
    best, best_q = "", -1.0
    for part in accept.split(","):
        kind, *params = part.split(";")
        kind = kind.strip().lower()
        q = 1.0
        for p in params:
            name, _, val = p.partition("=")
            if name.strip() == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        if kind in (LD_JSON, JSON) and q > best_q:
            best, best_q = kind, q
    return best == LD_JSON
