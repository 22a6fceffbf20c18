"""Folding queued rollup deltas into the hourly, daily and latest-value tables (PostgreSQL).

On PostgreSQL an ingest transaction writes its readings and, in the same transaction, one row into
observation_rollup_queue holding a delta per (indicator, subject, UTC hour) of its new readings, as arrays. Folding
those deltas into the rollup and latest tables is a separate, short transaction that takes everything queued at
once, so under load one fold serves many batches: three upserts per series per fold instead of three per series per
batch, which was most of the cost of ingest. Every delta is commutative (counts and sums add, min and max, newest by
time), so folds may run in any order and a crash between the two transactions loses nothing: the queue is durable
and the next fold takes it.

When do reads see a batch? A background thread of the ingesting process folds at most every `interval`
(SAOLA_ROLLUP_FOLD_MS, default 500 ms) and less often under load (see _Folder), and any ORM read of the rollup
or latest tables through a session of the same process folds what its process queued first, so code in the
ingesting process reads its own writes.
Other processes (several workers) see a batch about one interval plus one fold later (more under load).

How much folding saves depends on how many readings each series gets per interval: a network sending every
minute gains nothing from an interval shorter than a minute beyond the batching itself, while a batch holding
several minutes of each series (a gateway catching up, a bulk import) is folded once. SQLite keeps
folding inside the ingest transaction (one writer, no queue).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.sql.util import find_tables

log = logging.getLogger(__name__)

QUEUE_TABLE = "observation_rollup_queue"
DEFAULT_INTERVAL = 0.5
LOAD_SPACING = 4.0  # under steady load, folds start at least this many times their own duration apart
INTERVAL_OPTION = "saola_rollup_fold_seconds"  # engine execution option set by saola.db.engine.make_engine
_LOCK_KEY = 0x5A01A_0B5  # pg advisory lock: one fold at a time per database
_READ_TABLES = frozenset({"observation_rollups_hourly", "observation_rollups_daily", "observation_latest"})

QUEUE_COPY = f"COPY {QUEUE_TABLE} FROM STDIN (FORMAT BINARY)"  # one row of 13 arrays, in the table's column order

_EPOCH = "timestamptz '1970-01-01 00:00:00+00'"
_US = "interval '1 microsecond'"
_DAY_US, _VN_OFFSET_US = 86_400_000_000, 25_200_000_000  # a local day is cut at UTC+7, as SQLite cuts days
_UPSERT_SET = """
      count = r.count + excluded.count, sum = r.sum + excluded.sum,
      min = LEAST(r.min, excluded.min), max = GREATEST(r.max, excluded.max),
      last_value = CASE WHEN excluded.last_ts >= r.last_ts THEN excluded.last_value ELSE r.last_value END,
      last_ts = GREATEST(r.last_ts, excluded.last_ts)"""
# One statement: take every queued row, unnest its deltas, sum them per hour (g), then per local day, and keep the
# newest reading per series. The newest of a group is max(ARRAY[time, value, ...]) (arrays compare element by
# element; Unix microseconds are exact in float8), which hashes, where an ordered array_agg sorted every group.
# Buckets with no good reading (n = 0) carry zeros, which FILTER keeps out. Keys are upserted in sorted order so
# that folds never deadlock.
FOLD_SQL = f"""
WITH q AS (DELETE FROM {QUEUE_TABLE} RETURNING *),
  d AS (
    SELECT u.* FROM q, unnest(q.indicator_id, q.subject_id, q.hour_us, q.n, q.total, q.lo, q.hi, q.last_us,
                              q.last_value, q.top_us, q.top_value, q.top_quality, q.top_source)
                       AS u(i, s, h, n, t, lo, hi, lt, lv, tt, tv, tq, src)
  ),
  g AS MATERIALIZED (
    SELECT i, s, h, sum(n) AS n, sum(t) AS t, min(lo) FILTER (WHERE n > 0) AS lo, max(hi) FILTER (WHERE n > 0) AS hi,
           max(ARRAY[lt::float8, lv]) FILTER (WHERE n > 0) AS last, max(ARRAY[tt::float8, tv, tq, src]) AS top
    FROM d GROUP BY i, s, h
  ),
  hourly AS (
    INSERT INTO observation_rollups_hourly AS r (indicator_id, subject_id, bucket, count, sum, min, max, last_ts,
                                                 last_value)
    SELECT i, s, {_EPOCH} + h * {_US}, n, t, lo, hi, {_EPOCH} + last[1]::int8 * {_US}, last[2]
    FROM g WHERE n > 0 ORDER BY i, s, h
    ON CONFLICT (indicator_id, subject_id, bucket) DO UPDATE SET {_UPSERT_SET}
  ),
  daily AS (
    INSERT INTO observation_rollups_daily AS r (indicator_id, subject_id, bucket, count, sum, min, max, last_ts,
                                                last_value)
    SELECT i, s, {_EPOCH} + day * {_US}, n, t, lo, hi, {_EPOCH} + last[1]::int8 * {_US}, last[2]
    FROM (SELECT i, s, (h + {_VN_OFFSET_US}) / {_DAY_US} * {_DAY_US} - {_VN_OFFSET_US} AS day, sum(n) AS n,
                 sum(t) AS t, min(lo) AS lo, max(hi) AS hi, max(last) AS last
          FROM g WHERE n > 0 GROUP BY 1, 2, 3) AS x
    ORDER BY i, s, day
    ON CONFLICT (indicator_id, subject_id, bucket) DO UPDATE SET {_UPSERT_SET}
  ),
  latest AS (
    INSERT INTO observation_latest AS o (indicator_id, subject_id, ts, value, quality, source_id)
    SELECT i, s, {_EPOCH} + top[1]::int8 * {_US}, top[2], top[3]::int2, NULLIF(top[4]::int4, 0)
    FROM (SELECT i, s, max(top) AS top FROM g GROUP BY 1, 2) AS x
    ORDER BY i, s
    ON CONFLICT (indicator_id, subject_id) DO UPDATE SET ts = excluded.ts, value = excluded.value,
      quality = excluded.quality, source_id = excluded.source_id
    WHERE excluded.ts >= o.ts
  )
