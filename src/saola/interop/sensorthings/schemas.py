"""Shapes of the SensorThings door's answers, for the OpenAPI description (the routes build the JSON themselves)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EntitySetLink(BaseModel):
    """One entity set of the service root."""

    name: str
    url: str


class ServiceRoot(BaseModel):
    """The service root: the entity sets and serverSettings.conformance."""

    value: list[EntitySetLink]
    serverSettings: dict[str, list[str]]


class StaDocument(BaseModel):
    """An entity ({@iot.id, @iot.selfLink, properties, Nav@iot.navigationLink ...}) or a collection page
    ({value, @iot.count, @iot.nextLink}); a property read answers {name: value}."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    iot_id: int | str | None = Field(default=None, alias="@iot.id")
    iot_self_link: str | None = Field(default=None, alias="@iot.selfLink")
    value: list[dict[str, Any]] | None = None
    iot_count: int | None = Field(default=None, alias="@iot.count")
    iot_next_link: str | None = Field(default=None, alias="@iot.nextLink")


class StaError(BaseModel):
    """An error: HTTP status, 'error', a message naming the problem, and field errors with their paths."""

    code: int
    type: str = "error"
    message: str
    errors: list[dict[str, Any]] = Field(default_factory=list)


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": StaError, "description": why} for status, why in (
        (400, "Bad syntax or input; nothing was written"), (401, "No or bad credentials"),
        (403, "Not allowed, or outside the caller's unit scope"), (404, "No such entity or path"),
        (405, "Not possible on this resource"), (409, "Clashes with stored data"))
}
CREATED_LINKS: dict[int | str, dict[str, Any]] = {
    201: {"description": "CreateObservations: one self link per row, in order; other POSTs: the new entity, "
                         "with a Location header",
          "content": {"application/json": {"schema": {"anyOf": [
              {"type": "array", "items": {"type": "string"}}, {"$ref": "#/components/schemas/StaDocument"}]}}}},
}
EMPTY: dict[int | str, dict[str, Any]] = {
    200: {"description": "Deleted (empty body)", "content": {"text/plain": {"schema": {"type": "string",
                                                                                       "maxLength": 0}}}},
}
