"""Runs the packs' scheduled jobs on their intervals while the server is up."""

from __future__ import annotations

import logging
import threading
import time

from saola.packs.context import PackContext
from saola.packs.definitions import ScheduledJob

log = logging.getLogger(__name__)


class JobRunner(threading.Thread):
    """Calls each job every `interval_seconds`; a failing job is logged and tried again next time."""

    def __init__(self, context: PackContext, jobs: list[ScheduledJob], *, poll_seconds: float = 0.5) -> None:
        super().__init__(name="saola-jobs", daemon=True)
        self.context = context
        self.jobs = jobs
        self.poll_seconds = poll_seconds
        self.stop_event = threading.Event()

    def run(self) -> None:
        """Run due jobs until stopped."""
        due = {job.name: time.monotonic() + job.interval_seconds for job in self.jobs}
        while not self.stop_event.wait(self.poll_seconds):
            now = time.monotonic()
            for job in self.jobs:
                if now < due[job.name]:
                    continue
                due[job.name] = now + job.interval_seconds
                try:
                    job.run(self.context)
                except Exception:  # one broken job must not stop the others
                    log.exception("scheduled job %s failed", job.name)

    def stop(self) -> None:
        """Ask the runner to finish and wait for it."""
        self.stop_event.set()
        if self.is_alive():
            self.join(timeout=5)
