"""The environment pack, declared through the kernel's hooks."""

from __future__ import annotations

from saola import __version__
from saola.packs import hookimpl
from saola.packs.definitions import PackInfo


@hookimpl
def saola_pack_info() -> PackInfo:
    """Who this pack is."""
    return PackInfo(slug="environment", version=__version__, name_vi="Môi trường", name_en="Environment")
