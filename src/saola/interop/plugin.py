"""The standard doors, mounted through the same hooks as packs (registered under the saola.packs entry point)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from saola.config import Settings
from saola.packs import hookimpl


@hookimpl
def saola_routers(settings: Settings) -> list[APIRouter]:
    """The OGC API – Features door under /ogc; public CAP 1.2 warnings under /cap."""
    from saola.interop.cap.api import router as cap_router
    from saola.interop.ogc_features.api import router as ogc_features_router

    return [ogc_features_router, cap_router]


@hookimpl
def saola_startup(app: Any) -> None:
    """Start the MQTT door when SAOLA_MQTT_URL is set (`saola serve --mqtt URL`); it stops when the process exits."""
    import atexit

    from saola.interop.mqtt.door import start_door, stop_doors

    if getattr(app.state, "mqtt_door", None) is not None:
        return  # the same application started again (tests): one door per application
    door = start_door(app.state.settings, app.state.session_factory)
    if door is not None:
        app.state.mqtt_door = door
        atexit.register(stop_doors)
