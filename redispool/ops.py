"""Every script call as a value: one function per ``lua/<name>.lua``, of the same name.

``ops.claim(settings, queue, worker_id, ...)`` checks its arguments and returns an
``Op``: the script's name, where its KEYS come from (``Scripts`` binds them *by name*
from the script's header: ``-- KEYS[3] rp:{q}:scheduled`` is ``QueueKeys.scheduled``, so
no caller orders keys by hand), its ARGV, the parser of its reply and, for the scripts
that plan daemon work or create a queue, the follow-up commands the reply asks for
(queues.py). The sync ``Engine`` runs an Op with ``self.run(op)`` and the async one with
``await self.run(op)``: the same keys, arguments and decoding on both, as redis-py
shares one command builder between its two clients.

``settings`` is the Engine (``Settings``: its prefix, default lease, retention and
backoff); a parser that needs nothing else is a plain function of the reply.
"""
from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from . import codec, defaults, validate
from .errors import InvalidOption, LeaseLost, QueueNotEmpty
from .keys import STATES, DueKeys, QueueKeys, RegistryKeys, StateKeys, check_queue, due_key, queue_keys, queues_key
from .models import AckResult, Job, JobInfo, LeaseRef, WorkerInfo

T = TypeVar("T")
TERMINAL = ("done", "dead", "cancelled")
# claim.lua's reply (and ack.lua's, after its results): wait_ms, now_ms, scheduler_at,
# sweeper_at, then 7 values per job (id, token, attempt, max_attempts, lease_ms,
# timeout_ms, payload)
CLAIM_JOBS_AT = 4
PER_JOB = 7
Followup = tuple[str, str, str, int]   # (command, key, queue, score): sadd | zadd_lt


class Settings(Protocol):
    """What the builders read from the Engine: key prefix and default options."""

    prefix: str
    lease_ms: int
    done_ttl_ms: int
    done_max: int
    dead_ttl_ms: int
    dead_max: int
    backoff_base_ms: int
    backoff_cap_ms: int
    events_max: int        # cap of each queue's event log (0: no events); the scripts' events_max


def _reply(reply: Any) -> Any:
    return reply


@dataclass(slots=True)
class Op(Generic[T]):
    """One script run: ``script``, the object its header's KEYS are read from by name,
    ``args`` (ARGV), ``parse`` (reply -> result), ``followups`` (reply -> the plain
    commands to send after it; None: none) and ``drains`` (reply -> the queues whose
    rp:{q}:outbox to drain next: children of finished jobs waiting in other queues)."""

    script: str
    keys: Any
    args: list[Any]
    parse: Callable[[Any], T] = _reply
    followups: Callable[[Any], list[Followup]] | None = None
    drains: Callable[[Any], list[str]] | None = None


