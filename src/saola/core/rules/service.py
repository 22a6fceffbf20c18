"""Rules as data: create, change, list and remove them inside the actor's scope; install packs' default rules.

Every change is announced on the bus (rules.created / rules.updated / rules.deleted), which is how the engine
knows to reload. Changing what a rule watches (its kind, parameters or scope) or disabling it resolves its open
alerts: the engine starts afresh on the new definition.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

import pluggy
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from saola.core.alerts.service import resolve_rule_alerts
from saola.core.audit.service import audit
from saola.core.auth.context import Actor
from saola.core.entities.models import Entity
from saola.core.errors import FieldError, NotFound, ValidationFailed
from saola.core.indicators.models import Indicator
from saola.core.rules.models import Rule
from saola.core.rules.schemas import PARAMS_MODELS, RULE_KINDS, RuleCreate, RuleUpdate
from saola.core.text import fold
from saola.core.units.models import Unit
from saola.core.units.service import get_unit, require_unit_in_scope, scope_condition
from saola.db.outbox import record_change
from saola.packs.definitions import RuleDefinition
from saola.packs.manager import Registry

log = logging.getLogger(__name__)

WATCHED = ("kind", "params", "unit_code", "entity_type", "entity_id")


def parse_params(kind: str, params: Mapping[str, Any], loc: list[str | int]) -> BaseModel:
    """The parameters of a kind of rule, checked; errors name their path under `loc`."""
    model = PARAMS_MODELS.get(kind)
    if model is None:
        raise ValidationFailed(f"unknown kind of rule {kind!r}",
                               [FieldError([*loc[:-1], "kind"], f"expected one of {', '.join(RULE_KINDS)}")])
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        errors = [FieldError([*loc, *e["loc"]], e["msg"], e["type"]) for e in exc.errors(include_url=False)]
        raise ValidationFailed(f"invalid parameters of a {kind} rule", errors) from exc


def _check_targets(session: Session, *, actor: Actor, registry: Registry | None, params: BaseModel,
                   unit: Unit, entity_type: str | None, entity_id: uuid.UUID | None,
                   loc: list[str | int]) -> tuple[str | None, str | None]:
    """Check what the rule names exists and lies in its scope; returns (indicator code, event type)."""
    errors: list[FieldError] = []
    base = loc[:-1]
    indicator = getattr(params, "indicator", None)
    event_type = getattr(params, "event_type", None)
    if indicator is not None and session.scalar(select(Indicator.id).where(Indicator.code == indicator)) is None:
        errors.append(FieldError([*loc, "indicator"], f"unknown indicator {indicator!r}"))
    if event_type is not None and registry is not None and event_type not in registry.event_types:
        errors.append(FieldError([*loc, "event_type"], f"event type {event_type!r} is not declared by any pack"))
    if entity_type is not None and registry is not None and entity_type not in registry.entity_types:
        errors.append(FieldError([*base, "entity_type"], f"entity type {entity_type!r} is not declared by any pack"))
    if entity_id is not None:
        found = session.execute(select(Entity.type, Unit.path).join(Unit, Unit.code == Entity.unit_code)
                                .where(Entity.id == entity_id)).first()
        if found is None or not actor.sees_path(found.path):
            errors.append(FieldError([*base, "entity_id"], f"unknown entity {entity_id}"))
        elif not (found.path == unit.path or found.path.startswith(unit.path + ".")):
            errors.append(FieldError([*base, "entity_id"], f"entity {entity_id} lies outside unit {unit.code}"))
        elif entity_type is not None and found.type != entity_type:
            errors.append(FieldError([*base, "entity_type"], f"entity {entity_id} is a {found.type}"))
    if errors:
        raise ValidationFailed(f"{len(errors)} problem(s) in the rule; nothing was saved", errors)
    return indicator, event_type


def _announce(session: Session, rule: Rule, action: str) -> None:
    record_change(session, topic=f"rules.{action}", aggregate_type="rule", aggregate_id=str(rule.id),
                  payload={"rule_id": str(rule.id), "unit_code": rule.unit_code, "kind": rule.kind,
                           "enabled": rule.enabled, "name": rule.name})


def create_rule(session: Session, *, actor: Actor, data: RuleCreate, registry: Registry | None = None,
                key: str | None = None) -> Rule:
    """Add a rule scoped to a unit of the actor's scope (optionally an entity type or one entity)."""
    actor.require("rules:write")
    loc: list[str | int] = ["body", "params"]
    params = parse_params(data.kind, data.params, loc)
    unit = require_unit_in_scope(session, actor=actor, code=data.unit_code, loc=["body", "unit_code"])
    indicator, event_type = _check_targets(session, actor=actor, registry=registry, params=params,
                                           unit=unit, entity_type=data.entity_type, entity_id=data.entity_id, loc=loc)
    rule = Rule(key=key, name=data.name, name_en=data.name_en, description=data.description, kind=data.kind,
                params=params.model_dump(mode="json"), indicator_code=indicator, event_type=event_type,
                severity=data.severity, unit_code=unit.code, entity_type=data.entity_type, entity_id=data.entity_id,
                open_case_type=data.open_case_type, enabled=data.enabled, flap_limit=data.flap_limit,
                flap_window_seconds=data.flap_window_seconds, created_by=actor.name)
    session.add(rule)
    session.flush()
    audit(session, actor=actor, action="rule.create", target_type="rule", target_id=str(rule.id),
          detail={"kind": rule.kind, "unit_code": rule.unit_code, "name": rule.name})
    _announce(session, rule, "created")
    return rule


