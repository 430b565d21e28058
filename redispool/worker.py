"""The worker runtime: leases jobs from one or more queues and runs their handlers.

    worker = redispool.Worker(pool, queues=["emails"], concurrency=10, lease=30)

    @worker.process                 # every queue of this worker
    def handle(job): ...

    @worker.process("reports")      # one queue
    async def report(job): ...

    worker.run()

How it moves jobs (one thread, the one calling ``run()``, owns all bookkeeping):
- Sync handlers run on ``concurrency`` threads, ``async def`` handlers on one event-loop
  thread; ``concurrency`` bounds the jobs running, of both kinds together (a worker may
  hold a few more, leased and waiting for a thread: prefetch, below).
- Finished jobs are acknowledged per queue in one ``Engine.ack`` call that also leases
  the next jobs for that queue's free slots (finish-and-fetch-next), so a busy worker
  makes about one round trip per batch, not several per job. The ack waits until twice
  as many jobs have finished as are still in progress, or ``ACK_DELAY_S`` (1 ms) after
  the first of them finished, whichever comes first (at once when nothing else is in
  progress, and when stopping): a busy worker then acks about two thirds of its slots
  per round trip instead of the one or two jobs that finished during the last one.
- Prefetch: while its sync handlers are quick (their running mean under PREFETCH_JOB_S,
  10 ms), a worker leases up to ``prefetch`` jobs (default: ``concurrency``) beyond its
  threads, waiting in its runner, and acks once as many jobs as it has threads have
  finished: its threads then never wait for the ack's round trip. When no job has
  finished or started for PREFETCH_HOLD_S (0.2 s) while such jobs wait for busy threads,
  the handlers have turned slow: the waiting jobs go back to ready (their attempt not
  counted) for an idle worker, and the worker prefetches no more until they are quick
  again. A job given back, at that point or at shutdown, never starts here. A waiting
  job's timeout runs from its lease; one past it never starts (it fails as timed out).
  Async handlers start every job they get at once, so a worker with any is never
  prefetched.
- Free slots are shared fairly among the queues that have ready jobs: each such queue
  may hold ``ceil(concurrency / n)`` slots while ``n`` queues want them, free slots go to
  those queues in turn (round robin: a queue just served goes to the back of the line),
  and a queue alone gets every slot. So a backlog in one queue never holds up another:
  a job on a second queue starts as soon as one slot frees up. A queue leaves the
  rotation when a claim of it comes back empty (that claim also says when its earliest
  scheduled job falls due).
- The queues believed empty are watched by a Waiter thread blocked in Redis (BZPOPMIN on
  their markers, no polling) that also wakes when the earliest scheduled job among them
  falls due. An idle worker claims at once from the queue that woke it; a busy one puts
  that queue back into the rotation, so it gets the next free slot.
- Every in-flight job's lease is extended at lease/2 (one ``heartbeat_many`` per queue).
  A job whose lease was lost (it expired, or the sweeper took it back) is dropped: its
  result will not be stored, and the job runs again elsewhere.
- Timeouts: an attempt still running after its timeout (the job's own, else the worker's
  ``timeout``) is failed with ``TimeoutError: ...`` through the usual ack, with its lease
  token, so its retry policy applies at once. An async handler's task is cancelled. A
  sync handler's thread cannot be stopped: what it returns later is discarded (its lease
  is settled, so fencing would refuse it anyway), and its slot stays busy until it
  returns, so ``concurrency`` keeps bounding the threads in use and a new job never waits
  for a thread.
- The worker registers itself, refreshes the registration every ``beat_interval`` seconds
  (jobs in progress, processed/failed counts) while it has jobs, every ``IDLE_BEATS``
  intervals while it has none and nothing new to say, and deregisters when it stops.
- SIGTERM/SIGINT (handled when ``run()`` runs in the main thread) or ``stop()``: claim
  nothing more, give in-flight jobs ``grace`` seconds to finish, ``release()`` the rest,
  deregister, return. A second signal exits the process at once with status 1
  (``os._exit``; the jobs it held come back through the sweeper when their leases or the
  worker's registration expire).
- Redis trouble is logged once per change of state, in words ("redis unavailable" with
  a reason such as "cluster is moving slots", "redis full", then "redis reachable
  again"), and retried with exponential backoff; the worker keeps going. Only failed
  claims and acks pause the job flow: a refused registry or lease heartbeat (Redis at
  maxmemory refuses those, while claims and acks still work) is retried on its own.
- ``durable=True`` without a replica: an ack raises NotDurable although it *was* applied
  on the primary. The worker takes its reply as the outcome (jobs are counted and logged
  once, never acknowledged again: a repeat would only find them finished), logs "not
  durable" once and keeps working; a failover may then lose those completions, so such
  jobs may run again (at-least-once, as after any lost ack).
- ``run(burst=True)`` stops once no job is ready or in progress and no scheduled job
  (a retry or a delayed job) of its queues falls due within ``burst_wait`` seconds; the
  last line says how many scheduled jobs it left.
"""
from __future__ import annotations

import collections
import enum
import logging
import math
import os
import queue as queue_mod
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar, overload

import redis

