"""The Engine: one method per queue operation.

Each method validates its input (before anything is written), builds the queue's keys,
runs one Lua script and decodes the reply. The worker, the daemons, the CLI and the HTTP
server all talk to Redis through this class only.
"""
from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable, Sequence, TypeVar

import redis

from . import blocking, codec, defaults, validate
from .errors import InvalidOption, LeaseLost, NotDurable
from .errors import reports_unreachable as _redis_errors
from .keys import STATES, QueueKeys, check_queue, queue_keys, queues_key
from .queues import QueuesMixin
from .models import Job, JobInfo
from .connection import engine_options
from .cues import CuesMixin
from .history import HistoryMixin
from .registry import WorkersMixin
from .registry import _worker_id as _registry_worker_id
from .retention import RetentionMixin
from .scripts import Call, Scripts

F = TypeVar("F", bound=Callable[..., Any])
JobRef = Any  # a Job, or any object with .id and .token (e.g. an HTTP client's lease)
# claim.lua's reply (and ack.lua's, after its results): wait_ms, now_ms, scheduler_at,
# sweeper_at, then the jobs
CLAIM_JOBS_AT = 4
JOBS_AFTER_NOW = 3  # now_ms is three places before the first job
TERMINAL = ("done", "dead", "cancelled")
log = logging.getLogger("redispool.engine")


def _text(value: bytes | str | None) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


@dataclass
class AckResult:
    """Outcome of ``Engine.ack``: per completion True/False (lease lost), per failure the
    new state or None (lease lost), the next batch of jobs when one was asked for, and
    ``wait``: when that batch came back empty, seconds until the earliest scheduled job
    is due (None: nothing scheduled, or the queue is paused)."""

    completed: list[bool] = field(default_factory=list)
    failed: list[str | None] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    wait: float | None = None


