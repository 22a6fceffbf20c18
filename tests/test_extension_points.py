"""Every hook and every setting is documented; the kernel keeps its import rules."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from saola.config import Settings
from saola.packs import hookspecs
from saola.packs.manager import build_plugin_manager, build_registry

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _hook_names() -> list[str]:
    return [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("saola_")]


def test_there_are_hooks_to_check() -> None:
    assert "saola_indicators" in _hook_names() and len(_hook_names()) >= 10


def test_every_hook_has_a_docstring() -> None:
    missing = [n for n in _hook_names() if not (getattr(hookspecs, n).__doc__ or "").strip()]
    assert missing == []


def test_every_hook_is_documented_in_docs() -> None:
    text = (DOCS / "hooks.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^## (saola_\w+)\s*$", text, flags=re.M))
    assert sorted(set(_hook_names()) - documented) == []
    assert sorted(documented - set(_hook_names())) == [], "docs describe hooks that no longer exist"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    missing = [f"SAOLA_{name.upper()}" for name in Settings.model_fields if f"`SAOLA_{name.upper()}`" not in text]
    assert missing == []


def test_kernel_registers_through_the_same_hooks() -> None:
    pm = build_plugin_manager()
    registry = build_registry(pm)
    assert "core" in registry.packs
    assert "*" in registry.permissions["admin"]


def test_kernel_does_not_import_packs() -> None:
    """The same rule import-linter checks in `make test`, kept here so plain pytest catches it too."""
    src = Path(__file__).resolve().parents[1] / "src" / "saola"
    offenders = []
    for folder in ("core", "db", "packs", "bus"):
        for path in (src / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if re.search(r"^\s*(from|import) saola\.(domains|interop|demo)\b", text, flags=re.M):
                offenders.append(str(path.relative_to(src)))
    assert offenders == []


def test_built_in_packs_load() -> None:
    """A built-in pack that fails to import would be skipped silently at run time; here it must load."""
    pm = build_plugin_manager()
    registry = build_registry(pm)
    assert {"socioeconomic", "admin_services"} <= set(registry.packs)
    assert "hcc.on_time_rate" in registry.indicators
    assert all(pm.get_plugin(name) is not None for name in registry.packs if name != "core")


def test_disabled_pack_is_left_out() -> None:
    registry = build_registry(build_plugin_manager(("socioeconomic",)))
    assert "socioeconomic" not in registry.packs
    assert "kt.grdp_growth" not in registry.indicators
