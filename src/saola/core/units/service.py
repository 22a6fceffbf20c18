"""Unit tree and agency services: loading from the official list, lookups, and scope checks."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session

from saola.core.auth.context import Actor
from saola.core.cache import clear_all_after_commit
from saola.core.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from saola.core.text import fold
from saola.core.units.models import Agency, Unit
from saola.db.outbox import record_change
from saola.db.upsert import upsert_rows

NATION_CODE = "VN"


def normalize_code(code: str | int) -> str:
    """Official code as stored: 'VN', provinces as 2 digits ('68', '01'), communes as 5 digits."""
    text = str(code).strip()
    if text.upper() == NATION_CODE:
        return NATION_CODE
    if not text.isdigit():
        return text
    return text.zfill(2) if len(text) <= 2 else text.zfill(5)


def official_units() -> list[dict]:
    """Rows for the nation, its provinces and communes, read from the vietnam-provinces package."""
    from vietnam_provinces import Province, Ward

    rows: list[dict] = [
        dict(code=NATION_CODE, name="Việt Nam", name_en="Viet Nam", level="nation", division_type="quốc gia",
             parent_code=None, path=NATION_CODE, search_name="viet nam", codename="viet_nam")
    ]
    for p in Province.iter_all():
        pcode = f"{int(p.code):02d}"
        rows.append(dict(code=pcode, name=p.name, name_en=fold(p.name).title(), level="province",
                         division_type=p.division_type.value, parent_code=NATION_CODE,
                         path=f"{NATION_CODE}.{pcode}", search_name=fold(p.name), codename=p.codename))
    for w in Ward.iter_all():
        pcode = f"{int(w.province_code):02d}"
        wcode = f"{int(w.code):05d}"
        rows.append(dict(code=wcode, name=w.name, name_en=fold(w.name).title(), level="commune",
                         division_type=w.division_type.value, parent_code=pcode,
                         path=f"{NATION_CODE}.{pcode}.{wcode}", search_name=fold(w.name), codename=w.codename))
    return rows


def load_official_units(
    session: Session, *, progress: Callable[[int, int], None] | None = None, chunk: int = 500
) -> dict[str, int]:
    """Create or refresh the whole unit tree from the official list; running it twice changes nothing."""
    rows = official_units()
    existing = set(session.scalars(select(Unit.code)))
    columns = ["name", "name_en", "level", "division_type", "parent_code", "path", "search_name", "codename"]
    for start in range(0, len(rows), chunk):
        upsert_rows(session, Unit.__table__, rows[start : start + chunk], key=["code"], update=columns)
        if progress:
            progress(min(start + chunk, len(rows)), len(rows))
    created = sum(1 for r in rows if r["code"] not in existing)
    clear_all_after_commit(session)  # paths may have moved: the write paths' look-ups start again
    counts = {lvl: sum(1 for r in rows if r["level"] == lvl) for lvl in ("nation", "province", "commune")}
    record_change(session, topic="units.loaded", aggregate_type="unit", aggregate_id=NATION_CODE,
                  payload={"created": created, **counts})
    return {"created": created, "total": len(rows), **counts}


def scope_condition(actor: Actor, path_column: ColumnElement[str]) -> ColumnElement[bool]:
    """SQL condition: the unit with this path lies in the actor's subtree."""
    return or_(path_column == actor.scope_path, path_column.startswith(actor.scope_path + ".", autoescape=True))


def units_in_scope(actor: Actor) -> Select[tuple[str]]:
    """A subquery of the codes of every unit the actor may see."""
    return select(Unit.code).where(scope_condition(actor, Unit.path))


def get_unit(session: Session, *, actor: Actor, code: str) -> Unit:
    """One unit inside the actor's scope; NotFound otherwise (never reveals what lies outside)."""
    unit = session.get(Unit, normalize_code(code))
    if unit is None or not actor.sees_path(unit.path):
        raise NotFound(f"unit {code!r} not found")
    return unit


def require_unit_in_scope(session: Session, *, actor: Actor, code: str, loc: Sequence[str | int]) -> Unit:
    """The unit for a write: 422 naming the field when unknown, 403 when outside the actor's scope."""
    unit = session.get(Unit, normalize_code(code))
    if unit is None:
        raise ValidationFailed(f"unknown unit {code!r}", [FieldError(list(loc), f"unknown unit {code!r}")])
    if not actor.sees_path(unit.path):
        raise Forbidden(f"unit {code!r} is outside the scope of {actor.kind} {actor.name!r} ({actor.scope_code})")
    return unit