class Engine(CuesMixin, HistoryMixin, WorkersMixin, RetentionMixin, QueuesMixin):
    """A redispool queue engine on one Redis (or Cluster) client. Thread-safe."""

    def __init__(self, client: Any, *, url: str = "", prefix: str = defaults.PREFIX,
                 lease: float = defaults.LEASE_S,
                 backoff_base: float = defaults.BACKOFF_BASE_S,
                 backoff_cap: float = defaults.BACKOFF_CAP_S,
                 done_ttl: float = defaults.DONE_TTL_S, done_max: int = defaults.DONE_MAX,
                 dead_ttl: float = defaults.DEAD_TTL_S, dead_max: int = defaults.DEAD_MAX,
                 durable: bool | None = None, durable_timeout: float | None = None) -> None:
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
        self.durable, durable_ms = self._durability(url, durable, durable_timeout)
        self.scripts = Scripts(client, durable_timeout_ms=durable_ms, url=url)
        self._init_queues()

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

    def keys(self, queue: str) -> QueueKeys:
        return queue_keys(self.prefix, queue)

    @_redis_errors
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
    def _run_write(self, call: Call, followups: Callable[[Sequence[Any]], list[Any]]) -> Any:
        """Run a writer script, then send the registry / due-set commands its reply asks
        for (queues.py), also when the write was not durable (it was applied)."""
        try:
            reply = self.scripts.run(*call)
        except NotDurable as exc:
            if exc.reply is not None:
                self._send_followups(followups(exc.reply))
            raise
        self._send_followups(followups(reply))
        return reply

    def _job_args(self, payload: Any, *, priority: int, delay: float | None,
                  run_at: datetime | float | None, max_attempts: int, lease: float | None,
                  unique_key: str | None, job_id: str | None,
                  backoff_base: float | None, backoff_cap: float | None) -> list[Any]:
        """The 10 enqueue.lua values of one job, every option validated."""
        if delay is not None and run_at is not None:
            raise InvalidOption("give delay or run_at, not both")
        return [
            codec.encode(payload, check=True),
            validate.job_id(job_id),
            validate.identifier(unique_key, "unique_key"),
            validate.priority(priority),
            validate.delay_ms(delay),
            validate.run_at_ms(run_at),
            validate.max_attempts(max_attempts),
            validate.lease_ms(lease),
            0 if backoff_base is None else validate.seconds_to_ms(backoff_base, "backoff_base", allow_zero=False),
            0 if backoff_cap is None else validate.seconds_to_ms(backoff_cap, "backoff_cap", allow_zero=False),
        ]

    # Each hot-path operation is a ``_<op>_call`` building the script call and, where the
    # reply needs decoding, a ``_<op>_reply``: this Engine runs the call with Scripts.run,
    # the async one (aio.py) with AsyncScripts.run, and both decode it the same way.
    def _enqueue_call(self, queue: str, args: list[Any]) -> Call:
        k = self.keys(queue)
        return Call("enqueue", [k.ready, k.scheduled, k.marker, k.meta, k.unique, k.counts, k.job_prefix], args)

    @staticmethod
    def _enqueue_reply(reply: Sequence[Any]) -> list[tuple[str, bool]]:
        """(id, created) per job; the last two values are enqueue.lua's follow-ups."""
        return [(_text(reply[i]), reply[i + 1] == 1) for i in range(0, len(reply) - 2, 2)]

    def _enqueue_followups(self, queue: str, reply: Sequence[Any]) -> list[Any]:
        return self._followups(queue, new_queue=reply[-2], scheduler_at=reply[-1])

    @_redis_errors
    def _run_enqueue(self, queue: str, args: list[Any]) -> list[tuple[str, bool]]:
        reply = self._run_write(self._enqueue_call(queue, args), lambda r: self._enqueue_followups(queue, r))
        return self._enqueue_reply(reply)

    def enqueue_specs(self, queue: str, specs: Sequence[list[Any]]) -> list[tuple[str, bool]]:
        """Create jobs from already validated ``_job_args`` lists in one round trip;
        returns (id, created) per job (created is False for an existing job)."""
        args: list[Any] = [len(specs), 0]
        for spec in specs:
            args.extend(spec)
        return self._run_enqueue(queue, args)

    def enqueue(self, queue: str, payload: Any = None, *, priority: int = 0,
                delay: float | None = None, run_at: datetime | float | None = None,
                max_attempts: int = defaults.MAX_ATTEMPTS, lease: float | None = None,
                unique_key: str | None = None, job_id: str | None = None,
                backoff_base: float | None = None, backoff_cap: float | None = None) -> str:
        """Add one job; returns its id (the existing job's id for a duplicate job_id or
        an unfinished job holding ``unique_key``; ``enqueue_or_get`` tells them apart)."""
        return self.enqueue_or_get(queue, payload, priority=priority, delay=delay, run_at=run_at,
                                   max_attempts=max_attempts, lease=lease, unique_key=unique_key,
                                   job_id=job_id, backoff_base=backoff_base, backoff_cap=backoff_cap)[0]

    def enqueue_or_get(self, queue: str, payload: Any = None, *, priority: int = 0,
                       delay: float | None = None, run_at: datetime | float | None = None,
                       max_attempts: int = defaults.MAX_ATTEMPTS, lease: float | None = None,
                       unique_key: str | None = None, job_id: str | None = None,
                       backoff_base: float | None = None,
                       backoff_cap: float | None = None) -> tuple[str, bool]:
        """``enqueue`` that says whether it created the job: ``(id, True)`` for a new job,
        ``(existing id, False)`` for a duplicate job_id or a held ``unique_key`` (nothing
        is written then)."""
        check_queue(queue)
        spec = self._job_args(payload, priority=priority, delay=delay, run_at=run_at,
                              max_attempts=max_attempts, lease=lease, unique_key=unique_key,
                              job_id=job_id, backoff_base=backoff_base, backoff_cap=backoff_cap)
        return self._run_enqueue(queue, [1, 1, *spec[1:], spec[0]])[0]

    def enqueue_many(self, queue: str, payloads: Iterable[Any], *, priority: int = 0,
                     delay: float | None = None, run_at: datetime | float | None = None,
                     max_attempts: int = defaults.MAX_ATTEMPTS, lease: float | None = None,
                     backoff_base: float | None = None,
                     backoff_cap: float | None = None) -> list[str]:
        """Add many jobs with the same options in one round trip; returns their ids."""
        check_queue(queue)
        payloads = list(payloads)
        if not payloads:
            return []
        first = self._job_args(payloads[0], priority=priority, delay=delay, run_at=run_at,
                               max_attempts=max_attempts, lease=lease, unique_key=None,
                               job_id=None, backoff_base=backoff_base, backoff_cap=backoff_cap)
        encode = codec.encode
        args = [len(payloads), 1, *first[1:], first[0], *[encode(p, check=True) for p in payloads[1:]]]
        return [job_id for job_id, _ in self._run_enqueue(queue, args)]

    # ------------------------------------------------------------------ consuming
    def _jobs_from(self, queue: str, worker_id: str, reply: Sequence[Any], start: int) -> list[Job]:
        """Decode claim.lua's job list; a job whose payload cannot be decoded goes to dead."""
        jobs, broken = self._decode_jobs(queue, worker_id, reply, start)
        for job, error in broken:  # never hand a worker a payload it cannot read
            try:
                self.fail(job, error, retry=False)
            except LeaseLost:
                pass
        return jobs

    @staticmethod
    def _decode_jobs(queue: str, worker_id: str, reply: Sequence[Any],
                     start: int) -> tuple[list[Job], list[tuple[Job, str]]]:
        """claim.lua's job list (starting at ``start``, after wait_ms, now_ms and the planned
        times): the jobs, and (job, error) for those whose payload cannot be decoded."""
        now_ms = int(reply[start - JOBS_AFTER_NOW])
        jobs, broken = [], []
        for i in range(start, len(reply), 6):
            job = Job(id=_text(reply[i]), queue=queue, payload=None, attempt=int(reply[i + 2]),
                      max_attempts=int(reply[i + 3]), token=str(reply[i + 1]), worker_id=worker_id,
                      lease=int(reply[i + 4]) / 1000, lease_expires_at=(now_ms + int(reply[i + 4])) / 1000)
            try:
                job.payload = codec.decode(reply[i + 5])
            except Exception as exc:
                broken.append((job, f"{type(exc).__name__}: {exc}"))
                continue
            jobs.append(job)
        return jobs, broken

    def _claim_call(self, queue: str, worker_id: str, limit: int, lease_ms: int) -> Call:
        """claim.lua; its reply is wait_ms, now_ms, scheduler_at, sweeper_at, then the jobs
        (``_decode_jobs(..., CLAIM_JOBS_AT)``; the planned times: ``_claim_followups``)."""
        k = self.keys(queue)
        return Call("claim", [k.ready, k.leased, k.scheduled, k.marker, k.meta, k.unique, k.counts, k.dead,
                              k.job_prefix], [worker_id, limit, lease_ms])

    def _claim_followups(self, queue: str, reply: Sequence[Any], at: int = 0) -> list[Any]:
        """The planned times of a claim header starting at ``reply[at]`` (claim or ack)."""
        return self._followups(queue, scheduler_at=reply[at + 2], sweeper_at=reply[at + 3])

    def _claim_once(self, queue: str, worker_id: str, limit: int, lease_ms: int) -> tuple[list[Job], int]:
        reply = self.scripts.run(*self._claim_call(queue, worker_id, limit, lease_ms))
        self._send_followups(self._claim_followups(queue, reply))
        return self._jobs_from(queue, worker_id, reply, CLAIM_JOBS_AT), int(reply[0])

    @_redis_errors
    def claim(self, queue: str, worker_id: str, *, limit: int = 1, lease: float | None = None,
              block: float | None = None) -> list[Job]:
        """Lease up to ``limit`` ready jobs. With ``block`` seconds, wait that long for a
        job when none is ready, woken by the queue's marker (no polling)."""
        check_queue(queue)
        worker_id = self._worker_id(worker_id)
        limit = self._limit(limit)
        lease_ms = validate.lease_ms(lease) or self.lease_ms
        deadline = None if block is None else time.monotonic() + validate.seconds_to_ms(block, "block") / 1000
        while True:
            jobs, wait_ms = self._claim_once(queue, worker_id, limit, lease_ms)
            if jobs or deadline is None:
                return jobs
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            if wait_ms >= 0:
                remaining = min(remaining, wait_ms / 1000 + 0.001)
            self.wait_for_jobs([queue], remaining)

    @_redis_errors
    def claim_with_due(self, queue: str, worker_id: str, *, limit: int = 1,
                       lease: float | None = None) -> tuple[list[Job], float | None]:
        """``claim()`` without waiting that also says, when it leased nothing, in how many
        seconds the queue's earliest scheduled job falls due (None: none is scheduled, the
        queue is paused, or jobs were leased): a worker waiting on several queues wakes then."""
        check_queue(queue)
        lease_ms = validate.lease_ms(lease) or self.lease_ms
        jobs, wait_ms = self._claim_once(queue, self._worker_id(worker_id), self._limit(limit), lease_ms)
        return jobs, (wait_ms / 1000 if wait_ms >= 0 and not jobs else None)

    @_redis_errors
    def wait_for_jobs(self, queues: Sequence[str], timeout: float) -> str | None:
        """Block up to ``timeout`` seconds until one of ``queues`` may have a ready job;
        returns that queue's name, or None on timeout. Markers of one Cluster slot only.
        The read of the reply is allowed ``timeout`` plus the client's read timeout."""
        markers = [self.keys(q).marker for q in queues]
        popped = blocking.bzpopmin(self.client, markers, max(0.001, timeout))
        if not popped:
            return None
        marker = _text(popped[0])
        return next(q for q, m in zip(queues, markers) if m == marker)

    @staticmethod
    def _worker_id(worker_id: str) -> str:
        """The registry's rule, so an id claim() takes is one a Worker can register."""
        return _registry_worker_id(worker_id)

    @staticmethod
    def _limit(limit: int) -> int:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= defaults.BATCH_MAX:
            raise InvalidOption(f"limit must be an integer in [1, {defaults.BATCH_MAX}], got {limit!r}")
        return limit

    @staticmethod
    def _error_text(error: Any) -> str:
        if isinstance(error, BaseException):  # "Boom: message", or "Boom" without one
            error = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        return str(error)[: defaults.ERROR_MAX_CHARS]

    def _fail_args(self, job: JobRef, error: Any, retry: bool, delay: float | None) -> list[Any]:
        return [job.id, job.token, self._error_text(error), 1 if retry else 0,
                -1 if delay is None else validate.delay_ms(delay)]

    def _lease_lost(self, job: JobRef) -> LeaseLost:
        return LeaseLost(f"job {job.id} in queue {job.queue} is not leased with token {job.token} any more")

    def _complete_call(self, job: JobRef, result: Any) -> Call:
        k = self.keys(job.queue)
        return Call("complete", [k.leased, k.done, k.unique, k.counts, k.job_prefix, k.config],
                    [self.done_ttl_ms, self.done_max, 1, job.id, job.token, codec.encode(result, "result")])

    def _complete_reply(self, job: JobRef, reply: Sequence[Any]) -> None:
        if reply[0] != 1:
            raise self._lease_lost(job)

    @_redis_errors
    def complete(self, job: JobRef, result: Any = None) -> None:
        """Mark a leased job done, storing ``result``; LeaseLost if the lease is gone."""
        self._complete_reply(job, self.scripts.run(*self._complete_call(job, result)))

    @_redis_errors
    def fail(self, job: JobRef, error: Any, *, retry: bool = True, delay: float | None = None) -> str:
        """Record a failed attempt; returns the new state: ``scheduled`` (a retry after
        ``delay`` or exponential backoff with jitter) or ``dead``."""
        reply = self._run_write(self._fail_call(job, error, retry, delay),
                                lambda r: self._followups(job.queue, scheduler_at=r[-1]))
        return self._fail_reply(job, reply)

    def _fail_call(self, job: JobRef, error: Any, retry: bool, delay: float | None) -> Call:
        k = self.keys(job.queue)
        return Call("fail", [k.leased, k.scheduled, k.dead, k.marker, k.unique, k.counts, k.job_prefix, k.config,
                              k.meta],
                    [self.dead_ttl_ms, self.dead_max, self.backoff_base_ms, self.backoff_cap_ms,
                     random.getrandbits(31), 1] + self._fail_args(job, error, retry, delay))

    def _fail_reply(self, job: JobRef, reply: Sequence[Any]) -> str:
        if reply[0] == 0:
            raise self._lease_lost(job)
        return _text(reply[0])

    @_redis_errors
    def heartbeat(self, job: JobRef, lease: float | None = None) -> float:
        """Extend a job's lease (by ``lease`` or the lease it was claimed with); returns the
        new expiry in unix seconds. LeaseLost if the lease is gone."""
        return self.heartbeat_many(job.queue, [job], lease=lease)[0] or self._raise(self._lease_lost(job))

    def heartbeat_many(self, queue: str, jobs: Sequence[JobRef], lease: float | None = None) -> list[float | None]:
        """Extend many leases of one queue in one call; None where the lease is lost."""
        if not jobs:
            return []
        return self._heartbeat_reply(self.scripts.run(*self._heartbeat_call(queue, jobs, lease)))

    def _heartbeat_call(self, queue: str, jobs: Sequence[JobRef], lease: float | None) -> Call:
        lease_ms = validate.lease_ms(lease)
        args: list[Any] = [len(jobs)]
        for job in jobs:
            job_lease = getattr(job, "lease", None)
            args += [job.id, job.token, lease_ms or (round(job_lease * 1000) if job_lease else self.lease_ms)]
        k = self.keys(queue)
        return Call("heartbeat", [k.leased, k.job_prefix], args)

    @staticmethod
    def _heartbeat_reply(reply: Sequence[Any]) -> list[float | None]:
        return [int(r) / 1000 if r else None for r in reply]

    @staticmethod
    def _raise(exc: Exception) -> Any:
        raise exc

    @_redis_errors
    def release(self, job: JobRef) -> None:
        """Give a leased job back to ready without counting the attempt."""
        self.scripts.run(*self._release_call(job))

    def _release_call(self, job: JobRef) -> Call:
        k = self.keys(job.queue)
        return Call("release", [k.ready, k.leased, k.marker, k.meta, k.job_prefix], [job.id, job.token])

    @_redis_errors
    def ack(self, queue: str, *, completed: Iterable[tuple[JobRef, Any]] = (),
            failed: Iterable[tuple] = (), worker_id: str | None = None, limit: int = 0,
            lease: float | None = None) -> AckResult:
        """Finish many leased jobs of one queue and, with ``worker_id`` and ``limit``, lease
        the next batch, all in one round trip. ``completed`` holds (job, result) pairs;
        ``failed`` holds (job, error) or (job, error, retry, delay). A lost lease spoils
        only its own item."""
        call, nc, nf = self._ack_call(queue, completed, failed, worker_id, limit, lease)
        k = self.keys(queue)
        try:
            reply = self._run_write(call, lambda r: self._claim_followups(queue, r, nc + nf))
        except NotDurable as exc:  # the caller never sees the batch it leased: give it back
            for i in range(nc + nf + CLAIM_JOBS_AT, len(exc.reply or ()), 6):
                self.scripts.run("release", [k.ready, k.leased, k.marker, k.meta, k.job_prefix],
                                 [exc.reply[i], exc.reply[i + 1]])
            if isinstance(exc.reply, (list, tuple)):  # what was applied on the primary
                exc.result = self._ack_reply(exc.reply, nc, nf)  # type: ignore[attr-defined]
            raise
        result = self._ack_reply(reply, nc, nf)
        result.jobs = self._jobs_from(queue, worker_id or "", reply, nc + nf + CLAIM_JOBS_AT)
        return result

    def _ack_call(self, queue: str, completed: Iterable[tuple[JobRef, Any]], failed: Iterable[tuple],
                  worker_id: str | None, limit: int, lease: float | None) -> tuple[Call, int, int]:
        """ack.lua's call, and how many completions and failures it carries."""
        check_queue(queue)
        done_args: list[Any] = []
        for job, result in completed:
            done_args += [job.id, job.token, codec.encode(result, "result")]
        fail_args: list[Any] = []
        for item in failed:
            item = tuple(item)
            job, error, retry, delay = item + (True, None)[len(item) - 2:]
            fail_args += self._fail_args(job, error, retry, delay)
        nc, nf = len(done_args) // 3, len(fail_args) // 5
        if limit:
            worker_id = self._worker_id(worker_id)
            limit = self._limit(limit)
        lease_ms = validate.lease_ms(lease) or self.lease_ms
        k = self.keys(queue)
        call = Call("ack", [k.ready, k.leased, k.scheduled, k.done, k.dead, k.marker, k.meta, k.unique,
                            k.counts, k.job_prefix, k.config],
                    [self.done_ttl_ms, self.done_max, self.dead_ttl_ms, self.dead_max, self.backoff_base_ms,
                     self.backoff_cap_ms, random.getrandbits(31), worker_id or "", limit, lease_ms, nc]
                    + done_args + [nf] + fail_args)
        return call, nc, nf

    @staticmethod
    def _ack_reply(reply: Sequence[Any], nc: int, nf: int) -> AckResult:
        """ack.lua's reply without its jobs (``_decode_jobs(..., nc + nf + CLAIM_JOBS_AT)``)."""
        wait_ms = int(reply[nc + nf])
        return AckResult(completed=[r == 1 for r in reply[:nc]],
                         failed=[_text(r) if r != 0 else None for r in reply[nc:nc + nf]],
                         wait=wait_ms / 1000 if wait_ms >= 0 else None)

    # ------------------------------------------------------------------ inspecting
    def _info(self, queue: str, job_id: str, fields: dict[bytes, bytes], score: Any = None) -> JobInfo:
        f = {_text(key): value for key, value in fields.items()}

        def num(name: str, default: int = 0) -> int:  # a damaged field shows as the default
            try:
                return int(f.get(name, default))
            except (TypeError, ValueError):
                return default

        state = _text(f.get("s")) or "ready"
        created = num("c") / 1000
        try:
            errors = [(int(a), str(e), int(at) / 1000) for a, e, at in json.loads(f["e"])] if f.get("e") else []
        except (TypeError, ValueError):
            errors = [(0, f"<unreadable error list: {_text(f['e'])[:200]}>", 0.0)]
        score_s = float(score) / 1000 if score is not None else None
        lease = num("l")
        try:
            payload = codec.decode(f.get("p"))
        except Exception as exc:
            payload = f"<undecodable payload: {exc}>"
        try:
            result = codec.decode(f.get("res"), "result")
        except Exception as exc:
            result = f"<undecodable result: {exc}>"
        updated = num("u") / 1000
        dropped = {name: num(field) if f.get(field) is not None else None for name, field in
                   (("payload_dropped", "pd"), ("result_dropped", "rd"))}
        return JobInfo(
            id=job_id, queue=queue, state=state, payload=payload,
            attempts=num("a"), max_attempts=num("m", 1), priority=num("r"), result=result,
            error=errors[0][1] if errors else None, worker_id=_text(f.get("w")),
            created_at=created, updated_at=updated or created, errors=errors,
            unique_key=_text(f.get("k")), lease=lease / 1000 if lease else None,
            run_at=score_s if state == "scheduled" else None,
            lease_expires_at=score_s if state == "leased" else None,
            finished_at=(updated or None) if state in TERMINAL else None, **dropped)

    @_redis_errors
    def get(self, queue: str, job_id: str) -> JobInfo | None:
        """A job's record, or None when it does not exist (or was trimmed)."""
        k = self.keys(queue)
        fields = self.client.hgetall(k.job(job_id))
        if not fields:
            return None
        state = _text(fields.get(b"s"))
        score = self.client.zscore(k.state(state), job_id) if state in ("scheduled", "leased") else None
        return self._info(queue, job_id, fields, score)

    @_redis_errors
    def jobs(self, queue: str, state: str, *, limit: int = 100, offset: int = 0) -> list[JobInfo]:
        """A page of one state's jobs: ready in claim order, scheduled and leased by time,
        finished ones newest first."""
        return self._jobs_reply(queue, self.scripts.run(*self._jobs_call(queue, state, limit, offset)))

    def _jobs_call(self, queue: str, state: str, limit: int, offset: int) -> Call:
        k = self.keys(queue)
        set_key = k.state(str(state))
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidOption(f"limit must be a positive integer, got {limit!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidOption(f"offset must be an integer >= 0, got {offset!r}")
        return Call("jobs", [set_key, k.job_prefix], [offset, limit, 1 if str(state) in TERMINAL else 0])

    def _jobs_reply(self, queue: str, reply: Sequence[Any]) -> list[JobInfo]:
        infos = []
        for i in range(0, len(reply), 3):
            flat = reply[i + 2]
            infos.append(self._info(queue, _text(reply[i]), dict(zip(flat[::2], flat[1::2])), reply[i + 1]))
        return infos

    @_redis_errors
    def stats(self, queue: str) -> dict[str, Any]:
        """Jobs per state, ``paused``, ``latency`` (seconds the oldest ready job has
        waited) and ``totals`` (lifetime enqueued/completed/failed/retried/dead)."""
        return self._stats_reply(queue, self.scripts.run(*self._stats_call(queue)))

    def _stats_call(self, queue: str) -> Call:
        k = self.keys(queue)
        return Call("stats", [k.scheduled, k.ready, k.leased, k.done, k.dead, k.cancelled,
                              k.meta, k.counts, k.job_prefix, k.config], [])

    def _stats_reply(self, queue: str, reply: Sequence[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"queue": queue}
        out.update({state: int(n) for state, n in zip(STATES, reply[:6])})
        out["paused"] = reply[6] == 1
        out["latency"] = int(reply[7]) / 1000
        totals = {name: 0 for name in ("enqueued", "completed", "failed", "retried", "dead")}
        totals.update({_text(reply[i]): int(reply[i + 1]) for i in range(10, len(reply), 2)})
        out["totals"] = totals
        config = reply[9]
        out["retention"] = self._retention_reply(dict(zip(config[::2], config[1::2])))
        return out

    @_redis_errors
    def queues(self) -> list[str]:
        """Every queue in use (not removed with ``remove_queue``), sorted."""
        return sorted(_text(q) for q in self.client.smembers(queues_key(self.prefix)))

    # ------------------------------------------------------------------ administering
    @_redis_errors
    def cancel(self, queue: str, job_id: str) -> bool:
        """Cancel a scheduled, ready or leased job; False if it has finished already,
        JobNotFound if it does not exist."""
        k = self.keys(queue)
        reply = self.scripts.run(
            "cancel", [k.scheduled, k.ready, k.leased, k.cancelled, k.marker, k.meta, k.unique, k.job_prefix,
                       k.config],
            [job_id, self.done_ttl_ms, self.done_max])
        return reply == 1

    def _repeat(self, step: Callable[[int], int], budget: int = defaults.BATCH_MAX) -> int:
        """Run a budgeted script step until it moves less than its budget."""
        total = 0
        while True:
            moved = step(budget)
            total += moved
            if moved < budget:
                return total

    @_redis_errors
    def replay_dead(self, queue: str, job_ids: Iterable[str] | None = None) -> int:
        """Move dead jobs (all, or those of ``job_ids``) back to ready with attempts reset;
        returns how many. A job whose ``unique_key`` another unfinished job holds now
        stays dead, the reason added to its errors (and logged as a warning)."""
        k = self.keys(queue)
        keys = [k.dead, k.ready, k.marker, k.meta, k.unique, k.job_prefix]
        step = defaults.BATCH_MAX
        replayed = 0
        refused: list[str] = []
        if job_ids is None:  # oldest first; the refused stay in front, so later calls skip them
            while True:
                reply = self.scripts.run("replay", keys, [step, len(refused)])
                replayed += int(reply[0])
                refused += [str(_text(r)) for r in reply[2:]]
                if int(reply[0]) + int(reply[1]) < step:
                    break
        else:
            ids = [validate.identifier(i, "job id") for i in job_ids]
            for i in range(0, len(ids), step):
                reply = self.scripts.run("replay", keys, [step, 0] + ids[i:i + step])
                replayed += int(reply[0])
                refused += [str(_text(r)) for r in reply[2:]]
        if refused:
            log.warning("replay queue=%s: %d dead job(s) stay dead, their unique key held by an unfinished "
                        "job: %s", queue, len(refused), " ".join(refused[:20]) + (" ..." if len(refused) > 20 else ""))
        return replayed

    @_redis_errors
    def purge(self, queue: str, state: str) -> int:
        """Delete every job in ``state`` for good; returns how many."""
        k = self.keys(queue)
        keys = [k.state(str(state)), k.marker, k.meta, k.ready, k.unique, k.job_prefix]
        return self._repeat(lambda budget: self.scripts.run("purge", keys, [budget]))

    @_redis_errors
    def pause(self, queue: str) -> bool:
        """Stop handing out jobs of ``queue``; True if it was running."""
        k = self.keys(queue)
        self._register_queue(queue)
        return self.scripts.run("pause", [k.meta, k.marker], []) == 1

    @_redis_errors
    def resume(self, queue: str) -> bool:
        """Hand out jobs of ``queue`` again; True if it was paused."""
        k = self.keys(queue)
        return self.scripts.run("resume", [k.meta, k.marker, k.ready], []) == 1

    def _planned(self, run: Callable[[int], Sequence[Any]]) -> tuple[int, int]:
        """Run a budgeted ``{moved, next_ms}`` script step until it moves less than its
        budget; returns the total moved and the last next_ms."""
        total = 0
        while True:
            moved, next_ms = (int(x) for x in run(defaults.BATCH_MAX))
            total += moved
            if moved < defaults.BATCH_MAX:
                return total, next_ms

    @_redis_errors
    def promote(self, queue: str) -> int:
        """Move due scheduled jobs to ready; returns how many."""
        return self._promote(queue, plan=False)[0]

    def _promote(self, queue: str, *, plan: bool) -> tuple[int, int]:
        """promote.lua; with ``plan`` it also stores the scheduler's next visit of the queue
        in its meta hash and returns it (-1: none; the caller stores it in rp:due)."""
        k = self.keys(queue)
        keys = [k.scheduled, k.ready, k.marker, k.meta, k.job_prefix, k.cue_next]
        return self._planned(lambda budget: self.scripts.run("promote", keys, [budget, int(plan)]))

    @_redis_errors
    def sweep(self, queue: str, worker_id: str | None = None) -> int:
        """Requeue jobs whose lease expired (dead after the last attempt) and trim finished
        jobs; with ``worker_id``, take back every lease that worker holds."""
        return self._sweep(queue, worker_id=worker_id, plan=False)[0]

    def _sweep(self, queue: str, *, worker_id: str | None = None, plan: bool) -> tuple[int, int]:
        """sweep.lua; with ``plan`` it also stores the sweeper's next visit of the queue in
        its meta hash and returns it (-1: none; the caller stores it in rp:due)."""
        k = self.keys(queue)
        keys = [k.leased, k.ready, k.done, k.dead, k.cancelled, k.marker, k.meta, k.unique,
                k.counts, k.job_prefix, k.config]
        return self._planned(lambda budget: self.scripts.run(
            "sweep", keys, [budget, self.done_ttl_ms, self.done_max, self.dead_ttl_ms,
                            self.dead_max, worker_id or "", int(plan)]))
