"""Routes of the audit log (read only: it is append-only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from saola.core.audit import service
from saola.core.audit.schemas import AuditPage, AuditRead
from saola.deps import ActorDep, SessionDep

router = APIRouter(prefix="/api", tags=["audit"])


@router.get("/audit", response_model=AuditPage, summary="Read the audit log")
def list_audit(
    session: SessionDep,
    actor: ActorDep,
    action: Annotated[str | None, Query(max_length=80)] = None,
    actor_name: Annotated[str | None, Query(max_length=120)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AuditPage:
    """Entries by actors inside the caller's scope, newest first."""
    total, items = service.list_audit(session, actor=actor, action=action, actor_name=actor_name, since=since,
                                      until=until, limit=limit, offset=offset)
    return AuditPage(total=total, items=[AuditRead.model_validate(e) for e in items])
