"""GET /api/health and GET /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from saola import __version__
from saola.core.health.schemas import Health
from saola.db.migrate import is_current
from saola.deps import RegistryDep, SessionDep, SettingsDep

router = APIRouter(tags=["health"])


@router.get("/api/health", response_model=Health, summary="Health and version")
def health(session: SessionDep, settings: SettingsDep, registry: RegistryDep) -> Health:
    """Status, version, database kind and the migration revision the database is at."""
    try:
        revisions = set(session.scalars(text("SELECT version_num FROM alembic_version")))
    except Exception:  # no alembic_version table: the database was never migrated
        revisions = set()
    current = is_current(revisions)
    return Health(
        status="ok" if current else "degraded",
        version=__version__,
        node=settings.node_id,
        database="sqlite" if settings.is_sqlite else "postgresql",
        migration_revision=",".join(sorted(revisions)) or None,
        migrations_current=current,
        packs=sorted(registry.packs),
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
def metrics() -> Response:
    """Request and ingest counters in the Prometheus text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
