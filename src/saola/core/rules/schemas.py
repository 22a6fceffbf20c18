"""Request and response models of rules, and the parameters of each kind of rule."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from saola.core.entities.schemas import TYPE_PATTERN, UNIT_PATTERN, SafeStr
from saola.core.events.schemas import Severity
from saola.core.indicators.schemas import CODE_PATTERN

RuleKind = Literal["threshold", "rate_of_change", "silence", "event_count", "plan_target"]
RULE_KINDS: tuple[str, ...] = ("threshold", "rate_of_change", "silence", "event_count", "plan_target")

IndicatorCode = Annotated[str, Field(min_length=3, max_length=80, pattern=CODE_PATTERN,
                                     description="Indicator code, e.g. env.pm25")]
Quality = Annotated[int, Field(ge=0, le=2, description="Evaluate readings up to this quality (0 good, 1 suspect)")]
Seconds = Annotated[int, Field(ge=0, le=7 * 86400)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
NAME_PATTERN = r"^[^\x00-\x1f\x7f]*$"


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ThresholdParams(_Params):
    """Fire when the value reaches `threshold` (above or below) for `min_duration_seconds` of data time; clear when
    it comes back past `clear_threshold` (hysteresis; default: the threshold itself)."""

    indicator: IndicatorCode
    direction: Literal["above", "below"] = "above"
    threshold: Finite
    clear_threshold: Finite | None = None
    min_duration_seconds: Seconds = 0
    max_quality: Quality = 0

    @field_validator("clear_threshold")
    @classmethod
    def _hysteresis(cls, value: float | None, info: ValidationInfo) -> float | None:
        threshold, direction = info.data.get("threshold"), info.data.get("direction", "above")
        if value is None or threshold is None:
            return value
        if direction == "above" and value > threshold:
            raise ValueError("with direction 'above' the clear threshold may not exceed the threshold")
        if direction == "below" and value < threshold:
            raise ValueError("with direction 'below' the clear threshold may not be under the threshold")
        return value


class RateParams(_Params):
    """Fire when the value changes by at least `rate` per minute over `window_seconds` (data time)."""

    indicator: IndicatorCode
    rate: Annotated[float, Field(gt=0, allow_inf_nan=False, description="Change per minute")]
    direction: Literal["rise", "fall", "any"] = "rise"
    window_seconds: Annotated[int, Field(ge=60, le=86400)] = 600
    clear_rate: Annotated[float | None, Field(ge=0, allow_inf_nan=False)] = None
    min_duration_seconds: Seconds = 0
    max_quality: Quality = 0

    @field_validator("clear_rate")
    @classmethod
    def _below_rate(cls, value: float | None, info: ValidationInfo) -> float | None:
        rate = info.data.get("rate")
        if value is not None and rate is not None and value > rate:
            raise ValueError("the clear rate may not exceed the rate")
        return value


class SilenceParams(_Params):
    """Fire when a subject that reported before (of `indicator`, or of any indicator) has sent nothing for
    `minutes`; clear when it reports again."""

    indicator: IndicatorCode | None = None
    minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)]


class EventCountParams(_Params):
    """Fire when at least `count` events of `event_type` happen within `window_seconds`, counted per unit, per
    entity, or over the whole rule scope; clear at `clear_count` or fewer (default count - 1)."""

    event_type: Annotated[str, Field(min_length=1, max_length=60, pattern=TYPE_PATTERN)]
    count: Annotated[int, Field(ge=1, le=1_000_000)]
    window_seconds: Annotated[int, Field(ge=60, le=30 * 86400)]
    per: Literal["unit", "entity", "rule"] = "unit"
    clear_count: Annotated[int | None, Field(ge=0)] = None
    min_severity: Severity | None = None

    @field_validator("clear_count")
    @classmethod
    def _below_count(cls, value: int | None, info: ValidationInfo) -> int | None:
        count = info.data.get("count")
        if value is not None and count is not None and value >= count:
            raise ValueError("the clear count must be lower than the count")
        return value


class PlanTargetParams(_Params):
    """Fire when a unit's value falls below (or rises above) its plan target for the period the reading is in,
    beyond `tolerance_pct` percent."""

    indicator: IndicatorCode
    direction: Literal["below", "above"] = "below"
    tolerance_pct: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 0.0
    min_duration_seconds: Seconds = 0
    max_quality: Quality = 0


PARAMS_MODELS: dict[str, type[_Params]] = {
    "threshold": ThresholdParams, "rate_of_change": RateParams, "silence": SilenceParams,
    "event_count": EventCountParams, "plan_target": PlanTargetParams,
}

Name = Annotated[str, Field(min_length=1, max_length=200, pattern=NAME_PATTERN)]
NameEn = Annotated[str, Field(max_length=200, pattern=NAME_PATTERN)]
CaseType = Annotated[str, Field(min_length=1, max_length=60, pattern=TYPE_PATTERN)]


class RuleCreate(BaseModel):
    """A new rule: its kind and parameters, its scope, its severity and what to do when it fires."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    name_en: NameEn = ""
    description: Annotated[SafeStr, Field(max_length=2000)] = ""
    kind: RuleKind
    params: dict[str, Any] = Field(description="Parameters of the kind (see docs/operations.md)")
    severity: Severity = "medium"
    unit_code: Annotated[str, Field(min_length=1, max_length=16, pattern=UNIT_PATTERN,
                                    description="The rule watches this unit and everything below it")]
    entity_type: Annotated[str | None, Field(min_length=1, max_length=60, pattern=TYPE_PATTERN)] = None
    entity_id: uuid.UUID | None = None
    open_case_type: CaseType | None = Field(default=None, description="Open an incident of this type on firing")
    enabled: bool = True
    flap_limit: Annotated[int, Field(ge=0, le=1000, description="State changes within the window that mark "
                                                                "flapping; 0 turns detection off")] = 6
    flap_window_seconds: Annotated[int, Field(ge=60, le=7 * 86400)] = 3600


class RuleUpdate(BaseModel):
    """Changes to a rule; a new kind needs its params too."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    name_en: NameEn | None = None
    description: Annotated[SafeStr | None, Field(max_length=2000)] = None
    kind: RuleKind | None = None
    params: dict[str, Any] | None = None
    severity: Severity | None = None
    unit_code: Annotated[str | None, Field(min_length=1, max_length=16, pattern=UNIT_PATTERN)] = None
    entity_type: Annotated[str | None, Field(min_length=1, max_length=60, pattern=TYPE_PATTERN)] = None
    entity_id: uuid.UUID | None = None
    open_case_type: CaseType | None = None
    enabled: bool | None = None
    flap_limit: Annotated[int | None, Field(ge=0, le=1000)] = None
    flap_window_seconds: Annotated[int | None, Field(ge=60, le=7 * 86400)] = None


class RuleRead(BaseModel):
    """A rule."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    key: str | None
    name: str
    name_en: str
    description: str
    kind: RuleKind
    params: dict[str, Any]
    indicator_code: str | None
    event_type: str | None
    severity: Severity
    unit_code: str
    entity_type: str | None
    entity_id: uuid.UUID | None
    open_case_type: str | None
    enabled: bool
    flap_limit: int
    flap_window_seconds: int
    created_by: str
    created_at: datetime
    updated_at: datetime


class RulePage(BaseModel):
    """A page of rules and the total that matched."""

    total: int
    items: list[RuleRead]
