"""Bounds shared by every API: paging offsets and free-text search parameters."""

from __future__ import annotations

from typing import Any

from fastapi import Query

MAX_OFFSET = 1_000_000_000
"""Largest paging offset accepted; beyond it a 422 names the parameter instead of a database overflow."""

TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
"""Free-text search: any printable text, no control characters (PostgreSQL refuses NUL in text)."""


def text_query(description: str = "Text; diacritics and case ignored") -> Any:
    """A FastAPI Query for a free-text search parameter with the shared bounds."""
    return Query(max_length=100, pattern=TEXT_PATTERN, description=description)
