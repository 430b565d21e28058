"""The records the Engine hands out."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .engine import Engine


class State(str, Enum):
    """Where a job is; each value is also the suffix of that state's Redis key."""

    WAITING = "waiting"        # for its parents (depends_on)
    SCHEDULED = "scheduled"
    READY = "ready"
    LEASED = "leased"
    DONE = "done"
    DEAD = "dead"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


class LeaseRef(Protocol):
    """What finishing, extending or releasing a lease needs: a ``Job``, a ``Lease`` (an
    HTTP client's), anything with these. Heartbeats also read a ``lease`` (seconds) when
    the object has one."""

    @property
    def id(self) -> str: ...

    @property
    def queue(self) -> str: ...

    @property
    def token(self) -> str: ...


@dataclass
class Lease:
    """A lease named by a client (HTTP, compat): enough for complete, fail, heartbeat and release."""

    id: str
    queue: str
    token: str
    lease: float | None = None


@dataclass
class Job:
    """A leased job as a worker sees it; ``token`` fences this lease.

    ``timeout``: the longest this attempt may run (seconds; the job's own, else in a
    ``Worker`` the worker's default; None: no limit). ``engine``: the Engine that leased
    it, which ``progress`` writes through (None for a Job built by hand)."""

    id: str
    queue: str
    payload: Any
    attempt: int
    max_attempts: int
    token: str
    worker_id: str
    lease: float                  # seconds this lease lasts
    lease_expires_at: float       # unix seconds, Redis clock
    timeout: float | None = None
    engine: Engine | None = field(default=None, repr=False, compare=False)

    def progress(self, value: float, message: str | None = None) -> None:
        """Record how far this attempt has got: ``value`` a number in [0, 100], ``message``
        optional text (at most 500 characters). Fenced by this lease: LeaseLost when it is
        gone (stop working on the job then); InvalidOption for a bad value (nothing written).
        A Redis round trip: in an ``async def`` handler use ``await job.progress_async(...)``."""
        if self.engine is None:
            raise RuntimeError("this Job has no engine to report progress through (it was not leased by one)")
        self.engine.progress(self, value, message)

    async def progress_async(self, value: float, message: str | None = None) -> None:
        """``progress`` from an ``async def`` handler: the round trip runs on a thread, so
        the event loop (and the worker's other async jobs) never waits for Redis."""
        await asyncio.to_thread(self.progress, value, message)


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


WORKFLOW_STATUSES = ("running", "completed", "failed", "cancelled")


@dataclass
class Workflow:
    """A workflow (``Engine.enqueue_workflow``): its jobs by key as (queue, job id).

    ``status``: running, completed (every node done), failed (a node dead, or cancelled
    while the workflow was not) or cancelled (``cancel_workflow``); computed from the
    nodes' states when read. ``states``: each node's state (None: gone, trimmed by
    retention, or not created by a creation that died); ``depends_on``: each node's
    parents by key; ``dependency_mode`` per key. ``created_at``: unix seconds."""

    id: str
    name: str
    status: str
    jobs: dict[str, tuple[str, str]]
    created_at: float
    states: dict[str, str | None] = field(default_factory=dict)
    depends_on: dict[str, list[str]] = field(default_factory=dict)
    dependency_mode: dict[str, str] = field(default_factory=dict)
    cancelled_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """As HTTP (``GET /v1/workflows/{id}``) and ``redispool workflow show --json`` send it:
        ``jobs`` maps each key to its queue, id, state, parents and mode."""
        return {"id": self.id, "name": self.name, "status": self.status, "created_at": self.created_at,
                "cancelled_at": self.cancelled_at,
                "jobs": {key: {"queue": queue, "id": job_id, "state": self.states.get(key),
                               "depends_on": self.depends_on.get(key, []),
                               "dependency_mode": self.dependency_mode.get(key, "all")}
                         for key, (queue, job_id) in self.jobs.items()}}


