"""Process-wide runtime settings: how the garbage collector treats a long-running server and large batches."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# While a large batch is handled: net container allocations before a young-generation collection (CPython's default
# is 700). A 10,000-reading batch allocates tens of thousands of containers that live exactly as long as its request
# (keyed rows, columns, live readings); at 700 the collector walked them a dozen times per batch, and the full
# collections that followed walked everything else long-lived: a quarter of the ingest path's CPU (seen with perf).
LARGE_BATCH_YOUNG_THRESHOLD = 100_000

_settled = False
_lock = threading.Lock()
_large = 0  # large batches in flight in this process
_saved: tuple[int, int, int] | None = None


def settle_garbage_collector() -> None:
    """Once per process, after startup: move what startup built (application, metadata, schemas, packs) out of
    every future collection's walk."""
    global _settled
    if _settled:
        return
    _settled = True
    gc.collect()
    gc.freeze()


@contextmanager
def large_allocations() -> Iterator[None]:
    """While the block runs, collect young objects rarely (process-wide, as the collector is); the usual threshold
    comes back when the last such block in the process ends, so small requests keep short collector pauses."""
    global _large, _saved
    with _lock:
        _large += 1
        if _large == 1:
            _saved = gc.get_threshold()
            gc.set_threshold(LARGE_BATCH_YOUNG_THRESHOLD, _saved[1], _saved[2])
    try:
        yield
    finally:
        with _lock:
            _large -= 1
            if _large == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
