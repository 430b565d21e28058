"""The scheduler daemon: promotes due delayed jobs and fires due cues.

Each step visits only the queues whose planned time in ``rp:due:scheduler`` has come (the
earliest scheduled job, cue fire or outbox entry; see queues.py and daemon.py): it hands
on outcomes of finished parents to children in other queues (Engine._drain_outbox), fires their due cues,
promotes their due delayed jobs, and stores when each next has work. Any number of
schedulers may run: promoting is one atomic script, and each cue fire is a compare-and-set
on the cue's stored next fire time, so every fire time makes one job. Between steps it
sleeps ``interval`` seconds, or less when work is due sooner, so an every-second cue fires
on time.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import defaults
from .daemon import RECONCILE_EVERY_S, Daemon

if TYPE_CHECKING:
    from .engine import Engine


class Scheduler(Daemon):
    """``run()`` steps until stopped (see ``Daemon``); ``step()`` returns what it moved."""

    name = "scheduler"

    def __init__(self, engine: Engine, interval: float = defaults.SCHEDULER_INTERVAL_S, *,
                 reconcile_every: float = RECONCILE_EVERY_S) -> None:
        super().__init__(engine, interval=interval, reconcile_every=reconcile_every)

    def visit(self, queue: str) -> tuple[int, int]:
        """Hand on the outcomes in the queue's outbox (children waiting in other queues),
        fire its due cues, promote its due delayed jobs, then link again its children of
        other queues' parents (``_relink``); returns the jobs fired plus promoted plus
        outcomes applied plus children linked, and the queue's next planned time (ms, -1: none)."""
        applied = self.engine._drain_outbox(queue)
        fired, _ = self.engine._fire_due(queue)
        promoted, next_ms = self.engine._promote(queue, plan=True)
        if promoted:
            self.log.info("promoted queue=%s moved=%d", queue, promoted)
        linked, link_ms = self.engine._relink(queue)
        if link_ms >= 0 and (next_ms < 0 or link_ms < next_ms):
            next_ms = link_ms
        return applied + fired + promoted + linked, next_ms
