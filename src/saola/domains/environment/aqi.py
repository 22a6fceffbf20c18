"""Air quality indices: VN_AQI (Decision 1459/QĐ-TCMT, 2019) and the US EPA AQI, as pure functions.

Concentrations are in µg/m³ for every pollutant (CO too, as Vietnamese stations report it). Hourly series are
given oldest first with None for a missing hour; the last element is the current hour (c1 of the decision).

VN_AQI (breakpoints of table 2 of the decision, verified against the decision's text):
- hourly: PM2.5 and PM10 use a NowCast over the last 12 hourly means (at least 2 of the 3 newest present;
  a missing hour weighs 0); SO2, NO2, CO and O3 their current 1-hour mean (O3 on its 1-hour breakpoints).
- daily: PM the 24-hour mean; SO2, NO2, CO the day's highest 1-hour mean; O3 the larger sub-index of the
  highest 1-hour and the highest 8-hour mean (the 8-hour part is skipped above 400 µg/m³).
- there is no AQI without PM2.5 or PM10; the index is the largest sub-index, rounded half up.
- NowCast with w = 1/2: the decision writes Σ (1/2)^i·c_i; we use the normalised form Σ w^(i-1)·c_i / Σ w^(i-1)
  for every w (the two agree to 0.03 % on complete data, and the normalised form stays right when hours are
  missing).

US EPA: the 2024 revision (PM2.5 good up to 9.0 µg/m³) by default, or the 2012 tables (those of the
`python-aqi` package). Gases are converted to ppb/ppm at 25 °C and 1 atm, concentrations are truncated to
EPA's precision, and the index is rounded to the nearest integer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Literal

POLLUTANTS: tuple[str, ...] = ("pm25", "pm10", "o3", "no2", "so2", "co")
PM: tuple[str, ...] = ("pm25", "pm10")
_ORDER = {p: i for i, p in enumerate(POLLUTANTS)}
EpaEdition = Literal["2024", "2012"]

# ---------------------------------------------------------------------------------------------------------------
# levels

@dataclass(frozen=True)
class Level:
    """One band of the index: its number (1-6), range, names and colour."""

    level: int
    low: int
    high: int
    label_vi: str
    label_en: str
    color: str

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The colour as the decision prints it, (R, G, B)."""
        return int(self.color[1:3], 16), int(self.color[3:5], 16), int(self.color[5:7], 16)


VN_LEVELS: tuple[Level, ...] = (
    Level(1, 0, 50, "Tốt", "Good", "#00e400"),
    Level(2, 51, 100, "Trung bình", "Moderate", "#ffff00"),
    Level(3, 101, 150, "Kém", "Poor", "#ff7e00"),
    Level(4, 151, 200, "Xấu", "Bad", "#ff0000"),
    Level(5, 201, 300, "Rất xấu", "Very bad", "#8f3f97"),
    Level(6, 301, 500, "Nguy hại", "Hazardous", "#7e0023"),
)
US_LEVELS: tuple[Level, ...] = (
    Level(1, 0, 50, "Tốt", "Good", "#00e400"),
    Level(2, 51, 100, "Trung bình", "Moderate", "#ffff00"),
    Level(3, 101, 150, "Không tốt cho nhóm nhạy cảm", "Unhealthy for sensitive groups", "#ff7e00"),
    Level(4, 151, 200, "Có hại", "Unhealthy", "#ff0000"),
    Level(5, 201, 300, "Rất có hại", "Very unhealthy", "#8f3f97"),
    Level(6, 301, 500, "Nguy hại", "Hazardous", "#7e0023"),
)


def level_of(aqi: int | None, levels: Sequence[Level] = VN_LEVELS) -> Level | None:
    """The band an (integer) index falls in; the top band for anything above 500."""
    if aqi is None:
        return None
    for band in levels:
        if aqi <= band.high:
            return band
    return levels[-1]


def round_half_up(value: float) -> int:
    """Round as the decision does (109.5 -> 110), immune to binary noise such as 109.49999999999999."""
    if -1e12 < value < 1e12:
        # The exact decimal rounding below only matters within binary noise of a half; elsewhere the float's
        # own floor decides the same way, some twenty times faster (this runs for every sub-index).
        floor = math.floor(value)
        frac = value - floor  # exact for these magnitudes
        if frac < 0.4999999 or frac > 0.5000001:
            return floor + 1 if frac > 0.5 else floor
    return int(Decimal(repr(value)).quantize(Decimal("1e-9")).quantize(Decimal(1), rounding=ROUND_HALF_UP))


