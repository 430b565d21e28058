"""The worker runtime: leases jobs from one or more queues and runs their handlers.

    worker = redispool.Worker(pool, queues=["emails"], concurrency=10, lease=30)

    @worker.process                 # every queue of this worker
    def handle(job): ...

    @worker.process("reports")      # one queue
    async def report(job): ...

    worker.run()

How it moves jobs (one thread, the one calling ``run()``, owns all bookkeeping):
- Sync handlers run on ``concurrency`` threads, ``async def`` handlers on one event-loop
  thread; ``concurrency`` bounds the jobs in progress, of both kinds together.
- Finished jobs are acknowledged per queue in one ``Engine.ack`` call that also leases
  the next batch for the free slots (finish-and-fetch-next), so a busy worker makes about
  one round trip per batch, not several per job.
- When its queues are empty and it has free slots, a Waiter thread blocks in Redis
  (BZPOPMIN on the queues' markers, no polling) and claims the moment a job is ready,
  while this thread keeps acknowledging the jobs still running.
- Every in-flight job's lease is extended at lease/2 (one ``heartbeat_many`` per queue).
  A job whose lease was lost (it expired, or the sweeper took it back) is dropped: its
  result will not be stored, and the job runs again elsewhere.
- The worker registers itself, refreshes the registration every ``beat_interval`` seconds
  (jobs in progress, processed/failed counts) and deregisters when it stops.
- SIGTERM/SIGINT (handled when ``run()`` runs in the main thread) or ``stop()``: claim
  nothing more, give in-flight jobs ``grace`` seconds to finish, ``release()`` the rest,
  deregister, return. A second signal exits the process at once with status 1
  (``os._exit``; the jobs it held come back through the sweeper when their leases or the
  worker's registration expire).
- A Redis outage is logged and retried with exponential backoff; the worker keeps going.
"""
from __future__ import annotations

import logging
import math
import os
import queue as queue_mod
import signal
import socket
import threading
import time
import uuid
from typing import Any, Sequence

import redis

from . import defaults, validate
from .errors import ConnectionFailed, InvalidOption, LeaseLost
from .eventlog import EventLog
from .health import HealthServer
from .keys import check_queue
from .models import Job
from .runners import AsyncRunner, Handler, Outcome, ThreadRunner, is_async
from .waiter import Waiter

REDIS_TROUBLE = (ConnectionFailed, redis.RedisError)
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 10.0
MAX_SLEEP_S = 1.0          # the bookkeeping loop looks at its clocks at least this often
INFO, WARNING, ERROR, DEBUG = logging.INFO, logging.WARNING, logging.ERROR, logging.DEBUG


class _Running:
    """A job in progress: when its lease is due for a heartbeat, and whether it was lost."""

    __slots__ = ("job", "next_beat", "lost")

    def __init__(self, job: Job, next_beat: float) -> None:
        self.job, self.next_beat, self.lost = job, next_beat, False


