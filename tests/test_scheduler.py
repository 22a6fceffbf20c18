"""Scheduled jobs run on their interval, and a failing job does not stop the others."""

from __future__ import annotations

import threading

from saola.config import Settings
from saola.db.types import utcnow
from saola.packs.context import PackContext
from saola.packs.definitions import ScheduledJob
from saola.scheduler import JobRunner


def test_jobs_run_and_failures_are_contained(tmp_path) -> None:
    ran = threading.Event()
    calls: list[str] = []

    def broken(_context: PackContext) -> None:
        calls.append("broken")
        raise RuntimeError("source system down")

    def healthy(_context: PackContext) -> None:
        calls.append("healthy")
        if calls.count("healthy") >= 2:
            ran.set()

    context = PackContext(settings=Settings(data_dir=tmp_path), session_factory=None, now=utcnow())  # type: ignore[arg-type]
    runner = JobRunner(context, [ScheduledJob("broken", 0.01, broken), ScheduledJob("healthy", 0.01, healthy)],
                       poll_seconds=0.01)
    runner.start()
    try:
        assert ran.wait(5), calls
    finally:
        runner.stop()
    assert calls.count("broken") >= 2  # it kept being retried
    assert not runner.is_alive()