# ---------------------------------------------------------------------------------------------------------------
# VN_AQI

VN_I: tuple[int, ...] = (0, 50, 100, 150, 200, 300, 400, 500)
VN_BREAKPOINTS: dict[str, tuple[float, ...]] = {
    "o3_1h": (0, 160, 200, 300, 400, 800, 1000, 1200),
    "o3_8h": (0, 100, 120, 170, 210, 400),
    "co": (0, 10000, 30000, 45000, 60000, 90000, 120000, 150000),
    "so2": (0, 125, 350, 550, 800, 1600, 2100, 2630),
    "no2": (0, 100, 200, 700, 1200, 2350, 3100, 3850),
    "pm10": (0, 50, 150, 250, 350, 420, 500, 600),
    "pm25": (0, 25, 50, 80, 150, 250, 350, 500),
}
TOP = 500


def vn_sub_index(column: str, concentration: float) -> float | None:
    """The unrounded sub-index of a concentration on a column of table 2 (None past the O3 8-hour column).

    Above the last breakpoint the index is capped at 500, the top of the scale.
    """
    bps = VN_BREAKPOINTS[column]
    if concentration < 0 or math.isnan(concentration):
        return None
    if concentration >= bps[-1]:
        return None if column == "o3_8h" and concentration > bps[-1] else float(VN_I[len(bps) - 1])
    for i in range(len(bps) - 1):
        lo, hi = bps[i], bps[i + 1]
        if concentration <= hi:
            return (VN_I[i + 1] - VN_I[i]) / (hi - lo) * (concentration - lo) + VN_I[i]
    return None  # unreachable: the last breakpoint was handled above


def nowcast(series: Sequence[float | None], *, floor_w: float = 0.5) -> float | None:
    """NowCast of hourly means (oldest first, the last is the current hour), over the newest 12 hours.

    None when fewer than 2 of the 3 newest hours are present (the decision's missing-data rule).
    """
    newest = list(reversed(series[-12:]))  # c1, c2, ... c12
    if sum(1 for c in newest[:3] if c is not None) < 2:
        return None
    present = [c for c in newest if c is not None]
    cmax = max(present)
    if cmax <= 0:
        return 0.0
    w_star = min(present) / cmax
    w = floor_w if w_star <= floor_w else w_star
    num = den = 0.0
    for i, c in enumerate(newest):
        if c is not None:
            weight = w ** i
            num += weight * c
            den += weight
    return num / den


def rolling_means(series: Sequence[float | None], hours: int = 8, min_present: int = 6) -> list[float | None]:
    """The mean of each window of `hours` consecutive hourly means ending at each hour (None when too few)."""
    out: list[float | None] = []
    for end in range(len(series)):
        window = [c for c in series[max(0, end - hours + 1):end + 1] if c is not None]
        out.append(sum(window) / len(window) if end + 1 >= hours and len(window) >= min_present else None)
    return out


def _last_8h_mean(series: Sequence[float | None]) -> float | None:
    """rolling_means(series[-8:])[-1], without the seven windows before it."""
    window = [c for c in series[-8:] if c is not None]
    return sum(window) / len(window) if len(window) >= 6 else None


def _present(series: Sequence[float | None] | None) -> list[float]:
    return [c for c in series or () if c is not None]


@dataclass
class IndexResult:
    """An index with its band, dominant pollutant, sub-indices and the concentrations they came from."""

    scheme: str
    aqi: int | None
    level: int | None
    label_vi: str | None
    label_en: str | None
    color: str | None
    dominant: str | None
    sub_indices: dict[str, int] = field(default_factory=dict)
    concentrations: dict[str, float] = field(default_factory=dict)
    beyond_scale: bool = False

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {"scheme": self.scheme, "aqi": self.aqi, "level": self.level, "label_vi": self.label_vi,
                "label_en": self.label_en, "color": self.color, "dominant": self.dominant,
                "sub_indices": self.sub_indices, "concentrations": self.concentrations,
                "beyond_scale": self.beyond_scale}


def _result(scheme: str, raw: Mapping[str, float], concentrations: Mapping[str, float], levels: Sequence[Level],
            needs_pm: bool, beyond: bool) -> IndexResult:
    subs = {k: round_half_up(v) if scheme == "vn" else int(v) for k, v in raw.items()}
    if not subs or (needs_pm and not any(k in subs for k in PM)):
        return IndexResult(scheme, None, None, None, None, None, None, subs, dict(concentrations), beyond)
    dominant = max(subs, key=lambda k: (subs[k], raw[k], -_ORDER[k]))
    aqi = subs[dominant]
    band = level_of(aqi, levels)
    assert band is not None
    return IndexResult(scheme, aqi, band.level, band.label_vi, band.label_en, band.color, dominant, subs,
                       {k: round(v, 3) for k, v in concentrations.items()}, beyond)


