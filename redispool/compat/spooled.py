"""The spooled job service's REST protocol (``/api/v1/...``) on the Engine.

Mounted at ``/compat/spooled``, so the official SDK works after one change::

    SpooledClient(api_key=KEY, base_url="http://HOST:PORT/compat/spooled")

Everything ``SpooledClient`` and ``SpooledWorker`` use to produce jobs and run the
worker lifecycle translates to one or two Engine calls (the native API's Lua scripts):

    POST /jobs, /jobs/bulk          enqueue (idempotency_key = unique_key, timeout_seconds =
                                    timeout: 300 when not given, as the service)
    POST /jobs/claim                claim (lease_duration_secs = lease)
    POST /jobs/{id}/complete|fail|heartbeat   complete / fail / heartbeat, lease_id = token
    GET|DELETE /jobs/{id}, POST /jobs/{id}/retry, GET /jobs, /jobs/status, /jobs/stats
    GET /jobs/dlq, POST /jobs/dlq/retry|purge   dead jobs: list, replay_dead, purge
    POST /workers/register, /workers/{id}/heartbeat|deregister, GET /workers[/{id}]
    tags, expires_at of POST /jobs          the job's tags (GET /jobs?tag=) and expires_at
    PUT /jobs/{id}/priority                 set_priority (set_priority.lua)
    POST /webhooks/{org_id}/custom, GET /webhooks/deliveries   inbound webhooks as jobs, and their
                                            log (spooled_ingest.py)
    GET /metrics (beside /api/v1)           the server's /metrics (server.py)
    GET /jobs/{id}/history                  the job's events in its queue's log, and what its record
                                            adds for the part trimmed (spooled_history.py)
    GET /health, /health/live, /health/ready   Redis answers (no key needed; spooled_queues.py)
    GET /queues[/{name}[/stats]], PUT /queues/{name}/config, POST /queues/{name}/pause|resume,
    DELETE /queues/{name}                   queues (spooled_queues.py): job defaults,
                                            set_limits, pause/resume, remove_queue
    POST /auth/login|refresh|validate, GET /auth/me   login tokens (spooled_auth.py)
    GET /events[?queue=], /events/jobs/{id}, /ws      realtime, on the event logs (spooled_realtime.py)
    /schedules[/{id}[/pause|resume|trigger|history]]   cues (spooled_schedules.py)
    /workflows[/{id}[/cancel]], /jobs/{id}/dependencies   workflows, depends_on (spooled_workflows.py)
    /outgoing-webhooks[/{id}[/test|deliveries|retry/{delivery}]]   webhooks, deliverer (spooled_webhooks.py)

Job ids: this protocol names a job without its queue, so the id handed out is
``<queue>~<job id>``. Queue names cannot hold ``~``, so the first ``~`` splits it, and
finding a job costs no lookup and no extra write per job.

States: ready = ``pending``, leased = ``processing``, done = ``completed``, dead =
``deadletter``, scheduled = ``scheduled`` (``failed`` when it waits for a retry),
cancelled = ``cancelled``. ``max_retries`` = max_attempts - 1, ``retry_count`` =
attempts made before the current one.

Errors are ``{"code", "message"}`` with the service's statuses: 400 VALIDATION_ERROR
(a value out of range), 422 (a field missing or of the wrong type), 401, 403, 404
NOT_FOUND, 409 LEASE_EXPIRED (stale or foreign ``lease_id``) or CONFLICT (the job has
finished), 413, 503 (Redis unreachable). The key is checked before the route: a request
without a valid key gets 401 on an unknown route too, never a 404.
"""
from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .. import defaults, validate
from ..aio import GIVE_UP
from ..engine import Engine, JobSpec
from ..errors import CueNotFound, JobNotFound, LeaseLost, RedispoolError
from ..keys import STATES, check_queue
from ..models import Job, JobInfo, Lease, WorkerInfo
from ..spooled_jobs import job_options, timeout_seconds
from ..web import endpoint
from ..web.auth import role_of
from ..web.body import REQUIRED, BadJson, BodyTooLarge, FieldError, check_depth, deliverable, jsonable
from ..web.delivery import rendered
from ..web.endpoint import Dialect, Forbidden, Refusal, Unauthorized, call
from ..web.waiting import LoopEngines
from ..web.workers import HttpWorkers, OnThreads
from .common import ENVELOPE_DEPTH, FOREVER_S, fields, iso, parse_time, same_trouble

