"""The blocking wait of an idle worker, in its own thread.

While a worker has free slots and its queues were empty at the last claim, the Waiter
sits in one blocking Redis call (BZPOPMIN on the queues' wake-up markers, through
``Engine.claim(block=...)`` / ``Engine.wait_for_jobs``) and claims as soon as a job is
ready, for the slots the worker reserved for it. Meanwhile the worker's own thread keeps
acknowledging finished jobs. Claiming right after the marker was popped matters: the
claim script sets the marker again when jobs are left, which wakes the next waiting
worker; a popped marker without a claim would leave them asleep.

On Redis Cluster the markers of different queues live in different slots and cannot
share one BZPOPMIN; there the Waiter blocks on each queue in turn, each for a share of
the wait (correct, but a job may wait up to that share for pickup).
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Sequence

from .models import Job

MIN_SHARE_S = 0.05


def is_cluster(client: Any) -> bool:
    try:
        from redis.cluster import RedisCluster
    except ImportError:  # pragma: no cover - redis-py always has it since 4.1
        return False
    return isinstance(client, RedisCluster)


class Waiter:
    """Runs one blocking claim at a time for a worker and reports what it got.

    ``report(queue, jobs, limit, error)`` is called from the waiter's thread after each
    request: ``queue`` is where ``jobs`` came from (None when the wait timed out) and
    ``error`` the exception that ended it, if any.
    """

    def __init__(self, engine: Any, worker_id: str, lease: float,
                 report: Callable[[str | None, list[Job], int, BaseException | None], None]) -> None:
        self.engine = engine
        self.worker_id = worker_id
        self.lease = lease
        self.cluster = is_cluster(engine.client)
        self._report = report
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="redispool-waiter", daemon=True)
        self._thread.start()

    def request(self, queues: Sequence[str], limit: int, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for a job in ``queues``; claim up to ``limit``."""
        self._requests.put((list(queues), limit, timeout))

    def close(self, timeout: float) -> None:
        """Stop after the current request; wait up to ``timeout`` seconds for that."""
        self._requests.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                return
            queues, limit, timeout = request
            try:
                name, jobs = self._wait(queues, limit, timeout)
            except Exception as exc:
                self._report(None, [], limit, exc)
            else:
                self._report(name, jobs, limit, None)

    def _claim(self, name: str, limit: int, block: float | None) -> list[Job]:
        return self.engine.claim(name, self.worker_id, limit=limit, lease=self.lease, block=block)

    def _wait(self, queues: list[str], limit: int, timeout: float) -> tuple[str | None, list[Job]]:
        if len(queues) == 1:
            # claim(block=) also wakes for delayed jobs falling due during the wait
            return queues[0], self._claim(queues[0], limit, timeout)
        if not self.cluster:
            name = self.engine.wait_for_jobs(queues, timeout)
            return (name, self._claim(name, limit, None)) if name else (None, [])
        share = max(MIN_SHARE_S, timeout / len(queues))
        for name in queues:
            jobs = self._claim(name, limit, share)
            if jobs:
                return name, jobs
        return None, []