# ---------------------------------------------------------------------- shared pieces
def text(value: bytes | str | None) -> str | None:
    """A reply value as text (undecodable bytes replaced); None stays None."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _str(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def followups(prefix: str, queue: str, new_queue: Any = 0, scheduler_at: Any = -1,
              sweeper_at: Any = -1) -> list[Followup]:
    """The plain commands a writer script's reply asks for: SADD rp:queues for a new
    queue, ZADD rp:due:<daemon> LT for earlier daemon work (see queues.py)."""
    out: list[Followup] = []
    if new_queue == 0 and scheduler_at == -1 and sweeper_at == -1:   # most replies: nothing to send
        return out
    if int(new_queue) == 1:
        out.append(("sadd", queues_key(prefix), queue, 0))
    for daemon, at in (("scheduler", scheduler_at), ("sweeper", sweeper_at)):
        if int(at) >= 0:
            out.append(("zadd_lt", due_key(prefix, daemon), queue, int(at)))
    return out


def commands(followups: Iterable[Followup]) -> list[tuple[Any, ...]]:
    """The Redis commands of ``followups``: SADD, or ZADD ... LT."""
    return [("SADD", key, queue) if command == "sadd" else ("ZADD", key, "LT", score, queue)
            for command, key, queue, score in followups]


def _count(value: Any, name: str, maximum: float = float("inf")) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise InvalidOption(f"{name} must be an integer >= 0, got {value!r}")
    return value


def limit(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= defaults.BATCH_MAX:
        raise InvalidOption(f"limit must be an integer in [1, {defaults.BATCH_MAX}], got {value!r}")
    return value


def lease_lost(job: LeaseRef) -> LeaseLost:
    return LeaseLost(f"job {job.id} in queue {job.queue} is not leased with token {job.token} any more")


def error_text(error: Any) -> str:
    """A failure as stored: "Boom: message" (or "Boom") for an exception, cut to ERROR_MAX_CHARS."""
    if isinstance(error, BaseException):
        error = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return str(error)[: defaults.ERROR_MAX_CHARS]


# ---------------------------------------------------------------------- producing
class JobOptions(NamedTuple):
    """A job's options, checked and in enqueue.lua's units and order."""

    job_id: str
    unique_key: str
    priority: int
    delay_ms: int
    run_at_ms: int
    max_attempts: int
    lease_ms: int
    backoff_base_ms: int
    backoff_cap_ms: int
    timeout_ms: int = 0
    expires_at_ms: int = 0   # 0: none (not leased by then, the job is cancelled)
    tags: str = ""           # JSON, "": none


Parent = tuple[str, str]                       # (queue, job id)
Deps = tuple[str, tuple[Parent, ...]]         # (dependency mode, parents)
DEPENDENCY_MODES = ("all", "any")


class JobSpec(NamedTuple):
    """One job to create: its encoded payload, its options and its dependencies (``job_spec``)."""

    payload: bytes
    options: JobOptions
    deps: Deps | None = None


def dependencies(queue: str, depends_on: Iterable[Any] | None, mode: str = "all") -> Deps | None:
    """Check ``depends_on`` (job ids of ``queue`` or (queue, id) pairs) and ``mode``
    (InvalidOption); None without parents. A parent named twice counts once."""
    if mode not in DEPENDENCY_MODES:
        raise InvalidOption(f"dependency_mode must be 'all' or 'any', got {mode!r}")
    if depends_on is None:
        return None
    if isinstance(depends_on, (str, bytes)) or not isinstance(depends_on, Iterable):
        raise InvalidOption(f"depends_on must be a list of job ids or (queue, job id) pairs, got {depends_on!r}")
    parents: dict[Parent, None] = {}
    for item in depends_on:
        if isinstance(item, str):
            pq, pid = queue, item
        elif isinstance(item, int) and not isinstance(item, bool):   # a generated id as a number
            pq, pid = queue, str(item)
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            pq, pid = check_queue(item[0]), item[1]
            if isinstance(pid, int) and not isinstance(pid, bool):
                pid = str(pid)
        else:
            raise InvalidOption(f"a parent in depends_on is a job id or a (queue, job id) pair, got {item!r}")
        parents[(pq, validate.identifier(pid, "parent job id"))] = None
    if not parents:
        raise InvalidOption("depends_on needs at least one parent (or None)")
    if len(parents) > defaults.BATCH_MAX:
        raise InvalidOption(f"depends_on takes at most {defaults.BATCH_MAX} parents, got {len(parents)}")
    return mode, tuple(parents)


def job_options(*, priority: int = 0, delay: float | None = None, run_at: datetime | float | None = None,
                max_attempts: int = defaults.MAX_ATTEMPTS, lease: float | None = None,
                unique_key: str | None = None, job_id: str | None = None,
                backoff_base: float | None = None, backoff_cap: float | None = None,
                timeout: float | None = None, expires_at: datetime | float | None = None,
                tags: Any = None) -> JobOptions:
    """Check a job's options (InvalidOption) and convert them for enqueue.lua."""
    if delay is not None and run_at is not None:
        raise InvalidOption("give delay or run_at, not both")
    expires_at_ms = validate.run_at_ms(expires_at)
    return JobOptions(
        validate.job_id(job_id),
        validate.identifier(unique_key, "unique_key"),
        validate.priority(priority),
        validate.delay_ms(delay),
        validate.run_at_ms(run_at),
        validate.max_attempts(max_attempts),
        validate.lease_ms(lease),
        0 if backoff_base is None else validate.seconds_to_ms(backoff_base, "backoff_base", allow_zero=False),
        0 if backoff_cap is None else validate.seconds_to_ms(backoff_cap, "backoff_cap", allow_zero=False),
        validate.timeout_ms(timeout),
        max(1, expires_at_ms) if expires_at is not None else 0,
        validate.tags(tags))


DEFAULT_OPTIONS = job_options()   # a job enqueued without options


def plain_job(priority: Any, delay: Any, run_at: Any, max_attempts: Any, lease: Any, unique_key: Any, job_id: Any,
              backoff_base: Any, backoff_cap: Any, timeout: Any, depends_on: Any, dependency_mode: Any,
              expires_at: Any, tags: Any) -> bool:
    """True when a job's options (``Engine.enqueue``'s, by position) are all their defaults
    and it has no parents: its options are ``DEFAULT_OPTIONS``, checked once, and its deps
    None (the hot path of a producer skips a dozen checks)."""
    return (depends_on is None and delay is None and run_at is None and lease is None and unique_key is None
            and job_id is None and backoff_base is None and backoff_cap is None and timeout is None
            and expires_at is None and tags is None and type(priority) is int and priority == 0
            and type(max_attempts) is int and max_attempts == defaults.MAX_ATTEMPTS and dependency_mode == "all")


def job_spec(payload: Any, *, queue: str = "", depends_on: Iterable[Any] | None = None,
             dependency_mode: str = "all", **options: Any) -> JobSpec:
    """A checked job: ``payload`` encoded (PayloadError), ``job_options(**options)`` and
    its parents (a bare id names a job of ``queue``, the queue it is enqueued to)."""
    deps = dependencies(queue, depends_on, dependency_mode)
    return JobSpec(codec.encode(payload, check=True), job_options(**options), deps)


def _created(reply: Sequence[Any]) -> list[tuple[str, bool]]:
    """(id, created) per job; the last three values are the follow-ups."""
    return [(_str(reply[i]), reply[i + 1] == 1) for i in range(0, len(reply) - 3, 2)]


def enqueue(s: Settings, queue: str, payloads: Sequence[bytes], options: Sequence[JobOptions],
            deps: Sequence[Deps | None] = ()) -> Op[list[tuple[str, bool]]]:
    """Create one job per encoded payload (at least one) in one call: ``options`` holds
    one option set for them all (``enqueue_many``) or one per payload (``enqueue_specs``);
    ``deps`` none, or each job's dependencies (None: it has none)."""
    if len(options) not in (1, len(payloads)):
        raise InvalidOption(f"{len(payloads)} jobs take 1 or {len(payloads)} option sets, got {len(options)}")
    args: list[Any] = [len(payloads), len(options), s.events_max]
    for option_set in options:
        args += option_set
    args += payloads
    if deps and any(d is not None for d in deps):
        for d in deps:
            if d is None:
                args += ["", 0]
            else:
                args += [d[0], len(d[1])]
                for pq, pid in d[1]:
                    args += [pq, pid]
    return Op("enqueue", queue_keys(s.prefix, queue), args, _created,
              lambda r: followups(s.prefix, queue, new_queue=r[-3], scheduler_at=r[-2], sweeper_at=r[-1]))