@dataclass
class JobInfo:
    """A job's full stored record (``Engine.get`` / ``Engine.jobs``)."""

    id: str
    queue: str
    state: str
    payload: Any
    attempts: int
    max_attempts: int
    priority: int
    result: Any
    error: str | None
    worker_id: str | None
    created_at: float
    updated_at: float
    errors: list[tuple[int, str, float]] = field(default_factory=list)
    unique_key: str | None = None
    lease: float | None = None            # the job's own lease, if it was given one
    run_at: float | None = None           # scheduled jobs: when they become ready
    lease_expires_at: float | None = None # leased jobs
    finished_at: float | None = None      # done, dead, cancelled
    # done jobs whose queue's retention dropped them (set_retention): the size in bytes
    # of the payload (keep_payload=False) / the result (over result_max) not kept; the
    # payload / result then read None, which is not the value the job had
    payload_dropped: int | None = None
    result_dropped: int | None = None
    timeout: float | None = None          # seconds one attempt may run, if the job was given a timeout
    # the last progress its current (or last) attempt reported: {"value", "message", "at"}
    progress: dict[str, Any] | None = None
    # a job enqueued with depends_on: its parents as (queue, id) and "all" / "any"
    depends_on: list[tuple[str, str]] | None = None
    dependency_mode: str | None = None
    # enqueued with expires_at: unix seconds after which it is cancelled unless leased before
    expires_at: float | None = None
    tags: Any = None                      # enqueued with tags: a list of strings or a JSON object


@dataclass
class CueInfo:
    """A named recurring schedule."""

    queue: str
    name: str
    cron: str
    tz: str
    next_fire_at: float
    paused: bool
    payload: Any = None
    priority: int = 0
    misfire: str = "skip"
    max_attempts: int = 3
    lease: float | None = None
    last_fire_at: float | None = None
    url: str | None = None        # a webhook cue: each fire is POSTed here by the deliverer
    timeout: float | None = None  # its jobs' timeout (seconds one attempt may run)
    runs: int = 0                 # its runs so far: fire times fired and run_cue calls


@dataclass
class WorkerInfo:
    """A registered worker process (Python or HTTP)."""

    id: str
    host: str
    pid: int
    queues: list[str]
    started_at: float
    last_heartbeat: float
    jobs_in_progress: list[str]
    processed: int
    failed: int


@dataclass
class Event:
    """One entry of a queue's event log (``Engine.events``): ``id`` orders the log and
    is usable as ``after``; ``type`` is one of ``EVENT_TYPES``; ``job_id`` is None for a
    queue's own events (paused, resumed); ``at`` is unix seconds (Redis clock, ms);
    ``data`` holds what applies: attempt, worker_id, error, state, previous, priority,
    value and message (progress)."""

    id: str
    queue: str
    type: str
    job_id: str | None
    at: float
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "queue": self.queue, "type": self.type, "job_id": self.job_id,
                "at": self.at, "data": self.data}


EVENT_TYPES = ("enqueued", "waiting", "claimed", "progress", "completed", "failed", "dead", "released", "expired",
               "cancelled", "replayed", "paused", "resumed")


@dataclass
class WebhookInfo:
    """A webhook (``add_webhook``): where matching events are POSTed. ``queues`` None means
    every queue; ``secret`` is never handed out, ``signed`` says whether there is one.
    ``failures`` counts deliveries that ended dead since the last successful one; at
    ``disable_after`` of them the deliverer disables the webhook (``auto_disabled_at``)."""

    name: str
    url: str
    events: list[str]
    queues: list[str] | None
    signed: bool
    scheme: str = "redispool"
    max_attempts: int = 5
    created_at: float = 0.0
    enabled: bool = True              # False: matching events are not delivered
    disable_after: int = 0            # consecutive failed deliveries that disable it (0: never)
    failures: int = 0                 # consecutive failed deliveries so far (dead ones)
    auto_disabled_at: float | None = None   # when the deliverer disabled it (unix seconds)


@dataclass
class DeliveryInfo:
    """One attempt to deliver an event to a webhook (``deliveries``), newest first:
    ``status`` is ``success``, ``failed`` (retried later) or ``dead`` (the last attempt);
    ``code`` the HTTP status (None: no answer), ``response`` the answer's first 1 KiB."""

    id: str
    webhook: str
    event: str
    queue: str
    job_id: str | None
    attempt: int
    status: str
    code: int | None
    error: str | None
    response: str
    duration_ms: float
    at: float