def vn_hourly(series: Mapping[str, Sequence[float | None]],
              nowcasts: Mapping[str, float | None] | None = None) -> IndexResult:
    """Hourly VN_AQI from hourly means per pollutant (oldest first; the last is the current hour); `nowcasts`
    may carry the PM NowCasts of these series, already computed."""
    raw: dict[str, float] = {}
    used: dict[str, float] = {}
    beyond = False
    for p in POLLUTANTS:
        values = series.get(p)
        if not values:
            continue
        c = (nowcasts[p] if nowcasts is not None and p in nowcasts else nowcast(values)) if p in PM else values[-1]
        if c is None:
            continue
        column = "o3_1h" if p == "o3" else p
        sub = vn_sub_index(column, c)
        if sub is not None:
            raw[p], used[p] = sub, c
            beyond = beyond or c > VN_BREAKPOINTS[column][-1]
    return _result("vn", raw, used, VN_LEVELS, True, beyond)


@dataclass(frozen=True)
class DayValues:
    """A day's figures per pollutant: 24-hour mean (PM), highest 1-hour and 8-hour means (gases)."""

    mean_24h: float | None = None
    max_1h: float | None = None
    max_8h: float | None = None


def day_values(pollutant: str, hourly: Sequence[float | None], before: Sequence[float | None] = ()) -> DayValues:
    """A day's figures from its hourly means; `before` are the hours preceding the day (for 8-hour means)."""
    present = _present(hourly)
    if not present:
        return DayValues()
    if pollutant in PM:
        return DayValues(mean_24h=sum(present) / len(present))
    eights = rolling_means([*before, *hourly])[len(before):] if pollutant in ("o3", "co") else []
    eight = [e for e in eights if e is not None]
    return DayValues(max_1h=max(present), max_8h=max(eight) if eight else None)


def vn_daily(values: Mapping[str, DayValues]) -> IndexResult:
    """Daily VN_AQI from a day's figures per pollutant."""
    raw: dict[str, float] = {}
    used: dict[str, float] = {}
    beyond = False
    for p in POLLUTANTS:
        v = values.get(p)
        if v is None:
            continue
        if p in PM:
            if v.mean_24h is None:
                continue
            sub, c = vn_sub_index(p, v.mean_24h), v.mean_24h
            beyond = beyond or c > VN_BREAKPOINTS[p][-1]
        elif p == "o3":
            one = vn_sub_index("o3_1h", v.max_1h) if v.max_1h is not None else None
            eight = vn_sub_index("o3_8h", v.max_8h) if v.max_8h is not None else None
            if one is None and eight is None:
                continue
            if eight is not None and (one is None or eight > one):
                sub, c = eight, v.max_8h  # type: ignore[assignment]
            else:
                sub, c = one, v.max_1h  # type: ignore[assignment]
        else:
            if v.max_1h is None:
                continue
            sub, c = vn_sub_index(p, v.max_1h), v.max_1h
        if sub is not None and c is not None:
            raw[p], used[p] = sub, c
            if p != "o3" or c == v.max_1h:
                beyond = beyond or c > VN_BREAKPOINTS["o3_1h" if p == "o3" else p][-1]
    return _result("vn", raw, used, VN_LEVELS, True, beyond)


# ---------------------------------------------------------------------------------------------------------------
# US EPA

EPA_I: tuple[tuple[int, int], ...] = ((0, 50), (51, 100), (101, 150), (151, 200), (201, 300), (301, 400),
                                      (401, 500))