def plain_spec(spec: JobSpec) -> bool:
    """True for a job spec ``enqueue_plain`` can create: default options, no parents."""
    return spec.deps is None and (spec.options is DEFAULT_OPTIONS or spec.options == DEFAULT_OPTIONS)


def generated_id(n: int) -> str:
    """The id of the job the queue's counter gave number ``n``: the text lib.lua's num_text
    makes of it (a whole number in %d below 1e15, else %.17g)."""
    return str(n) if -10**15 < n < 10**15 else f"{n:.17g}"


def enqueue_plain(s: Settings, queue: str, payloads: Sequence[bytes]) -> Op[list[tuple[str, bool]]]:
    """Create jobs with ``DEFAULT_OPTIONS`` and no parents (``plain_job``, ``plain_spec``)
    from their encoded payloads (at least one): what ``enqueue`` does for them, by a script
    that takes only the keys and values such jobs need and replies with the first job's
    number (their ids follow from it): half the Redis work of enqueue.lua for the common
    single enqueue, and less per job for a batch."""
    count = len(payloads)

    def created(first: int) -> list[tuple[str, bool]]:
        return [(generated_id(first + i), True) for i in range(count)]
    return Op("enqueue_plain", queue_keys(s.prefix, queue), [DEFAULT_OPTIONS.max_attempts, s.events_max, *payloads],
              created, lambda first: followups(s.prefix, queue, new_queue=int(first == 1)))


def link(s: Settings, queue: str, links: Sequence[tuple[str, str, str]]) -> Op[bool]:
    """Record children of other queues (parent id, child queue, child id) under their
    parents of ``queue``; True when a parent had finished already (its outcome went to
    the outbox: drain ``queue``)."""
    args = [value for triple in links for value in triple]
    return Op("link", queue_keys(s.prefix, queue), args, lambda r: int(r[0]) == 1,
              lambda r: followups(s.prefix, queue, scheduler_at=r[1]))


def resolve(s: Settings, queue: str, outcomes: Sequence[tuple[str, str, str]]) -> Op[int]:
    """Apply parents' outcomes (child id, "parent queue/parent id", outcome) to waiting
    jobs of ``queue``, each (child, parent) once; the parser gives how many were new."""
    args: list[Any] = [s.events_max, *(value for triple in outcomes for value in triple)]
    return Op("resolve", queue_keys(s.prefix, queue), args, lambda r: int(r[0]),
              lambda r: followups(s.prefix, queue, scheduler_at=r[1]), _drains(queue, 2))


# ---------------------------------------------------------------------- consuming
@dataclass
class Claimed:
    """Jobs a claim leased: those to hand out, (job, error) for those whose payload cannot
    be decoded (the engine sends them to dead), and ``wait_ms``: when none was leased, ms
    until the earliest scheduled job (-1: none, or the queue is paused)."""

    jobs: list[Job]
    broken: list[tuple[Job, str]] = field(default_factory=list)
    wait_ms: int = -1

    def with_due(self) -> tuple[list[Job], float | None]:
        """The jobs and, when none was leased, in how many seconds to claim again (None:
        when the marker says so)."""
        return self.jobs, (self.wait_ms / 1000 if self.wait_ms >= 0 and not self.jobs else None)


def decode_jobs(queue: str, worker: str, reply: Sequence[Any], start: int) -> Claimed:
    """claim.lua's job list starting at ``start`` (after wait_ms, now_ms and the planned times)."""
    now_ms = int(reply[start - 3])
    claimed = Claimed([], [], int(reply[start - CLAIM_JOBS_AT]))
    jobs, decode = claimed.jobs, codec.decode
    for i in range(start, len(reply), PER_JOB):   # (positional: a busy worker builds thousands a second)
        job_id, token, attempt, max_attempts, lease_ms, timeout_ms, payload = reply[i:i + PER_JOB]
        lease_ms, timeout_ms = int(lease_ms), int(timeout_ms)
        job = Job(_str(job_id), queue, None, int(attempt), int(max_attempts), str(token), worker,
                  lease_ms / 1000, (now_ms + lease_ms) / 1000, timeout_ms / 1000 if timeout_ms > 0 else None)
        try:
            job.payload = decode(payload)
        except Exception as exc:  # never hand a worker a payload it cannot read
            claimed.broken.append((job, f"{type(exc).__name__}: {exc}"))
            continue
        jobs.append(job)
    return claimed


def _claim_followups(s: Settings, queue: str, at: int = 0) -> Callable[[Any], list[Followup]]:
    """The planned times of a claim header starting at ``reply[at]`` (claim, claim_id, ack)."""
    return lambda r: followups(s.prefix, queue, scheduler_at=r[at + 2], sweeper_at=r[at + 3])


def claim(s: Settings, queue: str, worker: str, max_jobs: int = 1, lease: float | None = None) -> Op[Claimed]:
    """Lease up to ``max_jobs`` ready jobs of ``queue`` to ``worker``."""
    check_queue(queue)
    worker = validate.worker_id(worker)
    args = [worker, limit(max_jobs), validate.lease_ms(lease) or s.lease_ms, s.events_max]
    return Op("claim", queue_keys(s.prefix, queue), args,
              lambda r: decode_jobs(queue, worker, r, CLAIM_JOBS_AT), _claim_followups(s, queue))