def _visible(actor: Actor) -> Any:
    return select(Rule).join(Unit, Unit.code == Rule.unit_code).where(scope_condition(actor, Unit.path))


def get_rule(session: Session, *, actor: Actor, rule_id: uuid.UUID) -> Rule:
    """One rule scoped inside the actor's scope; NotFound otherwise."""
    actor.require("rules:read")
    rule = session.scalar(_visible(actor).where(Rule.id == rule_id))
    if rule is None:
        raise NotFound(f"rule {rule_id} not found")
    return rule


def list_rules(
    session: Session, *, actor: Actor, kind: str | None = None, enabled: bool | None = None, unit: str | None = None,
    indicator: str | None = None, event_type: str | None = None, q: str | None = None, limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[Rule]]:
    """Rules scoped inside the actor's scope, by kind, state, unit subtree, indicator, event type and name."""
    actor.require("rules:read")
    stmt = _visible(actor)
    if kind:
        stmt = stmt.where(Rule.kind == kind)
    if enabled is not None:
        stmt = stmt.where(Rule.enabled.is_(enabled))
    if unit:
        path = get_unit(session, actor=actor, code=unit).path
        stmt = stmt.where(or_(Unit.path == path, Unit.path.startswith(path + ".", autoescape=True)))
    if indicator:
        stmt = stmt.where(Rule.indicator_code == indicator)
    if event_type:
        stmt = stmt.where(Rule.event_type == event_type)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = list(session.scalars(stmt.order_by(Rule.created_at, Rule.id)))
    if q:  # names are short and rules few: fold diacritics in Python rather than keep a search column
        words = fold(q).split()
        rows = [r for r in rows if all(w in fold(f"{r.name} {r.name_en}") for w in words)]
        total = len(rows)
    return total, rows[offset:offset + limit]