_D = Decimal
# Breakpoint ranges per EPA pollutant and averaging time, in EPA units (µg/m³, ppm or ppb).
EPA_2012: dict[str, tuple[tuple[Decimal, Decimal], ...]] = {
    "pm25": ((_D("0.0"), _D("12.0")), (_D("12.1"), _D("35.4")), (_D("35.5"), _D("55.4")), (_D("55.5"), _D("150.4")),
             (_D("150.5"), _D("250.4")), (_D("250.5"), _D("350.4")), (_D("350.5"), _D("500.4"))),
    "pm10": ((_D(0), _D(54)), (_D(55), _D(154)), (_D(155), _D(254)), (_D(255), _D(354)), (_D(355), _D(424)),
             (_D(425), _D(504)), (_D(505), _D(604))),
    "o3_8h": ((_D("0.000"), _D("0.059")), (_D("0.060"), _D("0.075")), (_D("0.076"), _D("0.095")),
              (_D("0.096"), _D("0.115")), (_D("0.116"), _D("0.374"))),
    "o3_1h": ((_D("0.125"), _D("0.164")), (_D("0.165"), _D("0.204")), (_D("0.205"), _D("0.404")),
              (_D("0.405"), _D("0.504")), (_D("0.505"), _D("0.604"))),  # starts at AQI 101
    "co_8h": ((_D("0.0"), _D("4.4")), (_D("4.5"), _D("9.4")), (_D("9.5"), _D("12.4")), (_D("12.5"), _D("15.4")),
              (_D("15.5"), _D("30.4")), (_D("30.5"), _D("40.4")), (_D("40.5"), _D("50.4"))),
    "so2_1h": ((_D(0), _D(35)), (_D(36), _D(75)), (_D(76), _D(185)), (_D(186), _D(304)), (_D(305), _D(604)),
               (_D(605), _D(804)), (_D(805), _D(1004))),
    "no2_1h": ((_D(0), _D(53)), (_D(54), _D(100)), (_D(101), _D(360)), (_D(361), _D(649)), (_D(650), _D(1249)),
               (_D(1250), _D(1649)), (_D(1650), _D(2049))),
}
# The 2024 revision changed PM2.5 only: good ends at 9.0 and 301-500 is one band from 225.5 µg/m³.
EPA_2024: dict[str, tuple[tuple[Decimal, Decimal], ...]] = {
    **EPA_2012,
    "pm25": ((_D("0.0"), _D("9.0")), (_D("9.1"), _D("35.4")), (_D("35.5"), _D("55.4")), (_D("55.5"), _D("125.4")),
             (_D("125.5"), _D("225.4")), (_D("225.5"), _D("325.4"))),
}
EPA_I_2024_PM25: tuple[tuple[int, int], ...] = ((0, 50), (51, 100), (101, 150), (151, 200), (201, 300), (301, 500))
EPA_PRECISION: dict[str, Decimal] = {"pm25": _D("0.1"), "pm10": _D(1), "o3_8h": _D("0.001"), "o3_1h": _D("0.001"),
                                     "co_8h": _D("0.1"), "so2_1h": _D(1), "no2_1h": _D(1)}
MOLAR_MASS = {"o3": 48.00, "no2": 46.0055, "so2": 64.066, "co": 28.01}
MOLAR_VOLUME = 24.45  # litres per mole at 25 °C and 1 atm, as EPA converts


def to_epa_units(pollutant: str, ug_m3: float) -> float:
    """µg/m³ -> the unit EPA's table uses: ppm for O3 and CO, ppb for NO2 and SO2, µg/m³ for PM."""
    if pollutant in PM:
        return ug_m3
    ppb = ug_m3 * MOLAR_VOLUME / MOLAR_MASS[pollutant]
    return ppb / 1000.0 if pollutant in ("o3", "co") else ppb


def epa_sub_index(column: str, value: float, edition: EpaEdition = "2024") -> float | None:
    """EPA sub-index of a concentration in EPA units (truncated to EPA's precision); None when out of the table.

    Rounded to the nearest integer, half up; capped at 500 above the table.
    """
    scale = _EPA_SCALE[column]
    if 0.0 <= value < 1e6:
        # Truncation in binary floating point agrees with the decimal one except within noise of a step; then
        # the sub-index depends on the step count alone, so each one is computed (in decimal) once.
        scaled = value * scale
        steps = math.floor(scaled)
        if 1e-6 < scaled - steps < 0.999999:
            key = (column, edition, steps)
            sub = _EPA_CACHE.get(key, _MISSING)
            if sub is _MISSING:
                if len(_EPA_CACHE) > 100_000:
                    _EPA_CACHE.clear()
                sub = _EPA_CACHE[key] = _epa_at(column, _D(steps) * EPA_PRECISION[column], edition)
            return sub  # type: ignore[return-value]
    return _epa_at(column, _D(repr(value)).quantize(EPA_PRECISION[column], rounding=ROUND_DOWN), edition)


_EPA_SCALE: dict[str, int] = {column: int(1 / step) for column, step in EPA_PRECISION.items()}
_EPA_CACHE: dict[tuple[str, str, int], float | None] = {}
_MISSING = object()


