"""Request and response models of the indicator catalog and plan targets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from saola.packs.definitions import Aggregation, Direction, Periodicity

# Lower-case dotted codes such as env.pm25 or hcc.on_time_rate: at least one dot, no leading digit.
CODE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$"
# Unit codes are short alphanumerics ('VN', '68', '24781'); the pattern also keeps NUL bytes away from PostgreSQL.
UNIT_CODE_PATTERN = r"^[A-Za-z0-9]{1,16}$"
PERIOD_PATTERN_HINT = "YYYY, YYYY-Qn or YYYY-MM"

IndicatorCode = Annotated[str, Field(min_length=3, max_length=80, pattern=CODE_PATTERN,
                                     description="Lower-case dotted code, e.g. env.pm25")]
# Free text without control characters (PostgreSQL refuses NUL bytes in text).
Text255 = Annotated[str, Field(max_length=255, pattern=r"^[^\x00-\x1f]*$")]
SubjectKind = Literal["unit", "entity", "any"]
Thresholds = Annotated[dict[Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")], float],
                       Field(max_length=20, description="Named levels, e.g. {'unhealthy': 55.5}")]


class _RangeChecked(BaseModel):
    """Shared check: min_value must not exceed max_value when both are given."""

    @model_validator(mode="after")
    def _range(self) -> Any:
        lo, hi = getattr(self, "min_value", None), getattr(self, "max_value", None)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError("min_value must not exceed max_value")
        return self


class IndicatorCreate(_RangeChecked):
    """A new indicator in the catalog."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    code: IndicatorCode
    name_vi: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f]*$")]
    name_en: Text255 = ""
    unit: Annotated[str, Field(max_length=40, pattern=r"^[^\x00-\x1f]*$")] = ""
    domain: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]
    aggregation: Aggregation = "avg"
    direction: Direction = "neutral"
    periodicity: Periodicity = "realtime"
    subject_kind: SubjectKind = "any"
    min_value: float | None = None
    max_value: float | None = None
    thresholds: Thresholds = Field(default_factory=dict)
    description: Annotated[str, Field(max_length=1000, pattern=r"^[^\x00]*$")] = ""


class IndicatorUpdate(_RangeChecked):
    """A partial change of an indicator; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name_vi: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f]*$")] | None = None
    name_en: Text255 | None = None
    unit: Annotated[str, Field(max_length=40, pattern=r"^[^\x00-\x1f]*$")] | None = None
    domain: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")] | None = None
    aggregation: Aggregation | None = None
    direction: Direction | None = None
    periodicity: Periodicity | None = None
    subject_kind: SubjectKind | None = None
    min_value: float | None = None
    max_value: float | None = None
    thresholds: Thresholds | None = None
    description: Annotated[str, Field(max_length=1000, pattern=r"^[^\x00]*$")] | None = None
    is_active: bool | None = None


class IndicatorRead(BaseModel):
    """An indicator of the catalog."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name_vi: str
    name_en: str
    unit: str
    domain: str
    aggregation: Aggregation
    direction: Direction
    periodicity: Periodicity
    subject_kind: SubjectKind
    min_value: float | None
    max_value: float | None
    thresholds: dict[str, float]
    description: str
    declared_by: str | None
    is_active: bool
    updated_at: datetime


class IndicatorPage(BaseModel):
    """A page of indicators and the total that matched."""

    total: int
    items: list[IndicatorRead]


class TargetIn(BaseModel):
    """A plan target (chỉ tiêu kế hoạch) of one unit for one period."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    unit: Annotated[str, Field(pattern=UNIT_CODE_PATTERN, description="Unit code, e.g. 68")]
    period: Annotated[str, Field(min_length=1, max_length=10, description=PERIOD_PATTERN_HINT)]
    target_value: float
    note: Annotated[str, Field(max_length=500, pattern=r"^[^\x00]*$")] = ""


class TargetsIn(BaseModel):
    """Targets to create or replace, one per (unit, period)."""

    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[TargetIn], Field(min_length=1, max_length=1000)]


class TargetRead(BaseModel):
    """A plan target with its period resolved to a UTC interval [period_start, period_end)."""

    model_config = ConfigDict(from_attributes=True)

    indicator: str
    unit_code: str
    period: str
    period_start: datetime
    period_end: datetime
    target_value: float
    note: str