class Worker:
    """Runs handlers for the jobs of ``queues`` with at most ``concurrency`` at a time.

    ``lease``: seconds each claimed job is leased for (jobs enqueued with their own lease
    keep it); ``grace``: seconds in-flight jobs get to finish on shutdown; ``batch``: most
    jobs leased per call (default: ``concurrency``, at most 1000); ``health_port``: serve
    200/503 on that port while Redis is reachable / unreachable; ``log_format``: "text" or
    "json"; ``beat_interval``: seconds between registry refreshes; ``idle_wait``: seconds
    one blocking wait lasts (also how long an idle worker may take to notice ``stop()``).
    """

    def __init__(self, pool: Any, queues: Sequence[str], concurrency: int = 10,
                 lease: float = defaults.LEASE_S, *, worker_id: str | None = None,
                 grace: float = 30.0, batch: int | None = None, health_port: int | None = None,
                 health_host: str = "0.0.0.0", log_format: str = "text",
                 beat_interval: float = 5.0, idle_wait: float = 2.0) -> None:
        if isinstance(queues, str):
            raise TypeError("queues must be a list of queue names, not a string")
        self.queues: list[str] = list(dict.fromkeys(check_queue(q) for q in queues))
        if not self.queues:
            raise InvalidOption("a worker needs at least one queue")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidOption(f"concurrency must be an integer >= 1, got {concurrency!r}")
        validate.lease_ms(lease)
        validate.seconds_to_ms(grace, "grace")
        validate.seconds_to_ms(beat_interval, "beat_interval", allow_zero=False)
        validate.seconds_to_ms(idle_wait, "idle_wait", allow_zero=False)
        if batch is None:
            batch = min(concurrency, defaults.BATCH_MAX)
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= defaults.BATCH_MAX:
            raise InvalidOption(f"batch must be an integer in [1, {defaults.BATCH_MAX}], got {batch!r}")
        if health_port is not None and (isinstance(health_port, bool) or not isinstance(health_port, int)
                                        or not 0 <= health_port <= 65535):
            raise InvalidOption(f"health_port must be a port number, got {health_port!r}")
        self.engine = pool
        self.concurrency = concurrency
        self.lease = float(lease)
        self.grace = float(grace)
        self.batch = batch
        self.beat_interval = float(beat_interval)
        self.idle_wait = float(idle_wait)
        self.health_port = health_port
        self.health_host = health_host
        self.host = socket.gethostname()
        self.id: str = worker_id or f"{self.host}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        validate.identifier(self.id, "worker_id")
        self.log = EventLog(logging.getLogger("redispool.worker"), log_format, self.id)
        self.processed = 0   # jobs finished (done or failed) since run() started
        self.failed = 0      # of those, the failed ones
        self._handlers: dict[str, Handler] = {}
        self._default: Handler | None = None
        self._events: queue_mod.SimpleQueue = queue_mod.SimpleQueue()
        self._stop_requested = False
        self._started = False
        self._health: HealthServer | None = None

    # ------------------------------------------------------------------ set-up
    def process(self, target: Any = None) -> Any:
        """Register a handler: ``@worker.process`` for every queue, ``@worker.process("q")``
        for one. The handler gets the ``Job``; its return value is stored as the result,
        an exception fails the job with ``"TypeName: message"`` as the error."""
        if callable(target):
            return self._add(None, target)
        if target is not None:
            check_queue(target)
            if target not in self.queues:
                raise InvalidOption(f"queue {target!r} is not one of this worker's queues {self.queues}")
        return lambda handler: self._add(target, handler)

    def _add(self, queue: str | None, handler: Handler) -> Handler:
        if not callable(handler):
            raise TypeError(f"a handler must be callable, got {handler!r}")
        if (queue is None and self._default is not None) or queue in self._handlers:
            raise InvalidOption(f"a handler for {'every queue' if queue is None else queue!r} is registered already")
        if queue is None:
            self._default = handler
        else:
            self._handlers[queue] = handler
        return handler

    def handler_for(self, queue: str) -> Handler:
        """The handler that runs ``queue``'s jobs (LookupError if there is none)."""
        handler = self._handlers.get(queue, self._default)
        if handler is None:
            raise LookupError(f"no handler for queue {queue!r}: use @worker.process or @worker.process({queue!r})")
        return handler

    @property
    def health_address(self) -> tuple[str, int] | None:
        """(host, port) of the running health endpoint, if any."""
        return (self.health_host, self._health.port) if self._health else None

    def stop(self) -> None:
        """Ask a running worker to shut down gracefully (safe from any thread and from
        signal handlers)."""
        self._stop_requested = True
        self._events.put(("stop",))

    # ------------------------------------------------------------------ running
    def run(self, burst: bool = False) -> None:
        """Work until ``stop()`` or SIGTERM/SIGINT; with ``burst=True`` return as soon as
        the queues have no ready job and nothing is in progress. A Worker runs once."""
        if self._started:
            raise RuntimeError("this Worker has run already; create a new one")
        routes = {q: self.handler_for(q) for q in self.queues}
        self._started = True
        self._burst = burst
        self._running: dict[tuple[str, str], _Running] = {}
        self._finished: dict[str, tuple[list[Outcome], list[Outcome]]] = {}
        self._hungry: dict[str, None] = dict.fromkeys(self.queues)  # may have ready jobs
        self._stopping = False
        self._waiting = False          # the Waiter holds a request
        self._reserved = 0             # slots kept free for the Waiter's claim
        self._watched: list[str] = []  # the queues the Waiter watches
        self._failures = 0             # consecutive Redis failures
        self._retry_at = 0.0           # no Redis call before this (monotonic)
        self._registered = False
        self._reported = (0, 0)        # processed/failed already sent to the registry
        now = time.monotonic()
        self._next_lease_beat = math.inf
        self._next_registry_beat = now
        threads = async_runner = None
        if any(not is_async(h) for h in routes.values()):
            threads = ThreadRunner(self.concurrency, self._events.put, name=f"redispool-{self.id}")
        if any(is_async(h) for h in routes.values()):
            async_runner = AsyncRunner(self._events.put)
        self._routes = {q: (h, async_runner if is_async(h) else threads) for q, h in routes.items()}
        self._waiter = None if burst else Waiter(self.engine, self.id, self.lease, self._waited)
        previous = self._install_signals()
        try:
            if self.health_port is not None:
                self._health = HealthServer(self._redis_reachable, self.health_port, self.health_host).start()
            self.log.event(INFO, "worker started", queues=",".join(self.queues),
                           concurrency=self.concurrency, pid=os.getpid(), burst=burst)
            self._beat_registry(time.monotonic())  # registered before the first claim
            self._loop()
            self._drain()
        finally:
            self._finish(threads, async_runner)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _on_signal(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if self._stop_requested:
            self.log.event(ERROR, "exiting now", signal=name, in_flight=len(self._running))
            for handler in logging.getLogger().handlers + self.log.logger.handlers:
                handler.flush()
            os._exit(1)
        self.log.event(INFO, "shutdown requested", signal=name,
                       note="a second signal exits at once")
        self.stop()

    def _redis_reachable(self) -> bool:
        return bool(self.engine.client.ping())

    def _loop(self) -> None:
        while True:
            self._pump(self._sleep_time())
            if self._stop_requested:
                self._stopping = True
                return
            if time.monotonic() < self._retry_at:
                continue
            self._flush_acks()
            self._claim_hungry()
            self._periodic()
            if self._burst and not (self._running or self._finished or self._hungry):
                self.log.event(INFO, "burst done", processed=self.processed, failed=self.failed)
                self._stopping = True
                return
            self._arm_waiter()

    def _sleep_time(self) -> float:
        now = time.monotonic()
        if now < self._retry_at:
            return min(self._retry_at - now, MAX_SLEEP_S)
        if self._finished or (self._hungry and self._free() > 0 and not self._stopping):
            return 0.0
        wake = min(self._next_lease_beat, self._next_registry_beat)
        return max(0.0, min(wake - now, MAX_SLEEP_S))

    def _free(self) -> int:
        return self.concurrency - len(self._running) - self._reserved

    # ------------------------------------------------------------------ events
    def _pump(self, timeout: float) -> None:
        """Handle every pending event, waiting up to ``timeout`` seconds for the first."""
        events = self._events
        try:
            event = events.get(timeout=timeout) if timeout > 0 else events.get_nowait()
        except queue_mod.Empty:
            return
        while True:
            if event.__class__ is Outcome:
                self._outcome(event)
            elif event[0] == "waited":
                self._wait_ended(*event[1:])
            try:
                event = events.get_nowait()
            except queue_mod.Empty:
                return

    def _outcome(self, outcome: Outcome) -> None:
        job = outcome.job
        running = self._running.pop((job.queue, job.token), None)
        if running is None:
            return  # given back at shutdown already
        if running.lost:
            self.log.event(DEBUG, "result discarded", job, reason="lease lost")
            return
        lists = self._finished.get(job.queue)
        if lists is None:
            lists = self._finished[job.queue] = ([], [])
        if outcome.ok:
            lists[0].append(outcome)
        else:
            self.log.event(WARNING, "failed", job, error=outcome.error,
                           duration_ms=round(outcome.seconds * 1000, 3), trace=outcome.trace)
            lists[1].append(outcome)

    def _waited(self, queue: str | None, jobs: list[Job], limit: int, error: BaseException | None) -> None:
        """The Waiter's report (from its thread): handed over to the bookkeeping thread."""
        self._events.put(("waited", queue, jobs, limit, error))

    def _wait_ended(self, queue: str | None, jobs: list[Job], limit: int,
                    error: BaseException | None) -> None:
        watched = self._watched
        self._waiting, self._reserved = False, 0
        if error is not None:
            self._trouble(error)
            return
        self._ok()
        if self._stopping:
            self._release(jobs)
            return
        self._start(jobs)
        if queue is not None and len(jobs) >= limit:
            self._hungry[queue] = None
        elif queue is None and len(watched) > 1:
            # the wait timed out: look at every queue once, which also promotes delayed
            # jobs that fell due (a single-queue wait does that inside claim(block=))
            self._hungry.update(dict.fromkeys(watched))

    # ------------------------------------------------------------------ Redis work
    def _trouble(self, exc: BaseException) -> None:
        """Redis failed: back off (exponentially, capped) before the next Redis call."""
        if not isinstance(exc, REDIS_TROUBLE):
            self.log.event(ERROR, "unexpected error", error=f"{type(exc).__name__}: {exc}")
        self._failures += 1
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (self._failures - 1))
        self._retry_at = time.monotonic() + delay
        self.log.event(WARNING, "redis unavailable", error=str(exc), retry_in_s=round(delay, 3))

    def _ok(self) -> None:
        if self._failures:
            self._failures = 0
            self.log.event(INFO, "redis reachable again")

    def _flush_acks(self) -> None:
        """Acknowledge finished jobs per queue, leasing the next batch in the same call."""
        for queue in list(self._finished):
            done, failed = self._finished[queue]
            free = 0 if self._stopping else min(self.batch, self._free())
            try:
                reply = self.engine.ack(queue, completed=[(o.job, o.result) for o in done],
                                        failed=[(o.job, o.error) for o in failed],
                                        worker_id=self.id, limit=free, lease=self.lease)
            except REDIS_TROUBLE as exc:
                self._trouble(exc)
                return
            self._ok()
            del self._finished[queue]
            self._acked(done, reply.completed, failed, reply.failed)
            if free:
                self._start(reply.jobs)
                if len(reply.jobs) >= free:
                    self._hungry[queue] = None
                else:
                    self._hungry.pop(queue, None)

    def _acked(self, done: list[Outcome], done_ok: list[bool], failed: list[Outcome],
               states: list[str | None]) -> None:
        log = self.log
        verbose = log.enabled(INFO)
        for outcome, ok in zip(done, done_ok):
            if ok:
                self.processed += 1
                if verbose:
                    log.event(INFO, "done", outcome.job, duration_ms=round(outcome.seconds * 1000, 3))
            else:
                log.event(WARNING, "lease lost", outcome.job, note="result not stored")
        for outcome, state in zip(failed, states):
            if state is None:
                log.event(WARNING, "lease lost", outcome.job, note="failure not stored")
                continue
            self.processed += 1
            self.failed += 1
            if state == "dead":
                log.event(ERROR, "dead", outcome.job, error=outcome.error)
            else:
                log.event(WARNING, "retried", outcome.job, error=outcome.error, state=state)

    def _claim_hungry(self) -> None:
        """Lease jobs for the free slots from queues that may have ready ones, in turn."""
        for queue in list(self._hungry):
            free = min(self.batch, self._free())
            if free <= 0 or self._stopping:
                return
            try:
                jobs = self.engine.claim(queue, self.id, limit=free, lease=self.lease)
            except REDIS_TROUBLE as exc:
                self._trouble(exc)
                return
            self._ok()
            del self._hungry[queue]
            if len(jobs) >= free:
                self._hungry[queue] = None  # to the back of the line: others get a turn
            self._start(jobs)

    def _arm_waiter(self) -> None:
        """With free slots and queues that had nothing ready, start a blocking claim."""
        if self._waiter is None or self._waiting or self._stopping:
            return
        watched = [q for q in self.queues if q not in self._hungry]
        free = min(self.batch, self._free())
        if not watched or free <= 0:
            return
        # while other queues keep the worker busy, hold a single slot for the idle ones
        limit = 1 if self._hungry else free
        self._watched, self._waiting, self._reserved = watched, True, limit
        self._waiter.request(watched, limit, self.idle_wait)

    def _start(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        next_beat = math.inf
        now = time.monotonic()
        verbose = self.log.enabled(INFO)
        for job in jobs:
            running = _Running(job, now + job.lease / 2)
            self._running[(job.queue, job.token)] = running
            next_beat = min(next_beat, running.next_beat)
            if verbose:
                self.log.event(INFO, "claimed", job)
            handler, runner = self._routes[job.queue]
            runner.submit(job, handler)
        self._next_lease_beat = min(self._next_lease_beat, next_beat)

    def _periodic(self) -> None:
        now = time.monotonic()
        if now >= self._next_lease_beat:
            self._beat_leases(now)
        if now >= self._next_registry_beat and now >= self._retry_at:
            self._beat_registry(now)

    def _beat_leases(self, now: float) -> None:
        """Extend the leases that are due (or nearly), one call per queue."""
        due: dict[str, list[_Running]] = {}
        next_beat = math.inf
        for running in self._running.values():
            if running.lost:
                continue
            if running.next_beat <= now + min(1.0, running.job.lease / 8):
                due.setdefault(running.job.queue, []).append(running)
            else:
                next_beat = min(next_beat, running.next_beat)
        for queue, batch in due.items():
            try:
                expiries = self.engine.heartbeat_many(queue, [r.job for r in batch])
            except REDIS_TROUBLE as exc:
                self._trouble(exc)
                next_beat = now  # try again after the backoff
                break
            self._ok()
            for running, expiry in zip(batch, expiries):
                if expiry is None:
                    running.lost = True
                    self.log.event(WARNING, "lease lost", running.job, note="job is dropped")
                else:
                    running.job.lease_expires_at = expiry
                    running.next_beat = now + running.job.lease / 2
                    next_beat = min(next_beat, running.next_beat)
        self._next_lease_beat = next_beat

    def _beat_registry(self, now: float) -> None:
        self._next_registry_beat = now + self.beat_interval
        try:
            if not self._registered:
                self._register()
            jobs = [f"{r.job.queue}/{r.job.id}" for r in self._running.values() if not r.lost]
            processed, failed = self.processed, self.failed
            if not self.engine.beat_worker(self.id, jobs_in_progress=jobs,
                                           processed=processed - self._reported[0],
                                           failed=failed - self._reported[1]):
                self.log.event(WARNING, "registration expired", note="registering again")
                self._registered = False
                self._next_registry_beat = now
                return
            self._reported = (processed, failed)
        except REDIS_TROUBLE as exc:
            self._trouble(exc)
            self._next_registry_beat = now
            return
        self._ok()

    def _register(self) -> None:
        self.engine.register_worker(self.id, host=self.host, pid=os.getpid(), queues=self.queues)
        self._registered = True
        self._reported = (0, 0)  # a fresh registration starts its counters at zero

    def _release(self, jobs: list[Job]) -> None:
        for job in jobs:
            try:
                self.engine.release(job)
            except LeaseLost:
                continue
            except REDIS_TROUBLE as exc:
                self.log.event(WARNING, "release failed", job, error=str(exc))
                continue
            self.log.event(INFO, "released", job)

    # ------------------------------------------------------------------ stopping
    def _drain(self) -> None:
        """Let in-flight jobs finish within the grace period, still acking and heartbeating."""
        deadline = time.monotonic() + self.grace
        if self._running or self._finished:
            self.log.event(INFO, "stopping", in_flight=len(self._running), grace_s=self.grace)
        while self._running or self._finished:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._pump(min(left, self._sleep_time()))
            if time.monotonic() >= self._retry_at:
                self._flush_acks()
                self._periodic()

    def _finish(self, threads: ThreadRunner | None, async_runner: AsyncRunner | None) -> None:
        """Give back what is still leased, deregister and stop every helper thread."""
        self._stopping = True
        if self._waiter is not None:
            self._waiter.close(self.idle_wait + 5.0)
            self._pump(0)  # a claim that raced the stop is released here
        if self._finished:
            self._retry_at = 0.0
            self._flush_acks()
        left = [r.job for r in self._running.values() if not r.lost]
        self._running.clear()
        self._release(left)
        if async_runner is not None:
            async_runner.close()
        if threads is not None:
            threads.close()
        try:
            self.engine.deregister_worker(self.id)
        except REDIS_TROUBLE as exc:
            self.log.event(WARNING, "deregister failed", error=str(exc))
        if self._health is not None:
            self._health.close()
            self._health = None
        self.log.event(INFO, "worker stopped", processed=self.processed, failed=self.failed,
                       released=len(left))
