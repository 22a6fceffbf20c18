"""The ngsi_ld door declares itself through the kernel's hooks: its router, a grant for subscriptions, and at
startup the NGSI-LD entity types allotted so far plus the notifier thread."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter

from saola import __version__
from saola.config import Settings
from saola.packs import hookimpl
from saola.packs.definitions import PackInfo

log = logging.getLogger(__name__)


@hookimpl
def saola_pack_info() -> PackInfo:
    """Who this door is."""
    return PackInfo(slug="ngsi_ld", version=__version__, name_vi="Cổng NGSI-LD (ETSI)", name_en="ETSI NGSI-LD door")


@hookimpl
def saola_routers(settings: Settings) -> list[APIRouter]:
    """The NGSI-LD API under /ngsi-ld/v1."""
    from saola.interop.ngsi_ld.api import router

    return [router]


@hookimpl
def saola_permissions() -> dict[str, list[str]]:
    """Creating subscriptions makes the server call out: integrators and operators may (admins hold '*')."""
    from saola.interop.ngsi_ld.subscriptions import PERMISSION

    return {"integrator": [PERMISSION], "operator": [PERMISSION]}


@hookimpl
def saola_startup(app: Any) -> None:
    """Declare the NGSI-LD types allotted so far to the registry and start delivering notifications."""
    from saola.db.engine import transaction
    from saola.interop.ngsi_ld.notify import start_notifier
    from saola.interop.ngsi_ld.typemap import register_all

    settings: Settings = app.state.settings
    try:
        with transaction(app.state.session_factory) as session:
            register_all(session, app.state.registry)
    except Exception:  # a database without this door's tables yet: nothing to declare
        log.warning("NGSI-LD types could not be loaded (is the database upgraded?)", exc_info=True)
    start_notifier(app.state.session_factory, timeout=settings.webhook_timeout_seconds,
                   max_attempts=settings.webhook_max_attempts)


@hookimpl
def saola_shutdown(app: Any) -> None:
    """Stop delivering notifications: the application's database is about to close."""
    from saola.interop.ngsi_ld.notify import stop_notifier

    stop_notifier(app.state.engine)