SELECT count(*) FROM g
"""


def fold(engine: Engine, *, wait: bool = True) -> int | None:
    """Fold every queued delta into the rollup and latest tables; the (series, hour) keys folded, None if another
    fold ran.

    wait=False returns None at once when another fold holds the lock (that fold, or the next, takes ours).
    """
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:  # type: ignore[union-attr]
            if wait:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            else:
                cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (_LOCK_KEY,))
                if not cur.fetchone()[0]:  # type: ignore[index]
                    return None
            cur.execute(FOLD_SQL)
            return int(cur.fetchone()[0])  # type: ignore[index]


class _Folder:
    """Per engine: counts commits that queued deltas, and folds them shortly after in a background thread.

    When to fold: never sooner than `interval` after the last fold; then as soon as ingest pauses (no commit for
    `interval`), and under steady load once LOAD_SPACING times the last fold's duration has passed. A fold costs
    three upserts per series it touches however many batches it covers, so under load each fold takes more batches
    (fewer upserts per reading), folding uses at most about a fifth of a connection, and the lag grows with the
    load instead of the ingest slowing down; when the load stops, the last batches are folded one interval later.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = weakref.ref(engine)
        self.interval = float(engine.get_execution_options().get(INTERVAL_OPTION, DEFAULT_INTERVAL))
        self._lock = threading.Lock()
        self._fold_lock = threading.Lock()
        self.committed = 0  # commits that queued deltas
        self.folded = 0  # every commit up to this number is folded
        self._kicked = False
        self._thread: threading.Thread | None = None
        self.last_duration = 0.0  # seconds the last background fold took
        self._last_fold = time.monotonic()  # when the last background fold (or attempt) ended
        self._last_commit = 0.0

    @property
    def pending(self) -> bool:
        """True while some committed deltas of this process may not be folded yet."""
        return self.folded < self.committed

    def kick(self) -> None:
        """A transaction that queued deltas committed: fold soon."""
        with self._lock:
            self.committed += 1
            self._kicked = True
            self._last_commit = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="saola-rollup-fold", daemon=True)
                self._thread.start()

    def settle(self, *, wait: bool = True) -> bool:
        """Fold now; True when everything this process committed before the call is folded."""
        engine = self._engine()
        if engine is None:
            return True
        with self._fold_lock:  # one fold per process at a time; another thread's fold may already cover ours
            target = self.committed
            if self.folded >= target:
                return True
            if fold(engine, wait=wait) is None:
                return False
            self.folded = max(self.folded, target)
            return True

    def due(self) -> float:
        """When the next background fold should run (monotonic seconds; see the class docstring)."""
        earliest = self._last_fold + self.interval
        under_load = self._last_fold + max(self.interval, LOAD_SPACING * self.last_duration)
        return max(earliest, min(under_load, self._last_commit + self.interval))

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._kicked:
                    self._thread = None
                    return
                wait = self.due() - time.monotonic()
                if wait <= 0:
                    self._kicked = False
            if wait > 0:  # commits arriving meanwhile may move the time on: look again when it comes
                time.sleep(wait)
                continue
            started = time.monotonic()
            try:
                done = self.settle(wait=False)
            except Exception as exc:  # the database went away (shutdown, a dropped test database): a later fold retries
                log.warning("folding rollups failed (the queue stays for the next fold): %s", _first_line(exc))
                with self._lock:
                    self._thread = None
                return
            finally:
                self._last_fold = time.monotonic()
            if done:
                self.last_duration = self._last_fold - started
            else:  # another process was folding (and took our deltas, or will): look again next interval
                with self._lock:
                    self._kicked = True


