"""The context handed to pack code that runs outside a request (demo seeding, simulators, jobs)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from saola.config import Settings
from saola.core.auth.context import Actor


@dataclass
class PackContext:
    """Settings, a session factory, the demo province, a seeded random generator and a progress callback."""

    settings: Settings
    session_factory: sessionmaker[Session]
    now: datetime
    province_code: str = "68"
    rng: random.Random = field(default_factory=lambda: random.Random(68))
    source_ids: dict[str, int] = field(default_factory=dict)
    progress: Callable[[str, float], None] = lambda _label, _fraction: None
    state: dict[str, Any] = field(default_factory=dict)

    def source_actor(self, session: Session, slug: str) -> Actor:
        """The Actor of the demo source registered for a pack, so its writes go through the same checks."""
        from saola.core.sources.models import Source
        from saola.core.sources.service import actor_for_source

        source = session.get(Source, self.source_ids[slug])
        if source is None:
            raise KeyError(f"no demo source for pack {slug!r}")
        return actor_for_source(session, source)
