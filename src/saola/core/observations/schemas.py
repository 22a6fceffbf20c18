"""Request and response models of observations: batch ingest, series queries and latest values."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal, NotRequired

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    field_validator,
    with_config,
)
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

MAX_BATCH = 10_000
MAX_POINTS = 10_000
SUBJECT_RULE = "give exactly one of unit or entity"

Bucket = Literal["raw", "minute", "hour", "day", "month"]
Agg = Literal["avg", "sum", "min", "max", "count", "last"]
SubjectKind = Literal["unit", "entity"]

IndicatorCodeIn = Annotated[str, Field(min_length=1, max_length=80, description="Indicator code, e.g. env.pm25")]
UnitCodeIn = Annotated[str, Field(min_length=1, max_length=16, description="Unit code, e.g. 24781")]
Quality = Annotated[StrictInt, Field(ge=0, le=2, description="0 good, 1 suspect, 2 bad")]


class ObservationIn(BaseModel):
    """One reading: an indicator's value for exactly one subject (a unit or an entity) at one time."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    indicator: Annotated[str, Field(min_length=3, max_length=80, pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$",
                                    description="Indicator code, e.g. env.pm25")]
    unit: Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,16}$")] | None = Field(
        default=None, description="Unit code of the subject, e.g. 24781 (or give entity)")
    entity: uuid.UUID | None = Field(default=None, validate_default=True,
                                     description="Entity id of the subject (or give unit)")
    ts: AwareDatetime = Field(description="When it was measured, with a time zone")
    value: StrictFloat
    quality: Quality = 0

    @field_validator("entity")
    @classmethod
    def _one_subject(cls, entity: uuid.UUID | None, info: ValidationInfo) -> uuid.UUID | None:
        # Checked on the entity field (not the whole model) so that the error names a field path.
        if "unit" in info.data and (info.data["unit"] is None) == (entity is None):
            raise ValueError(SUBJECT_RULE)
        return entity


@with_config(ConfigDict(extra="forbid", allow_inf_nan=False))
class ObservationDict(TypedDict):
    """ObservationIn as a plain dict: the bulk path validates a whole batch into these in one call, faster."""

    indicator: IndicatorCodeIn
    unit: NotRequired[UnitCodeIn | None]
    entity: NotRequired[Annotated[str, Field(max_length=64)] | uuid.UUID | None]
    # Text stays text in entity and ts: ingest parses each distinct value of a batch once (a batch names few
    # stations and few instants), which costs far less than parsing per row. Malformed ones are refused there.
    ts: Annotated[str, Field(max_length=64)] | AwareDatetime
    value: StrictFloat
    quality: NotRequired[Quality]


class ObservationBatch(BaseModel):
    """A batch of readings, written all or nothing."""

    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[ObservationIn], Field(min_length=1, max_length=MAX_BATCH)]


class IngestResult(BaseModel):
    """What a batch did: rows written, rows already present (or repeated in the batch), rows flagged bad."""

    accepted: int
    duplicates: int
    flagged: int = Field(description="Accepted rows stored with quality 2 because the value was out of range")
    batch_id: str


class Point(BaseModel):
    """One point of a series: bucket start (UTC), the aggregated value and how many readings it covers."""

    ts: datetime
    value: float
    count: int


class Series(BaseModel):
    """A time series of one indicator for one subject, or aggregated over the subjects within a unit."""

    indicator: str
    bucket: Bucket
    agg: Agg
    start: datetime
    end: datetime
    points: list[Point]


class LatestRead(BaseModel):
    """The newest reading of an indicator for one subject."""

    indicator: str
    subject_kind: SubjectKind
    unit_code: str
    entity_id: uuid.UUID | None
    label: str = Field(description="Unit name or entity name")
    ts: datetime
    value: float
    quality: int
    age_seconds: float
