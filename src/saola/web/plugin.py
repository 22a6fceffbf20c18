"""The web UI, declared through the same hooks as any pack."""

from __future__ import annotations

from saola import __version__
from saola.packs import hookimpl
from saola.packs.definitions import PackInfo


@hookimpl
def saola_pack_info() -> PackInfo:
    """Who this part is."""
    return PackInfo(slug="web", version=__version__, name_vi="Giao diện web", name_en="Web UI")
