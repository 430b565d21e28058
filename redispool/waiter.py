"""The blocking wait of a worker, in its own thread: no polling, on every queue at once.

The worker asks the Waiter to watch the queues it believes empty. The Waiter sits in one
blocking Redis call (BZPOPMIN on those queues' wake-up markers) and wakes when a marker
is set (a job was made ready, or became the earliest scheduled one) or when the earliest
known due time of a scheduled job among the watched queues comes: the worker passes the
due times its claims reported (a delayed job's, or when the queue's rate limit lets it
claim again), so delayed jobs and retries run on time without a scheduler, on one queue
or on many. A wait that times out claims nothing: the markers
stay set until someone pops them, so nothing is missed and an idle worker makes no
calls besides its blocking waits.

Two kinds of request:
- claim (``limit`` > 0, the worker is idle): claim up to ``limit`` jobs from the queue
  that woke it, at once. Claiming right after the marker was popped matters: the claim
  script sets the marker again when jobs are left, which wakes the next waiting worker.
- watch (``limit`` 0, the worker is busy on other queues): only say which queue woke it;
  the worker gives that queue its share of the next free slots (and puts the marker
  back if it has none free, so an idle worker elsewhere wakes for the job).

On Redis Cluster the markers of different queues live in different slots and cannot
share one BZPOPMIN. There each queue gets a watcher thread that blocks on its own marker
while a wait is open; the first marker popped answers it, and a marker popped after that
is put back at once, so another worker wakes for it.
"""
from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .blocking import TIMEOUT_LAG_S
from .models import Job

if TYPE_CHECKING:
    from .engine import Engine

# The longest single BZPOPMIN (its reply is read allowing the wait plus the client's read
# timeout, see blocking.py); longer waits are several of these. A cluster watcher blocks
# this long at a time, so an idle worker sends one command per queue per BLOCK_MAX_S.
BLOCK_MAX_S = 10.0
Request = tuple[list[str], int, float, dict[str, float]]   # queues, limit, timeout, due times


def is_cluster(client: Any) -> bool:
    try:
        from redis.cluster import RedisCluster
    except ImportError:  # pragma: no cover - redis-py always has it since 4.1
        return False
    return isinstance(client, RedisCluster)


def put_back(engine: Engine, name: str) -> None:
    """Set ``name``'s wake-up marker again after popping it without claiming, so that other
    workers blocked on it wake (the next enqueue would set it anyway: errors are ignored)."""
    with contextlib.suppress(Exception):
        engine.rewake(name)


@dataclass
class Wake:
    """How one wait ended. ``queue``: the queue that woke it (None: it timed out);
    ``popped``: woken by the queue's marker (else by its due time); ``claimed``: the
    Waiter claimed from it (claim requests), getting ``jobs`` and, when none, ``wait``
    (seconds until its earliest scheduled job, None if none); ``error``: what ended it."""

    queue: str | None = None
    limit: int = 0
    popped: bool = False
    claimed: bool = False
    jobs: list[Job] = field(default_factory=list)
    wait: float | None = None
    error: BaseException | None = None


