"""Request and response models of the unit tree and agencies."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

UnitLevel = Literal["nation", "province", "commune"]


class UnitRead(BaseModel):
    """An administrative unit."""

    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    name_en: str
    level: UnitLevel
    division_type: str
    parent_code: str | None
    path: str


class UnitPage(BaseModel):
    """A page of units and the total that matched."""

    total: int
    items: list[UnitRead]


class AgencyCreate(BaseModel):
    """A new agency inside a unit."""

    model_config = ConfigDict(extra="forbid")

    unit_code: str = Field(min_length=1, max_length=16)
    code: str = Field(min_length=1, max_length=60, pattern=r"^[a-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=255)
    name_en: str = Field(default="", max_length=255)
    kind: str = Field(default="department", max_length=40)
    parent_id: uuid.UUID | None = None


class AgencyRead(BaseModel):
    """An agency."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    unit_code: str
    code: str
    name: str
    name_en: str
    kind: str
    parent_id: uuid.UUID | None
