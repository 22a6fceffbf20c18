"""Wallboard indicators of citizen reports, per province, refreshed from the cases by a scheduled job."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from saola.core.auth.context import system_actor
from saola.core.observations.service import ingest
from saola.db.engine import transaction
from saola.db.types import utcnow
from saola.domains.citizen_reports import service
from saola.packs.definitions import IndicatorDefinition

DOMAIN = "citizen_reports"

OPEN_REPORTS = IndicatorDefinition(
    code="cr.open_reports", name_vi="Phản ánh đang xử lý", name_en="Open citizen reports", unit="phản ánh",
    domain=DOMAIN, aggregation="last", direction="lower_is_better", periodicity="realtime", subject_kind="unit",
    min_value=0,
)
ON_TIME_RATE = IndicatorDefinition(
    code="cr.on_time_rate", name_vi="Tỷ lệ phản ánh xử lý đúng hạn", name_en="Citizen reports handled on time",
    unit="%", domain=DOMAIN, aggregation="last", direction="higher_is_better", periodicity="realtime",
    subject_kind="unit", min_value=0, max_value=100, thresholds={"warning": 90, "critical": 75},
    description="Decision 766/QĐ-TTg: handled on time over all handled within the authority.",
)
ALL = [OPEN_REPORTS, ON_TIME_RATE]


def refresh(session_factory: sessionmaker[Session], *, now: datetime | None = None) -> int:
    """Write the current open count and on-time rate of every province with reports; returns readings written."""
    now = (now or utcnow()).replace(second=0, microsecond=0)
    with transaction(session_factory) as session:
        items: list[dict[str, Any]] = []
        for unit, values in service.counts_by_unit(session).items():
            items.append({"indicator": OPEN_REPORTS.code, "unit": unit, "ts": now, "value": values["open"]})
            if values["on_time_rate"] is not None:
                items.append({"indicator": ON_TIME_RATE.code, "unit": unit, "ts": now,
                              "value": values["on_time_rate"]})
        if not items:
            return 0
        return ingest(session, actor=system_actor("citizen_reports"), items=items, now=now).accepted


def refresh_job(context: Any) -> None:
    """The scheduled job."""
    refresh(context.session_factory)
