"""Shapes of the NGSI-LD answers, for the OpenAPI description (the routes build their JSON themselves: attribute
names are the client's terms, so the bodies are open objects)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class NgsiEntity(BaseModel):
    """An entity in normalized (or keyValues) form: id, type and one member per attribute."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="The entity id, a URI")
    type: str = Field(description="The entity type, compacted with the request's @context")


class ProblemDetails(BaseModel):
    """An error (RFC 7807) with an ETSI NGSI-LD error type URI; `errors` names each bad field or entity."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


class BatchEntityError(BaseModel):
    """One entity a batch left alone, with why."""

    entityId: str | None
    error: ProblemDetails


class BatchOperationResult(BaseModel):
    """A 207 answer of a batch: the ids written and the entities left alone because of their existence."""

    success: list[str]
    errors: list[BatchEntityError]


class NotUpdatedDetails(BaseModel):
    """An attribute an update left alone."""

    attributeName: str
    reason: str


class UpdateResult(BaseModel):
    """A 207 answer of an attribute update or append."""

    updated: list[str]
    notUpdated: list[NotUpdatedDetails]


class EntityTypeList(BaseModel):
    """The entity types of the caller's scope."""

    id: str
    type: str = "EntityTypeList"
    typeList: list[str]


class Subscription(BaseModel):
    """A subscription as its creator wrote it, with status and notification figures."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: str = "Subscription"
    status: str


class TemporalEntity(BaseModel):
    """The temporal evolution of an entity: per attribute a list of instances, or {type, values} with
    options=temporalValues."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: str


NO_BODY = {"description": "No body: the Location header names the new resource",
           "content": {"application/json": {"schema": {"type": "string", "maxLength": 0}}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ProblemDetails, "description": "InvalidRequest or BadRequestData"},
    401: {"model": ProblemDetails, "description": "No valid credentials"},
    403: {"model": ProblemDetails, "description": "Not allowed, or TooManyResults"},
    404: {"model": ProblemDetails, "description": "ResourceNotFound"},
    503: {"model": ProblemDetails, "description": "LdContextNotAvailable"},
}
