"""The sweeper daemon: takes back the jobs of workers that died.

Each step, for every worker whose registration has not been refreshed for
``worker_timeout`` seconds, it requeues every job that worker still holds (even leases
that have not expired yet: the worker is gone) and removes the registration; then, for
every queue, it requeues jobs whose lease expired, or makes them dead when that was
their last attempt (error "lease expired"), and trims finished jobs to their retention.
Several sweepers may run at once: each move is one atomic script.
"""
from __future__ import annotations

from typing import Any

from . import defaults, validate
from .daemon import Daemon


class Sweeper(Daemon):
    """``run()`` sweeps every ``interval`` seconds until stopped (see ``Daemon``)."""

    name = "sweeper"

    def __init__(self, engine: Any, interval: float = 1.0,
                 worker_timeout: float = defaults.WORKER_TIMEOUT_S) -> None:
        super().__init__(engine, interval=interval)
        validate.seconds_to_ms(worker_timeout, "worker_timeout", allow_zero=False)
        self.worker_timeout = worker_timeout

    def step(self) -> int:
        """One sweep over expired workers and every queue; returns the jobs moved."""
        moved = self.sweep_workers()
        for queue in self.engine.queues():
            n = self.engine.sweep(queue)
            if n:
                self.log.info("swept queue=%s moved=%d reason=%s", queue, n, '"lease expired"')
            moved += n
        return moved

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
