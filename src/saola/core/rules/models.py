"""The rules table: what to watch, where, and how serious it is when the condition holds."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from saola.db.base import Base, IdMixin, NodeMixin, TimestampMixin
from saola.db.types import JSONType


class Rule(IdMixin, NodeMixin, TimestampMixin, Base):
    """A rule, scoped to a unit subtree and optionally to an entity type or one entity.

    `params` holds the kind's settings (see saola.core.rules.schemas); `indicator_code` and `event_type` copy
    what it watches so that rules can be listed by it. `key` names a rule installed from a pack's defaults.
    """

    __tablename__ = "rules"
    __table_args__ = (
        Index("ix_rules_unit_code", "unit_code"),
        Index("ix_rules_indicator_code", "indicator_code"),
    )

    key: Mapped[str | None] = mapped_column(String(120), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(String(2000), default="")
    kind: Mapped[str] = mapped_column(String(20))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    indicator_code: Mapped[str | None] = mapped_column(String(80))
    event_type: Mapped[str | None] = mapped_column(String(60))
    severity: Mapped[str] = mapped_column(String(16), default="medium")
    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"))
    entity_type: Mapped[str | None] = mapped_column(String(60))
    entity_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("entities.id", ondelete="CASCADE"))
    open_case_type: Mapped[str | None] = mapped_column(String(60))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    flap_limit: Mapped[int] = mapped_column(Integer, default=6)
    flap_window_seconds: Mapped[int] = mapped_column(Integer, default=3600)
    created_by: Mapped[str] = mapped_column(String(120), default="")
