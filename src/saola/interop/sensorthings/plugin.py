"""The SensorThings door declares itself through the kernel's hooks: its entity types and its router."""

from __future__ import annotations

from fastapi import APIRouter

from saola import __version__
from saola.config import Settings
from saola.packs import hookimpl
from saola.packs.definitions import EntityTypeDefinition, PackInfo


@hookimpl
def saola_pack_info() -> PackInfo:
    """Who this door is."""
    return PackInfo(slug="sensorthings", version=__version__, name_vi="OGC SensorThings API",
                    name_en="OGC SensorThings API")


@hookimpl
def saola_entity_types() -> list[EntityTypeDefinition]:
    """Things, Locations and FeaturesOfInterest are kernel entities of these types."""
    return [
        EntityTypeDefinition(type="sta.thing", name_vi="Thiết bị (SensorThings)", name_en="SensorThings Thing",
                             domain="sensorthings", attributes={"description": "text", "properties": "object"}),
        EntityTypeDefinition(type="sta.location", name_vi="Vị trí (SensorThings)", name_en="SensorThings Location",
                             domain="sensorthings",
                             attributes={"description": "text", "encodingType": "text", "properties": "object"}),
        EntityTypeDefinition(type="sta.feature", name_vi="Đối tượng quan trắc (SensorThings)",
                             name_en="SensorThings FeatureOfInterest", domain="sensorthings",
                             attributes={"description": "text", "encodingType": "text", "properties": "object"}),
    ]


@hookimpl
def saola_routers(settings: Settings) -> list[APIRouter]:
    """The SensorThings API 1.1 under /sta/v1.1."""
    from saola.interop.sensorthings.api import router

    return [router]
