"""NGSI-LD entity types <-> kernel entity types.

An NGSI-LD type is an IRI (the term 'AirQualityObserved' under the core context is
https://uri.etsi.org/ngsi-ld/default-context/AirQualityObserved). It maps onto a kernel type this way:

1. a type declared by a pack is addressed by its own name as a term ('station.air'), or by the name its
   EntityTypeDefinition gives in an optional `ngsi_ld_type` attribute (a term or an IRI);
2. any other type gets a kernel type of its own, 'ngsi.<lower-case local name>' (suffixed -2, -3 ... on a
   clash), allotted on first use and kept in the ngsi_ld_types table. Those kernel types are added to the
   process's registry (at startup and on first use), so the kernel's own API serves them too.
"""

from __future__ import annotations

import re
import threading
import weakref
from typing import Any

from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from saola.db.types import utcnow
from saola.db.upsert import upsert_rows
from saola.interop.ngsi_ld.context import DEFAULT_VOCAB, core_context
from saola.interop.ngsi_ld.models import NgsiType
from saola.packs.definitions import EntityTypeDefinition
from saola.packs.manager import Registry

DOMAIN = "ngsi_ld"
PREFIX = "ngsi."
_SLUG = re.compile(r"[^a-z0-9_.-]+")
_NEW = "ngsi_ld_new_types"


def _slug(iri: str) -> str:
    local = iri[len(DEFAULT_VOCAB):] if iri.startswith(DEFAULT_VOCAB) else re.split(r"[/#:]", iri.rstrip("/#:"))[-1]
    return _SLUG.sub("-", local.lower()).strip("-._") or "type"


def _definition(kernel_type: str, iri: str) -> EntityTypeDefinition:
    name = core_context().compact(iri)
    return EntityTypeDefinition(type=kernel_type, name_vi=f"NGSI-LD {name}", name_en=f"NGSI-LD {name}",
                                domain=DOMAIN, geometry="any")


class TypeMap:
    """The type mapping of one database, cached in the process."""

    def __init__(self) -> None:
        self.by_iri: dict[str, str] = {}
        self.by_kernel: dict[str, str] = {}
        self.loaded = False
        self.lock = threading.Lock()

    def load(self, session: Session) -> None:
        """Read every allotted type (once)."""
        if self.loaded:
            return
        rows = session.execute(select(NgsiType.iri, NgsiType.kernel_type)).all()
        with self.lock:
            for iri, kernel_type in rows:
                self.by_iri[iri] = kernel_type
                self.by_kernel[kernel_type] = iri
            self.loaded = True


_maps: weakref.WeakKeyDictionary[Engine, TypeMap] = weakref.WeakKeyDictionary()
_maps_lock = threading.Lock()


def type_map(session: Session) -> TypeMap:
    """The (loaded) type map of the session's database."""
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    with _maps_lock:
        found = _maps.get(engine)
        if found is None:
            found = _maps[engine] = TypeMap()
    found.load(session)
    return found


def _declared(registry: Registry) -> dict[str, str]:
    """IRI -> kernel type for the types packs declare (recomputed when the registry grows)."""
    key = len(registry.entity_types)
    cached: tuple[int, dict[str, str]] | None = getattr(registry, "_ngsi_ld_declared", None)
    if cached and cached[0] == key:
        return cached[1]
    core = core_context()
    found: dict[str, str] = {}
    for kernel_type, definition in registry.entity_types.items():
        if definition.domain == DOMAIN:
            continue
        alias: Any = getattr(definition, "ngsi_ld_type", None)
        if isinstance(alias, str) and alias:
            found.setdefault(core.expand(alias), kernel_type)
        found.setdefault(core.expand(kernel_type), kernel_type)
    registry._ngsi_ld_declared = (key, found)  # type: ignore[attr-defined]
    return found


def ensure_registered(registry: Registry, kernel_type: str, iri: str) -> None:
    """Add an allotted kernel type to the registry so kernel services accept its entities."""
    if kernel_type not in registry.entity_types:
        registry.entity_types[kernel_type] = _definition(kernel_type, iri)


def register_all(session: Session, registry: Registry) -> int:
    """Add every allotted type to the registry (at startup); returns how many."""
    mapping = type_map(session)
    for kernel_type, iri in list(mapping.by_kernel.items()):
        ensure_registered(registry, kernel_type, iri)
    return len(mapping.by_kernel)


def _new_types(session: Session) -> dict[str, str]:
    """Types allotted in the session's open transaction: not cached until they are committed."""
    return session.info.setdefault(_NEW, {})


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _forget_new_types(session: Session) -> None:
    session.info.pop(_NEW, None)


def kernel_type_of(session: Session, registry: Registry, iri: str) -> str | None:
    """The kernel type an NGSI-LD type IRI maps to, or None when it has none yet."""
    declared = _declared(registry).get(iri)
    if declared is not None:
        return declared
    new = _new_types(session).get(iri)
    if new is not None:
        return new
    mapping = type_map(session)
    kernel_type = mapping.by_iri.get(iri)
    if kernel_type is None:
        kernel_type = session.scalar(select(NgsiType.kernel_type).where(NgsiType.iri == iri))
        if kernel_type is not None:
            with mapping.lock:
                mapping.by_iri[iri], mapping.by_kernel[kernel_type] = kernel_type, iri
    if kernel_type is not None:
        ensure_registered(registry, kernel_type, iri)
    return kernel_type


def allot(session: Session, registry: Registry, iris: set[str]) -> dict[str, str]:
    """The kernel type of each IRI, allotting new 'ngsi.*' types (in the caller's transaction) where needed."""
    result: dict[str, str] = {}
    for iri in sorted(iris):
        found = kernel_type_of(session, registry, iri)
        if found is not None:
            result[iri] = found
            continue
        taken = set(session.scalars(select(NgsiType.kernel_type).where(
            NgsiType.kernel_type.startswith(PREFIX + _slug(iri)[:50], autoescape=True))))
        base = (PREFIX + _slug(iri))[:56]
        candidate, n = base, 2
        while candidate in taken or candidate in registry.entity_types:
            candidate = f"{base[:56 - len(str(n)) - 1]}-{n}"
            n += 1
        upsert_rows(session, NgsiType.__table__, [{"iri": iri, "kernel_type": candidate, "created_at": utcnow()}],
                    key=["iri"])
        # Not cached here: the row is only real once the caller's transaction commits (the next lookup reads it).
        stored = session.scalar(select(NgsiType.kernel_type).where(NgsiType.iri == iri))
        assert stored is not None
        _new_types(session)[iri] = stored
        ensure_registered(registry, stored, iri)
        result[iri] = stored
    return result


def iri_of(session: Session, registry: Registry, kernel_type: str) -> str:
    """The NGSI-LD type IRI of a kernel type."""
    mapping = type_map(session)
    iri = mapping.by_kernel.get(kernel_type)
    if iri is not None:
        return iri
    new = next((i for i, k in _new_types(session).items() if k == kernel_type), None)
    if new is not None:
        return new
    definition = registry.entity_types.get(kernel_type)
    alias: Any = getattr(definition, "ngsi_ld_type", None) if definition else None
    if isinstance(alias, str) and alias:
        return core_context().expand(alias)
    if kernel_type.startswith(PREFIX):
        found = session.scalar(select(NgsiType.iri).where(NgsiType.kernel_type == kernel_type))
        if found is not None:
            with mapping.lock:
                mapping.by_iri[found], mapping.by_kernel[kernel_type] = kernel_type, found
            return found
    return core_context().expand(kernel_type)
