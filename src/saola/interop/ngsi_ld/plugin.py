"""The ngsi_ld door declares itself through the kernel's hooks (to be completed)."""

from __future__ import annotations

from saola import __version__
from saola.packs import hookimpl
from saola.packs.definitions import PackInfo


@hookimpl
def saola_pack_info() -> PackInfo:
    """Who this door is."""
    return PackInfo(slug="ngsi_ld", version=__version__, name_vi="ngsi_ld", name_en="ngsi_ld")
