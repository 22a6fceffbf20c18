"""Routes of the audit log (read only: it is append-only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from saola.core.audit import service
from saola.core.audit.schemas import AuditPage, AuditRead
from saola.core.limits import MAX_OFFSET
from saola.deps import ActorDep, SessionDep

router = APIRouter(prefix="/api", tags=["audit"])


@router.get("/audit", response_model=AuditPage, summary="Read the audit log")
def list_audit(
    session: SessionDep,
    actor: ActorDep,
    action: Annotated[str | None, Query(max_length=80)] = None,
    actor_name: Annotated[str | None, Query(max_length=120)] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> AuditPage:
    """Entries by actors inside the caller's scope, newest first."""
    total, items = service.list_audit(session, actor=actor, action=action, actor_name=actor_name, since=since,
                                      until=until, limit=limit, offset=offset)
    return AuditPage(total=total, items=[AuditRead.model_validate(e) for e in items])
