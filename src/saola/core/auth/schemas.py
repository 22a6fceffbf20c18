"""Request and response models for users and tokens."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["admin", "leader", "operator", "agency_staff", "integrator", "viewer"]


class Token(BaseModel):
    """An OAuth2 bearer token."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class UserCreate(BaseModel):
    """A new user."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=3, max_length=80, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=8, max_length=200)
    role: Role
    scope: str = Field(min_length=1, max_length=16, description="Code of the unit whose subtree the user sees")
    full_name: str = Field(default="", max_length=200)
    agency_id: uuid.UUID | None = None


class UserRead(BaseModel):
    """A user, without secrets."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    full_name: str
    role: str
    scope_code: str
    agency_id: uuid.UUID | None
    is_active: bool
    created_at: datetime


class Me(BaseModel):
    """The caller, as the server sees them."""

    kind: str
    name: str
    role: str
    scope_code: str
    permissions: list[str]