def update_rule(session: Session, *, actor: Actor, rule_id: uuid.UUID, changes: RuleUpdate,
                registry: Registry | None = None) -> Rule:
    """Change a rule; its open alerts are resolved when what it watches changes or it is disabled."""
    rule = get_rule(session, actor=actor, rule_id=rule_id)
    actor.require("rules:write")
    values = changes.model_dump(exclude_unset=True)
    nullable = {"entity_type", "entity_id", "open_case_type"}
    for name, value in values.items():
        if value is None and name not in nullable:
            raise ValidationFailed(f"{name} may not be null", [FieldError(["body", name], "may not be null")])
    kind = values.get("kind", rule.kind)
    if "kind" in values and values["kind"] != rule.kind and "params" not in values:
        raise ValidationFailed("a new kind needs its params", [FieldError(["body", "params"], "required with kind")])
    loc: list[str | int] = ["body", "params"]
    params = parse_params(kind, values.get("params", rule.params), loc)
    unit = require_unit_in_scope(session, actor=actor, code=values.get("unit_code", rule.unit_code),
                                 loc=["body", "unit_code"])
    entity_type = values.get("entity_type", rule.entity_type)
    entity_id = values.get("entity_id", rule.entity_id)
    indicator, event_type = _check_targets(session, actor=actor, registry=registry, params=params,
                                           unit=unit, entity_type=entity_type, entity_id=entity_id, loc=loc)
    before = {name: getattr(rule, name) for name in WATCHED}
    for name, value in values.items():
        setattr(rule, name, value)
    rule.params, rule.unit_code = params.model_dump(mode="json"), unit.code
    rule.indicator_code, rule.event_type = indicator, event_type
    watched_changed = any(before[name] != getattr(rule, name) for name in WATCHED)
    if watched_changed or not rule.enabled:
        why = "Quy tắc đã thay đổi / rule changed" if rule.enabled else "Quy tắc đã tắt / rule disabled"
        resolve_rule_alerts(session, rule_id=rule.id, note=why, by=actor.name)
    session.flush()
    audit(session, actor=actor, action="rule.update", target_type="rule", target_id=str(rule.id),
          detail={"fields": sorted(values)})
    _announce(session, rule, "updated")
    return rule


def delete_rule(session: Session, *, actor: Actor, rule_id: uuid.UUID) -> None:
    """Remove a rule; its open alerts are resolved, and its past alerts stay (without the link)."""
    rule = get_rule(session, actor=actor, rule_id=rule_id)
    actor.require("rules:write")
    resolve_rule_alerts(session, rule_id=rule.id, note="Quy tắc đã xoá / rule deleted", by=actor.name)
    _announce(session, rule, "deleted")
    audit(session, actor=actor, action="rule.delete", target_type="rule", target_id=str(rule.id),
          detail={"name": rule.name})
    session.delete(rule)
    session.flush()


_DEFINITION_KEYS = ("unit_code", "entity_type", "open_case_type", "flap_limit", "flap_window_seconds", "description")


def install_default_rules(session: Session, *, actor: Actor, registry: Registry,
                          plugin_manager: pluggy.PluginManager) -> int:
    """Install the rules packs propose (saola_default_rules), once each by key; returns how many were new.

    A definition's params may carry unit_code (default: the whole country), entity_type, open_case_type,
    flap_limit, flap_window_seconds and description beside the kind's own parameters. Installed rules are data:
    later edits are kept, and a rule whose indicator or event type is not there is skipped.
    """
    definitions: list[RuleDefinition] = [d for group in plugin_manager.hook.saola_default_rules() for d in group or []]
    existing = set(session.scalars(select(Rule.key).where(Rule.key.is_not(None))))
    created = 0
    for definition in definitions:
        if definition.key in existing:
            continue
        params = dict(definition.params)
        extra = {k: params.pop(k) for k in _DEFINITION_KEYS if k in params}
        try:
            data = RuleCreate(name=definition.name_vi, name_en=definition.name_en, kind=definition.kind,  # type: ignore[arg-type]
                              params=params, severity=definition.severity, unit_code=extra.pop("unit_code", "VN"),
                              **extra)
            with session.begin_nested():
                create_rule(session, actor=actor, data=data, registry=registry, key=definition.key)
        except (ValidationError, ValidationFailed):
            log.warning("default rule %s is not valid here; skipped", definition.key)
            continue
        existing.add(definition.key)
        created += 1
    return created
