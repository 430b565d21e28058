"""The Engine: one method per queue operation.

Most methods are ``return self.run(ops.x(...))``: ``ops.x`` checks the input (before
anything is written) and names the script, its keys and arguments and its reply parser;
``run`` sends it through ``Scripts`` (the one Redis boundary: Redis trouble becomes
ConnectionFailed / RedisFull) and sends the follow-ups its reply asks for. The async
engine (aio.py) runs the same Ops. The worker, the daemons, the CLI and the HTTP server
all talk to Redis through these two classes only.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import redis

from . import blocking, codec, defaults, ops, validate
from .base import Unsent
from .connection import engine_options
from .cues import CuesMixin
from .errors import InvalidOption, JobNotFound, LeaseLost, NotDurable
from .events import EventsMixin
from .history import HistoryMixin
from .keys import check_queue, queues_key
from .limits import LimitsMixin
from .models import AckResult, Job, JobInfo, Lease, LeaseRef
from .ops import JobSpec, Op
from .queue_config import QueueConfigMixin
from .queues import QueuesMixin
from .registry import WorkersMixin
from .retention import RetentionMixin
from .scripts import Scripts
from .webhooks import WebhooksMixin
from .workflows import WorkflowsMixin

__all__ = ["AckResult", "Engine", "JobSpec"]
log = logging.getLogger("redispool.engine")


class Engine(CuesMixin, HistoryMixin, WorkersMixin, RetentionMixin, LimitsMixin, EventsMixin, WebhooksMixin,
             WorkflowsMixin, QueuesMixin, QueueConfigMixin):
    """A redispool queue engine on one Redis (or Cluster) client. Thread-safe."""

    def __init__(self, client: Any, *, url: str = "", prefix: str = defaults.PREFIX,
                 lease: float = defaults.LEASE_S,
                 backoff_base: float = defaults.BACKOFF_BASE_S,
                 backoff_cap: float = defaults.BACKOFF_CAP_S,
                 done_ttl: float = defaults.DONE_TTL_S, done_max: int = defaults.DONE_MAX,
                 dead_ttl: float = defaults.DEAD_TTL_S, dead_max: int = defaults.DEAD_MAX,
                 durable: bool | None = None, durable_timeout: float | None = None,
                 events_max: int = defaults.EVENTS_MAX) -> None:
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            raise InvalidOption(f"prefix must be a non-empty string without braces, got {prefix!r}")
        self.client = client
        self.url = url
        self.prefix = prefix
        self.lease_ms = validate.lease_ms(lease)
        self.backoff_base_ms = validate.seconds_to_ms(backoff_base, "backoff_base")
        self.backoff_cap_ms = validate.seconds_to_ms(backoff_cap, "backoff_cap")
        self.done_ttl_ms = validate.seconds_to_ms(done_ttl, "done_ttl")
        self.dead_ttl_ms = validate.seconds_to_ms(dead_ttl, "dead_ttl")
        self.done_max = self._count(done_max, "done_max")
        self.dead_max = self._count(dead_max, "dead_max")
        self.events_max = self._count(events_max, "events_max")   # 0: this engine writes no events
        self.durable, durable_ms = self._durability(url, durable, durable_timeout)
        self.scripts = Scripts(client, durable_timeout_ms=durable_ms, url=url)
        self.unsent = Unsent()

    @staticmethod
    def _count(value: int, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidOption(f"{name} must be an integer >= 0, got {value!r}")
        return value

    @staticmethod
    def _durability(url: str, durable: bool | None, timeout: float | None) -> tuple[bool, int | None]:
        """``durable``/``durable_timeout``: the options, else the URL's, else off / 1 s.
        Durable: enqueue, complete, fail and ack return only once a replica has the write
        (see scripts.py), else raise NotDurable."""
        from_url = engine_options(url) if url else {}
        durable = from_url.get("durable", False) if durable is None else durable
        timeout = from_url.get("durable_timeout", defaults.DURABLE_TIMEOUT_S) if timeout is None else timeout
        if not isinstance(durable, bool):
            raise InvalidOption(f"durable must be True or False, got {durable!r}")
        timeout_ms = validate.seconds_to_ms(timeout, "durable_timeout", allow_zero=False)
        if durable and url.startswith("memory:"):
            raise InvalidOption("durable=True needs a Redis with a replica; memory:// has none")
        return durable, timeout_ms if durable else None

    def load_scripts(self) -> None:
        """Load every script now (connect() calls this, so errors show at start-up)."""
        self.scripts.load()

    def close(self) -> None:
        self.client.close()

    def ping(self) -> bool:
        """True when Redis answers, False when it cannot be reached (never raises)."""
        try:
            return bool(self.client.ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False

    # ------------------------------------------------------------------ producing
    @staticmethod
    def job_spec(payload: Any = None, *, priority: int = 0, delay: float | None = None,
                 run_at: datetime | float | None = None, max_attempts: int = defaults.MAX_ATTEMPTS,
                 lease: float | None = None, unique_key: str | None = None, job_id: str | None = None,
                 backoff_base: float | None = None, backoff_cap: float | None = None,
                 timeout: float | None = None, depends_on: Iterable[Any] | None = None,
                 dependency_mode: str = "all", queue: str = "", expires_at: datetime | float | None = None,
                 tags: Any = None) -> JobSpec:
        """One job for ``enqueue_specs``: the payload encoded, every option checked. A bare
        id in ``depends_on`` names a job of ``queue`` (give the queue it goes to)."""
        if ops.plain_job(priority, delay, run_at, max_attempts, lease, unique_key, job_id, backoff_base, backoff_cap,
                         timeout, depends_on, dependency_mode, expires_at, tags):
            return JobSpec(codec.encode(payload, check=True), ops.DEFAULT_OPTIONS)
        return ops.job_spec(payload, priority=priority, delay=delay, run_at=run_at, max_attempts=max_attempts,
                            lease=lease, unique_key=unique_key, job_id=job_id, backoff_base=backoff_base,
                            backoff_cap=backoff_cap, timeout=timeout, queue=queue, depends_on=depends_on,
                            dependency_mode=dependency_mode, expires_at=expires_at, tags=tags)

    def enqueue_specs(self, queue: str, specs: Sequence[JobSpec]) -> list[tuple[str, bool]]:
        """Create jobs from ``job_spec``s in one round trip; returns (id, created) per job
        (created is False for an existing job)."""
        check_queue(queue)
        if not specs:
            return []
        if all(ops.plain_spec(spec) for spec in specs):
            return self.run(ops.enqueue_plain(self, queue, [spec.payload for spec in specs]))
        return self._enqueue(queue, [spec.payload for spec in specs], [spec.options for spec in specs],
                             [spec.deps for spec in specs])

    def _enqueue(self, queue: str, payloads: Sequence[bytes], options: Sequence[ops.JobOptions],
                 deps: Sequence[ops.Deps | None] = ()) -> list[tuple[str, bool]]:
        """enqueue.lua, and for parents in other queues (other slots on a Cluster) their
        check before it (JobNotFound, nothing written) and link.lua after it: a parent that
        finished meanwhile, or before, hands its outcome over through its outbox."""
        foreign = {p for d in deps if d is not None for p in d[1] if p[0] != queue}
        if foreign:
            parents = sorted(foreign)
            found = self.scripts.pipeline([("EXISTS", self.keys(pq).job(pid)) for pq, pid in parents])
            missing = [f"{pq}/{pid}" for (pq, pid), n in zip(parents, found) if not n]
            if missing:
                raise JobNotFound(f"no parent job {', '.join(missing)}")
        created = self.run(ops.enqueue(self, queue, payloads, options, deps))
        if foreign:
            links: dict[str, list[tuple[str, str, str]]] = {}
            for (job_id, new), d in zip(created, deps):
                if new and d is not None:
                    for pq, pid in d[1]:
                        if pq != queue:
                            links.setdefault(pq, []).append((pid, queue, job_id))
            for pq, triples in links.items():
                if self.run(ops.link(self, pq, triples)):
                    self._drain_outbox(pq)
        return created

    def enqueue(self, queue: str, payload: Any = None, *, priority: int = 0,
                delay: float | None = None, run_at: datetime | float | None = None,
                max_attempts: int = defaults.MAX_ATTEMPTS, lease: float | None = None,
                unique_key: str | None = None, job_id: str | None = None,
                backoff_base: float | None = None, backoff_cap: float | None = None,
                timeout: float | None = None, depends_on: Iterable[Any] | None = None,
                dependency_mode: str = "all", expires_at: datetime | float | None = None,
                tags: Any = None) -> str:
        """Add one job; returns its id (the existing job's id for a duplicate job_id or
        an unfinished job holding ``unique_key``; ``enqueue_or_get`` tells them apart).
        ``timeout``: the longest one attempt may run (seconds; None: the worker's).
        With ``depends_on`` (job ids of ``queue``, or (queue, id) pairs) it waits until
        every parent (``dependency_mode="any"``: one) is done; JobNotFound for an unknown parent.
        ``expires_at`` (unix seconds or a datetime): a job not leased by then is never run, it
        ends ``cancelled`` with the reason as its error (at the claim that finds it, or by the
        sweeper). ``tags``: a list of strings or a JSON object, stored and handed back."""
        return self._enqueue_one(queue, payload, priority, delay, run_at, max_attempts, lease, unique_key, job_id,
                                 backoff_base, backoff_cap, timeout, depends_on, dependency_mode, expires_at,
                                 tags)[0]

    def enqueue_or_get(self, queue: str, payload: Any = None, *, priority: int = 0,
                       delay: float | None = None, run_at: datetime | float | None = None,
                       max_attempts: int = defaults.MAX_ATTEMPTS, lease: float | None = None,
                       unique_key: str | None = None, job_id: str | None = None,
                       backoff_base: float | None = None, backoff_cap: float | None = None,
                       timeout: float | None = None, depends_on: Iterable[Any] | None = None,
                       dependency_mode: str = "all", expires_at: datetime | float | None = None,
                       tags: Any = None) -> tuple[str, bool]:
        """``enqueue`` that says whether it created the job: ``(id, True)`` for a new job,
        ``(existing id, False)`` for a duplicate job_id or a held ``unique_key`` (nothing
        is written then)."""
        return self._enqueue_one(queue, payload, priority, delay, run_at, max_attempts, lease, unique_key, job_id,
                                 backoff_base, backoff_cap, timeout, depends_on, dependency_mode, expires_at, tags)

    def _enqueue_one(self, queue: str, payload: Any, priority: int, delay: float | None,
                     run_at: datetime | float | None, max_attempts: int, lease: float | None,
                     unique_key: str | None, job_id: str | None, backoff_base: float | None,
                     backoff_cap: float | None, timeout: float | None, depends_on: Iterable[Any] | None,
                     dependency_mode: str, expires_at: datetime | float | None, tags: Any) -> tuple[str, bool]:
        """``enqueue_or_get`` with its options by position (the hot path of a producer: no
        keyword forwarding). A job without options and parents, the common one, skips the
        option checks (``ops.plain_job``) and goes by enqueue_plain.lua."""
        check_queue(queue)
        if ops.plain_job(priority, delay, run_at, max_attempts, lease, unique_key, job_id, backoff_base, backoff_cap,
                         timeout, depends_on, dependency_mode, expires_at, tags):
            return self.run(ops.enqueue_plain(self, queue, [codec.encode(payload, check=True)]))[0]
        spec = ops.job_spec(payload, priority=priority, delay=delay, run_at=run_at, max_attempts=max_attempts,
                            lease=lease, unique_key=unique_key, job_id=job_id, backoff_base=backoff_base,
                            backoff_cap=backoff_cap, timeout=timeout, queue=queue, depends_on=depends_on,
                            dependency_mode=dependency_mode, expires_at=expires_at, tags=tags)
        return self._enqueue(queue, [spec.payload], [spec.options], [spec.deps])[0]

    def enqueue_many(self, queue: str, payloads: Iterable[Any], *, priority: int = 0,
                     delay: float | None = None, run_at: datetime | float | None = None,
                     max_attempts: int = defaults.MAX_ATTEMPTS, lease: float | None = None,
                     backoff_base: float | None = None, backoff_cap: float | None = None,
                     timeout: float | None = None, depends_on: Iterable[Any] | None = None,
                     dependency_mode: str = "all") -> list[str]:
        """Add many jobs with the same options (and parents) in one round trip; returns their ids."""
        check_queue(queue)
        payloads = list(payloads)
        if not payloads:
            return []
        options = ops.job_options(priority=priority, delay=delay, run_at=run_at, max_attempts=max_attempts,
                                  lease=lease, backoff_base=backoff_base, backoff_cap=backoff_cap, timeout=timeout)
        deps = ops.dependencies(queue, depends_on, dependency_mode)
        encode = codec.encode
        encoded = [encode(p, check=True) for p in payloads]
        if deps is None and options == ops.DEFAULT_OPTIONS:   # the lean script (enqueue_plain.lua)
            return [job_id for job_id, _ in self.run(ops.enqueue_plain(self, queue, encoded))]
        return [job_id for job_id, _ in self._enqueue(queue, encoded, [options], [deps] * len(encoded)
                                                      if deps else ())]

    # ------------------------------------------------------------------ consuming
    def bury(self, broken: Sequence[tuple[Job, str]]) -> None:
        """Send leased jobs whose payload cannot be decoded to dead with their error (a
        worker is never handed a payload it cannot read)."""
        for job, error in broken:
            with contextlib.suppress(LeaseLost):
                self.fail(job, error, retry=False)

    def _claim_now(self, op: Op[ops.Claimed], reply: Any = None) -> ops.Claimed:
        claimed = self.run(op) if reply is None else self.settle(op, reply)
        self.bury(claimed.broken)
        for job in claimed.jobs:
            job.engine = self   # job.progress() writes through the engine that leased it
        return claimed

    def claim(self, queue: str, worker_id: str, *, limit: int = 1, lease: float | None = None,
              block: float | None = None) -> list[Job]:
        """Lease up to ``limit`` ready jobs (fewer, or none, over the queue's limits). With
        ``block`` seconds, wait that long for a job when none is ready, woken by the
        queue's marker or when the earliest scheduled job falls due or the rate limit's
        window allows a claim (no polling)."""
        op = ops.claim(self, queue, worker_id, limit, lease)
        deadline = None if block is None else time.monotonic() + validate.seconds_to_ms(block, "block") / 1000
        while True:
            claimed = self._claim_now(op)
            if claimed.jobs or deadline is None:
                return claimed.jobs
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            if 0 <= claimed.wait_ms / 1000 < remaining:  # a delayed job or the rate window: on time
                self._wait_until([queue], time.monotonic() + claimed.wait_ms / 1000 + 0.001)
            else:
                self.wait_for_jobs([queue], remaining)

    def claim_with_due(self, queue: str, worker_id: str, *, limit: int = 1,
                       lease: float | None = None) -> tuple[list[Job], float | None]:
        """``claim()`` without waiting that also says, when it leased nothing, in how many
        seconds to claim again: when the rate limit's window allows a claim (if the rate
        held it back), else when the queue's earliest scheduled job falls due (None: none
        is scheduled, the queue is paused, jobs were leased, or the marker will wake the
        claimer): a worker waiting on several queues wakes then."""
        return self._claim_now(ops.claim(self, queue, worker_id, limit, lease)).with_due()

    def claim_id(self, queue: str, job_id: str, worker_id: str, *, lease: float | None = None) -> Job | None:
        """Lease exactly job ``job_id`` if it is ready now; None if it is not (for
        protocols that let a worker pick a job). A damaged job, or one whose payload
        cannot be decoded, goes to dead as in claim."""
        claimed = self._claim_now(ops.claim_id(self, queue, job_id, worker_id, lease))
        return claimed.jobs[0] if claimed.jobs else None

    def wait_then_claim(self, queue: str, worker_id: str, timeout: float, *, limit: int,
                        lease: float | None = None, interrupt: str | None = None,
                        ) -> tuple[bool, list[Job], float | None]:
        """``wait_for_jobs([queue], timeout)`` and ``claim_with_due()`` in one round trip:
        the claim runs in Redis as the wait ends, however it ends. (whether the marker woke
        it, the jobs, the wait as claim_with_due gives it). On a Cluster, the two calls.
        ``interrupt``: as for wait_for_jobs (the claim still runs)."""
        op = ops.claim(self, queue, worker_id, limit, lease)
        popped, reply = self.scripts.call_after_wait(self.keys(queue).marker, max(0.001, timeout), op,
                                                     interrupt)
        return (popped, *self._claim_now(op, reply).with_due())

    def wait_for_jobs(self, queues: Sequence[str], timeout: float, *, interrupt: str | None = None) -> str | None:
        """Block up to ``timeout`` seconds until one of ``queues`` may have a ready job;
        returns that queue's name, or None on timeout. Markers of one Cluster slot only.
        The read of the reply is allowed ``timeout`` plus the client's read timeout.
        ``interrupt`` (off Cluster: ``QueueKeys.stop``): a key whose ``interrupt_wait``
        ends the wait at once, as a timeout."""
        markers = [self.keys(q).marker for q in queues]
        with self.scripts.boundary():
            popped = blocking.bzpopmin(self.client, [*markers, interrupt] if interrupt else markers,
                                       max(0.001, timeout))
        if not popped:
            return None
        marker = ops.text(popped[0])
        return next((q for q, m in zip(queues, markers) if m == marker), None)

    def interrupt_wait(self, key: str) -> None:
        """End the wait that names ``key`` as its ``interrupt`` (from another thread), or
        the next one if none is blocked yet; unused, the key expires after a minute."""
        self.scripts.pipeline([("ZADD", key, 0, "stop"), ("PEXPIRE", key, 60_000)])

    def _wait_until(self, queues: Sequence[str], due: float) -> None:
        """Wait for a marker of ``queues`` until ``due`` (``time.monotonic()``) and not
        later: blocked until blocking.TIMEOUT_LAG_S before it, the rest slept here."""
        left = due - time.monotonic() - blocking.TIMEOUT_LAG_S
        if left > 0 and self.wait_for_jobs(queues, left):
            return
        time.sleep(max(0.0, due - time.monotonic()))

    def rewake(self, queue: str) -> None:
        """Set ``queue``'s wake-up marker again after popping it without claiming, so
        another claimer wakes (rewake.lua: while jobs are ready or scheduled)."""
        self.run(ops.rewake(self, queue))

    def complete(self, job: LeaseRef, result: Any = None) -> None:
        """Mark a leased job done, storing ``result``; LeaseLost if the lease is gone."""
        return self.run(ops.complete(self, job, result))

    def fail(self, job: LeaseRef, error: Any, *, retry: bool = True, delay: float | None = None) -> str:
        """Record a failed attempt; returns the new state: ``scheduled`` (a retry after
        ``delay`` or exponential backoff with jitter) or ``dead``."""
        return self.run(ops.fail(self, job, error, retry, delay))

    def heartbeat(self, job: LeaseRef, lease: float | None = None) -> float:
        """Extend a job's lease (by ``lease`` or the lease it was claimed with); returns the
        new expiry in unix seconds. LeaseLost if the lease is gone."""
        [expires] = self.run(ops.heartbeat(self, job.queue, [job], lease))
        if expires is None:
            raise ops.lease_lost(job)
        return expires

    def heartbeat_many(self, queue: str, jobs: Sequence[LeaseRef], lease: float | None = None) -> list[float | None]:
        """Extend many leases of one queue in one call; None where the lease is lost."""
        return self.run(ops.heartbeat(self, queue, jobs, lease)) if jobs else []

    def release(self, job: LeaseRef) -> None:
        """Give a leased job back to ready without counting the attempt."""
        return self.run(ops.release(self, job))

    def progress(self, job: LeaseRef, value: float, message: str | None = None) -> float:
        """Record how far a leased job's attempt has got (``value`` in [0, 100], an optional
        ``message``), fenced by its lease: LeaseLost when the lease is gone. Appends a
        ``progress`` event. Returns the time recorded (unix s, Redis clock)."""
        return self.run(ops.progress(self, job, value, message))

    def ack(self, queue: str, *, completed: Iterable[tuple[LeaseRef, Any]] = (),
            failed: Iterable[Sequence[Any]] = (), worker_id: str | None = None, limit: int = 0,
            lease: float | None = None) -> AckResult:
        """Finish many leased jobs of one queue and, with ``worker_id`` and ``limit``, lease
        the next batch, all in one round trip. ``completed`` holds (job, result) pairs;
        ``failed`` holds (job, error) or (job, error, retry, delay). A lost lease spoils
        only its own item."""
        op = ops.ack(self, queue, completed, failed, worker_id, limit, lease)
        try:
            acked = self.run(op)
        except NotDurable as exc:  # the caller never sees the batch it leased: give it back
            if isinstance(exc.reply, (list, tuple)):
                given_back = op.parse(exc.reply)
                for job in [*given_back.result.jobs, *(job for job, _ in given_back.broken)]:
                    self.run(ops.release(self, job))
                given_back.result.jobs = []
                exc.result = given_back.result   # what the primary applied
            raise
        self.bury(acked.broken)
        for job in acked.result.jobs:
            job.engine = self
        return acked.result

    # ------------------------------------------------------------------ inspecting
    def get(self, queue: str, job_id: str) -> JobInfo | None:
        """A job's record, or None when it does not exist (or was trimmed)."""
        k = self.keys(queue)
        fields = self.scripts.command("HGETALL", k.job(job_id))
        if not fields:
            return None
        state = ops.text(fields.get(b"s"))
        score = self.scripts.command("ZSCORE", k.state(state), job_id) if state in ("scheduled", "leased") \
            else None
        return ops.job_info(queue, job_id, fields, score)

    def jobs(self, queue: str, state: str, *, limit: int = 100, offset: int = 0) -> list[JobInfo]:
        """A page of one state's jobs: ready in claim order, scheduled and leased by time,
        finished ones newest first."""
        return self.run(ops.jobs(self, queue, state, limit, offset))

    def stats(self, queue: str) -> dict[str, Any]:
        """Jobs per state, ``paused``, ``latency`` (seconds the oldest ready job has
        waited), ``totals`` (lifetime enqueued/completed/failed/retried/dead),
        ``retention`` and ``limits`` (``limits()``)."""
        return self.run(ops.stats(self, queue))

    def queues(self) -> list[str]:
        """Every queue in use (not removed with ``remove_queue``), sorted."""
        return sorted(str(ops.text(q)) for q in self.scripts.command("SMEMBERS", queues_key(self.prefix)))

    def current_lease(self, queue: str, job_id: str) -> tuple[str | None, str | None, str | None]:
        """(state, lease token, worker id) of a job as stored now; (None, None, None) when
        the job does not exist. The token only names the lease: a write with it is fenced
        in Lua."""
        state, token, worker = self.scripts.command("HMGET", self.keys(queue).job(job_id), "s", "t", "w")
        return ops.text(state), ops.text(token), ops.text(worker)

    def leases_of(self, queue: str, worker_id: str, limit: int = 1000) -> list[Lease]:
        """The live leases ``worker_id`` holds in ``queue`` (the first ``limit`` leased jobs
        by expiry are looked at), with their tokens."""
        held = [info for info in self.jobs(queue, "leased", limit=limit) if info.worker_id == worker_id]
        if not held:
            return []
        k = self.keys(queue)
        tokens = self.scripts.pipeline([("HGET", k.job(info.id), "t") for info in held])
        return [Lease(info.id, queue, str(ops.text(t))) for info, t in zip(held, tokens) if t is not None]

    # ------------------------------------------------------------------ administering
    def cancel(self, queue: str, job_id: str) -> bool:
        """Cancel a scheduled, ready or leased job; False if it has finished already,
        JobNotFound if it does not exist."""
        return self.run(ops.cancel(self, queue, job_id))

    def replay_dead(self, queue: str, job_ids: Iterable[str] | None = None) -> int:
        """Move dead jobs (all, or those of ``job_ids``) back to ready with attempts reset;
        returns how many. A job whose ``unique_key`` another unfinished job holds now
        stays dead, the reason added to its errors (and logged as a warning)."""
        step = defaults.BATCH_MAX
        replayed = 0
        refused: list[str] = []
        if job_ids is None:  # oldest first; the refused stay in front, so later calls skip them
            while True:
                done = self.run(ops.replay_dead(self, queue, step, len(refused)))
                replayed += done.replayed
                refused += done.refused
                if done.replayed + done.refused_count < step:
                    break
        else:
            ids = [validate.identifier(i, "job id") for i in job_ids]
            for i in range(0, len(ids), step):
                done = self.run(ops.replay_dead(self, queue, step, 0, ids[i:i + step]))
                replayed += done.replayed
                refused += done.refused
        if refused:
            log.warning("replay queue=%s: %d dead job(s) stay dead, their unique key held by an unfinished "
                        "job: %s", queue, len(refused), " ".join(refused[:20]) + (" ..." if len(refused) > 20 else ""))
        return replayed

    def purge(self, queue: str, state: str) -> int:
        """Delete every job in ``state`` for good; returns how many. Waiting children of
        the unfinished jobs deleted are cancelled (``DependencyFailed: ... is deleted``)."""
        total = 0
        while True:
            deleted, taken = self.run(ops.purge(self, queue, state, defaults.BATCH_MAX))
            total += deleted
            if taken < defaults.BATCH_MAX:
                return total

    def pause(self, queue: str, reason: str | None = None) -> bool:
        """Stop handing out jobs of ``queue``; True if it was running. The time and the
        ``reason`` are kept until it is resumed (``paused_info``)."""
        op = ops.pause(self, queue, reason)
        self._register_queue(queue)
        return self.run(op)

    def set_priority(self, queue: str, job_id: str, priority: int) -> int | None:
        """Change the priority of a job not leased yet (waiting, scheduled or ready: a
        ready job moves to its new band in place, keeping its place among equals);
        returns its old priority, or None when it is leased or finished (nothing
        changed). JobNotFound when there is no such job."""
        changed, old = self.run(ops.set_priority(self, queue, job_id, priority))
        return int(old) if changed else None

    def resume(self, queue: str) -> bool:
        """Hand out jobs of ``queue`` again; True if it was paused."""
        return self.run(ops.resume(self, queue))

    def _planned(self, step: Callable[[int], Op[tuple[int, int]]]) -> tuple[int, int]:
        """Run a budgeted ``(moved, next_ms)`` script step until it moves less than its
        budget; returns the total moved and the last next_ms."""
        total = 0
        while True:
            moved, next_ms = self.run(step(defaults.BATCH_MAX))
            total += moved
            if moved < defaults.BATCH_MAX:
                return total, next_ms

    def promote(self, queue: str) -> int:
        """Move due scheduled jobs to ready; returns how many."""
        return self._promote(queue, plan=False)[0]

    def _promote(self, queue: str, *, plan: bool) -> tuple[int, int]:
        """promote.lua; with ``plan`` it also stores the scheduler's next visit of the queue
        in its meta hash and returns it (-1: none; the caller stores it in rp:due)."""
        return self._planned(lambda budget: ops.promote(self, queue, budget, plan))

    def sweep(self, queue: str, worker_id: str | None = None) -> int:
        """Requeue jobs whose lease expired (dead after the last attempt) and trim finished
        jobs; with ``worker_id``, take back every lease that worker holds."""
        return self._sweep(queue, worker_id=worker_id, plan=False)[0]

    def _sweep(self, queue: str, *, worker_id: str | None = None, plan: bool) -> tuple[int, int]:
        """sweep.lua; with ``plan`` it also stores the sweeper's next visit of the queue in
        its meta hash and returns it (-1: none; the caller stores it in rp:due)."""
        return self._planned(lambda budget: ops.sweep(self, queue, budget, worker_id, plan))
