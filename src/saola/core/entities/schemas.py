"""Request and response models of entities, and their GeoJSON form."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

GeometryType = Literal["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"]
MAX_BATCH = 10_000

TYPE_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
UNIT_PATTERN = r"^[A-Za-z0-9]+$"


def safe_text(value: str) -> str:
    """Refuse text a database cannot store: NUL characters and lone surrogates."""
    if "\x00" in value:
        raise ValueError("text may not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("text must be valid Unicode") from exc
    return value


SafeStr = Annotated[str, AfterValidator(safe_text)]
"""A string PostgreSQL and SQLite both accept."""

MAX_JSON_DEPTH = 32


def json_problem(value: Any, depth: int = 0) -> str | None:
    """Why a value cannot be stored as JSON on every backend (None when it can)."""
    if depth > MAX_JSON_DEPTH:
        return f"nested deeper than {MAX_JSON_DEPTH} levels"
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "numbers must be finite"
    if isinstance(value, str):
        try:
            safe_text(value)
        except ValueError as exc:
            return str(exc)
        return None
    if isinstance(value, list | tuple):
        return next((p for p in (json_problem(v, depth + 1) for v in value) if p), None)
    if isinstance(value, dict):
        for key, item in value.items():
            problem = json_problem(key, depth + 1) if isinstance(key, str) else "object keys must be text"
            problem = problem or json_problem(item, depth + 1)
            if problem:
                return problem
        return None
    return f"{type(value).__name__} is not a JSON value"


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    problem = json_problem(value)
    if problem:
        raise ValueError(problem)
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]
"""A JSON object that stores the same on SQLite and PostgreSQL (finite numbers, no NUL characters)."""


class Geometry(BaseModel):
    """A GeoJSON geometry; coordinates are [longitude, latitude] positions, checked by the service."""

    model_config = ConfigDict(extra="forbid")

    type: GeometryType
    coordinates: list[Any] = Field(description="Positions nested as GeoJSON requires for the type")


class EntityCreate(BaseModel):
    """A new entity (or, in a batch, one to create or replace by its type and external_id)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: str = Field(min_length=1, max_length=60, pattern=TYPE_PATTERN, description="A type a pack declares")
    name: SafeStr = Field(min_length=1, max_length=255)
    unit_code: str = Field(min_length=1, max_length=16, pattern=UNIT_PATTERN)
    external_id: SafeStr | None = Field(default=None, min_length=1, max_length=120,
                                        description="The source system's own id; unique per type")
    geometry: Geometry | None = None
    attributes: JsonObject = Field(default_factory=dict)
    agency_id: uuid.UUID | None = None


class EntityUpdate(BaseModel):
    """Changes to an entity; attributes are merged (a null value removes that key); geometry null clears it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: SafeStr | None = Field(default=None, min_length=1, max_length=255)
    unit_code: str | None = Field(default=None, min_length=1, max_length=16, pattern=UNIT_PATTERN)
    geometry: Geometry | None = None
    attributes: JsonObject | None = None
    agency_id: uuid.UUID | None = None


class EntityBatch(BaseModel):
    """Entities to create or replace by (type, external_id), all or nothing."""

    model_config = ConfigDict(extra="forbid")

    items: list[EntityCreate] = Field(min_length=1, max_length=MAX_BATCH)


class EntityBatchResult(BaseModel):
    """What a batch did: ids in the order of the items."""

    created: int
    updated: int
    ids: list[uuid.UUID]


class EntityRead(BaseModel):
    """An entity; bbox is [min_lon, min_lat, max_lon, max_lat] of its geometry."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    type: str
    name: str
    unit_code: str
    external_id: str | None
    geometry: Geometry | None
    attributes: dict[str, Any]
    bbox: list[float] | None = None
    source_id: int | None
    agency_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, entity: Any) -> EntityRead:
        """The read model of a stored entity, with its bounding box."""
        read = cls.model_validate(entity)
        if entity.min_lon is not None:
            read.bbox = [entity.min_lon, entity.min_lat, entity.max_lon, entity.max_lat]
        return read


class EntityPage(BaseModel):
    """A page of entities and the total that matched."""

    total: int
    items: list[EntityRead]


class Feature(BaseModel):
    """One entity as a GeoJSON Feature."""

    type: Literal["Feature"] = "Feature"
    id: uuid.UUID
    geometry: Geometry | None
    properties: dict[str, Any]

    @classmethod
    def of(cls, entity: Any) -> Feature:
        """A stored entity as a Feature; its attributes sit under properties.attributes."""
        return cls(id=entity.id, geometry=entity.geometry, properties={
            "type": entity.type, "name": entity.name, "unit_code": entity.unit_code,
            "external_id": entity.external_id, "attributes": entity.attributes,
        })


class FeatureCollection(BaseModel):
    """Entities as a GeoJSON FeatureCollection, for maps."""

    type: Literal["FeatureCollection"] = "FeatureCollection"
    numberMatched: int
    numberReturned: int
    features: list[Feature]
