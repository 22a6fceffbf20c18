"""Short-lived per-process caches of what every write looks up: source keys, indicators, unit paths.

A batch of readings needs its source's key checked and its indicators and units resolved before anything is
written; on PostgreSQL each look-up is a round trip, and together they were a third of the time of a small
batch. What they read changes rarely and through the kernel's own services, which drop the cache of this
process once their change commits; other processes (several workers) see a change after at most the cache's
lifetime, `SAOLA_LOOKUP_CACHE_SECONDS` (default 5 s; 0 turns caching off). A disabled or rotated source key
therefore stops working at once on the worker that changed it and within that lifetime on the others.

Entries are kept per engine, so two databases in one process (tests, benchmarks) never share them.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Hashable, Iterable
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

TTL_OPTION = "saola_lookup_cache_seconds"  # engine execution option set by saola.db.engine.make_engine
DEFAULT_TTL = 5.0
MAX_ENTRIES = 50_000  # per engine and cache; past it the cache starts again empty
MISSING: Any = object()


def _engine(session: Session) -> Engine:
    bind = session.get_bind()
    return getattr(bind, "engine", bind)  # type: ignore[return-value]


class LookupCache:
    """A map per engine whose entries expire after the engine's lookup lifetime."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._data: weakref.WeakKeyDictionary[Engine, dict[Hashable, tuple[float, Any]]] = \
            weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        _ALL.add(self)

    def get(self, session: Session, key: Hashable) -> Any:
        """The value kept for key through this session's engine, or MISSING."""
        entries = self._data.get(_engine(session))
        found = entries.get(key) if entries is not None else None
        if found is None or found[0] < time.monotonic():
            return MISSING
        return found[1]

    def get_many(self, session: Session, keys: Iterable[Hashable]) -> dict[Hashable, Any]:
        """The values kept for those of keys that have one (the engine and the clock are looked up once)."""
        entries = self._data.get(_engine(session))
        if not entries:
            return {}
        now = time.monotonic()
        found = {}
        for key in keys:
            hit = entries.get(key)
            if hit is not None and hit[0] >= now:
                found[key] = hit[1]
        return found

    def put(self, session: Session, key: Hashable, value: Any) -> None:
        """Keep value for key for the engine's lookup lifetime (nothing when caching is off)."""
        engine = _engine(session)
        ttl = float(engine.get_execution_options().get(TTL_OPTION, DEFAULT_TTL))
        if ttl <= 0:
            return
        with self._lock:
            entries = self._data.get(engine)
            if entries is None or len(entries) >= MAX_ENTRIES:
                entries = self._data[engine] = {}
            entries[key] = (time.monotonic() + ttl, value)

    def clear(self) -> None:
        """Forget everything, for every engine."""
        with self._lock:
            self._data = weakref.WeakKeyDictionary()

    def clear_after_commit(self, session: Session) -> None:
        """Forget everything now and again once the session's transaction commits (a change is under way).

        Clearing only now would let a concurrent request cache the row as it was before the commit.
        """
        self.clear()
        session.info.setdefault("saola_clear_caches", set()).add(self)


_ALL: weakref.WeakSet[LookupCache] = weakref.WeakSet()


def clear_all_after_commit(session: Session) -> None:
    """Forget every lookup cache, now and once the session commits (units reloaded, a tree changed)."""
    for cache in list(_ALL):
        cache.clear_after_commit(session)


@event.listens_for(Session, "after_commit")
def _clear_after_commit(session: Session) -> None:
    for cache in session.info.pop("saola_clear_caches", ()):
        cache.clear()