log = logging.getLogger("redispool.compat.spooled")

SEP = "~"                          # <queue>~<job id>
ORGANIZATION = "redispool"         # the one "organization" of a self-hosted server
STATUS = {"waiting": "pending", "scheduled": "scheduled", "ready": "pending", "leased": "processing",
          "done": "completed", "dead": "deadletter", "cancelled": "cancelled"}
STATE_OF = {v: k for k, v in STATUS.items()} | {"failed": "scheduled"}   # pending: ready (set last)
MAX_CLAIM = 100
LEASE_RANGE_S = (5, 3600)
WORKER_LEASE_S = 30                # told to workers at registration ...
WORKER_HEARTBEAT_S = 10            # ... with how often to heartbeat themselves
FAIL_ERROR_MAX = 2048
LIST_MAX = 100
SCAN_PAGE, SCAN_MAX = 500, 20_000  # a filtered list reads jobs this many at a time, at most this many
UNSUPPORTED = ("parent_job_id", "completion_webhook", "completion_webhook_secret")
PRIORITY_CLAMP = 1000              # PUT /jobs/{id}/priority clamps to [-1000, 1000], as the service


def public_id(queue: str, job_id: str) -> str:
    return f"{queue}{SEP}{job_id}"


def split_id(public: str) -> tuple[str, str]:
    """(queue, job id) of an id handed out by this protocol; 404 for any other."""
    queue, sep, job_id = public.partition(SEP)
    try:
        if not sep or not job_id:
            raise ValueError
        check_queue(queue)
    except ValueError:
        raise Refusal(404, "NOT_FOUND", "Job not found") from None
    return queue, job_id


def _retry_count(info: JobInfo) -> int:
    """Attempts made before the current (or last) one."""
    if info.state in ("leased", "done", "dead"):
        return max(0, info.attempts - 1)
    return info.attempts


def _status(info: JobInfo) -> str:
    if info.state == "scheduled" and info.errors:
        return "failed"
    return STATUS.get(info.state, info.state)


def _job_type(payload: Any) -> str:
    return str(payload.get("job_type", "")) if isinstance(payload, dict) else ""


def summary(info: JobInfo) -> dict[str, Any]:
    return {"id": public_id(info.queue, info.id), "queue_name": info.queue, "status": _status(info),
            "priority": info.priority, "retry_count": _retry_count(info),
            "max_retries": info.max_attempts - 1, "job_type": _job_type(info.payload),
            "last_error": info.error, "created_at": iso(info.created_at), "scheduled_at": iso(info.run_at),
            "started_at": None, "completed_at": iso(info.finished_at if info.state == "done" else None)}


def has_tag(tags: Any, tag: str) -> bool:
    """The service's tag filter (Postgres ``tags ? tag``): a key of an object of tags, or
    a string of a list of them."""
    if isinstance(tags, dict):
        return tag in tags
    return isinstance(tags, list) and tag in tags


def job_record(info: JobInfo) -> dict[str, Any]:
    return {**summary(info), "organization_id": ORGANIZATION, "payload": jsonable(info.payload),
            "result": jsonable(info.result), "timeout_seconds": timeout_seconds(info.timeout),
            "expires_at": iso(info.expires_at), "tags": info.tags, "parent_job_id": None, "completion_webhook": None,
            "assigned_worker_id": info.worker_id if info.state == "leased" else None, "lease_id": None,
            "lease_expires_at": iso(info.lease_expires_at), "idempotency_key": info.unique_key,
            "updated_at": iso(info.updated_at)}


def claimed(job: Job) -> dict[str, Any]:
    """A leased job as a claim answers it (Undeliverable when its payload nests too deep)."""
    deliverable(job.payload)
    return {"id": public_id(job.queue, job.id), "queue_name": job.queue, "payload": jsonable(job.payload),
            "retry_count": job.attempt - 1, "max_retries": job.max_attempts - 1,
            "timeout_seconds": timeout_seconds(job.timeout),
            "lease_expires_at": iso(job.lease_expires_at), "lease_id": job.token}


def error(status: int, code: str, message: str) -> JSONResponse:
    """An error in the service's shape: ``{"code", "message"}``."""
    return JSONResponse({"code": code, "message": message}, status_code=status)


