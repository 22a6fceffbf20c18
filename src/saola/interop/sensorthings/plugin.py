"""The sensorthings door declares itself through the kernel's hooks (to be completed)."""

from __future__ import annotations

from saola import __version__
from saola.packs import hookimpl
from saola.packs.definitions import PackInfo


@hookimpl
def saola_pack_info() -> PackInfo:
    """Who this door is."""
    return PackInfo(slug="sensorthings", version=__version__, name_vi="sensorthings", name_en="sensorthings")