from . import defaults, validate
from .engine import AckResult
from .errors import REDIS_TROUBLE as _REDIS_ERRORS
from .errors import ConnectionFailed, InvalidOption, LeaseLost, NotDurable, RedisFull
from .eventlog import EventLog, TroubleLog, redis_trouble, short_error
from .health import HealthServer
from .keys import check_queue
from .models import Job
from .rotation import Rotation
from .runners import AsyncRunner, Handler, Outcome, Runner, ThreadRunner, is_async
from .waiter import Waiter, Wake, put_back

if TYPE_CHECKING:
    from .engine import Engine

REDIS_TROUBLE = (ConnectionFailed, RedisFull, redis.RedisError) + _REDIS_ERRORS
MAX_SLEEP_S = 1.0          # the bookkeeping loop looks at its clocks at least this often
WATCH_WAIT_S = 0.5         # the longest wait while queues are in the rotation (_arm_waiter)
BURST_WAIT_S = 30.0        # run(burst=True) waits for scheduled jobs due this soon
ACK_DELAY_S = 0.001        # the longest a finished job waits for others to share its ack
IDLE_BEATS = 3             # an idle worker refreshes its registration every 3 beat_intervals
PREFETCH_JOB_S = 0.01      # prefetch while handlers take less than this (a running mean) ...
PREFETCH_HOLD_S = 0.2      # ... and give them back when no job finished or started for this long
INFO, WARNING, ERROR, DEBUG = logging.INFO, logging.WARNING, logging.ERROR, logging.DEBUG
# What talks to Redis, each retried on its own: only "jobs" (claims, acks) pauses the flow.
JOBS, LEASES, REGISTRY = "jobs", "leases", "registry"
H = TypeVar("H", bound=Handler)  # @worker.process returns the handler it was given


class _Running:
    """A job in progress: when its lease is due for a heartbeat, whether it was lost, when
    its attempt times out (monotonic; inf: never) and whether it did (its handler still
    holds the slot, its outcome is settled already)."""

    __slots__ = ("job", "next_beat", "lost", "deadline", "timed_out")

    def __init__(self, job: Job, next_beat: float, deadline: float) -> None:
        self.job, self.next_beat, self.lost = job, next_beat, False
        self.deadline, self.timed_out = deadline, False

    @property
    def live(self) -> bool:
        """Its outcome is still to come and to be stored."""
        return not (self.lost or self.timed_out)


class _WakeUp(enum.Enum):
    """Put on the event queue only to end the bookkeeping thread's wait: ``stop()``'s (the
    loop then sees the stop request itself), a runner's (outcomes are waiting in
    ``Worker._outcomes``)."""

    STOP = "stop"
    OUTCOMES = "outcomes"


# What the bookkeeping thread hears: the Waiter's Wake, or a wake-up.
_Event = Wake | _WakeUp


@dataclass(slots=True)
class _Run:
    """What one ``run()`` holds (the Worker itself holds only its configuration).
    Used by the bookkeeping thread only."""

    burst: bool
    burst_wait: float
    routes: dict[str, tuple[Handler, Runner]]      # queue -> its handler and where it runs
    runners: list[Runner]                          # closed when the run ends
    rotation: Rotation
    trouble: TroubleLog
    waiter: Waiter | None                          # None in burst mode: no blocking waits
    # jobs in progress by (queue, token); finished ones by queue, (done, failed), until acked
    running: dict[tuple[str, str], _Running] = field(default_factory=dict)
    finished: dict[str, tuple[list[Outcome], list[Outcome]]] = field(default_factory=dict)
    unacked: int = 0               # outcomes in finished
    ack_at: float = math.inf       # when they are acked even if few (monotonic)
    stopping: bool = False
    waiting: bool = False          # the Waiter holds a request
    reserved: int = 0              # slots kept free for the Waiter's claim
    retry_at: float = 0.0          # no claim or ack before this (monotonic)
    registered: bool = False
    reported: tuple[int, int] = (0, 0)  # processed/failed already sent to the registry
    next_lease_beat: float = math.inf
    next_registry_beat: float = 0.0
    last_registry_beat: float = -math.inf   # the last refresh that reached Redis (monotonic)
    next_deadline: float = math.inf    # the earliest timeout of a job in progress (monotonic)
    threads: ThreadRunner | None = None    # the sync handlers' runner
    prefetch: int = 0              # jobs that may wait for a thread (0 with async handlers)
    buffering: bool = False        # prefetching now: the handlers are quick (job_s)
    job_s: float = math.inf        # running mean of handler seconds (inf: none finished yet)
    progress_at: float = 0.0       # when a job last finished or went to the runners (monotonic)


