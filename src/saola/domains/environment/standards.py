"""QCVN 05:2023 air limits, QCVN 08:2023 water classes and VN_WQI, read from an editable data file.

The tables live in data/standards.toml (or the file SAOLA_ENV_STANDARDS_FILE names) so a province can correct a
transcription without a release; rows marked verified = false are flagged as such in every answer built on them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

DEFAULT_FILE = Path(__file__).parent / "data" / "standards.toml"
AVERAGING = ("1h", "8h", "24h", "year")


@dataclass(frozen=True)
class Standards:
    """The parsed data file."""

    path: Path
    data: dict[str, Any]

    @property
    def quality(self) -> dict[str, float]:
        """Data-quality settings: stuck-sensor run, tolerance and gap length."""
        return self.data.get("data_quality", {})

    def air_limit(self, parameter: str, averaging: str, on: date) -> float | None:
        """The QCVN 05 limit of a parameter for an averaging period in force on a day (None when none)."""
        best: tuple[str, float] | None = None
        for row in self.data.get("qcvn05", {}).get("limits", []):
            if row["parameter"] != parameter or row["averaging"] != averaging:
                continue
            start = str(row.get("from", "0000-01-01"))
            if start <= on.isoformat() and (best is None or start >= best[0]):
                best = (start, float(row["value"]))
        return best[1] if best else None

    def air_limits(self, on: date) -> dict[str, dict[str, float]]:
        """Every QCVN 05 limit in force on a day: {parameter: {averaging: limit}}."""
        out: dict[str, dict[str, float]] = {}
        for row in self.data.get("qcvn05", {}).get("limits", []):
            limit = self.air_limit(row["parameter"], row["averaging"], on)
            if limit is not None:
                out.setdefault(row["parameter"], {})[row["averaging"]] = limit
        return out


def standards_path() -> Path:
    """The data file in use: SAOLA_ENV_STANDARDS_FILE when set, else the one shipped with the pack."""
    override = os.environ.get("SAOLA_ENV_STANDARDS_FILE")
    return Path(override) if override else DEFAULT_FILE


@lru_cache(maxsize=4)
def _load(path: Path) -> Standards:
    with path.open("rb") as fh:
        return Standards(path, tomllib.load(fh))


def load_standards(path: Path | None = None) -> Standards:
    """The standards from a file (cached per path)."""
    return _load(path or standards_path())


# ---------------------------------------------------------------------------------------------------------------
# QCVN 05 exceedance


def exceedances(standards: Standards, parameter: str, averaging: str,
                values: Sequence[tuple[Any, float]], on: date) -> list[dict[str, Any]]:
    """The (period, value, limit) of each value above its QCVN 05 limit for that averaging period."""
    limit = standards.air_limit(parameter, averaging, on)
    if limit is None:
        return []
    return [{"period": period, "value": round(v, 2), "limit": limit, "ratio": round(v / limit, 3)}
            for period, v in values if v > limit]


# ---------------------------------------------------------------------------------------------------------------
# QCVN 08 classes and VN_WQI


def water_class(standards: Standards, values: Mapping[str, float]) -> dict[str, Any]:
    """The QCVN 08 class (A best .. D, or 'worse than D') each parameter meets, the overall class, and
    the health-related limits exceeded."""
    classes = standards.data.get("qcvn08", {}).get("classes", {})
    order: list[str] = classes.get("order", ["A", "B", "C", "D"])
    per: dict[str, str] = {}
    for parameter, value in values.items():
        spec = classes.get(parameter)
        if not isinstance(spec, dict):
            continue
        met = None
        for cls in order:
            limit = spec.get(cls)
            if limit is None:
                continue
            better = spec.get("better", "lower")
            ok = (limit[0] <= value <= limit[1] if better == "range" else
                  value >= limit if better == "higher" else value <= limit)
            if ok:
                met = cls
                break
        per[parameter] = met or "worse than " + order[-1]
    rank = {c: i for i, c in enumerate(order)}
    overall = max(per.values(), key=lambda c: rank.get(c, len(order))) if per else None
    health = standards.data.get("qcvn08", {}).get("health", {})
    exceeded = {p: {"value": v, "limit": float(health[p])} for p, v in values.items()
                if p in health and p != "verified" and v > float(health[p])}
    return {"class": overall, "per_parameter": per, "health_exceeded": exceeded,
            "verified": bool(classes.get("verified", False))}


def _curve(points: Sequence[Sequence[float]], x: float) -> float:
    if x <= points[0][0]:
        return float(points[0][1])
    for (x0, q0), (x1, q1) in pairwise(points):
        if x <= x1:
            return float(q0 + (q1 - q0) * (x - x0) / (x1 - x0)) if x1 > x0 else float(q1)
    return float(points[-1][1])


def wqi(standards: Standards, values: Mapping[str, float]) -> dict[str, Any]:
    """VN_WQI from the parameters at hand, with sub-indices and band; None when groups I, IV or V are missing."""
    spec = standards.data.get("wqi", {})
    curves, groups = spec.get("curves", {}), spec.get("groups", {})
    subs = {p: round(_curve(curves[p], v), 1) for p, v in values.items() if p in curves}
    by_group: dict[str, list[float]] = {}
    for p, q in subs.items():
        by_group.setdefault(groups.get(p, "?"), []).append(q)
    result: dict[str, Any] = {"wqi": None, "band": None, "sub_indices": subs,
                              "verified": bool(spec.get("verified", False)),
                              "missing_groups": sorted({"I", "IV", "V"} - set(by_group))}
    if result["missing_groups"]:
        return result
    mean = {g: sum(qs) / len(qs) for g, qs in by_group.items()}
    value = mean["I"] / 100 * (mean["IV"] ** 2 * mean["V"]) ** (1 / 3)
    for g in ("II", "III"):
        if g in mean:
            value *= mean[g] / 100
    value = max(0.0, min(100.0, value))
    result["wqi"] = round(value)
    for low, vi, en, color in spec.get("bands", []):
        if round(value) >= low:
            result["band"] = {"label_vi": vi, "label_en": en, "color": color}
            break
    return result
