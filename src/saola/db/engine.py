"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from saola.config import Settings
from saola.db.base import CURRENT_NODE


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers work while the single writer writes; NORMAL is durable across app crashes in WAL.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()
    # Let SQLAlchemy's BEGIN reach SQLite (the driver's own implicit transactions are unreliable).
    dbapi_connection.isolation_level = None


def _sqlite_begin(conn: Any) -> None:
    # Writers that must read-then-write ask for the lock at BEGIN with execution option sqlite_immediate;
    # plain reads stay deferred so readers never wait for one another.
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _json_dumps(value: Any) -> str:
    # orjson is several times faster than the standard library on the JSON columns (entity attributes, outbox
    # payloads). Non-string keys become strings, as json.dumps makes them.
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # what orjson refuses (integers past 64 bits ...): the standard library's verdict
        return json.dumps(value)


def _json_loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN or Infinity that json.dumps once wrote into a SQLite text column
        return json.loads(text)


def make_engine(settings: Settings) -> Engine:
    """Create the engine for the configured database, with the pragmas SQLite needs."""
    CURRENT_NODE["id"] = settings.node_id
    url = settings.url
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               json_serializer=_json_dumps, json_deserializer=_json_loads,
                               execution_options={"saola_lookup_cache_seconds": settings.lookup_cache_seconds})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # The rollup folder (saola.core.observations.rollups) and the lookup caches (saola.core.cache) read their
    # intervals from these execution options;
    # saola.db cannot import saola.core, so the setting travels with the engine.
    # psycopg prepares a statement after five runs, and PostgreSQL may then settle on a generic plan costed
    # while a table was small (empty at install, a queue between folds), scanning it forever after: custom plans
    # keep each execution planned for the data it meets, at a planning cost of tens of microseconds.
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True,
                         connect_args={"options": "-c plan_cache_mode=force_custom_plan"},
                         json_serializer=_json_dumps, json_deserializer=_json_loads,
                         execution_options={"saola_rollup_fold_seconds": settings.rollup_fold_ms / 1000,
                                            "saola_lookup_cache_seconds": settings.lookup_cache_seconds})


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session], *, write: bool = True) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any error.

    On SQLite a writing transaction takes the write lock at BEGIN: one that read first and then wrote would fail at
    once ("database is locked", the busy timeout cannot help) whenever another thread committed in between.
    """
    with factory() as session, session.begin():
        if write:
            session.connection(execution_options={"sqlite_immediate": True})
        yield session
