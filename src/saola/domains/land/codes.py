"""Land-use codes (Circular 08/2024/TT-BTNMT) read from an editable data file inside the pack.

The labels are marked 'unverified' until checked against the official text; a province corrects the CSV,
never the code.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA_FILE = Path(__file__).with_name("data") / "land_use_codes.csv"


@dataclass(frozen=True)
class LandUseCode:
    """One land-use type: code, group (agricultural, non_agricultural, unused) and names."""

    code: str
    group: str
    name_vi: str
    name_en: str
    status: str


@lru_cache
def land_use_codes() -> dict[str, LandUseCode]:
    """Every known land-use code, keyed by code."""
    with DATA_FILE.open(encoding="utf-8", newline="") as fh:
        return {row["code"]: LandUseCode(**row) for row in csv.DictReader(fh)}


def describe(code: str | None) -> LandUseCode | None:
    """The entry for a code, or None when the code is unknown or empty."""
    if not code:
        return None
    return land_use_codes().get(code.strip().upper())