class Worker:
    """Runs handlers for the jobs of ``queues`` with at most ``concurrency`` at a time.

    ``lease``: seconds each claimed job is leased for (jobs enqueued with their own lease
    keep it); ``grace``: seconds in-flight jobs get to finish on shutdown; ``batch``: most
    jobs leased per call (default: ``concurrency``, at most 1000); ``health_port``: serve
    200/503 on ``health_host:health_port`` (default host 127.0.0.1; containers pass
    0.0.0.0) while Redis is reachable / unreachable; ``log_format``: "text" or "json";
    ``beat_interval``: seconds between registry refreshes (three times that while idle);
    ``idle_wait``: seconds one wait of an idle worker lasts at most (``stop()`` ends it at
    once; on Redis Cluster each blocking call lasts at most 10 s);
    ``job_log_level``: the level of each job's "claimed" and "done" lines (a failure's
    line is WARNING or ERROR whatever it is; ``redispool deliver``, which keeps each
    attempt in its webhook's delivery log, writes them at DEBUG); ``timeout``: seconds
    one attempt of a job without a timeout of its own may run (None: no limit; see the
    module docstring for what happens to a sync handler past it); ``prefetch``: jobs
    leased beyond ``concurrency``, waiting for a thread, while the handlers are quick
    (default: ``concurrency``; 0: none; see the module docstring).
    """

    _run: _Run  # made by run()

    def __init__(self, pool: Engine, queues: Sequence[str], concurrency: int = 10,
                 lease: float = defaults.LEASE_S, *, worker_id: str | None = None,
                 grace: float = 30.0, batch: int | None = None, health_port: int | None = None,
                 health_host: str = "127.0.0.1", log_format: str = "text",
                 beat_interval: float = 5.0, idle_wait: float = 10.0, job_log_level: int = INFO,
                 timeout: float | None = None, prefetch: int | None = None) -> None:
        if isinstance(queues, str):
            raise TypeError("queues must be a list of queue names, not a string")
        self.queues: list[str] = list(dict.fromkeys(check_queue(q) for q in queues))
        if not self.queues:
            raise InvalidOption("a worker needs at least one queue")
        self.engine = pool
        self.host = socket.gethostname()
        self._id_given = worker_id is not None
        self.id: str = validate.worker_id(worker_id or self._new_id())
        self._set(concurrency=concurrency, lease=lease, grace=grace, batch=batch, health_port=health_port,
                  health_host=health_host, log_format=log_format, beat_interval=beat_interval,
                  idle_wait=idle_wait, job_log_level=job_log_level, timeout=timeout, prefetch=prefetch)
        self.processed = 0   # jobs finished (done or failed) since run() started
        self.failed = 0      # of those, the failed ones
        self._handlers: dict[str, Handler] = {}
        self._default: Handler | None = None
        self._events: queue_mod.SimpleQueue[_Event] = queue_mod.SimpleQueue()
        # Outcomes from the runners' threads; they wake the bookkeeping thread once this
        # many are waiting (1, unless an ack waits for more: _pump sets it before it waits)
        self._outcomes: collections.deque[Outcome] = collections.deque()
        self._wake_at = 1
        self._stop_requested = False
        self._started = False
        self._health: HealthServer | None = None

    def _new_id(self) -> str:
        return f"{self.host}.{os.getpid()}.{uuid.uuid4().hex[:6]}"

    def _set(self, *, concurrency: int, lease: float, grace: float, batch: int | None,
             health_port: int | None, health_host: str, log_format: str, beat_interval: float,
             idle_wait: float, job_log_level: int, timeout: float | None, prefetch: int | None) -> None:
        """Check every option, then set them all (nothing changes when one is bad): the one
        path for both ``__init__`` and ``override``."""
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidOption(f"concurrency must be an integer >= 1, got {concurrency!r}")
        validate.lease_ms(lease)
        validate.seconds_to_ms(grace, "grace")
        validate.seconds_to_ms(beat_interval, "beat_interval", allow_zero=False)
        validate.seconds_to_ms(idle_wait, "idle_wait", allow_zero=False)
        validate.timeout_ms(timeout)
        if prefetch is not None and (isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0):
            raise InvalidOption(f"prefetch must be an integer >= 0, got {prefetch!r}")
        if batch is None:
            batch = min(concurrency, defaults.BATCH_MAX)
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= defaults.BATCH_MAX:
            raise InvalidOption(f"batch must be an integer in [1, {defaults.BATCH_MAX}], got {batch!r}")
        if health_port is not None and (isinstance(health_port, bool) or not isinstance(health_port, int)
                                        or not 0 <= health_port <= 65535):
            raise InvalidOption(f"health_port must be a port number, got {health_port!r}")
        if not isinstance(health_host, str) or not health_host:
            raise InvalidOption(f"health_host must be a host name or address, got {health_host!r}")
        if isinstance(job_log_level, bool) or not isinstance(job_log_level, int) or not 0 <= job_log_level <= 50:
            raise InvalidOption(f"job_log_level must be a logging level such as logging.INFO, got {job_log_level!r}")
        log = EventLog(logging.getLogger("redispool.worker"), log_format, self.id)
        self.concurrency = concurrency
        self.prefetch_option = prefetch
        self.prefetch = concurrency if prefetch is None else prefetch
        self.lease = float(lease)
        self.grace = float(grace)
        self.batch = batch
        self.beat_interval = float(beat_interval)
        self.idle_wait = float(idle_wait)
        self.timeout = None if timeout is None else float(timeout)
        self.health_port = health_port
        self.health_host = health_host
        self.log_format = log_format
        self.job_log_level = job_log_level
        self.log = log

    def forked(self, index: int) -> None:
        """Become process ``index`` of ``redispool worker --processes N`` (called in the
        forked child before ``run``): an id of its own (``worker_id`` given: that id with
        ``.<index>``), and a health port only in process 0."""
        if self._started:
            raise RuntimeError("forked() is for a worker that has not run yet")
        self.id = validate.worker_id(f"{self.id}.{index}" if self._id_given else self._new_id())
        self.log = EventLog(self.log.logger, self.log_format, self.id)
        if index:
            self.health_port = None

    def override(self, *, concurrency: int | None = None, lease: float | None = None,
                 grace: float | None = None, health_port: int | None = None,
                 health_host: str | None = None, log_format: str | None = None,
                 timeout: float | None = None, prefetch: int | None = None) -> None:
        """Change options of a Worker that has not run yet (``redispool worker --lease ...``
        over the app's own), checked as ``__init__`` checks them; None keeps an option.
        A new ``concurrency`` also sets ``batch`` to match, as ``__init__`` does without one."""
        if self._started:
            raise RuntimeError("this Worker has run already; its options are fixed")
        self._set(concurrency=self.concurrency if concurrency is None else concurrency,
                  lease=self.lease if lease is None else lease,
                  grace=self.grace if grace is None else grace,
                  batch=self.batch if concurrency is None else None,
                  health_port=self.health_port if health_port is None else health_port,
                  health_host=self.health_host if health_host is None else health_host,
                  log_format=self.log_format if log_format is None else log_format,
                  beat_interval=self.beat_interval, idle_wait=self.idle_wait, job_log_level=self.job_log_level,
                  timeout=self.timeout if timeout is None else timeout,
                  prefetch=self.prefetch_option if prefetch is None else prefetch)

    # ------------------------------------------------------------------ set-up
    @overload
    def process(self, target: H) -> H: ...
    @overload
    def process(self, target: str | None = None) -> Callable[[H], H]: ...

    def process(self, target: Handler | str | None = None) -> Handler | Callable[[H], H]:
        """Register a handler: ``@worker.process`` for every queue, ``@worker.process("q")``
        for one. The handler gets the ``Job``; its return value is stored as the result,
        an exception fails the job with ``"TypeName: message"`` as the error."""
        if callable(target):
            return self._add(None, target)
        if target is not None:
            check_queue(target)
            if target not in self.queues:
                raise InvalidOption(f"queue {target!r} is not one of this worker's queues {self.queues}")
        queue = target
        return lambda handler: self._add(queue, handler)

    def _add(self, queue: str | None, handler: H) -> H:
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
        self._events.put(_WakeUp.STOP)

    # ------------------------------------------------------------------ running
    def run(self, burst: bool = False, *, burst_wait: float = BURST_WAIT_S) -> None:
        """Work until ``stop()`` or SIGTERM/SIGINT. With ``burst=True`` return once no job
        is ready or in progress and no scheduled job (retry or delayed) of the queues is
        due within ``burst_wait`` seconds; the "burst done" line counts the scheduled
        jobs left. A Worker runs once."""
        if self._started:
            raise RuntimeError("this Worker has run already; create a new one")
        validate.seconds_to_ms(burst_wait, "burst_wait")
        handlers = {q: self.handler_for(q) for q in self.queues}
        self._started = True
        kinds = {is_async(h) for h in handlers.values()}  # a runner only for the kinds in use
        runners: dict[bool, Runner] = {}
        if True in kinds:
            runners[True] = AsyncRunner(self._report)
        threads = ThreadRunner(self.concurrency, self._report, name=f"redispool-{self.id}") if False in kinds else None
        if threads is not None:
            runners[False] = threads
        self._run = _Run(
            threads=threads,
            prefetch=0 if True in runners else self.prefetch,   # async jobs start at once: never held
            burst=burst, burst_wait=float(burst_wait),
            routes={q: (h, runners[is_async(h)]) for q, h in handlers.items()},
            runners=list(runners.values()),
            rotation=Rotation(self.queues, self.concurrency, self.batch),
            trouble=TroubleLog(self.log),
            waiter=None if burst else Waiter(self.engine, self.id, self.lease, self._waited),
            next_registry_beat=time.monotonic())
        previous = self._install_signals()
        try:
            if self.health_port is not None:
                try:
                    self._health = HealthServer(self._redis_reachable, self.health_port, self.health_host).start()
                except OSError as exc:
                    raise InvalidOption(f"cannot serve health on {self.health_host}:{self.health_port}: "
                                        f"{exc.strerror or exc}") from exc
            self.log.event(INFO, "worker started", queues=",".join(self.queues),
                           concurrency=self.concurrency, pid=os.getpid(), burst=burst)
            self._beat_registry(time.monotonic())  # registered before the first claim
            self._loop()
            self._drain()
        finally:
            self._finish()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _install_signals(self) -> dict[int, signal._HANDLER]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._stop_requested:
            self.log.event(ERROR, "exiting now", signal=name, in_flight=len(self._run.running))
            for handler in logging.getLogger().handlers + self.log.logger.handlers:
                handler.flush()
            os._exit(1)
        self.log.event(INFO, "shutdown requested", signal=name,
                       note="a second signal exits at once")
        self.stop()

    def _redis_reachable(self) -> bool:
        return bool(self.engine.client.ping())

    def _loop(self) -> None:
        run = self._run
        while True:
            self._pump(self._sleep_time())
            if self._stop_requested:
                run.stopping = True
                return
            run.rotation.due_now()  # (the Waiter wakes for these too, but a wait it
            # holds may predate what the last ack said)
            backing_off = time.monotonic() < run.retry_at
            if not backing_off:
                self._move_jobs()
            self._periodic()
            if run.burst and self._burst_over():
                run.stopping = True
                return
            if not backing_off:
                self._arm_waiter()

    def _sleep_time(self) -> float:
        run = self._run
        now = time.monotonic()
        if now < run.retry_at:
            return min(run.retry_at - now, MAX_SLEEP_S)
        wake = min(run.next_lease_beat, run.next_registry_beat, run.rotation.next_due(), run.next_deadline)
        if self._held_back():
            wake = min(wake, run.progress_at + PREFETCH_HOLD_S)   # (_hold)
        if run.finished:
            if self._ack_due(now):
                return 0.0
            wake = min(wake, run.ack_at)  # (claims wait for the ack, which leases for them)
        elif run.rotation and self._free() > 0 and not run.stopping:
            return 0.0
        return max(0.0, min(wake - now, MAX_SLEEP_S))

    def _ack_due(self, now: float) -> bool:
        """The finished jobs are to be acked now: twice as many as are still in progress
        have finished (while prefetching: as many as there are threads), the first of them
        ACK_DELAY_S ago, or the worker is stopping."""
        run = self._run
        return (run.unacked >= 2 * len(run.running) or now >= run.ack_at or run.stopping
                or (run.buffering and run.unacked >= self.concurrency))

    def _held_back(self) -> int:
        """How many prefetched jobs wait for a thread while every thread is busy."""
        threads = self._run.threads
        queued = threads.queued() if threads is not None else 0
        return queued if queued and len(self._run.running) - queued >= self.concurrency else 0

    def _free(self) -> int:
        run = self._run
        return run.rotation.concurrency - len(run.running) - run.reserved   # (its slots: _buffer)

    # ------------------------------------------------------------------ events
    def _report(self, outcome: Outcome) -> None:
        """A runner's Outcome (on the runner's thread): kept for the bookkeeping thread,
        which it wakes once ``_wake_at`` outcomes are waiting. While an ack waits for more
        outcomes, the ones it does not need yet wake nobody: one wake-up per ack instead
        of one per job (and if one slips past ``_pump``'s look, its wait ends anyway at
        ``ack_at``, 1 ms on)."""
        outcomes = self._outcomes
        outcomes.append(outcome)
        if len(outcomes) >= self._wake_at:
            self._events.put(_WakeUp.OUTCOMES)

    def _pump(self, timeout: float) -> None:
        """Handle every pending event and outcome, waiting up to ``timeout`` seconds for
        the first."""
        events, outcomes, run = self._events, self._outcomes, self._run
        wake_at = 1
        if run.finished and not run.stopping and not self._stop_requested:
            # the ack is due when unacked + n >= 2 * (running - n) after n more outcomes
            wake_at = max(1, -(-(2 * len(run.running) - run.unacked) // 3))
            if run.buffering:
                wake_at = min(wake_at, max(1, self.concurrency - run.unacked))
        self._wake_at = wake_at   # (before the look at outcomes: one appended after it wakes us)
        try:
            event = events.get(timeout=timeout) if timeout > 0 and not outcomes else events.get_nowait()
        except queue_mod.Empty:
            event = None
        self._wake_at = 1
        if outcomes:
            run.progress_at = time.monotonic()
        while True:
            while outcomes:
                self._outcome(outcomes.popleft())
            if type(event) is Wake:
                self._wait_ended(event)
            # else a _WakeUp: it only ended the wait (the caller sees a stop request)
            try:
                event = events.get_nowait()
            except queue_mod.Empty:
                if not outcomes:
                    break
                event = None
        buffering = run.prefetch > 0 and run.job_s < PREFETCH_JOB_S and not run.stopping
        if buffering != run.buffering:
            self._buffer(buffering)

    def _buffer(self, on: bool) -> None:
        """Prefetch (``on``) or not: the slots the worker and its rotation count."""
        run = self._run
        run.buffering = on
        run.rotation.concurrency = self.concurrency + (run.prefetch if on else 0)

    def _outcome(self, outcome: Outcome) -> None:
        job = outcome.job
        run = self._run
        running = run.running.pop((job.queue, job.token), None)
        if running is None:
            return  # given back at shutdown already
        run.rotation.finished(job.queue)
        if running.timed_out:
            self.log.event(INFO, "late result discarded", job, reason="timed out",
                           outcome="done" if outcome.ok else outcome.error, duration_ms=_ms(outcome.seconds))
            return
        seconds = outcome.seconds   # the handlers' running mean (prefetch)
        run.job_s = seconds if run.job_s == math.inf else run.job_s + (seconds - run.job_s) * 0.2
        if running.lost:
            self.log.event(DEBUG, "result discarded", job, reason="lease lost")
            return
        self._settled(outcome)

    def _settled(self, outcome: Outcome) -> None:
        """Keep ``outcome`` for the next ack of its queue (see ``_ack_due``)."""
        run = self._run
        lists = run.finished.get(outcome.job.queue)
        if lists is None:
            lists = run.finished[outcome.job.queue] = ([], [])
        lists[0 if outcome.ok else 1].append(outcome)
        run.unacked += 1
        if run.ack_at == math.inf:
            run.ack_at = time.monotonic() + ACK_DELAY_S

    def _waited(self, wake: Wake) -> None:
        """The Waiter's report (from its thread): handed over to the bookkeeping thread."""
        self._events.put(wake)

    def _wait_ended(self, wake: Wake) -> None:
        self._run.waiting, self._run.reserved = False, 0
        if wake.error is not None:
            self._failed(JOBS, wake.error)
            return
        self._run.trouble.ok(JOBS)
        if self._run.stopping:
            self._release(wake.jobs)
            return
        queue = wake.queue
        if queue is None:
            return  # the wait timed out: the markers stay set, nothing was missed
        if wake.claimed:
            self._start(wake.jobs)
            self._run.rotation.served(queue, len(wake.jobs), wake.wait)
            return
        self._run.rotation.join(queue)  # it gets one of the next free slots
        if wake.popped and self._free() <= 0:
            put_back(self.engine, queue)  # no slot now: let an idle worker elsewhere have it

    # ------------------------------------------------------------------ Redis trouble
    def _failed(self, channel: str, exc: BaseException) -> float:
        """A Redis call of ``channel`` failed: logged once per state; returns the backoff.
        Only a failed claim or ack ("jobs") pauses the job flow for it."""
        delay = self._run.trouble.failed(channel, exc, expected=isinstance(exc, REDIS_TROUBLE))
        if channel == JOBS:
            self._run.retry_at = time.monotonic() + delay
        return delay

    # ------------------------------------------------------------------ moving jobs
    def _move_jobs(self) -> None:
        """Acknowledge finished jobs (one ack per queue, leasing that queue's share of the
        free slots on the way), then lease the rest of the plan with claims."""
        run = self._run
        if run.finished and not self._ack_due(time.monotonic()):
            return  # more are about to finish: one ack (and its claim) for all of them
        plan, spare = run.rotation.plan(0 if run.stopping else self._free())
        for queue in list(run.finished):
            limit = plan.pop(queue, 0)
            if not limit and spare and queue not in run.rotation:
                limit = min(self.batch, spare)  # nobody else wants the slots: fill them on the way
                spare -= limit
            if not self._ack(queue, limit):
                return
        for queue, limit in plan.items():
            try:
                jobs, wait = self.engine.claim_with_due(queue, self.id, limit=limit, lease=self.lease)
            except REDIS_TROUBLE as exc:
                self._failed(JOBS, exc)
                return
            run.trouble.ok(JOBS)
            self._start(jobs)
            run.rotation.served(queue, len(jobs), wait)

    def _ack(self, queue: str, limit: int) -> bool:
        """Acknowledge ``queue``'s finished jobs, leasing up to ``limit`` more; False when
        Redis failed (the worker backs off)."""
        run = self._run
        done, failed = run.finished[queue]
        not_durable = None
        try:
            reply = self.engine.ack(queue, completed=[(o.job, o.result) for o in done],
                                    failed=[(o.job, o.error) for o in failed],
                                    worker_id=self.id, limit=limit, lease=self.lease)
        except NotDurable as exc:
            # applied on the primary (Engine.ack puts its decoded reply on exc.result); the
            # jobs it leased were given back
            applied = getattr(exc, "result", None)
            if not isinstance(applied, AckResult):
                self._failed(JOBS, exc)
                return False
            reply, not_durable = applied, exc
        except REDIS_TROUBLE as exc:
            self._failed(JOBS, exc)
            return False
        run.trouble.ok(JOBS)
        run.trouble.durability(not_durable)
        del run.finished[queue]
        run.unacked -= len(done) + len(failed)
        if not run.finished:
            run.ack_at = math.inf
        self._acked(done, reply.completed, failed, reply.failed)
        if limit:
            if not_durable is None:
                self._start(reply.jobs)
                run.rotation.served(queue, len(reply.jobs), reply.wait)
            else:
                run.rotation.join(queue)  # its batch went back: claim it again
        if run.burst and "scheduled" in reply.failed and not (limit and not reply.jobs):
            run.rotation.join(queue)  # a retry was scheduled: learn when it is due
        return True

    def _acked(self, done: list[Outcome], done_ok: list[bool], failed: list[Outcome],
               states: list[str | None]) -> None:
        log = self.log
        level = self.job_log_level
        verbose = log.enabled(level)
        for outcome, ok in zip(done, done_ok):
            if ok:
                self.processed += 1
                if verbose:
                    log.event(level, "done", outcome.job, duration_ms=_ms(outcome.seconds))
            else:
                log.event(WARNING, "lease lost", outcome.job, note="result not stored")
        for outcome, state in zip(failed, states):
            if state is None:
                log.event(WARNING, "lease lost", outcome.job, error=outcome.error, note="failure not stored")
                continue
            self.processed += 1
            self.failed += 1
            # one line per failure: what became of the job, its error and traceback
            log.event(ERROR if state == "dead" else WARNING, "dead" if state == "dead" else "retried",
                      outcome.job, error=outcome.error, duration_ms=_ms(outcome.seconds), trace=outcome.trace)

    def _burst_over(self) -> bool:
        run = self._run
        if run.finished or run.rotation or any(not r.timed_out for r in run.running.values()):
            return False  # (a timed-out sync handler's thread is not waited for)
        if run.rotation.next_due() - time.monotonic() <= run.burst_wait:
            return False  # a retry or delayed job falls due soon: wait for it
        left = 0
        for queue in self.queues:
            try:
                left += self.engine.stats(queue)["scheduled"]
            except REDIS_TROUBLE:
                left = -1
                break
        fields: dict[str, Any] = {"processed": self.processed, "failed": self.failed}
        if left:
            fields.update(scheduled_left="?" if left < 0 else left,
                          note=f"scheduled jobs due later than {run.burst_wait:g}s are left for the next run")
        self.log.event(INFO, "burst done", **fields)
        return True

    def _arm_waiter(self) -> None:
        """Watch the queues out of the rotation: an idle worker claims from the first that
        wakes (holding its free slots for that claim), a busy one only hears which."""
        run = self._run
        if run.waiter is None or run.waiting or run.stopping:
            return
        rotation = run.rotation
        watched = rotation.watched()
        if not watched:
            return
        free = min(self.batch, self._free())
        limit = free if free > 0 and not rotation else 0
        # While some queues are in the rotation, the watch ends sooner: a queue that has
        # just emptied is only watched from the next request on.
        timeout = min(self.idle_wait, WATCH_WAIT_S) if rotation else self.idle_wait
        run.waiting, run.reserved = True, limit
        run.waiter.request(watched, limit, timeout, {q: rotation.due[q] for q in watched if q in rotation.due})

    def _start(self, jobs: list[Job]) -> None:
        """Hand one claim's batch (jobs of one queue: a claim, an ack or the Waiter's) to
        its runner."""
        if not jobs:
            return
        run = self._run
        in_progress = run.running
        next_beat = next_deadline = math.inf
        now = time.monotonic()
        level = self.job_log_level
        verbose = self.log.enabled(level)
        queue = jobs[0].queue   # a batch is one claim's: one queue, one route
        handler, runner = run.routes[queue]
        submit = runner.submit
        for job in jobs:
            if job.timeout is None:
                job.timeout = self.timeout   # the handler sees the limit that applies
            deadline = now + job.timeout if job.timeout is not None else math.inf
            running = _Running(job, now + job.lease / 2, deadline)
            in_progress[(queue, job.token)] = running
            if deadline < next_deadline:
                next_deadline = deadline
            if running.next_beat < next_beat:
                next_beat = running.next_beat
            if verbose:
                self.log.event(level, "claimed", job)
            submit(job, handler)
        run.rotation.started(queue, len(jobs))
        run.progress_at = now
        run.next_registry_beat = min(run.next_registry_beat, run.last_registry_beat + self.beat_interval)
        run.next_deadline = min(run.next_deadline, next_deadline)
        run.next_lease_beat = min(run.next_lease_beat, next_beat)

    def _periodic(self) -> None:
        now = time.monotonic()
        if now >= self._run.progress_at + PREFETCH_HOLD_S and self._held_back():
            self._hold()
        if now >= self._run.next_deadline:
            self._time_out(now)
        if now >= self._run.next_lease_beat:
            self._beat_leases(now)
        if now >= self._run.next_registry_beat:
            self._beat_registry(now)

    def _hold(self) -> None:
        """No job finished or started for PREFETCH_HOLD_S while prefetched jobs wait for a
        busy thread: the handlers have turned slow. Give those jobs back (their attempt not
        counted), for an idle worker to take, and prefetch no more until the handlers are
        quick again."""
        run = self._run
        assert run.threads is not None
        jobs = run.threads.withdraw()
        for job in jobs:
            del run.running[(job.queue, job.token)]
            run.rotation.finished(job.queue)
        run.job_s = max(run.job_s, PREFETCH_JOB_S)
        self._buffer(False)
        self._release(jobs)

    def _time_out(self, now: float) -> None:
        """Fail the attempts past their timeout (acked with the next ack of their queue,
        with their lease token) and cancel those that can be (async handlers)."""
        run = self._run
        next_deadline = math.inf
        for running in run.running.values():
            if not running.live:
                continue
            if running.deadline > now:
                next_deadline = min(next_deadline, running.deadline)
                continue
            running.timed_out = True
            run.job_s = max(run.job_s, PREFETCH_JOB_S)   # slow handlers: no prefetch
            job = running.job
            timeout = job.timeout or 0.0   # set: the deadline is finite
            error = f"TimeoutError: the attempt ran longer than its timeout of {timeout:g} s"
            self._settled(Outcome(job, False, None, error, None, now - running.deadline + timeout))
            handler, runner = run.routes[job.queue]
            runner.cancel(job)
            self.log.event(WARNING, "timed out", job, timeout_s=timeout,
                           note="task cancelled" if is_async(handler) else
                           "its thread runs on, holding a slot; what it returns is discarded")
        run.next_deadline = next_deadline

    def _beat_leases(self, now: float) -> None:
        """Extend the leases that are due (or nearly), one call per queue."""
        run = self._run
        due: dict[str, list[_Running]] = {}
        next_beat = math.inf
        for running in run.running.values():
            if not running.live:
                continue
            if running.next_beat <= now + min(1.0, running.job.lease / 8):
                due.setdefault(running.job.queue, []).append(running)
            else:
                next_beat = min(next_beat, running.next_beat)
        if not due and LEASES in run.trouble:
            run.trouble.ok(LEASES)  # nothing left to extend
        for queue, batch in due.items():
            try:
                expiries = self.engine.heartbeat_many(queue, [r.job for r in batch])
            except REDIS_TROUBLE as exc:
                # a refused heartbeat does not stop the job flow (Redis at maxmemory
                # refuses it while acks work); try again soon, the lease has lease/2 left
                delay = self._failed(LEASES, exc)
                next_beat = min(next_beat, now + min(delay, 1.0))
                continue
            run.trouble.ok(LEASES)
            for running, expiry in zip(batch, expiries):
                if expiry is None:
                    running.lost = True
                    self.log.event(WARNING, "lease lost", running.job, note="job is dropped")
                else:
                    running.job.lease_expires_at = expiry
                    running.next_beat = now + running.job.lease / 2
                    next_beat = min(next_beat, running.next_beat)
        run.next_lease_beat = next_beat

    def _beat_registry(self, now: float) -> None:
        run = self._run
        run.next_registry_beat = now + self.beat_interval
        try:
            if not run.registered:
                self._register()
            jobs = [f"{r.job.queue}/{r.job.id}" for r in run.running.values() if r.live]
            processed, failed = self.processed, self.failed
            if not self.engine.beat_worker(self.id, jobs_in_progress=jobs,
                                           processed=processed - run.reported[0],
                                           failed=failed - run.reported[1]):
                run.trouble.ok(REGISTRY)
                self.log.event(WARNING, "registration expired", note="registering again")
                run.registered = False
                run.next_registry_beat = now
                return
            run.reported = (processed, failed)
            run.last_registry_beat = now
            if not run.running and not run.finished:   # idle: the next news is a claim (_start)
                run.next_registry_beat = now + self.beat_interval * IDLE_BEATS
        except REDIS_TROUBLE as exc:
            # retried on its own (at most every beat_interval): the job flow goes on
            run.next_registry_beat = now + min(self._failed(REGISTRY, exc), self.beat_interval)
            return
        run.trouble.ok(REGISTRY)

    def _register(self) -> None:
        self.engine.register_worker(self.id, host=self.host, pid=os.getpid(), queues=self.queues)
        self._run.registered = True
        self._run.reported = (0, 0)  # a fresh registration starts its counters at zero

    def _release(self, jobs: list[Job]) -> None:
        for job in jobs:
            try:
                self.engine.release(job)
            except LeaseLost:
                continue
            except REDIS_TROUBLE as exc:
                self.log.event(WARNING, "release failed", job, reason=redis_trouble(exc)[1], error=short_error(exc))
                continue
            self.log.event(INFO, "released", job)

    # ------------------------------------------------------------------ stopping
    def _drain(self) -> None:
        """Let in-flight jobs finish within the grace period, still acking and heartbeating."""
        run = self._run
        deadline = time.monotonic() + self.grace
        def busy() -> bool:  # a timed-out handler's thread is not waited for: its outcome is settled
            return bool(run.finished) or any(not r.timed_out for r in run.running.values())
        if busy():
            self.log.event(INFO, "stopping", in_flight=len(run.running), grace_s=self.grace)
        while busy():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._pump(min(left, self._sleep_time()))
            if time.monotonic() >= run.retry_at:
                self._move_jobs()
            self._periodic()

    def _finish(self) -> None:
        """Give back what is still leased, deregister and stop every helper thread."""
        run = self._run
        run.stopping = True
        if run.waiter is not None:
            run.waiter.close(self.idle_wait + 5.0)
            self._pump(0)  # a claim that raced the stop is released here
        if run.finished:
            run.retry_at = 0.0
            self._move_jobs()
        if run.threads is not None:
            run.threads.withdraw()   # released below: never to start
        left = [r.job for r in run.running.values() if r.live]
        run.running.clear()
        self._release(left)
        for runner in run.runners:
            runner.close()
        try:
            self.engine.deregister_worker(self.id)
        except REDIS_TROUBLE as exc:
            self.log.event(WARNING, "deregister failed", reason=redis_trouble(exc)[1], error=short_error(exc))
        if self._health is not None:
            self._health.close()
            self._health = None
        self.log.event(INFO, "worker stopped", processed=self.processed, failed=self.failed,
                       released=len(left))


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)

