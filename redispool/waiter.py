"""The blocking wait of an idle worker, in its own thread.

While a worker has free slots and its queues were empty at the last claim, the Waiter
sits in one blocking Redis call (BZPOPMIN on the queues' wake-up markers, through
``Engine.claim(block=...)`` / ``Engine.wait_for_jobs``) and claims as soon as a job is
ready, for the slots the worker reserved for it. Meanwhile the worker's own thread keeps
acknowledging finished jobs. Claiming right after the marker was popped matters: the
claim script sets the marker again when jobs are left, which wakes the next waiting
worker; a popped marker without a claim would leave them asleep.

On Redis Cluster the markers of different queues live in different slots and cannot
share one BZPOPMIN. There each queue gets a watcher thread that blocks on its own
marker while a request is open; the first marker popped answers the request, and a
marker popped after that is put back at once, so another worker wakes for it. Watchers
block only while a request is open, so busy workers never pass markers back and forth.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Sequence

from . import blocking
from .models import Job

WATCH_BLOCK_S = 1.0   # a watcher's longest single BZPOPMIN (how soon it sees a closed request)


def is_cluster(client: Any) -> bool:
    try:
        from redis.cluster import RedisCluster
    except ImportError:  # pragma: no cover - redis-py always has it since 4.1
        return False
    return isinstance(client, RedisCluster)


class _Watchers:
    """Cluster only: one thread per queue blocking on that queue's marker while a request
    for that queue is open; ``wait()`` returns the first queue whose marker was popped."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._armed: dict[str, threading.Event] = {}
        self._open = False
        self._closed = False
        self._fired: queue.SimpleQueue = queue.SimpleQueue()
        self._deadline = 0.0

    def wait(self, queues: Sequence[str], timeout: float) -> str | None:
        with self._lock:
            self._open = True
            self._deadline = time.monotonic() + timeout
            for name in queues:
                if name not in self._armed:
                    self._armed[name] = threading.Event()
                    threading.Thread(target=self._watch, args=(name,), daemon=True,
                                     name=f"redispool-watch-{name}").start()
                self._armed[name].set()
        try:
            return self._fired.get(timeout=timeout)
        except queue.Empty:
            return None
        finally:
            with self._lock:
                self._open = False
                for event in self._armed.values():
                    event.clear()
                while True:  # a marker popped as the wait ended: put it back for others
                    try:
                        self._restore(self._fired.get_nowait())
                    except queue.Empty:
                        break

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for event in self._armed.values():
                event.set()

    def _restore(self, name: str) -> None:
        try:
            self.engine.client.zadd(self.engine.keys(name).marker, {"m": 0})
        except Exception:  # the next enqueue sets it again; never kill the watcher
            pass

    def _watch(self, name: str) -> None:
        marker = self.engine.keys(name).marker
        armed = self._armed[name]
        while True:
            armed.wait()
            with self._lock:
                if self._closed:
                    return
                block = min(WATCH_BLOCK_S, self._deadline - time.monotonic())
            if block <= 0:
                armed.clear()  # this request is over; wait for the next
                continue
            try:
                popped = blocking.bzpopmin(self.engine.client, [marker], max(0.01, block))
            except Exception:
                time.sleep(0.1)
                continue
            if popped:
                with self._lock:
                    answer = self._open and armed.is_set()
                    if answer:
                        self._open = False
                        for event in self._armed.values():
                            event.clear()
                        self._fired.put(name)
                if not answer:
                    self._restore(name)


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
        self._watchers = _Watchers(engine) if is_cluster(engine.client) else None
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
        if self._watchers is not None:
            self._watchers.close()
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
        if self._watchers is None:
            name = self.engine.wait_for_jobs(queues, timeout)
            return (name, self._claim(name, limit, None)) if name else (None, [])
        deadline = time.monotonic() + timeout
        for name in queues:  # whatever is ready now, before blocking
            jobs = self._claim(name, limit, None)
            if jobs:
                return name, jobs
        while (remaining := deadline - time.monotonic()) > 0:
            name = self._watchers.wait(queues, remaining)
            if name is None:
                break
            jobs = self._claim(name, limit, None)
            if jobs:
                return name, jobs
        return None, []
