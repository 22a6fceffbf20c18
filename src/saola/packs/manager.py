"""Loads the kernel's own plugin and every installed pack, and merges what they declare."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points

import pluggy

from saola.packs import hookspecs
from saola.packs.definitions import (
    EntityTypeDefinition,
    EventTypeDefinition,
    IndicatorDefinition,
    PackInfo,
)

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "saola.packs"


class PackError(RuntimeError):
    """A pack declares something that clashes with another pack or with the kernel."""


def build_plugin_manager(disabled: tuple[str, ...] = ()) -> pluggy.PluginManager:
    """A plugin manager with the kernel plugin and every pack registered under the entry point group."""
    from saola.core import plugin as core_plugin

    pm = pluggy.PluginManager("saola")
    pm.add_hookspecs(hookspecs)
    pm.register(core_plugin, name="core")
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in disabled:
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception:  # a broken pack degrades to "not loaded", it never takes the server down
            log.exception("pack %s failed to load; continuing without it", ep.name)
    _check_dependencies(pm)
    return pm


def _check_dependencies(pm: pluggy.PluginManager) -> None:
    infos: list[PackInfo] = pm.hook.saola_pack_info()
    slugs = {i.slug for i in infos}
    for info in infos:
        missing = [d for d in info.depends if d not in slugs]
        if missing:
            raise PackError(f"pack {info.slug} needs {', '.join(missing)}, which is not loaded")


@dataclass
class Registry:
    """Everything packs declared, merged and checked for clashes."""

    packs: dict[str, PackInfo] = field(default_factory=dict)
    indicators: dict[str, IndicatorDefinition] = field(default_factory=dict)
    entity_types: dict[str, EntityTypeDefinition] = field(default_factory=dict)
    event_types: dict[str, EventTypeDefinition] = field(default_factory=dict)
    permissions: dict[str, set[str]] = field(default_factory=dict)


def _merge(target: dict, items: list[list], key: str, what: str) -> None:
    for group in items:
        for item in group or []:
            k = getattr(item, key)
            if k in target and target[k] != item:
                raise PackError(f"{what} {k!r} is declared twice with different definitions")
            target[k] = item


def build_registry(pm: pluggy.PluginManager) -> Registry:
    """Collect and merge the declarations of all loaded packs."""
    reg = Registry()
    for info in pm.hook.saola_pack_info():
        reg.packs[info.slug] = info
    _merge(reg.indicators, pm.hook.saola_indicators(), "code", "indicator")
    _merge(reg.entity_types, pm.hook.saola_entity_types(), "type", "entity type")
    _merge(reg.event_types, pm.hook.saola_event_types(), "type", "event type")
    for grant in pm.hook.saola_permissions():
        for role, perms in (grant or {}).items():
            reg.permissions.setdefault(role, set()).update(perms)
    return reg


@lru_cache(maxsize=8)
def get_plugin_manager(disabled: tuple[str, ...] = ()) -> pluggy.PluginManager:
    """The process-wide plugin manager for a given set of disabled packs."""
    return build_plugin_manager(disabled)


@lru_cache(maxsize=8)
def get_registry(disabled: tuple[str, ...] = ()) -> Registry:
    """The process-wide registry for a given set of disabled packs."""
    return build_registry(get_plugin_manager(disabled))