def claim_id(s: Settings, queue: str, job_id: str, worker: str, lease: float | None = None) -> Op[Claimed]:
    """Lease exactly ``job_id`` to ``worker`` if it is ready now (claim's reply layout)."""
    check_queue(queue)
    args = [str(job_id), validate.worker_id(worker), validate.lease_ms(lease) or s.lease_ms, s.events_max]
    return Op("claim_id", queue_keys(s.prefix, queue), args,
              lambda r: decode_jobs(queue, worker, r, CLAIM_JOBS_AT), _claim_followups(s, queue))


def complete(s: Settings, job: LeaseRef, result: Any = None) -> Op[None]:
    """Mark a leased job done; the parser raises LeaseLost when the lease is gone."""
    def parse(reply: Sequence[Any]) -> None:
        if reply[0] != 1:
            raise lease_lost(job)
    return Op("complete", queue_keys(s.prefix, job.queue),
              [s.done_ttl_ms, s.done_max, s.events_max, 1, job.id, job.token, codec.encode(result, "result")], parse,
              lambda r: followups(s.prefix, job.queue, scheduler_at=r[-2]), _drains(job.queue))


def _drains(queue: str, at: int = -1) -> Callable[[Any], list[str]]:
    """The queue to drain when the reply's ``outboxed`` (at ``at``) is 1 (complete, fail, cancel, sweep)."""
    return lambda r: [queue] if int(r[at]) == 1 else []


def _fail_args(job: LeaseRef, error: Any, retry: bool, delay: float | None) -> list[Any]:
    return [job.id, job.token, error_text(error), 1 if retry else 0,
            -1 if delay is None else validate.delay_ms(delay)]


def fail(s: Settings, job: LeaseRef, error: Any, retry: bool = True, delay: float | None = None) -> Op[str]:
    """Record a failed attempt; the parser gives the new state, or raises LeaseLost."""
    def parse(reply: Sequence[Any]) -> str:
        if reply[0] == 0:
            raise lease_lost(job)
        return _str(reply[0])
    args = [s.dead_ttl_ms, s.dead_max, s.backoff_base_ms, s.backoff_cap_ms, random.getrandbits(31), s.events_max, 1,
            *_fail_args(job, error, retry, delay)]
    return Op("fail", queue_keys(s.prefix, job.queue), args, parse,
              lambda r: followups(s.prefix, job.queue, scheduler_at=r[-2]), _drains(job.queue))


def _expiries(reply: Sequence[Any]) -> list[float | None]:
    return [int(r) / 1000 if r else None for r in reply]


def heartbeat(s: Settings, queue: str, jobs: Sequence[LeaseRef], lease: float | None = None
              ) -> Op[list[float | None]]:
    """Extend leases of one queue (by ``lease``, else each job's own); None where lost."""
    lease_ms = validate.lease_ms(lease)
    args: list[Any] = [len(jobs)]
    for job in jobs:
        job_lease = getattr(job, "lease", None)
        args += [job.id, job.token, lease_ms or (round(job_lease * 1000) if job_lease else s.lease_ms)]
    return Op("heartbeat", queue_keys(s.prefix, queue), args, _expiries)


def progress(s: Settings, job: LeaseRef, value: float, message: str | None = None) -> Op[float]:
    """Record a leased job's progress (validate.progress checks it first); the parser gives
    the time recorded (unix s), or raises LeaseLost."""
    value_text, message_text = validate.progress(value, message)

    def parse(reply: Any) -> float:
        if not reply:
            raise lease_lost(job)
        return int(reply) / 1000
    return Op("progress", queue_keys(s.prefix, job.queue), [s.events_max, job.id, job.token, value_text,
                                                             message_text], parse)


def release(s: Settings, job: LeaseRef) -> Op[None]:
    """Give a leased job back to ready (LeaseLost from the script when the lease is gone)."""
    return Op("release", queue_keys(s.prefix, job.queue), [job.id, job.token, s.events_max], lambda _: None)


class Acked(NamedTuple):
    """ack.lua's reply decoded: the result, and the leased jobs that cannot be handed out."""

    result: AckResult
    broken: list[tuple[Job, str]]


def ack(s: Settings, queue: str, completed: Iterable[tuple[LeaseRef, Any]] = (),
        failed: Iterable[Sequence[Any]] = (), worker: str | None = None, max_jobs: int = 0,
        lease: float | None = None) -> Op[Acked]:
    """Finish many leases of one queue and, with ``worker`` and ``max_jobs``, lease the
    next batch. ``failed`` holds (job, error) or (job, error, retry, delay)."""
    check_queue(queue)
    done_args: list[Any] = []
    encode = codec.encode
    for job, result in completed:
        done_args += (job.id, job.token, encode(result, "result"))
    fail_args: list[Any] = []
    for item in failed:
        job, error, *rest = item
        fail_args += _fail_args(job, error, rest[0] if rest else True, rest[1] if len(rest) > 1 else None)
    nc, nf = len(done_args) // 3, len(fail_args) // 5
    if max_jobs:
        worker = validate.worker_id(worker)
        max_jobs = limit(max_jobs)
    lease_ms = validate.lease_ms(lease) or s.lease_ms
    args = [s.done_ttl_ms, s.done_max, s.dead_ttl_ms, s.dead_max, s.backoff_base_ms, s.backoff_cap_ms,
            random.getrandbits(31), worker or "", max_jobs, lease_ms, s.events_max, nc, *done_args, nf, *fail_args]

    def parse(reply: Sequence[Any]) -> Acked:
        wait_ms = int(reply[nc + nf])
        claimed = decode_jobs(queue, worker or "", reply, nc + nf + CLAIM_JOBS_AT)
        result = AckResult(completed=[r == 1 for r in reply[:nc]],
                           failed=[text(r) if r != 0 else None for r in reply[nc:nc + nf]],
                           jobs=claimed.jobs, wait=wait_ms / 1000 if wait_ms >= 0 else None)
        return Acked(result, claimed.broken)
    def drains(reply: Sequence[Any]) -> list[str]:   # a child outcome plans the scheduler at now
        at = nc + nf
        return [queue] if nc + nf and int(reply[at + 2]) >= 0 and int(reply[at + 2]) <= int(reply[at + 1]) else []
    return Op("ack", queue_keys(s.prefix, queue), args, parse, _claim_followups(s, queue, nc + nf), drains)


