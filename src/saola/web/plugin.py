"""The web UI, declared through the same hooks as any pack: its page routes and its static files."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from saola import __version__
from saola.config import Settings
from saola.packs import hookimpl
from saola.packs.definitions import PackInfo


@hookimpl
def saola_pack_info() -> PackInfo:
    """Who this part is."""
    return PackInfo(slug="web", version=__version__, name_vi="Giao diện web", name_en="Web UI")


@hookimpl
def saola_routers(settings: Settings) -> list[APIRouter]:
    """The pages: wallboard, operator console, citizen portal, admin and login."""
    from saola.web.pages import router

    return [router]


@hookimpl
def saola_startup(app: Any) -> None:
    """Serve the package's own assets (scripts, styles, fonts, map and chart libraries) under /static."""
    from saola.web.pages import mount_static

    mount_static(app)