DIALECT = Dialect(render=error, errors={
    Unauthorized: (401, "UNAUTHORIZED", "a valid 'Authorization: Bearer KEY' header is required"),
    Forbidden: (403, "ACCESS_DENIED", "this key may not do this (needs the {needed} role)"),
    JobNotFound: (404, "NOT_FOUND"),
    CueNotFound: (404, "NOT_FOUND"),
    LeaseLost: (409, "LEASE_EXPIRED"),
    BodyTooLarge: (413, "PAYLOAD_TOO_LARGE", "Request payload too large"),
    BadJson: (422, "VALIDATION_ERROR"),
    FieldError: (422, "VALIDATION_ERROR"),     # a field missing or of the wrong type
    RedispoolError: (400, "VALIDATION_ERROR"),  # a value out of range
}, trouble=same_trouble(503, "SERVICE_UNAVAILABLE"), max_depth=ENVELOPE_DEPTH)


def _in_range(value: int, low: int, high: int, name: str) -> int:
    if not low <= value <= high:
        raise Refusal(400, "VALIDATION_ERROR", f"{name} must be in [{low}, {high}], got {value}")
    return value


class SpooledApi:
    """Route handlers. Nothing is kept here per worker: what an HTTP worker holds and
    its finished/failed counts live in its registration in Redis (web/workers.py)."""

    def __init__(self, engine: Engine, tokens: dict[str, str] | None) -> None:
        self.engine = engine
        self.tokens = tokens
        registry = OnThreads(engine)
        self.workers = HttpWorkers(lambda: registry)

    def route(self, method: str, path: str, role: str, handler: endpoint.Handler, status: int = 200) -> Route:
        return endpoint.route(DIALECT, self.tokens, method, path, role, handler, status)

    async def info(self, public: str) -> JobInfo:
        queue, job_id = split_id(public)
        found = await call(self.engine.get, queue, job_id)
        if found is None:
            raise Refusal(404, "NOT_FOUND", "Job not found")
        return found

    async def lost(self, queue: str, job_id: str) -> Refusal:
        """Why a fenced write did nothing: 404 unknown job, 409 CONFLICT finished job,
        409 LEASE_EXPIRED otherwise (the lease expired or another worker holds it)."""
        state, _, _ = await call(self.engine.current_lease, queue, job_id)
        if state is None:
            return Refusal(404, "NOT_FOUND", "Job not found")
        if state == "done":
            return Refusal(409, "CONFLICT", "Job is already completed")
        if state in ("dead", "cancelled"):
            return Refusal(409, "CONFLICT", f"Job is already {STATUS[state]}")
        return Refusal(409, "LEASE_EXPIRED", "the lease expired or another worker holds the job now")

    # ------------------------------------------------------------------ producing
    def _spec(self, item: dict[str, Any], *, max_retries: int, priority: int, timeout: int) -> JobSpec:
        for name in UNSUPPORTED:
            if item.get(name) is not None:
                raise Refusal(400, "VALIDATION_ERROR", f"{name} is not supported by redispool")
        run_at = None
        if item.get("scheduled_at") is not None:
            run_at = parse_time(item["scheduled_at"], "scheduled_at", "VALIDATION_ERROR")
            if run_at <= time.time():
                run_at = None
        expires_at = None
        if item.get("expires_at") is not None:   # not claimed by then: cancelled, never run
            if not isinstance(item["expires_at"], str):
                raise FieldError("expires_at must be an ISO 8601 time string")
            expires_at = parse_time(item["expires_at"], "expires_at", "VALIDATION_ERROR")
        tags = item.get("tags")
        if tags is not None:
            check_depth(tags, "tags")
        return self.engine.job_spec(
            check_depth(item.get("payload")), priority=_in_range(priority, -100, 100, "priority"), delay=None,
            run_at=run_at, max_attempts=_in_range(max_retries, 0, 100, "max_retries") + 1, lease=None,
            unique_key=item.get("idempotency_key"), job_id=None, backoff_base=None, backoff_cap=None,
            timeout=timeout, expires_at=expires_at, tags=tags)

    async def _queue_defaults(self, queue: str) -> tuple[int, int]:
        """(max_retries, timeout_seconds) for a job of ``queue`` that names neither: the
        queue's (PUT /queues/{name}/config), else the service's 3 and 300."""
        return job_options(await call(self.engine.job_defaults, queue), None, None)

    CREATE = {"queue_name": (str, REQUIRED), "payload": (Any, None), "priority": (int, 0),
              "max_retries": (int, None, None), "timeout_seconds": (int, None, None), "scheduled_at": (str, None),
              "idempotency_key": (str, None), "expires_at": (Any, None), "tags": (dict, list, None, None),
              **{name: (Any, None) for name in UNSUPPORTED}}

    async def create(self, request: Request, body: Any) -> Any:
        b = fields(body, self.CREATE)
        queue = check_queue(b["queue_name"])
        retries, timeout = b["max_retries"], b["timeout_seconds"]
        stored = await call(self.engine.job_defaults, queue) if retries is None or timeout is None else None
        retries, timeout = job_options(stored, retries, timeout)
        spec = self._spec(b, max_retries=retries, priority=b["priority"], timeout=timeout)
        [(job_id, created)] = await call(self.engine.enqueue_specs, queue, [spec])
        return JSONResponse({"id": public_id(queue, job_id), "created": created},
                            status_code=201 if created else 200)

    ITEM = {"payload": (Any, None), "priority": (int, None, None), "idempotency_key": (str, None),
            "scheduled_at": (str, None), **{name: (Any, None) for name in UNSUPPORTED}}

    async def bulk(self, request: Request, body: Any) -> Any:
        b = fields(body, {"queue_name": (str, REQUIRED), "jobs": (list, REQUIRED),
                          "default_priority": (int, None, None), "default_max_retries": (int, None, None),
                          "default_timeout_seconds": (int, None, None)})
        queue = check_queue(b["queue_name"])
        if not 1 <= len(b["jobs"]) <= LIST_MAX:
            raise Refusal(400, "VALIDATION_ERROR", f"jobs must hold 1 to {LIST_MAX} jobs")
        retries, timeout = await self._queue_defaults(queue)
        if b["default_timeout_seconds"] is not None:
            timeout = _in_range(b["default_timeout_seconds"], 1, 86400, "default_timeout_seconds")
        priority = b["default_priority"] if b["default_priority"] is not None else 0
        if b["default_max_retries"] is not None:
            retries = b["default_max_retries"]
        specs, indexes, failed = [], [], []
        for index, raw in enumerate(b["jobs"]):
            try:
                item = fields(raw, self.ITEM, f"jobs[{index}]")
                own = item["priority"] if item["priority"] is not None else priority
                specs.append(self._spec(item, max_retries=retries, priority=own, timeout=timeout))
                indexes.append(index)
            except RedispoolError as exc:
                failed.append({"index": index, "job_id": None, "created": None,
                               "error": getattr(exc, "message", str(exc))})
        out = await call(self.engine.enqueue_specs, queue, specs) if specs else []
        succeeded = [{"index": i, "job_id": public_id(queue, job_id), "created": created, "error": None}
                     for i, (job_id, created) in zip(indexes, out)]
        return JSONResponse({"succeeded": succeeded, "failed": failed, "total": len(b["jobs"]),
                             "success_count": len(succeeded), "failure_count": len(failed)}, status_code=201)

    # ------------------------------------------------------------------ the worker lifecycle
    async def claim(self, request: Request, body: Any) -> Any:
        b = fields(body, {"queue_name": (str, REQUIRED), "worker_id": (str, REQUIRED), "limit": (int, 1),
                          "lease_duration_secs": (int, 30)})
        queue = check_queue(b["queue_name"])
        limit = _in_range(b["limit"], 1, MAX_CLAIM, "limit")
        lease = _in_range(b["lease_duration_secs"], *LEASE_RANGE_S, "lease_duration_secs")
        worker_id = validate.worker_id(b["worker_id"])
        jobs = await call(self.engine.claim, queue, worker_id, limit=limit, lease=lease)
        # as the native API (http/app.py _deliver): nothing after the lease may lose the jobs
        out, sent, broken = rendered(jobs, claimed)
        for j, why in broken:  # a deep payload from a Python producer: dead, alone
            with contextlib.suppress(*GIVE_UP):
                await call(self.engine.fail, j, why, retry=False)
        await self.workers.took(request, worker_id, queue, {public_id(queue, j.id): j.lease_expires_at for j in sent})
        return {"jobs": out}

    ACK = {"worker_id": (str, REQUIRED), "lease_id": (str, REQUIRED)}

    async def complete(self, request: Request, body: Any) -> Any:
        b = fields(body, {**self.ACK, "result": (Any, None)})
        check_depth(b["result"], "result")   # what is stored can be handed back (as /v1's)
        queue, job_id = split_id(request.path_params["id"])
        try:
            await call(self.engine.complete, Lease(job_id, queue, b["lease_id"]), b["result"])
        except LeaseLost:
            raise await self.lost(queue, job_id) from None
        await self.workers.settled(request, b["worker_id"], queue, request.path_params["id"], failed=False,
                                   register=False)
        return {"success": True}

    async def fail(self, request: Request, body: Any) -> Any:
        b = fields(body, {**self.ACK, "error": (str, REQUIRED)})
        if not 1 <= len(b["error"]) <= FAIL_ERROR_MAX:
            raise Refusal(400, "VALIDATION_ERROR", f"error must be 1 to {FAIL_ERROR_MAX} characters")
        queue, job_id = split_id(request.path_params["id"])
        try:
            state = await call(self.engine.fail, Lease(job_id, queue, b["lease_id"]), b["error"])
        except LeaseLost:
            raise await self.lost(queue, job_id) from None
        await self.workers.settled(request, b["worker_id"], queue, request.path_params["id"], failed=True,
                                   register=False)
        return {"success": True, "error": None, "status": "failed" if state == "scheduled" else STATUS[state]}

    async def heartbeat(self, request: Request, body: Any) -> Any:
        b = fields(body, {**self.ACK, "lease_duration_secs": (int, 30)})
        lease = _in_range(b["lease_duration_secs"], *LEASE_RANGE_S, "lease_duration_secs")
        queue, job_id = split_id(request.path_params["id"])
        try:
            expires = await call(self.engine.heartbeat, Lease(job_id, queue, b["lease_id"]), lease)
        except LeaseLost:
            raise await self.lost(queue, job_id) from None
        await self.workers.took(request, b["worker_id"], queue, {request.path_params["id"]: expires}, register=False)
        return {"success": True, "lease_expires_at": iso(expires)}

    # ------------------------------------------------------------------ reading and acting
    async def get(self, request: Request, body: Any) -> Any:
        return job_record(await self.info(request.path_params["id"]))

    async def boost_priority(self, request: Request, body: Any) -> Any:
        """PUT /jobs/{id}/priority: a pending or scheduled job re-prioritised in place
        (a ready job keeps its place among jobs of its new priority); 404 for any other,
        as the service. The value is clamped to the service's [-1000, 1000]."""
        b = fields(body, {"priority": (int, REQUIRED)})
        new = max(-PRIORITY_CLAMP, min(PRIORITY_CLAMP, b["priority"]))
        queue, job_id = split_id(request.path_params["id"])
        try:
            old = await call(self.engine.set_priority, queue, job_id, new)
        except JobNotFound:
            old = None
        if old is None:
            raise Refusal(404, "NOT_FOUND", "Job not found or not in pending/scheduled state")
        return {"job_id": request.path_params["id"], "old_priority": old, "new_priority": new}

    async def cancel(self, request: Request, body: Any) -> Any:
        queue, job_id = split_id(request.path_params["id"])
        try:
            if await call(self.engine.cancel, queue, job_id):
                return None
        except JobNotFound:
            raise Refusal(404, "NOT_FOUND", "Job not found") from None
        raise await self.lost(queue, job_id)

    async def retry(self, request: Request, body: Any) -> Any:
        info = await self.info(request.path_params["id"])
        if info.state != "dead":
            raise Refusal(409, "CONFLICT", "Job cannot be retried (only dead-lettered jobs can be; "
                                                 "a failed job is already scheduled for its retry)")
        await call(self.engine.replay_dead, info.queue, [info.id])
        return job_record(await self.info(request.path_params["id"]))

    async def _queues(self, name: str | None) -> list[str]:
        return [check_queue(name)] if name else await call(self.engine.queues)

    async def _page(self, queues: list[str], states: list[str], offset: int, limit: int,
                    keep: Callable[[JobInfo], bool] = lambda info: True) -> tuple[list[JobInfo], bool]:
        """Jobs of ``states`` in ``queues`` (in that order), one page, and whether more follow.
        With a filter (``keep``) the jobs are read SCAN_PAGE at a time until the page is
        full, at most SCAN_MAX of them per request."""
        found: list[JobInfo] = []
        want, scanned = offset + limit + 1, 0
        for queue in queues:
            for state in states:
                start = 0
                while len(found) < want and scanned < SCAN_MAX:
                    infos = await call(self.engine.jobs, queue, state, limit=max(want, SCAN_PAGE), offset=start)
                    scanned += len(infos)
                    start += len(infos)
                    found.extend(i for i in infos if keep(i))
                    if len(infos) < max(want, SCAN_PAGE):
                        break
                if len(found) >= want:
                    break
            if len(found) >= want:
                break
        return found[offset:offset + limit], len(found) > offset + limit

    def _paging(self, request: Request) -> tuple[int, int]:
        q = request.query_params
        try:
            limit, offset = int(q.get("limit", 50)), int(q.get("offset", 0))
        except ValueError:
            raise Refusal(400, "VALIDATION_ERROR", "limit and offset must be integers") from None
        return _in_range(limit, 1, LIST_MAX, "limit"), _in_range(offset, 0, 10**9, "offset")

    @staticmethod
    def _listed(items: list[JobInfo], more: bool) -> JSONResponse:
        return JSONResponse([summary(i) for i in items], headers={"X-Has-More": "true" if more else "false"})

    async def list_jobs(self, request: Request, body: Any) -> Any:
        limit, offset = self._paging(request)
        q = request.query_params
        wanted = [s.strip() for s in q.get("status", "").split(",") if s.strip()]
        unknown = [s for s in wanted if s not in STATE_OF]
        if unknown:
            raise Refusal(400, "VALIDATION_ERROR", f"unknown status {unknown[0]!r}")
        states = list(dict.fromkeys(STATE_OF[s] for s in wanted)) or list(STATES)
        statuses, matches = set(wanted), self._filter(request)

        def keep(info: JobInfo) -> bool:
            return (not statuses or _status(info) in statuses) and matches(info)
        items, more = await self._page(await self._queues(q.get("queue_name")), states, offset, limit, keep)
        return self._listed(items, more)

    @staticmethod
    def _filter(request: Request) -> Callable[[JobInfo], bool]:
        """The list filters besides status: job_type (exact), tag, q (case-insensitive: the
        id starts with it, or the queue name or job_type holds it), created_after
        (inclusive) and created_before (exclusive)."""
        q = request.query_params
        job_type, tag, text = q.get("job_type"), q.get("tag"), (q.get("q") or "").lower()
        after = parse_time(q["created_after"], "created_after", "VALIDATION_ERROR") if q.get("created_after") else None
        before = parse_time(q["created_before"], "created_before", "VALIDATION_ERROR") \
            if q.get("created_before") else None

        def keep(info: JobInfo) -> bool:
            kind = _job_type(info.payload)
            return ((job_type is None or kind == job_type) and (tag is None or has_tag(info.tags, tag))
                    and (not text or public_id(info.queue, info.id).lower().startswith(text)
                         or text in info.queue.lower() or text in kind.lower())
                    and (after is None or info.created_at >= after)
                    and (before is None or info.created_at < before))
        return keep

    async def batch_status(self, request: Request, body: Any) -> Any:
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        if not 1 <= len(ids) <= LIST_MAX:
            raise Refusal(400, "VALIDATION_ERROR", f"give 1 to {LIST_MAX} ids")
        out = []
        for public in ids:
            try:
                info = await self.info(public)
            except Refusal:
                continue
            out.append({"id": public, "status": _status(info), "queue_name": info.queue,
                        "retry_count": _retry_count(info), "created_at": iso(info.created_at),
                        "completed_at": iso(info.finished_at if info.state == "done" else None)})
        return out

    async def stats(self, request: Request, body: Any) -> Any:
        totals = dict.fromkeys(("pending", "scheduled", "processing", "completed", "failed", "deadletter",
                                "cancelled"), 0)
        for queue in await call(self.engine.queues):
            s = await call(self.engine.stats, queue)
            for state, status in STATUS.items():
                totals[status] += s[state]
        return {**totals, "total": sum(totals.values())}

    async def dlq(self, request: Request, body: Any) -> Any:
        limit, offset = self._paging(request)
        items, more = await self._page(await self._queues(request.query_params.get("queue_name")), ["dead"],
                                       offset, limit, self._filter(request))
        return self._listed(items, more)

    async def dlq_retry(self, request: Request, body: Any) -> Any:
        b = fields(body, {"queue_name": (str, None), "job_ids": (list, None), "limit": (int, None, None)})
        limit = _in_range(b["limit"], 1, LIST_MAX, "limit") if b["limit"] is not None else None
        by_queue: dict[str, list[str]] = {}
        if b["job_ids"] is not None:
            for public in b["job_ids"]:
                if not isinstance(public, str):
                    raise FieldError("job_ids must be a list of job id strings")
                try:
                    queue, job_id = split_id(public)
                except Refusal:
                    continue
                if b["queue_name"] in (None, queue):
                    by_queue.setdefault(queue, []).append(job_id)
        else:
            for queue in await self._queues(b["queue_name"]):
                dead = await call(self.engine.jobs, queue, "dead", limit=limit or defaults.BATCH_MAX)
                by_queue[queue] = [i.id for i in dead]
        retried: list[str] = []
        for queue, ids in by_queue.items():
            infos = [await call(self.engine.get, queue, i) for i in ids]
            dead_ids = [i.id for i in infos if i is not None and i.state == "dead"]
            if limit is not None:
                dead_ids = dead_ids[:max(0, limit - len(retried))]
            if dead_ids:
                await call(self.engine.replay_dead, queue, dead_ids)
                retried.extend(public_id(queue, i) for i in dead_ids)
        return {"retried_count": len(retried), "retried_jobs": retried, "skipped_jobs": []}

    async def dlq_purge(self, request: Request, body: Any) -> Any:
        b = fields(body, {"confirm": (bool, REQUIRED), "queue_name": (str, None), "older_than": (str, None),
                          "limit": (int, None, None)})
        if not b["confirm"]:
            raise Refusal(400, "VALIDATION_ERROR", "confirm must be true to purge the dead-letter queue")
        older = parse_time(b["older_than"], "older_than", "VALIDATION_ERROR") if b["older_than"] else None
        limit = _in_range(b["limit"], 1, 10_000, "limit") if b["limit"] is not None else None
        purged = 0
        for queue in await self._queues(b["queue_name"]):
            if older is None and limit is None:
                purged += await call(self.engine.purge, queue, "dead")
                continue
            dead = await call(self.engine.jobs, queue, "dead", limit=10_000)
            for info in dead:
                if limit is not None and purged >= limit:
                    break
                if older is None or info.created_at < older:
                    purged += int(await call(self.engine.delete_job, queue, info.id))
        return {"purged_count": purged}

    # ------------------------------------------------------------------ workers
    REGISTER = {"queue_name": (str, REQUIRED), "hostname": (str, REQUIRED), "worker_id": (str, None),
                "worker_type": (str, None), "max_concurrency": (int, 5), "metadata": (Any, None),
                "version": (str, None)}

    async def register(self, request: Request, body: Any) -> Any:
        b = fields(body, self.REGISTER)
        queue = check_queue(b["queue_name"])
        _in_range(b["max_concurrency"], 1, 100, "max_concurrency")
        worker_id = validate.worker_id(b["worker_id"] or str(uuid.uuid4()))
        await call(self.engine.register_worker, worker_id, host=b["hostname"], pid=0, queues=[queue])
        return JSONResponse({"id": worker_id, "queue_name": queue, "lease_duration_secs": WORKER_LEASE_S,
                             "heartbeat_interval_secs": WORKER_HEARTBEAT_S}, status_code=201)

    async def worker_heartbeat(self, request: Request, body: Any) -> Any:
        b = fields(body, {"current_jobs": (int, 0), "status": (str, None), "metadata": (Any, None)})
        _in_range(b["current_jobs"], 0, 10**6, "current_jobs")
        worker_id = request.path_params["id"]
        if not await self.workers.seen(request, validate.worker_id(worker_id), None, register=False):
            raise Refusal(404, "NOT_FOUND", "Worker not found")
        return {"success": True}

    async def _worker(self, worker_id: str) -> WorkerInfo:
        for w in await call(self.engine.workers, timeout=FOREVER_S):
            if w.id == worker_id:
                return w
        raise Refusal(404, "NOT_FOUND", "Worker not found")

    async def deregister(self, request: Request, body: Any) -> Any:
        """Give back every lease the worker still holds (attempt not counted), then
        remove its registration."""
        w = await self._worker(request.path_params["id"])
        for queue in w.queues:
            for lease in await call(self.engine.leases_of, queue, w.id):
                with contextlib.suppress(LeaseLost):
                    await call(self.engine.release, lease)
        await call(self.engine.deregister_worker, w.id)
        return None

    @staticmethod
    def _worker_json(w: WorkerInfo, full: bool = False) -> dict[str, Any]:
        out = {"id": w.id, "queue_name": w.queues[0] if w.queues else "", "hostname": w.host,
               "status": "healthy", "current_jobs": len(w.jobs_in_progress), "max_concurrency": 0,
               "last_heartbeat": iso(w.last_heartbeat), "jobs_processed": w.processed, "jobs_failed": w.failed}
        if full:
            out.update({"organization_id": ORGANIZATION, "queue_names": w.queues,
                        "created_at": iso(w.started_at), "metadata": None})
        return out

    async def list_workers(self, request: Request, body: Any) -> Any:
        return [self._worker_json(w) for w in await call(self.engine.workers)]

    async def get_worker(self, request: Request, body: Any) -> Any:
        return self._worker_json(await self._worker(request.path_params["id"]), full=True)


