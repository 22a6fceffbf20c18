"""Imports every kernel table so the metadata is complete (for Alembic and create_all).

Packs' tables live in their own modules and are imported by the pack's `models` module; packs list
them in saola.db.models via the `saola.models` entry point group, so the kernel does not import them.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from saola.core.alerts import models as _alerts  # noqa: F401
from saola.core.audit import models as _audit  # noqa: F401
from saola.core.auth import models as _auth  # noqa: F401
from saola.core.cases import models as _cases  # noqa: F401
from saola.core.entities import models as _entities  # noqa: F401
from saola.core.events import models as _events  # noqa: F401
from saola.core.indicators import models as _indicators  # noqa: F401
from saola.core.ingest import models as _ingest  # noqa: F401
from saola.core.observations import models as _observations  # noqa: F401
from saola.core.rules import models as _rules  # noqa: F401
from saola.core.sources import models as _sources  # noqa: F401
from saola.core.units import models as _units  # noqa: F401
from saola.db import outbox as _outbox  # noqa: F401
from saola.db.base import Base

for _ep in entry_points(group="saola.models"):
    _ep.load()

metadata = Base.metadata
