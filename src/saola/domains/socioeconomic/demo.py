"""Demo figures for Lâm Đồng: monthly values of this year so far, some ahead of plan and some behind."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from saola.core.observations.service import ingest
from saola.db.engine import transaction
from saola.packs.context import PackContext

SLUG = "socioeconomic"
VN = timedelta(hours=7)

# indicator -> (monthly base value, monthly trend, share of the yearly plan reached by the end of the year)
PROFILES: dict[str, tuple[float, float, float]] = {
    "ns.budget_revenue": (1150.0, 12.0, 1.04),  # ahead of plan
    "kt.export_value": (118.0, 1.5, 0.93),  # behind plan
    "kt.retail_sales": (9800.0, 90.0, 1.01),
    "dl.tourist_arrivals": (1150.0, 25.0, 1.08),  # tourism in Đà Lạt runs ahead
}


def month_starts(now: datetime) -> list[datetime]:
    """The UTC instants of local midnight on the 1st of each month of this year, up to now."""
    local = now + VN
    return [datetime(local.year, m, 1, tzinfo=UTC) - VN for m in range(1, local.month + 1)]


def monthly_items(now: datetime, rng: random.Random) -> list[dict]:
    """One value per indicator per month so far."""
    items: list[dict] = []
    months = month_starts(now)
    for code, (base, trend, _) in PROFILES.items():
        for i, ts in enumerate(months):
            value = (base + trend * i) * rng.uniform(0.93, 1.07)
            items.append({"indicator": code, "unit": "68", "ts": ts, "value": round(value, 1)})
    for i, ts in enumerate(months):
        items.append({"indicator": "kt.grdp_growth", "unit": "68", "ts": ts,
                      "value": round(7.1 + 0.05 * i + rng.uniform(-0.2, 0.2), 2)})
        items.append({"indicator": "ns.public_investment_disbursed", "unit": "68", "ts": ts,
                      "value": round(min(100.0, 6.5 * (i + 1) + rng.uniform(-2, 2)), 1)})
    return items


def seed(context: PackContext) -> None:
    """Write this year's monthly figures for the demo province."""
    label = "Kinh tế - xã hội / socio-economy"
    context.progress(label, 0.1)
    items = monthly_items(context.now, random.Random(6802))
    with transaction(context.session_factory) as session:
        ingest(session, actor=context.source_actor(session, SLUG), items=items)
    context.progress(label, 1.0)
