"""The scheduler daemon: promotes due delayed jobs and fires due cues, for every queue.

Any number of schedulers may run: promoting is one atomic script, and each cue fire is
a compare-and-set on the cue's stored next fire time, so every fire time makes one job.
Between steps it sleeps ``interval`` seconds, or less when a cue is due sooner, so an
every-second cue fires on time.
"""
from __future__ import annotations

from typing import Any

from . import defaults
from .daemon import Daemon

MIN_WAIT_S = 0.005


class Scheduler(Daemon):
    """``run()`` steps until stopped (see ``Daemon``); ``step()`` returns what it moved."""

    name = "scheduler"

    def __init__(self, engine: Any, interval: float = defaults.SCHEDULER_INTERVAL_S) -> None:
        super().__init__(engine, interval=interval)
        self._wait = interval

    def step(self) -> int:
        """Promote and fire on every queue once; returns jobs promoted plus jobs fired."""
        moved = 0
        wait = self.interval
        for queue in self.engine.queues():
            promoted = self.engine.promote(queue)
            if promoted:
                self.log.info("promoted queue=%s moved=%d", queue, promoted)
            fired, until_next = self.engine._fire_due(queue)
            if until_next is not None:
                wait = min(wait, until_next)
            moved += promoted + fired
        self._wait = max(MIN_WAIT_S, wait)
        return moved

    def next_wait(self) -> float:
        return self._wait