class _Watchers:
    """Cluster only: one thread per queue blocking on that queue's marker while a wait for
    that queue is open; ``wait()`` returns the first queue whose marker was popped."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._armed: dict[str, threading.Event] = {}
        self._open = False
        self._closed = False
        self._fired: queue.SimpleQueue[str | None] = queue.SimpleQueue()

    def wait(self, queues: Sequence[str], timeout: float) -> str | None:
        with self._lock:
            self._open = True
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
                        fired = self._fired.get_nowait()
                    except queue.Empty:
                        break
                    if fired is not None:
                        put_back(self.engine, fired)

    def close(self) -> None:
        """Stop the watchers; a wait open now ends at once."""
        with self._lock:
            self._closed = True
            for event in self._armed.values():
                event.set()
        self._fired.put(None)

    def _watch(self, name: str) -> None:
        armed = self._armed[name]
        while True:
            armed.wait()
            if self._closed:
                return
            # Block the longest a single call may (not just until this wait's end): the
            # worker asks again at once, and this call then still serves the next wait.
            try:
                popped = self.engine.wait_for_jobs([name], BLOCK_MAX_S)
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
                    put_back(self.engine, name)


class Waiter:
    """Runs one wait at a time for a worker and reports each as a ``Wake`` to
    ``report(wake)``, from the waiter's thread."""

    def __init__(self, engine: Engine, worker_id: str, lease: float, report: Callable[[Wake], None]) -> None:
        self.engine = engine
        self.worker_id = worker_id
        self.lease = lease
        self._watchers = _Watchers(engine) if is_cluster(engine.client) else None
        # off Cluster a wait also pops the worker's stop key (of the first queue it waits on:
        # a one-queue wait stays in one slot), so close() ends it at once
        self._stop_key: str | None = None
        self._closing = False
        self._report = report
        self._warm = True   # the last wait was ended by a marker: wait and claim in one call
        self._requests: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="redispool-waiter", daemon=True)
        self._thread.start()

    def request(self, queues: Sequence[str], limit: int, timeout: float,
                due: Mapping[str, float] | None = None) -> None:
        """Wait up to ``timeout`` seconds for a job in ``queues``, or until the earliest of
        ``due`` (queue -> ``time.monotonic()`` when its earliest scheduled job falls due);
        then claim up to ``limit`` jobs from the queue that woke it (0: claim nothing)."""
        self._requests.put((list(queues), limit, timeout, dict(due or {})))

    def close(self, timeout: float) -> None:
        """End the current request at once (a claim sent with its wait still runs and is
        reported: the worker releases what it got) and stop; wait up to ``timeout`` seconds
        for that. Should Redis refuse the stop key, the wait ends at its timeout."""
        self._closing = True
        self._requests.put(None)
        if self._watchers is not None:
            self._watchers.close()
        elif self._thread.is_alive() and self._stop_key is not None:
            with contextlib.suppress(Exception):
                self.engine.interrupt_wait(self._stop_key)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                return
            try:
                wake = self._wait(*request)
            except Exception as exc:
                wake = Wake(limit=request[1], error=exc)
            self._report(wake)

    def _wait(self, queues: list[str], limit: int, timeout: float, due: dict[str, float]) -> Wake:
        if self._closing:
            return Wake(limit=limit)   # a request left from before close(): no wait
        start = time.monotonic()
        soonest = min(((at, name) for name, at in due.items() if name in queues), default=None)
        end = start + timeout
        if soonest is not None and soonest[0] <= end:
            end = soonest[0]
        else:
            soonest = None
        if limit > 0 and self._warm and soonest is None and len(queues) == 1 and self._watchers is None:
            return self._wait_then_claim(queues[0], limit, end)
        name = None
        # a due time is kept to the ms: Redis may end a BZPOPMIN up to TIMEOUT_LAG_S late
        lag = TIMEOUT_LAG_S if soonest is not None and self._watchers is None else 0.0
        while name is None and not self._closing and (left := end - time.monotonic()) > 0.0005:
            if left <= lag:
                time.sleep(left)
                break
            name = self._block(queues, min(left - lag, BLOCK_MAX_S))
        self._warm = name is not None
        wake = Wake(name, limit, popped=name is not None)
        if name is None:
            if soonest is None or self._closing:
                return wake  # timed out (or closing): nothing to claim (no polling)
            wake.queue = name = soonest[1]  # its scheduled job is due: claim() promotes it
        if limit > 0:
            wake.jobs, wake.wait = self.engine.claim_with_due(name, self.worker_id, limit=limit, lease=self.lease)
            wake.claimed = True
        return wake

    def _wait_then_claim(self, name: str, limit: int, end: float) -> Wake:
        """The wait and the claim in one round trip (one queue, off Cluster): the claim
        also runs when the wait times out, so only a worker that was woken by its last
        wait waits this way; once one times out it waits plainly until a marker wakes it
        again, and an idle worker stays at no calls besides its waits."""
        popped, jobs, wait = self.engine.wait_then_claim(
            name, self.worker_id, min(max(0.001, end - time.monotonic()), BLOCK_MAX_S), limit=limit, lease=self.lease,
            interrupt=self._stop_for([name]))
        self._warm = popped
        return Wake(name, limit, popped=popped, claimed=True, jobs=jobs, wait=wait)

    def _block(self, queues: list[str], seconds: float) -> str | None:
        if self._watchers is None:
            return self.engine.wait_for_jobs(queues, seconds, interrupt=self._stop_for(queues))
        return self._watchers.wait(queues, seconds)

    def _stop_for(self, queues: list[str]) -> str:
        """The stop key a wait on ``queues`` also pops, remembered for close() (which sets
        it; a wait begun after that is not started: ``_closing``)."""
        key = self._stop_key = self.engine.keys(queues[0]).stop(self.worker_id)
        return key
