"""Main socio-economic indicators a province reports each month (a subset of the Decree 09/2019 set)."""

from __future__ import annotations

from saola.packs.definitions import IndicatorDefinition

DOMAIN = "socioeconomic"


def _monthly(code: str, vi: str, en: str, unit: str, aggregation: str = "sum", direction: str = "higher_is_better",
             max_value: float | None = None) -> IndicatorDefinition:
    return IndicatorDefinition(code=code, name_vi=vi, name_en=en, unit=unit, domain=DOMAIN,
                               aggregation=aggregation, direction=direction, periodicity="month",  # type: ignore[arg-type]
                               subject_kind="unit", min_value=0 if aggregation == "sum" else None,
                               max_value=max_value)


GRDP_GROWTH = _monthly("kt.grdp_growth", "Tốc độ tăng trưởng GRDP (lũy kế)", "GRDP growth (year to date)", "%",
                       aggregation="last", max_value=50)
BUDGET_REVENUE = _monthly("ns.budget_revenue", "Thu ngân sách nhà nước", "State budget revenue", "tỷ đồng")
EXPORT_VALUE = _monthly("kt.export_value", "Kim ngạch xuất khẩu", "Export value", "triệu USD")
RETAIL_SALES = _monthly("kt.retail_sales", "Tổng mức bán lẻ hàng hóa và doanh thu dịch vụ",
                        "Retail sales of goods and services", "tỷ đồng")
TOURIST_ARRIVALS = _monthly("dl.tourist_arrivals", "Lượt khách du lịch", "Tourist arrivals", "nghìn lượt")
PUBLIC_INVESTMENT = _monthly("ns.public_investment_disbursed", "Tỷ lệ giải ngân vốn đầu tư công (lũy kế)",
                             "Public investment disbursed (year to date)", "%", aggregation="last",
                             max_value=100)

ALL = [GRDP_GROWTH, BUDGET_REVENUE, EXPORT_VALUE, RETAIL_SALES, TOURIST_ARRIVALS, PUBLIC_INVESTMENT]
