"""The worker registry: which worker processes are alive, and what they are doing.

Every worker (the Python ``Worker`` and, later, HTTP clients) registers under an id,
refreshes its heartbeat every few seconds with the jobs it holds and how many it has
processed and failed since the last beat, and deregisters when it stops. Heartbeat times
come from the Redis server clock. A worker whose heartbeat is older than a timeout drops
out of ``workers()``; the sweeper lists such workers with ``expired_workers()``, takes
back their leases and deregisters them.

Keys (all in the Cluster slot of the tag ``{#workers}``, so one script may touch both):

    rp:{#workers}:index      zset  worker ids by last heartbeat (ms)
    rp:{#workers}:w:<id>     hash  host, pid, queues (JSON), started (ms), beat (ms),
                                   jobs (JSON), held (JSON {job: lease expiry ms},
                                   kept for HTTP workers), processed, failed

``processed`` counts every job a worker finished (done or failed); ``failed`` counts
those that failed, so failed/processed is the worker's error rate.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from . import defaults, ops
from .base import EngineBase
from .models import WorkerInfo

EXPIRED_BATCH = 1000  # expired workers listed per call


class WorkersMixin(EngineBase):
    """Registry methods of ``Engine``; the async engine runs the same Ops (aio.py)."""

    def register_worker(self, worker_id: str, *, host: str, pid: int,
                        queues: Sequence[str]) -> float:
        """Register (or re-register) a worker; returns its start time (unix seconds)."""
        return self.run(ops.register_worker(self, worker_id, host, pid, queues))

    def beat_worker(self, worker_id: str, *, jobs_in_progress: Sequence[str] | None = None,
                    processed: int = 0, failed: int = 0, queue: str | None = None,
                    taken: Mapping[str, float] | None = None, settled: Sequence[str] | None = None) -> bool:
        """Refresh a worker's heartbeat and add ``processed`` / ``failed`` (deltas since the
        last beat) to its counters. Its jobs in progress are either replaced
        (``jobs_in_progress``, what a worker process that knows them all sends) or changed:
        ``taken`` maps jobs leased or extended to their lease expiry (unix seconds),
        ``settled`` lists jobs it no longer holds — what the servers of HTTP workers send,
        so that several server replicas keep one list; leases past their expiry drop out.
        ``queue`` is added to the queues it is registered for. Returns False when the
        worker is not registered (its registration expired): register it again."""
        return self.run(ops.beat_worker(self, worker_id, jobs_in_progress, processed, failed, queue, taken,
                                        settled))

    def deregister_worker(self, worker_id: str) -> bool:
        """Remove a worker's registration; True if it was registered."""
        return self.run(ops.deregister_worker(self, worker_id))

    def workers(self, *, timeout: float = defaults.WORKER_TIMEOUT_S) -> list[WorkerInfo]:
        """Registered workers whose last heartbeat is at most ``timeout`` seconds old."""
        return self.run(ops.workers(self, timeout))

    def expired_workers(self, timeout: float = defaults.WORKER_TIMEOUT_S) -> list[tuple[str, list[str]]]:
        """(id, queues) of registered workers whose heartbeat is older than ``timeout``
        seconds, oldest first (at most 1000 per call). ``queues`` is empty when the
        registration lost its hash."""
        return self.run(ops.expired_workers(self, timeout, EXPIRED_BATCH))
