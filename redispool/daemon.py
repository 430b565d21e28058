"""The loop the scheduler and sweeper share: visit the queues that have due work, until stopped.

A step asks Redis which queues the daemon has work in now (``rp:due:<daemon>``, see
queues.py), visits each (``visit``: the subclass's scripts), and stores when each one next
has work; so an idle queue costs a step nothing, however many there are. A reconciliation
pass also checks every queue of ``rp:queues``, one chunk per step, every
``reconcile_every`` seconds, and repairs a plan a crashed writer or lost Redis data left
out. The first pass, at start-up, makes every queue with work due once, so the daemon
plans each with its own settings (a sweeper's retention options). Between steps it
sleeps ``interval`` seconds, or less when work is due sooner.

Redis trouble never stops a daemon: a lost connection, a timeout, a cluster moving slots,
Redis at maxmemory, a read-only replica... is logged once when it starts and once when it
ends, and the step is retried with exponential backoff (capped at 10 s). An error of one
queue (a damaged key) is logged once and that queue is retried 10 s later while the others
go on. Only a bad configuration (a wrong password, a missing ACL permission) stops it.
SIGTERM/SIGINT stop it after the current step.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from typing import TYPE_CHECKING

import redis

from .errors import REDIS_TROUBLE, ConnectionFailed, InvalidOption, RedisFull, RedispoolError, mask_url
from .validate import seconds_to_ms

if TYPE_CHECKING:
    from .engine import Engine

BACKOFF_MAX_S = 10.0
MIN_WAIT_S = 0.005
RECONCILE_EVERY_S = 60.0   # a full reconciliation pass over rp:queues this often
RECONCILE_CHUNK = 500      # queues checked per step during a pass (one pipeline)
DUE_BATCH = 1000           # due queues visited per step at most (the next step follows at once)
QUEUE_RETRY_S = 10.0       # a queue whose visit failed (not Redis trouble) is tried again then
CONFIG_ERRORS = (redis.exceptions.AuthenticationError, redis.exceptions.NoPermissionError)
TRANSIENT: tuple[type[BaseException], ...] = (*REDIS_TROUBLE, ConnectionFailed, RedisFull)


def _trouble(exc: BaseException) -> str:
    """What kind of Redis trouble ``exc`` is, in words (one log line per kind)."""
    if isinstance(exc, (RedisFull, redis.exceptions.OutOfMemoryError)):
        return "Redis is full (maxmemory)"
    if isinstance(exc, (redis.exceptions.ClusterError, redis.exceptions.RedisClusterException,
                        redis.exceptions.TryAgainError)):
        return "the cluster is moving slots or electing a primary"
    if isinstance(exc, redis.exceptions.ReadOnlyError):
        return "Redis is a read-only replica"
    return "cannot reach Redis"


def _config_error(exc: BaseException) -> bool:
    return isinstance(exc, CONFIG_ERRORS) or isinstance(exc.__cause__, CONFIG_ERRORS)


class Daemon:
    """Subclasses set ``name`` (the rp:due set they use) and implement ``visit(queue)``;
    ``run()`` repeats ``step()`` until stopped."""

    name = "daemon"

    def __init__(self, engine: Engine, *, interval: float = 1.0,
                 reconcile_every: float = RECONCILE_EVERY_S) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
            raise InvalidOption(f"interval must be > 0 seconds, got {interval!r}")
        seconds_to_ms(reconcile_every, "reconcile_every", allow_zero=False)
        self.engine = engine
        self.interval = interval
        self.reconcile_every = reconcile_every
        self.log = logging.getLogger(f"redispool.{self.name}")
        self._stop = threading.Event()
        self._wait = interval
        self._cursor = 0              # SSCAN cursor of the reconciliation pass in progress
        self._pass_due = 0.0          # monotonic time the next pass starts (0: at once)
        self._passes = 0              # reconciliation passes completed
        self._queue_errors: dict[str, str] = {}

    # ------------------------------------------------------------------ one step
    def visit(self, queue: str) -> tuple[int, int]:
        """Do the due work of one queue; returns (jobs moved, next planned ms or -1)."""
        raise NotImplementedError

    def before_visits(self) -> int:
        """Work not tied to a queue (the sweeper's expired workers); returns jobs moved."""
        return 0

    @property
    def reconciling(self) -> bool:
        """True while a reconciliation pass is under way or due."""
        return self._cursor != 0 or time.monotonic() >= self._pass_due

    def step(self) -> int:
        """Reconcile a chunk when a pass is under way, then visit every due queue once;
        returns the jobs moved."""
        moved = self.before_visits()
        if self.reconciling:
            first = self._passes == 0
            self._cursor, repaired = self.engine._reconcile(self.name, self._cursor, RECONCILE_CHUNK,
                                                            everything=first)
            if repaired and not first:
                self.log.info("%s: planned %d queue(s) that had due work without a plan", self.name, repaired)
            if self._cursor == 0:
                self._passes += 1
                self._pass_due = time.monotonic() + self.reconcile_every
        now_ms, upcoming_ms, queues = self.engine._due_queues(self.name, DUE_BATCH)
        plans: dict[str, int] = {}
        retry: dict[str, int] = {}
        for queue in queues:
            try:
                n, plans[queue] = self.visit(queue)
            except TRANSIENT:
                raise  # the whole step backs off (or stops, for a bad configuration)
            except (redis.RedisError, ValueError, LookupError, TypeError) as exc:
                if _config_error(exc):
                    raise
                self._queue_failed(queue, exc)
                retry[queue] = now_ms + int(QUEUE_RETRY_S * 1000)
                continue
            moved += n
            if queue in self._queue_errors:
                del self._queue_errors[queue]
                self.log.info("%s: queue=%s works again", self.name, queue)
        self.engine._store_plans(self.name, plans)
        self.engine._store_plans(self.name, retry, fields_set=False)
        nexts = [at for at in (upcoming_ms, *plans.values()) if at >= 0]
        wait = self.interval if not nexts else min(self.interval, (min(nexts) - now_ms) / 1000)
        if len(queues) >= DUE_BATCH or self.reconciling:
            wait = min(wait, 0.05)
        self._wait = max(MIN_WAIT_S, wait)
        return moved

    def _queue_failed(self, queue: str, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if self._queue_errors.get(queue) != text:
            self._queue_errors[queue] = text
            self.log.error("%s: queue=%s cannot be worked (%s); the other queues go on, this one is "
                           "tried again every %gs", self.name, queue, text, QUEUE_RETRY_S)

    def next_wait(self) -> float:
        """Seconds to sleep after a successful step."""
        return self._wait

    # ------------------------------------------------------------------ the loop
    def stop(self, *_: object) -> None:
        """Stop after the current step (also the SIGTERM/SIGINT handler: takes its arguments)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Run until stop() or SIGTERM/SIGINT (signals are caught in the main thread only).
        Raises only for a bad configuration (ConnectionFailed naming the URL)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        self.log.info("%s started (interval %.3gs)", self.name, self.interval)
        failures, trouble, since = 0, "", 0.0
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as exc:
                if _config_error(exc):
                    self.log.error("%s stopped: bad configuration: %s", self.name, exc)
                    if isinstance(exc, ConnectionFailed):
                        raise
                    raise ConnectionFailed(self.engine.url, exc) from exc
                failures += 1
                wait = min(BACKOFF_MAX_S, self.interval * 2 ** min(failures, 10))
                kind = _trouble(exc) if isinstance(exc, TRANSIENT) else f"unexpected error {type(exc).__name__}"
                if kind != trouble:
                    if not trouble:
                        since = time.monotonic()
                    cause = exc.__cause__ if isinstance(exc, RedispoolError) and exc.__cause__ else exc
                    detail = str(cause) if isinstance(exc, TRANSIENT) else repr(exc)  # URL named once
                    self.log.warning("%s: %s at %s (%s); retrying with backoff up to %gs", self.name, kind,
                                     mask_url(self.engine.url), detail.split(" script:")[0], BACKOFF_MAX_S,
                                     exc_info=not isinstance(exc, TRANSIENT))
                    trouble = kind
            else:
                if trouble:
                    self.log.info("%s: Redis works again after %.1fs (%d failed steps)", self.name,
                                  time.monotonic() - since, failures)
                failures, trouble = 0, ""
                wait = self.next_wait()
            self._stop.wait(wait)
        self.log.info("%s stopped", self.name)
