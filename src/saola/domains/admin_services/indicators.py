"""Indicators of public administrative services, per commune and province."""

from __future__ import annotations

from saola.packs.definitions import IndicatorDefinition

DOMAIN = "admin_services"

DOSSIERS_RECEIVED = IndicatorDefinition(
    code="hcc.dossiers_received", name_vi="Hồ sơ tiếp nhận", name_en="Dossiers received", unit="hồ sơ",
    domain=DOMAIN, aggregation="sum", direction="neutral", periodicity="realtime", subject_kind="unit",
    min_value=0, max_value=10_000,
)
DOSSIERS_RESOLVED = IndicatorDefinition(
    code="hcc.dossiers_resolved", name_vi="Hồ sơ đã giải quyết", name_en="Dossiers resolved", unit="hồ sơ",
    domain=DOMAIN, aggregation="sum", direction="higher_is_better", periodicity="realtime", subject_kind="unit",
    min_value=0, max_value=10_000,
)
ON_TIME_RATE = IndicatorDefinition(
    code="hcc.on_time_rate", name_vi="Tỷ lệ hồ sơ giải quyết đúng hạn", name_en="Dossiers resolved on time",
    unit="%", domain=DOMAIN, aggregation="avg", direction="higher_is_better", periodicity="day",
    subject_kind="unit", min_value=0, max_value=100, thresholds={"warning": 95, "critical": 85},
)
ONLINE_RATE = IndicatorDefinition(
    code="hcc.online_rate", name_vi="Tỷ lệ hồ sơ trực tuyến toàn trình", name_en="Dossiers filed fully online",
    unit="%", domain=DOMAIN, aggregation="avg", direction="higher_is_better", periodicity="day",
    subject_kind="unit", min_value=0, max_value=100, thresholds={"warning": 50, "critical": 30},
)

ALL = [DOSSIERS_RECEIVED, DOSSIERS_RESOLVED, ON_TIME_RATE, ONLINE_RATE]
