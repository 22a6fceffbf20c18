"""Request models of the environment pack's API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Concentration = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]
HourSeries = Annotated[list[Concentration | None], Field(min_length=1, max_length=48,
                                                         description="Hourly means in µg/m³, oldest first; "
                                                                     "the last is the current hour; null = missing")]
Pollutant = Literal["pm25", "pm10", "o3", "no2", "so2", "co"]


class DayValuesIn(BaseModel):
    """A day's figures of one pollutant (µg/m³)."""

    model_config = ConfigDict(extra="forbid")

    mean_24h: Concentration | None = Field(default=None, description="24-hour mean (PM2.5, PM10)")
    max_1h: Concentration | None = Field(default=None, description="Highest 1-hour mean (gases)")
    max_8h: Concentration | None = Field(default=None, description="Highest 8-hour mean (O3, CO)")


class AqiCalculateIn(BaseModel):
    """Concentrations to index: hourly series per pollutant, a day's hourly series, and/or a day's figures."""

    model_config = ConfigDict(extra="forbid")

    hourly: dict[Pollutant, HourSeries] | None = Field(
        default=None, description="For the hourly index: up to 48 hourly means per pollutant (12 are enough)")
    daily: dict[Pollutant, HourSeries] | None = Field(
        default=None, description="For the daily index: the day's hourly means (the last 24; earlier ones feed "
                                  "the first 8-hour means)")
    daily_values: dict[Pollutant, DayValuesIn] | None = Field(
        default=None, description="For the daily index: the day's figures when the hours are not at hand")
    epa_edition: Literal["2024", "2012"] = Field(default="2024", description="US EPA breakpoints to use")

    @model_validator(mode="after")
    def _something(self) -> AqiCalculateIn:
        if not (self.hourly or self.daily or self.daily_values):
            raise ValueError("give hourly, daily or daily_values")
        return self


class WaterValuesIn(BaseModel):
    """Surface-water parameter values (mg/L; pH unitless; coliform and E. coli MPN/100 mL)."""

    model_config = ConfigDict(extra="forbid")

    values: Annotated[dict[Literal["ph", "do", "bod5", "cod", "tss", "nh4_n", "no3_n", "no2_n", "po4_p", "coliform",
                                   "ecoli", "cl", "f", "cn", "as", "cd", "pb", "cr6", "cu", "zn", "ni", "mn", "hg",
                                   "fe"],
                           Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]],
                      Field(min_length=1)]
