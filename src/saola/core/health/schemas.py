"""Response model of the health check."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Health(BaseModel):
    """Whether the node can serve, and what it runs on."""

    status: Literal["ok", "degraded"]
    version: str
    node: str
    database: Literal["sqlite", "postgresql"]
    migration_revision: str | None
    migrations_current: bool
    packs: list[str]
