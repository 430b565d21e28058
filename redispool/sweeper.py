"""The sweeper daemon: takes back the jobs of workers that died, and expired leases.

Each step, for every worker whose registration has not been refreshed for
``worker_timeout`` seconds, it requeues every job that worker still holds (even leases
that have not expired yet: the worker is gone) and removes the registration. Then it
visits only the queues whose planned time in ``rp:due:sweeper`` has come (the earliest
lease expiry or retention trim; see queues.py and daemon.py): it requeues jobs whose
lease expired, or makes them dead when that was their last attempt (error "lease
expired"), trims finished jobs to their retention, and stores when each queue next has
work. Several sweepers may run at once: each move is one atomic script.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import defaults, validate
from .daemon import RECONCILE_EVERY_S, Daemon

if TYPE_CHECKING:
    from .engine import Engine


class Sweeper(Daemon):
    """``run()`` sweeps every ``interval`` seconds until stopped (see ``Daemon``)."""

    name = "sweeper"

    def __init__(self, engine: Engine, interval: float = 1.0,
                 worker_timeout: float = defaults.WORKER_TIMEOUT_S, *,
                 reconcile_every: float = RECONCILE_EVERY_S) -> None:
        super().__init__(engine, interval=interval, reconcile_every=reconcile_every)
        validate.seconds_to_ms(worker_timeout, "worker_timeout", allow_zero=False)
        self.worker_timeout = worker_timeout

    def before_visits(self) -> int:
        return self.sweep_workers()

    def visit(self, queue: str) -> tuple[int, int]:
        """Requeue the queue's expired leases and trim it; returns the jobs moved and the
        queue's next planned time (ms, -1: none)."""
        moved, next_ms = self.engine._sweep(queue, plan=True)
        if moved:
            self.log.info("swept queue=%s moved=%d reason=%s", queue, moved, '"lease expired"')
        return moved, next_ms

    def sweep_workers(self) -> int:
        """Take back the leases of workers whose registration expired, deregister them."""
        moved = 0
        for worker_id, queues in self.engine.expired_workers(self.worker_timeout):
            n = 0
            for queue in queues or self.engine.queues():
                n += self.engine.sweep(queue, worker_id=worker_id)
            self.engine.deregister_worker(worker_id)
            self.log.warning("worker expired worker_id=%s queues=%s moved=%d", worker_id,
                             ",".join(queues) or "?", n)
            moved += n
        return moved