def list_units(
    session: Session,
    *,
    actor: Actor,
    parent: str | None = None,
    level: str | None = None,
    q: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[Unit]]:
    """Units in the actor's scope, filtered by parent, level and diacritic-insensitive text."""
    stmt = select(Unit).where(scope_condition(actor, Unit.path))
    if parent:
        stmt = stmt.where(Unit.parent_code == normalize_code(parent))
    if level:
        stmt = stmt.where(Unit.level == level)
    if q:
        for word in fold(q).split():
            stmt = stmt.where(Unit.search_name.contains(word, autoescape=True))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    items = session.scalars(stmt.order_by(Unit.path).limit(limit).offset(offset)).all()
    return total, list(items)


def children(session: Session, *, actor: Actor, code: str) -> list[Unit]:
    """Direct children of a unit in scope."""
    unit = get_unit(session, actor=actor, code=code)
    return list(session.scalars(select(Unit).where(Unit.parent_code == unit.code).order_by(Unit.code)))


def ancestors(session: Session, *, actor: Actor, code: str) -> list[Unit]:
    """The chain from the nation down to the unit's parent (only the part inside the actor's scope)."""
    unit = get_unit(session, actor=actor, code=code)
    codes = unit.path.split(".")[:-1]
    found = {u.code: u for u in session.scalars(select(Unit).where(Unit.code.in_(codes)))}
    return [found[c] for c in codes if c in found and actor.sees_path(found[c].path)]


def create_agency(session: Session, *, actor: Actor, data: dict) -> Agency:
    """Add an agency inside a unit of the actor's scope."""
    actor.require("agencies:write")
    unit = require_unit_in_scope(session, actor=actor, code=data["unit_code"], loc=["body", "unit_code"])
    if session.scalar(select(Agency.id).where(Agency.unit_code == unit.code, Agency.code == data["code"])):
        raise Conflict(f"agency {data['code']!r} already exists in unit {unit.code}")
    agency = Agency(**{**data, "unit_code": unit.code}, search_name=fold(data["name"]))
    session.add(agency)
    session.flush()
    record_change(session, topic="agencies.created", aggregate_type="agency", aggregate_id=str(agency.id),
                  payload={"unit_code": unit.code, "code": agency.code})
    return agency


def ensure_agency(session: Session, *, unit_code: str, code: str, name: str, name_en: str = "",
                  kind: str = "department") -> Agency:
    """Get or create an agency by (unit, code): used by seeding, idempotent."""
    agency = session.scalar(select(Agency).where(Agency.unit_code == unit_code, Agency.code == code))
    if agency is None:
        agency = Agency(unit_code=unit_code, code=code, name=name, name_en=name_en, kind=kind,
                        search_name=fold(name))
        session.add(agency)
        session.flush()
    return agency


def list_agencies(
    session: Session, *, actor: Actor, unit_code: str | None = None, q: str | None = None,
    limit: int = 100, offset: int = 0,
) -> tuple[int, list[Agency]]:
    """Agencies of units inside the actor's scope."""
    actor.require("agencies:read")
    stmt = select(Agency).where(Agency.unit_code.in_(units_in_scope(actor)))
    if unit_code:
        stmt = stmt.where(Agency.unit_code == normalize_code(unit_code))
    if q:
        for word in fold(q).split():
            stmt = stmt.where(Agency.search_name.contains(word, autoescape=True))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    return total, list(session.scalars(stmt.order_by(Agency.unit_code, Agency.code).limit(limit).offset(offset)))


def get_agency(session: Session, *, actor: Actor, agency_id: uuid.UUID) -> Agency:
    """One agency inside the actor's scope."""
    actor.require("agencies:read")
    agency = session.get(Agency, agency_id)
    if agency is None:
        raise NotFound(f"agency {agency_id} not found")
    unit = session.get(Unit, agency.unit_code)
    if unit is None or not actor.sees_path(unit.path):
        raise NotFound(f"agency {agency_id} not found")
    return agency
