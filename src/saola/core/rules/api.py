"""Routes of rules: list, create, read, change and remove them."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from saola.core.entities.schemas import TYPE_PATTERN, UNIT_PATTERN
from saola.core.indicators.schemas import CODE_PATTERN
from saola.core.limits import MAX_OFFSET, text_query
from saola.core.rules import service
from saola.core.rules.schemas import RuleCreate, RuleKind, RulePage, RuleRead, RuleUpdate
from saola.deps import ActorDep, RegistryDep, SessionDep

router = APIRouter(prefix="/api", tags=["rules"])


@router.get("/rules", response_model=RulePage, summary="List rules")
def list_rules(
    session: SessionDep,
    actor: ActorDep,
    kind: RuleKind | None = None,
    enabled: bool | None = None,
    unit: Annotated[str | None, Query(max_length=16, pattern=UNIT_PATTERN, description="Rules scoped in it")] = None,
    indicator: Annotated[str | None, Query(max_length=80, pattern=CODE_PATTERN)] = None,
    event_type: Annotated[str | None, Query(max_length=60, pattern=TYPE_PATTERN)] = None,
    q: Annotated[str | None, text_query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> RulePage:
    """Rules scoped inside the caller's scope."""
    total, items = service.list_rules(session, actor=actor, kind=kind, enabled=enabled, unit=unit,
                                      indicator=indicator, event_type=event_type, q=q, limit=limit, offset=offset)
    return RulePage(total=total, items=[RuleRead.model_validate(r) for r in items])


@router.post("/rules", response_model=RuleRead, status_code=status.HTTP_201_CREATED, summary="Create a rule")
def create_rule(body: RuleCreate, session: SessionDep, actor: ActorDep, registry: RegistryDep) -> RuleRead:
    """Add a rule in a unit of the caller's scope; it evaluates on the stream from the next reading on."""
    return RuleRead.model_validate(service.create_rule(session, actor=actor, data=body, registry=registry))


@router.get("/rules/{rule_id}", response_model=RuleRead, summary="One rule")
def get_rule(rule_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> RuleRead:
    """A rule inside the caller's scope."""
    return RuleRead.model_validate(service.get_rule(session, actor=actor, rule_id=rule_id))


@router.patch("/rules/{rule_id}", response_model=RuleRead, summary="Change a rule")
def update_rule(rule_id: uuid.UUID, body: RuleUpdate, session: SessionDep, actor: ActorDep,
                registry: RegistryDep) -> RuleRead:
    """Change a rule; changing what it watches, or disabling it, resolves its open alerts."""
    return RuleRead.model_validate(service.update_rule(session, actor=actor, rule_id=rule_id, changes=body,
                                                       registry=registry))


@router.delete("/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a rule")
def delete_rule(rule_id: uuid.UUID, session: SessionDep, actor: ActorDep) -> Response:
    """Remove a rule; its open alerts are resolved and its past alerts kept."""
    service.delete_rule(session, actor=actor, rule_id=rule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