def create_app(engine: Engine, tokens: dict[str, str] | None = None, *, waits: LoopEngines | None = None) -> Starlette:
    """The spooled protocol as an ASGI app; mount it at ``/compat/spooled`` (its routes
    live under ``/api/v1``, where the SDK puts them). ``waits``: the server's, so that
    its shutdown ends the realtime streams too (spooled_realtime.py)."""
    from .spooled_auth import AuthRoutes, TokenAuth  # (these import this module)
    from .spooled_history import JobHistory
    from .spooled_ingest import ingest_routes
    from .spooled_queues import queue_routes
    from .spooled_realtime import Realtime
    from .spooled_schedules import Schedules
    from .spooled_webhooks import Webhooks
    from .spooled_workflows import Workflows

    api = SpooledApi(engine, tokens)
    v1 = "/api/v1"
    J = v1 + "/jobs/{id:path}"
    resources = [*Schedules(api).routes(v1), *Workflows(api).routes(v1), *Webhooks(api).routes(v1)]
    routes: list[BaseRoute] = [
        *resources,   # first: /jobs/{id}/dependencies before /jobs/{id}
        api.route("POST", v1 + "/jobs", "worker", api.create),
        api.route("GET", v1 + "/jobs", "read", api.list_jobs),
        api.route("POST", v1 + "/jobs/bulk", "worker", api.bulk),
        api.route("POST", v1 + "/jobs/claim", "worker", api.claim),
        api.route("GET", v1 + "/jobs/stats", "read", api.stats),
        api.route("GET", v1 + "/jobs/status", "read", api.batch_status),
        api.route("GET", v1 + "/jobs/dlq", "read", api.dlq),
        api.route("POST", v1 + "/jobs/dlq/retry", "admin", api.dlq_retry),
        api.route("POST", v1 + "/jobs/dlq/purge", "admin", api.dlq_purge),
        api.route("POST", J + "/complete", "worker", api.complete),
        api.route("POST", J + "/fail", "worker", api.fail),
        api.route("POST", J + "/heartbeat", "worker", api.heartbeat),
        api.route("POST", J + "/retry", "admin", api.retry),
        api.route("PUT", J + "/priority", "admin", api.boost_priority),
        api.route("GET", J + "/history", "read", JobHistory(api).get),   # before GET J, which takes any path
        api.route("GET", J, "read", api.get),
        api.route("DELETE", J, "admin", api.cancel),
        api.route("GET", v1 + "/workers", "read", api.list_workers),
        api.route("POST", v1 + "/workers/register", "worker", api.register, 201),
        api.route("POST", v1 + "/workers/{id}/heartbeat", "worker", api.worker_heartbeat),
        api.route("POST", v1 + "/workers/{id}/deregister", "worker", api.deregister),
        api.route("GET", v1 + "/workers/{id}", "read", api.get_worker),
    ]
    routes += queue_routes(api)          # /health*, /queues (spooled_queues.py)
    routes += ingest_routes(api, v1)     # /webhooks/{org_id}/custom, /webhooks/deliveries (spooled_ingest.py)
    every: list[BaseRoute] = [*routes, *AuthRoutes(DIALECT, tokens).routes(v1),
                              *Realtime(api, waits or LoopEngines(engine)).routes(v1)]

    async def not_found(request: Request, exc: Exception) -> Response:
        # the key is checked before the route, as the service does: a bad key learns nothing
        if role_of(request.headers.get("authorization"), tokens) is None:
            return DIALECT.answer(Unauthorized("no valid key"), request)
        return error(404, "NOT_FOUND", f"no route {request.method} {request.url.path} in the spooled protocol")

    app = Starlette(routes=every, exception_handlers={404: not_found, 405: not_found},
                    middleware=[Middleware(TokenAuth, tokens=tokens)])   # login tokens count as their keys
    app.state.api = api
    return app
