"""Demo data for public services: 30 days of hourly dossier counts and daily rates per commune, then live."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from sqlalchemy import select

from saola.core.observations.service import ingest
from saola.core.units.models import Unit
from saola.db.engine import transaction
from saola.packs.context import PackContext

SLUG = "admin_services"
VN = timedelta(hours=7)
BATCH = 5000


def _communes(context: PackContext) -> list[str]:
    with context.session_factory() as session:
        return list(session.scalars(select(Unit.code).where(Unit.parent_code == context.province_code)
                                    .order_by(Unit.code)))


def _office_load(local: datetime) -> float:
    """How busy a one-stop office is at this local hour (0 when closed)."""
    if local.weekday() == 6 or not 7 <= local.hour < 17 or local.hour == 11:
        return 0.0
    saturday = 0.4 if local.weekday() == 5 else 1.0
    return saturday * (0.6 + 0.4 * math.sin(math.pi * (local.hour - 7) / 10))


def _history(context: PackContext, communes: list[str]) -> Iterator[dict]:
    rng = random.Random(6801)
    size = {c: rng.uniform(0.5, 3.0) for c in communes}  # wards of Đà Lạt are busier than mountain communes
    punctuality = {c: rng.uniform(86, 99.5) for c in communes}
    end = context.now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=30)
    hour = start
    while hour < end:
        load = _office_load(hour + VN)
        if load:
            for c in communes:
                received = rng.randint(0, max(1, round(4 * load * size[c])))
                yield {"indicator": "hcc.dossiers_received", "unit": c, "ts": hour, "value": received}
                yield {"indicator": "hcc.dossiers_resolved", "unit": c, "ts": hour,
                       "value": max(0, received + rng.randint(-1, 1))}
        if (hour + VN).hour == 0:  # one rate per local day, stamped at local midnight
            for c in communes:
                on_time = min(100.0, rng.gauss(punctuality[c], 2.5))
                yield {"indicator": "hcc.on_time_rate", "unit": c, "ts": hour, "value": round(on_time, 1)}
                yield {"indicator": "hcc.online_rate", "unit": c, "ts": hour,
                       "value": round(min(100.0, rng.gauss(55 + size[c] * 8, 6)), 1)}
        hour += timedelta(hours=1)


def seed(context: PackContext) -> None:
    """Write 30 days of history for every commune of the demo province."""
    communes = _communes(context)
    expected = 30 * 24 * len(communes) * 2 * 0.45  # rough count, for the progress bar only
    batch: list[dict] = []
    written = 0
    label = "Dịch vụ công / public services"
    for item in _history(context, communes):
        batch.append(item)
        if len(batch) >= BATCH:
            written += _write(context, batch)
            batch = []
            context.progress(label, written / expected)
    written += _write(context, batch)
    context.progress(label, 1.0)


def _write(context: PackContext, items: list[dict]) -> int:
    if not items:
        return 0
    with transaction(context.session_factory) as session:
        return ingest(session, actor=context.source_actor(session, SLUG), items=items).accepted


def tick(context: PackContext) -> None:
    """Live: a few communes receive and resolve dossiers now."""
    rng = context.rng
    communes = context.state.get("admin_services.communes") or _communes(context)
    context.state["admin_services.communes"] = communes
    now = context.now.replace(microsecond=0)
    items = []
    for c in rng.sample(communes, k=min(8, len(communes))):
        received = rng.randint(0, 3)
        items.append({"indicator": "hcc.dossiers_received", "unit": c, "ts": now, "value": received})
        items.append({"indicator": "hcc.dossiers_resolved", "unit": c, "ts": now, "value": rng.randint(0, received)})
    _write(context, items)
