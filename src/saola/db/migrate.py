"""Run Alembic migrations from code (used by `saola db upgrade`, the demo and the tests).

The kernel's migrations live in saola/db/migrations/versions. A pack with tables of its own ships a
versions folder as a separate Alembic branch (its first revision has a branch label, no down_revision,
and depends_on the kernel revision it needs), and names the folder's package under the entry point
group `saola.migrations`. `upgrade` brings every branch to its head.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
MIGRATION_ENTRY_POINTS = "saola.migrations"


def version_locations() -> list[str]:
    """The kernel's versions folder and every installed pack's."""
    folders = [str(MIGRATIONS_DIR / "versions")]
    for ep in sorted(entry_points(group=MIGRATION_ENTRY_POINTS), key=lambda e: e.name):
        module = importlib.import_module(ep.value)
        assert module.__file__
        folders.append(str(Path(module.__file__).parent))
    return folders


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at every migration folder and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", ":".join(version_locations()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the database at `url` up to `revision` (by default every branch to its head)."""
    command.upgrade(alembic_config(url), revision)


@lru_cache
def head_revisions() -> frozenset[str]:
    """The newest revision of every branch shipped with this version."""
    return frozenset(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def is_current(applied_heads: set[str]) -> bool:
    """True when the database's recorded revisions include every shipped head, directly or as a dependency."""
    if not applied_heads:
        return False
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    try:
        reached = {rev.revision for rev in script.iterate_revisions(tuple(applied_heads), "base")}
    except Exception:  # a revision unknown to this version: the database is ahead or foreign
        return False
    return head_revisions() <= reached