_FOLDERS: weakref.WeakKeyDictionary[Engine, _Folder] = weakref.WeakKeyDictionary()
_FOLDERS_LOCK = threading.Lock()


def folder(engine: Engine) -> _Folder:
    """The folder of an engine (made on first use)."""
    found = _FOLDERS.get(engine)
    if found is None:
        with _FOLDERS_LOCK:
            found = _FOLDERS.get(engine) or _FOLDERS.setdefault(engine, _Folder(engine))
    return found


def settle(engine: Engine) -> None:
    """Make every delta queued so far, by any process, visible in the rollup and latest tables."""
    if engine.dialect.name != "postgresql":
        return
    f = folder(engine)
    with f._fold_lock:
        target = f.committed
        fold(engine, wait=True)
        f.folded = max(f.folded, target)


def mark_queued(session: Session) -> None:
    """Called by ingest after it queued deltas in the session's transaction: fold them once it commits."""
    bind = session.get_bind()
    session.info["saola_rollups_queued"] = getattr(bind, "engine", bind)


@event.listens_for(Session, "after_commit")
def _fold_after_commit(session: Session) -> None:
    engine = session.info.pop("saola_rollups_queued", None)
    if engine is not None:
        folder(engine).kick()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop("saola_rollups_queued", None)


@event.listens_for(Session, "do_orm_execute")
def _settle_before_read(state: ORMExecuteState) -> None:
    # Reads of rollups or latest values through this process see what this process ingested: fold first when
    # something it committed is still queued. Costs one dictionary look-up per read otherwise.
    if not _FOLDERS or not state.is_select:
        return
    bind = state.session.get_bind()
    found = _FOLDERS.get(getattr(bind, "engine", bind))  # type: ignore[arg-type]
    if found is None or not found.pending:
        return
    if any(getattr(t, "name", None) in _READ_TABLES for t in find_tables(state.statement, include_joins=True,
                                                                          include_aliases=True)):
        found.settle()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@atexit.register
def _fold_at_exit() -> None:
    for f in list(_FOLDERS.values()):
        if f.pending:
            try:
                f.settle()
            except Exception as exc:  # the queue stays; the next fold of any process takes it
                log.warning("folding rollups at exit failed (the queue stays for the next fold): %s",
                            _first_line(exc))


def queue_depth(connection: Any) -> int:
    """Queued rows (ingest transactions) waiting to be folded (a psycopg or DB-API connection to PostgreSQL)."""
    cur = connection.cursor()
    try:
        cur.execute(f"SELECT count(*) FROM {QUEUE_TABLE}")
        return int(cur.fetchone()[0])
    finally:
        cur.close()