# ---------------------------------------------------------------------- inspecting
def job_info(queue: str, job_id: str, fields: dict[Any, Any], score: Any = None) -> JobInfo:
    """A job's record from its hash fields (and its score in the scheduled / leased set)."""
    f = {_str(key): value for key, value in fields.items()}

    def num(name: str, default: int = 0) -> int:  # a damaged field shows as the default
        try:
            return int(f.get(name, default))
        except (TypeError, ValueError):
            return default

    state = text(f.get("s")) or "ready"
    created = num("c") / 1000
    try:
        errors = [(int(a), str(e), int(at) / 1000) for a, e, at in json.loads(f["e"])] if f.get("e") else []
    except (TypeError, ValueError):
        errors = [(0, f"<unreadable error list: {_str(f['e'])[:200]}>", 0.0)]
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
    timeout = num("to")
    dropped = {name: num(key) if f.get(key) is not None else None for name, key in
               (("payload_dropped", "pd"), ("result_dropped", "rd"))}
    try:
        parents = [(str(pq), str(pid)) for pq, pid in json.loads(f["dep"])] if f.get("dep") else None
    except (TypeError, ValueError):
        parents = None
    return JobInfo(
        id=job_id, queue=queue, state=state, payload=payload,
        attempts=num("a"), max_attempts=num("m", 1), priority=num("r"), result=result,
        error=errors[0][1] if errors else None, worker_id=text(f.get("w")),
        created_at=created, updated_at=updated or created, errors=errors,
        unique_key=text(f.get("k")), lease=lease / 1000 if lease else None,
        run_at=score_s if state == "scheduled" else None,
        lease_expires_at=score_s if state == "leased" else None,
        finished_at=(updated or None) if state in TERMINAL else None, **dropped,
        timeout=timeout / 1000 if timeout > 0 else None, progress=progress_of(f.get("pg")),
        depends_on=parents, dependency_mode=text(f.get("dm")),
        expires_at=num("ex") / 1000 if f.get("ex") is not None else None, tags=tags_of(f.get("tg")))


