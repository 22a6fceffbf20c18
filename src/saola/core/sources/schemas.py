"""Request and response models of source systems."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

WRITE_PATTERN = r"^(observations|events|entities):[A-Za-z0-9_.*?\-\[\]]+$"


class SourceCreate(BaseModel):
    """A new source system."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=2, max_length=80, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    scope: str = Field(min_length=1, max_length=16, description="Unit code whose subtree the source may write")
    description: str = Field(default="", max_length=500)
    allowed_writes: list[str] = Field(
        default_factory=lambda: ["observations:*", "events:*", "entities:*"],
        description="Patterns kind:code, e.g. 'observations:env.*', 'events:camera.*', 'entities:station.*'",
    )
    rate_limit_per_minute: int = Field(default=600, ge=1, le=1_000_000)


class SourceRead(BaseModel):
    """A source system, without its key."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    scope_code: str
    allowed_writes: list[str]
    key_prefix: str
    rate_limit_per_minute: int
    is_active: bool
    last_seen_at: datetime | None
    created_at: datetime


class SourceCreated(SourceRead):
    """A new source with its API key, shown this once only."""

    api_key: str
