"""What an indicator spreadsheet import did."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ImportReport(BaseModel):
    """Counts of an import that went through (a refused file raises with its row errors instead)."""

    rows: int = Field(description="Data rows read")
    values: int = Field(description="Rows with a value")
    values_accepted: int = Field(description="Values stored now")
    values_unchanged: int = Field(description="Values already stored for that indicator, unit and period (kept)")
    targets: int = Field(description="Plan targets created or replaced")
