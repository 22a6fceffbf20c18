"""Asking one query about many values: one array parameter on PostgreSQL, IN lists in chunks elsewhere.

On PostgreSQL `column = ANY(:array)` is the same SQL text whatever the number of values, so psycopg parses and
prepares it once, where an IN list of a thousand placeholders is new text for SQLAlchemy and psycopg to build and
parse each time. SQLite (and any other driver) gets IN lists of at most CHUNK values, under every driver's limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import ARRAY, ColumnElement, any_, bindparam
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

CHUNK = 500
T = TypeVar("T")


def is_postgresql(session: Session) -> bool:
    """True when the session talks to PostgreSQL."""
    return session.get_bind().dialect.name == "postgresql"


def chunks(values: Sequence[T], postgresql: bool) -> Iterator[Sequence[T]]:
    """The values in the pieces one query takes: all at once on PostgreSQL, CHUNK at a time elsewhere."""
    step = max(1, len(values)) if postgresql else CHUNK
    for start in range(0, len(values), step):
        yield values[start:start + step]


def one_of(column: ColumnElement[Any], values: Sequence[Any], item_type: type[TypeEngine[Any]], postgresql: bool,
           ) -> ColumnElement[bool]:
    """`column = ANY(:array)` on PostgreSQL, `column IN (...)` elsewhere (values: one piece from chunks)."""
    if postgresql:
        return column == any_(bindparam(None, list(values), type_=ARRAY(item_type)))
    return column.in_(values)