def tags_of(raw: Any) -> Any:
    """Job hash field tg (JSON) decoded; None when absent or unreadable."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return None


def progress_of(raw: Any) -> dict[str, Any] | None:
    """Job hash field pg (progress.lua's JSON) as ``{"value", "message", "at"}``; None when
    absent or unreadable."""
    if raw is None:
        return None
    try:
        record = json.loads(raw)
        return {"value": record["v"], "message": record.get("m"), "at": int(record["at"]) / 1000}
    except (TypeError, ValueError, KeyError, AttributeError):
        return None


def jobs(s: Settings, queue: str, state: str, max_jobs: int = 100, offset: int = 0) -> Op[list[JobInfo]]:
    """A page of one state's jobs: ready in claim order, scheduled and leased by time,
    finished ones newest first."""
    k = StateKeys(queue_keys(s.prefix, queue), str(state))
    if isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or max_jobs < 1:
        raise InvalidOption(f"limit must be a positive integer, got {max_jobs!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidOption(f"offset must be an integer >= 0, got {offset!r}")

    def parse(reply: Sequence[Any]) -> list[JobInfo]:
        return [job_info(queue, _str(reply[i]), dict(zip(reply[i + 2][::2], reply[i + 2][1::2])), reply[i + 1])
                for i in range(0, len(reply), 3)]
    return Op("jobs", k, [offset, max_jobs, 1 if str(state) in TERMINAL else 0], parse)


_SECONDS = ("done_ttl", "dead_ttl")   # stored in ms as done_ttl_ms, dead_ttl_ms
_COUNTS = ("done_max", "dead_max", "result_max")


def retention_of(s: Settings, raw: dict[Any, Any]) -> dict[str, Any]:
    """A queue's retention from its rp:{q}:config hash over the engine's defaults
    (``Engine.retention``); ``stored`` holds what the hash sets."""
    fields = {_str(k): _str(v) for k, v in raw.items()}
    stored: dict[str, Any] = {}
    for name in _SECONDS + _COUNTS:
        value = fields.get(name + "_ms" if name in _SECONDS else name)
        try:
            number = int(value) if value is not None else None
        except ValueError:
            number = None  # a damaged field: the scripts ignore it too
        if number is not None:
            stored[name] = number / 1000 if name in _SECONDS else number
    if fields.get("drop_payload") == "1":
        stored["keep_payload"] = False
    out: dict[str, Any] = {"done_ttl": s.done_ttl_ms / 1000, "done_max": s.done_max,
                           "dead_ttl": s.dead_ttl_ms / 1000, "dead_max": s.dead_max,
                           "keep_payload": True, "result_max": None}
    out.update(stored)
    out["stored"] = stored
    return out


def limits_of(raw: dict[Any, Any]) -> dict[str, Any]:
    """A queue's limits from its rp:{q}:config hash (``Engine.limits``): rate, per
    (seconds), concurrency; None where none is stored (or the field is damaged, which the
    scripts ignore too)."""
    fields = {_str(k): _str(v) for k, v in raw.items()}

    def number(name: str) -> int | None:
        try:
            value = int(fields[name])
        except (KeyError, ValueError):
            return None
        return value if value >= 1 else None
    rate, per_ms, concurrency = number("rate"), number("per_ms"), number("concurrency")
    if rate is None or per_ms is None:
        rate = per_ms = None
    return {"rate": rate, "per": None if per_ms is None else per_ms / 1000, "concurrency": concurrency}


def stats(s: Settings, queue: str) -> Op[dict[str, Any]]:
    """Jobs per state, paused, latency, lifetime totals, retention and limits of ``queue``."""
    def parse(reply: Sequence[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"queue": queue}
        out.update({state: int(n) for state, n in zip(STATES[1:], reply[:6])})
        out["waiting"] = int(reply[10])
        out["paused"] = reply[6] == 1
        out["latency"] = int(reply[7]) / 1000
        totals = {name: 0 for name in ("enqueued", "completed", "failed", "retried", "dead")}
        totals.update({_str(reply[i]): int(reply[i + 1]) for i in range(11, len(reply), 2)})
        out["totals"] = totals
        config = reply[9]
        out["retention"] = retention_of(s, dict(zip(config[::2], config[1::2])))
        out["limits"] = limits_of(dict(zip(config[::2], config[1::2])))
        return out
    return Op("stats", queue_keys(s.prefix, queue), [], parse)


# ---------------------------------------------------------------------- administering
def cancel(s: Settings, queue: str, job_id: str) -> Op[bool]:
    """Cancel an unfinished job: True, or False when it has finished (JobNotFound if none)."""
    return Op("cancel", queue_keys(s.prefix, queue), [job_id, s.done_ttl_ms, s.done_max, s.events_max],
              lambda r: r[0] == 1, lambda r: followups(s.prefix, queue, scheduler_at=r[1]), _drains(queue))


class Replayed(NamedTuple):
    replayed: int
    refused_count: int
    refused: list[str]


def replay_dead(s: Settings, queue: str, budget: int, skip: int = 0, ids: Sequence[str] = ()) -> Op[Replayed]:
    """One budgeted step of ``Engine.replay_dead``: the oldest dead jobs (passing over
    ``skip``), or just ``ids``."""
    def parse(reply: Sequence[Any]) -> Replayed:
        return Replayed(int(reply[0]), int(reply[1]), [_str(r) for r in reply[2:]])
    return Op("replay_dead", queue_keys(s.prefix, queue), [budget, skip, s.events_max, *ids], parse)


def purge(s: Settings, queue: str, state: str, budget: int) -> Op[tuple[int, int]]:
    """Delete up to ``budget`` jobs of ``state`` for good; the parser gives (deleted, taken
    from the set: the caller repeats while it is ``budget``). An unfinished job's waiting
    children are cancelled (those of other queues through the outbox, drained)."""
    return Op("purge", StateKeys(queue_keys(s.prefix, queue), str(state)), [budget, s.events_max],
              lambda r: (int(r[0]), int(r[1])), lambda r: followups(s.prefix, queue, scheduler_at=r[2]),
              _drains(queue))


def pause(s: Settings, queue: str, reason: str | None = None) -> Op[bool]:
    if reason is not None and not isinstance(reason, str):
        raise InvalidOption(f"reason must be a string, got {reason!r}")
    return Op("pause", queue_keys(s.prefix, queue), [s.events_max, (reason or "")[:defaults.ERROR_MAX_CHARS]],
              lambda r: r == 1)


def set_priority(s: Settings, queue: str, job_id: str, priority: int) -> Op[tuple[bool, Any]]:
    """Re-prioritise a job not leased yet: (True, old priority), or (False, its state)."""
    def parse(reply: Sequence[Any]) -> tuple[bool, Any]:
        return (True, int(reply[1])) if reply[0] == 1 else (False, text(reply[1]))
    return Op("set_priority", queue_keys(s.prefix, check_queue(queue)),
              [validate.identifier(job_id, "job id"), validate.priority(priority)], parse)


def resume(s: Settings, queue: str) -> Op[bool]:
    return Op("resume", queue_keys(s.prefix, queue), [s.events_max], lambda r: r == 1)


def rewake(s: Settings, queue: str) -> Op[None]:
    """Set ``queue``'s wake-up marker again after popping it without claiming."""
    return Op("rewake", queue_keys(s.prefix, queue), [], lambda _: None)


def _moved(reply: Sequence[Any]) -> tuple[int, int]:
    return int(reply[0]), int(reply[1])


def promote(s: Settings, queue: str, budget: int, plan: bool = False) -> Op[tuple[int, int]]:
    """Move due scheduled jobs to ready: (moved, with ``plan`` the scheduler's next visit or -1)."""
    return Op("promote", queue_keys(s.prefix, queue), [budget, int(plan)], _moved)


def sweep(s: Settings, queue: str, budget: int, worker: str | None = None, plan: bool = False
          ) -> Op[tuple[int, int]]:
    """Requeue expired leases (every lease of ``worker``) and trim finished jobs:
    (moved, with ``plan`` the sweeper's next visit or -1)."""
    args = [budget, s.done_ttl_ms, s.done_max, s.dead_ttl_ms, s.dead_max, worker or "", int(plan), s.events_max]
    return Op("sweep", queue_keys(s.prefix, queue), args, _moved,
              lambda r: followups(s.prefix, queue, scheduler_at=r[2]), _drains(queue))


def set_retention(s: Settings, queue: str, *, done_ttl: float | None = None, done_max: int | None = None,
                  dead_ttl: float | None = None, dead_max: int | None = None,
                  keep_payload: bool | None = None, result_max: int | None = None) -> Op[Any]:
    """Store ``queue``'s retention (every value checked first: InvalidOption)."""
    check_queue(queue)
    fields: list[Any] = []
    if done_ttl is not None:
        fields += ["done_ttl_ms", validate.seconds_to_ms(done_ttl, "done_ttl")]
    if done_max is not None:
        fields += ["done_max", _count(done_max, "done_max", validate.MAX_MS)]
    if dead_ttl is not None:
        fields += ["dead_ttl_ms", validate.seconds_to_ms(dead_ttl, "dead_ttl")]
    if dead_max is not None:
        fields += ["dead_max", _count(dead_max, "dead_max", validate.MAX_MS)]
    if keep_payload is not None and not isinstance(keep_payload, bool):
        raise InvalidOption(f"keep_payload must be True or False, got {keep_payload!r}")
    if keep_payload is False:
        fields += ["drop_payload", 1]
    if result_max is not None:
        fields += ["result_max", _count(result_max, "result_max", validate.MAX_MS)]
    return Op("set_retention", queue_keys(s.prefix, queue), fields)


def set_limits(s: Settings, queue: str, rate: str, per_ms: str, concurrency: str) -> Op[Any]:
    """Store ``queue``'s limits, checked by ``limits.check_limits`` ('' = none)."""
    return Op("set_limits", queue_keys(s.prefix, queue), [rate, per_ms, concurrency])


def remove_queue(s: Settings, queue: str) -> Op[bool]:
    """Delete an unused queue's keys: True when it had some; QueueNotEmpty (nothing changed)
    while it has waiting, scheduled, ready or leased jobs or cues."""
    def parse(reply: Sequence[Any]) -> bool:
        removed, scheduled, ready, leased, cues, waiting = (int(x) for x in reply)
        if removed < 0:
            found = [f"{n} {what}" for n, what in ((waiting, "waiting"), (scheduled, "scheduled"), (ready, "ready"),
                                                   (leased, "leased")) if n]
            total = waiting + scheduled + ready + leased
            jobs = f"{' and '.join(found)} job{'s' if total > 1 else ''}" if found else ""
            cue_text = f"{cues} cue{'s' if cues > 1 else ''}" if cues else ""
            raise QueueNotEmpty(f"queue {queue!r} has {' and '.join(filter(None, (jobs, cue_text)))}: "
                                "nothing removed (cancel or purge its jobs and remove its cues first)")
        return removed == 1
    return Op("remove_queue", queue_keys(s.prefix, check_queue(queue)), [], parse)


def delete_job(s: Settings, queue: str, job_id: str) -> Op[bool]:
    """Delete one job for good, whatever its state: True, or False when there is none. An
    unfinished job's waiting children are cancelled (as ``purge``)."""
    return Op("delete_job", queue_keys(s.prefix, check_queue(queue)), [str(job_id), s.events_max],
              lambda r: int(r[0]) == 1, lambda r: followups(s.prefix, queue, scheduler_at=r[1]), _drains(queue))


def due_queues(s: Settings, daemon: str, max_queues: int) -> Op[tuple[int, int, list[str]]]:
    """Server time (ms), the next planned time after now (-1: none) and the queues whose
    planned time for ``daemon`` has come."""
    def parse(reply: Sequence[Any]) -> tuple[int, int, list[str]]:
        return int(reply[0]), int(reply[1]), [_str(q) for q in reply[2:]]
    return Op("due_queues", DueKeys(s.prefix, daemon), [max_queues], parse)


# ---------------------------------------------------------------------- cues
CueRow = tuple[str, str, int | None]   # name, definition (JSON), next fire ms (None: paused)


def list_cues(s: Settings, queue: str, name: str = "") -> Op[tuple[int, list[CueRow]]]:
    """Server time (ms) and one cue (``name``) or every cue of ``queue``."""
    def parse(reply: Sequence[Any]) -> tuple[int, list[CueRow]]:
        return int(reply[0]), [(_str(reply[i]), _str(reply[i + 1]),
                                int(float(reply[i + 2])) if reply[i + 2] else None)
                               for i in range(1, len(reply), 3)]
    return Op("list_cues", queue_keys(s.prefix, queue), [name], parse)


def save_cue(s: Settings, queue: str, name: str, expected: str, definition: str, next_ms: int) -> Op[bool]:
    """Compare-and-set one cue's definition and next fire ms (-1: paused): False when it
    changed since ``expected`` was read (nothing written)."""
    def plan(reply: Sequence[Any]) -> list[Followup]:
        return followups(s.prefix, queue, new_queue=reply[1], scheduler_at=reply[2]) if reply[0] == 1 else []
    return Op("save_cue", queue_keys(s.prefix, queue), [name, expected, definition, next_ms],
              lambda r: r[0] == 1, plan)


def remove_cue(s: Settings, queue: str, name: str) -> Op[bool]:
    return Op("remove_cue", queue_keys(s.prefix, queue), [name], lambda r: r == 1)


class DueCues(NamedTuple):
    now_ms: int
    earliest_ms: int          # the earliest next fire of any active cue, -1: none
    due: list[tuple[str, str, int]]   # name, definition, due ms


def due_cues(s: Settings, queue: str, max_cues: int) -> Op[DueCues]:
    def parse(reply: Sequence[Any]) -> DueCues:
        return DueCues(int(reply[0]), int(float(reply[1])),
                       [(_str(reply[i]), _str(reply[i + 1]), int(float(reply[i + 2])))
                        for i in range(2, len(reply), 3)])
    return Op("due_cues", queue_keys(s.prefix, queue), [max_cues], parse)


def fire_cue(s: Settings, queue: str, name: str, expected: str, due_ms: int, definition: str, next_ms: int,
             payload: bytes, priority: int, max_attempts: int, lease_ms: int, timeout_ms: int,
             fires: Sequence[int]) -> Op[int]:
    """Fire a cue once per fire time (compare-and-set on ``expected`` and ``due_ms``):
    the jobs created, or -1 when another scheduler fired first or the cue changed."""
    return Op("fire_cue", queue_keys(s.prefix, queue),
              [name, expected, due_ms, definition, next_ms, payload, priority, max_attempts, lease_ms, s.events_max,
               timeout_ms, defaults.CUE_RUNS_MAX, *fires], int)


# ---------------------------------------------------------------------- the worker registry
def _registration(worker: str, host: str, pid: int, queues: Sequence[str]) -> list[Any]:
    if not isinstance(host, str):
        raise InvalidOption(f"host must be a string, got {host!r}")
    return [worker, host, _count(pid, "pid"), json.dumps([check_queue(q) for q in queues])]


def register_worker(s: Settings, worker: str, host: str, pid: int, queues: Sequence[str]) -> Op[float]:
    """Register (or re-register) a worker; the parser gives its start time (unix s)."""
    worker = validate.worker_id(worker)
    return Op("register_worker", RegistryKeys(s.prefix, worker), _registration(worker, host, pid, queues),
              lambda r: int(r) / 1000)


def beat_worker(s: Settings, worker: str, jobs_in_progress: Sequence[str] | None = None, processed: int = 0,
                failed: int = 0, queue: str | None = None, taken: Mapping[str, float] | None = None,
                settled: Sequence[str] | None = None) -> Op[bool]:
    """Refresh a registration, replacing its jobs in progress (``jobs_in_progress``) or
    changing them (``taken``: job -> lease expiry in unix s; ``settled``: jobs let go);
    False when the worker is not registered."""
    worker = validate.worker_id(worker)
    if jobs_in_progress is not None and (taken or settled):
        raise InvalidOption("give jobs_in_progress (the whole list) or taken/settled (changes), not both")
    jobs = "" if jobs_in_progress is None else json.dumps([str(j) for j in jobs_in_progress])
    args = [worker, jobs, _count(processed, "processed"), _count(failed, "failed"), check_queue(queue) if queue else "",
            json.dumps({str(j): int(expires * 1000) for j, expires in taken.items()}) if taken else "",
            json.dumps([str(j) for j in settled]) if settled else ""]
    return Op("beat_worker", RegistryKeys(s.prefix, worker), args, lambda r: int(r) != 0)


def deregister_worker(s: Settings, worker: str) -> Op[bool]:
    worker = validate.worker_id(worker)
    return Op("deregister_worker", RegistryKeys(s.prefix, worker), [worker], lambda r: r == 1)


def _timeout_ms(timeout: float) -> int:
    return validate.seconds_to_ms(timeout, "timeout", allow_zero=False)


def _workers(reply: Sequence[Any]) -> list[WorkerInfo]:
    out = []
    for i in range(1, len(reply), 9):
        wid, host, pid, queues, started, beat, jobs_json, processed, failed = reply[i:i + 9]
        out.append(WorkerInfo(
            id=_str(wid), host=_str(host), pid=int(pid or 0),
            queues=json.loads(queues) if queues else [],
            started_at=int(started or 0) / 1000, last_heartbeat=int(beat) / 1000,
            jobs_in_progress=json.loads(jobs_json) if jobs_json else [],
            processed=int(processed or 0), failed=int(failed or 0)))
    return out


def workers(s: Settings, timeout: float) -> Op[list[WorkerInfo]]:
    """Registered workers whose heartbeat is at most ``timeout`` s old."""
    return Op("workers", RegistryKeys(s.prefix), [_timeout_ms(timeout)], _workers)


def expired_workers(s: Settings, timeout: float, max_workers: int) -> Op[list[tuple[str, list[str]]]]:
    """(id, queues) of workers whose heartbeat is older than ``timeout`` s, oldest first."""
    def parse(reply: Sequence[Any]) -> list[tuple[str, list[str]]]:
        return [(_str(reply[i]), json.loads(reply[i + 1]) if reply[i + 1] else [])
                for i in range(0, len(reply), 2)]
    return Op("expired_workers", RegistryKeys(s.prefix), [_timeout_ms(timeout), max_workers], parse)


# the key sources a header's KEYS may be bound from (tests/test_lua_headers.py checks them)
KEY_SOURCES = (QueueKeys, StateKeys, RegistryKeys, DueKeys)