def _epa_at(column: str, c: Decimal, edition: EpaEdition) -> float | None:
    """EPA sub-index of a concentration already truncated to EPA's precision."""
    table = (EPA_2024 if edition == "2024" else EPA_2012)[column]
    levels = EPA_I_2024_PM25 if edition == "2024" and column == "pm25" else EPA_I
    if column == "o3_1h":
        levels = EPA_I[2:]
    if c < 0:
        return None
    if c > table[-1][1]:
        return float(TOP)
    if column == "o3_1h" and c < table[0][0]:
        return None  # EPA uses 1-hour ozone only from 0.125 ppm
    for (lo, hi), (ilo, ihi) in zip(table, levels, strict=False):
        if c <= hi:
            if c < lo:  # cannot happen after truncation, but never interpolate backwards
                c = lo
            value_d = (_D(ihi) - _D(ilo)) / (hi - lo) * (c - lo) + _D(ilo)
            return float(value_d.quantize(_D(1), rounding=ROUND_HALF_UP))
    return None


def _epa_max(candidates: list[tuple[str, float | None, float]]) -> tuple[float, float] | None:
    best = None
    for _col, sub, conc in candidates:
        if sub is not None and (best is None or sub > best[0]):
            best = (sub, conc)
    return best


def us_hourly(series: Mapping[str, Sequence[float | None]], edition: EpaEdition = "2024",
              nowcasts: Mapping[str, float | None] | None = None) -> IndexResult:
    """The US AQI of the current hour: NowCast for PM, 8-hour means for O3 (1-hour when higher) and CO;
    `nowcasts` may carry the PM NowCasts of these series, already computed."""
    raw: dict[str, float] = {}
    used: dict[str, float] = {}
    beyond = False
    for p in POLLUTANTS:
        values = series.get(p)
        if not values:
            continue
        if p in PM:
            c = nowcasts[p] if nowcasts is not None and p in nowcasts else nowcast(values)
            if c is None:
                continue
            column = p
            sub = epa_sub_index(p, c, edition)
            if sub is not None:
                raw[p], used[p] = sub, c
                beyond = beyond or (sub >= TOP and c > float((EPA_2024 if edition == "2024" else EPA_2012)[p][-1][1]))
            continue
        if p in ("o3", "co"):
            eight = _last_8h_mean(values) if len(values) >= 8 else None
            options: list[tuple[str, float | None, float]] = []
            if eight is not None:
                column = "o3_8h" if p == "o3" else "co_8h"
                conv = to_epa_units(p, eight)
                if not (p == "o3" and conv > 0.200):  # EPA's 8-hour ozone table stops at 0.200 ppm for indexing
                    options.append((column, epa_sub_index(column, conv, edition), eight))
            if p == "o3" and values[-1] is not None:
                options.append(("o3_1h", epa_sub_index("o3_1h", to_epa_units(p, values[-1]), edition), values[-1]))
            best = _epa_max(options)
            if best is not None:
                raw[p], used[p] = best
            continue
        if values[-1] is None:
            continue
        column = f"{p}_1h"
        sub = epa_sub_index(column, to_epa_units(p, values[-1]), edition)
        if sub is not None:
            raw[p], used[p] = sub, values[-1]
    return _result("us", raw, used, US_LEVELS, False, beyond)


def us_daily(values: Mapping[str, DayValues], edition: EpaEdition = "2024") -> IndexResult:
    """The US AQI of a day: PM 24-hour means, O3 and CO highest 8-hour means, NO2 and SO2 highest 1-hour means."""
    raw: dict[str, float] = {}
    used: dict[str, float] = {}
    for p in POLLUTANTS:
        v = values.get(p)
        if v is None:
            continue
        if p in PM:
            c = v.mean_24h
            sub = epa_sub_index(p, c, edition) if c is not None else None
        elif p in ("o3", "co"):
            c = v.max_8h
            column = "o3_8h" if p == "o3" else "co_8h"
            sub = None
            if c is not None and not (p == "o3" and to_epa_units(p, c) > 0.200):
                sub = epa_sub_index(column, to_epa_units(p, c), edition)
            if p == "o3" and v.max_1h is not None:
                one = epa_sub_index("o3_1h", to_epa_units(p, v.max_1h), edition)
                if one is not None and (sub is None or one > sub):
                    sub, c = one, v.max_1h
        else:
            c = v.max_1h
            sub = epa_sub_index(f"{p}_1h", to_epa_units(p, c), edition) if c is not None else None
        if sub is not None and c is not None:
            raw[p], used[p] = sub, c
    return _result("us", raw, used, US_LEVELS, False, False)
