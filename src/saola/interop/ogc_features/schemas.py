"""Documents of OGC API – Features, for the API description (routes answer with prebuilt JSON)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field


class GeoJSONResponse(JSONResponse):
    """A JSON answer with the GeoJSON media type."""

    media_type = "application/geo+json"


class Link(BaseModel):
    """A link to a related resource."""

    href: str
    rel: str
    type: str | None = None
    title: str | None = None


class LandingPage(BaseModel):
    """The landing page: title and links to the API description, conformance and collections."""

    title: str
    description: str
    links: list[Link]


class Conformance(BaseModel):
    """The conformance classes implemented."""

    model_config = ConfigDict(populate_by_name=True)

    conforms_to: list[str] = Field(alias="conformsTo")


class Collection(BaseModel):
    """A collection: id, titles, extent in CRS84, and links to its items."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    title: str
    description: str
    item_type: str = Field(alias="itemType")
    keywords: list[str]
    crs: list[str]
    storage_crs: str = Field(alias="storageCrs")
    extent: dict[str, Any] | None = None
    links: list[Link]


class Collections(BaseModel):
    """Every collection offered."""

    links: list[Link]
    collections: list[Collection]


class Feature(BaseModel):
    """A GeoJSON Feature."""

    type: str = "Feature"
    id: str | int
    geometry: dict[str, Any] | None
    properties: dict[str, Any]
    links: list[Link] = []


class FeatureCollection(BaseModel):
    """A page of GeoJSON Features with the counts and paging links of OGC API – Features."""

    model_config = ConfigDict(populate_by_name=True)

    type: str = "FeatureCollection"
    features: list[Feature]
    number_matched: int = Field(alias="numberMatched")
    number_returned: int = Field(alias="numberReturned")
    time_stamp: str = Field(alias="timeStamp")
    links: list[Link]
