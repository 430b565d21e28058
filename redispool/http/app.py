"""``redispool serve``: the HTTP API over the Engine, metrics, health, and the dashboard.

Every route calls an Engine method (the same Lua scripts as the Python worker): no second
state machine. The worker's routes (enqueue, claim, ack, complete, fail, heartbeat,
release), the registry and the reads run on ``redispool.aio.AsyncEngine`` -- the Engine's
own calls and reply parsers on ``redis.asyncio`` -- so no request holds a thread; the
long-poll of a claim (``wait`` up to 30 s) blocks in Redis (BZPOPMIN on the queue's
wake-up marker) and ends early, giving back what it leased, when the client goes away.
Rare administrative calls (cancel, pause, replay, purge, cues, webhooks) run the sync Engine on
Starlette's thread pool. Routes are listed once, in ``routes_of``, which builds both the
app and its OpenAPI document.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from .. import validate
from ..aio import GIVE_UP, AsyncEngine, ServerBusy, pool_exhausted
from ..engine import Engine, JobSpec
from ..errors import (
    REDIS_TROUBLE,
    ConnectionFailed,
    CueNotFound,
    JobNotFound,
    LeaseLost,
    RedisFull,
    RedispoolError,
    WebhookNotFound,
    WorkflowNotFound,
)
from ..keys import STATES, check_queue
from ..models import Job, Lease
from ..web import endpoint, outage
from ..web.access import note
from ..web.body import EMPTY, BadInput, BodyTooLarge, check_depth, fields
from ..web.delivery import rendered
from ..web.endpoint import Dialect, Forbidden, Unauthorized, call
from ..web.metrics import Metrics
from ..web.waiting import GONE, LoopEngines
from ..web.workers import HttpWorkers
from ..webhooks import LOG_MAX
from . import bodies, events, wire, ws
from .openapi import document

log = logging.getLogger("redispool.http")
MAX_ITEMS, MAX_WAIT_S = bodies.MAX_ITEMS, bodies.MAX_WAIT_S


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error in the native shape: ``{"error": CODE, "message": TEXT}``."""
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def unavailable(code: str, detail: str, where: str = "") -> JSONResponse:
    """503 (507 ``redis_full``) for Redis trouble: what kind and when to retry, never where
    Redis is (the log gets ``detail``, outage.py)."""
    message, headers = outage.public(code, detail, where)
    return error(507 if code == "redis_full" else 503, code, message, headers)


DIALECT = Dialect(render=error, errors={
    Unauthorized: (401, "unauthorized"),
    Forbidden: (403, "forbidden"),
    JobNotFound: (404, "not_found"),
    CueNotFound: (404, "not_found"),
    WebhookNotFound: (404, "not_found"),
    WorkflowNotFound: (404, "not_found"),
    LeaseLost: (409, "lease_lost"),
    BodyTooLarge: (413, "too_large"),
    RedispoolError: (400, "bad_input"),   # BadInput, InvalidQueueName, InvalidOption, PayloadError, ...
}, trouble={"unavailable": (503, "unavailable"), "busy": (503, "busy"), "redis_full": (507, "redis_full")})

CLAIM_TROUBLE: tuple[type[BaseException], ...] = (ConnectionFailed, RedisFull, *REDIS_TROUBLE)


class Api:
    """The ``/v1`` routes' handlers: ``handler(request, body)`` with the JSON body (``EMPTY``
    when none was sent), wrapped by ``web.endpoint.route`` with this API's dialect."""

    def __init__(self, engine: Engine, tokens: dict[str, str] | None, worker_timeout: float) -> None:
        self.engine = engine
        self.tokens = tokens
        self.worker_timeout = worker_timeout
        self.waits = LoopEngines(engine)   # the async engine; interrupt() ends long-polls at shutdown
        self.metrics = Metrics(engine)
        # what each HTTP worker holds lives in its registration in Redis (web/workers.py):
        # every server replica shows one list, and this process keeps nothing per worker
        self.workers = HttpWorkers(lambda: self.aio)

    @property
    def aio(self) -> AsyncEngine:
        return self.waits.get()

    def route(self, method: str, path: str, role: str, handler: Callable[..., Awaitable[Any]],
              status: int = 200) -> Route:
        return endpoint.route(DIALECT, self.tokens, method, path, role, handler, status)

    @staticmethod
    def queue(request: Request) -> str:
        return check_queue(request.path_params["queue"])

    # ------------------------------------------------------------------ producing
    def _spec(self, queue: str, body: dict[str, Any], where: str = "payload") -> JobSpec:
        o = {k: v for k, v in body.items() if k != "payload"}
        payload = check_depth(body["payload"], where)  # what is stored can be handed back
        return self.engine.job_spec(payload, backoff_base=None, backoff_cap=None, queue=queue, **o)

    async def enqueue(self, request: Request, body: Any) -> Any:
        queue = self.queue(request)
        if body is EMPTY:   # no body is not a null job
            raise BadInput("the body is empty: send a JSON object")
        spec = self._spec(queue, fields(body, bodies.NEW_JOB))
        [(job_id, created)] = await self.aio.enqueue_specs(queue, [spec])
        return JSONResponse({"id": job_id, "created": created}, status_code=201 if created else 200)

    async def enqueue_batch(self, request: Request, body: Any) -> Any:
        queue = self.queue(request)
        jobs = fields(body, bodies.BATCH)["jobs"]
        if not 1 <= len(jobs) <= MAX_ITEMS:
            raise BadInput(f"jobs must hold 1 to {MAX_ITEMS} jobs")
        specs = [self._spec(queue, fields(j, bodies.NEW_JOB, f"jobs[{i}]"), f"jobs[{i}].payload")
                 for i, j in enumerate(jobs)]
        out = await self.aio.enqueue_specs(queue, specs)
        return JSONResponse({"ids": [job_id for job_id, _ in out]}, status_code=201)

    # ------------------------------------------------------------------ consuming
    async def _claim(self, request: Request, queue: str, c: dict[str, Any], processed: int = 0, failed: int = 0,
                     settled: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Claim (long-polling up to ``wait``), then register or refresh the worker with
        the jobs it took, those it ``settled`` and the ``processed``/``failed`` it reports."""
        worker_id = self._claim_checks(c)
        aio = self.aio
        if c["wait"] > 0:
            note(request, long_poll=True)   # its wait stays out of the request latency histogram
            async with self.waits.stop_for(request.receive) as stop:
                jobs = await aio.claim(queue, worker_id, limit=c["limit"], lease=c["lease"], block=c["wait"],
                                       stop=stop)
                if jobs and stop.done() and stop.result() == GONE:  # nobody will read them: give them back
                    await self._give_back(jobs)
                    jobs = []
        else:
            jobs = await aio.claim(queue, worker_id, limit=c["limit"], lease=c["lease"])
        return await self._deliver(request, queue, worker_id, jobs, processed, failed, settled)

    async def _deliver(self, request: Request, queue: str, worker_id: str, jobs: list[Job], processed: int,
                       failed: int, settled: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The JSON of jobs just leased to ``worker_id``. Nothing after a lease may lose the
        jobs: one that cannot be sent as JSON goes to dead alone (its batch-mates are sent);
        the registry write is best effort (a full or lost Redis must not strand the jobs
        the claim already holds); anything else gives the batch back (released, the
        attempt not counted) before the error is answered."""
        try:
            out, sent, broken = rendered(jobs, wire.job)
            if broken:
                await self.aio.bury(broken)
                jobs = sent
            await self.workers.took(request, worker_id, queue, {f"{queue}/{j.id}": j.lease_expires_at for j in jobs},
                                    processed=processed, failed=failed, settled=settled)
            return out
        except BaseException:
            await asyncio.shield(self._give_back(jobs))
            raise

    async def _give_back(self, jobs: list[Job]) -> None:
        """Release leased jobs nobody will get (attempt not counted); best effort, at once."""
        async def one(job: Job) -> None:
            with contextlib.suppress(*GIVE_UP):
                await self.aio.release(job)
        await asyncio.gather(*(one(j) for j in jobs))

    @staticmethod
    def _claim_checks(c: dict[str, Any]) -> str:
        """Everything a claim needs to be valid, checked before anything is written."""
        if not 1 <= c["limit"] <= MAX_ITEMS:
            raise BadInput(f"limit must be 1 to {MAX_ITEMS}")
        if not 0 <= c["wait"] <= MAX_WAIT_S:
            raise BadInput(f"wait must be 0 to {MAX_WAIT_S:g} seconds")
        validate.lease_ms(c["lease"])
        return validate.worker_id(c["worker_id"])  # the registry's rule, so registering cannot fail

    async def claim(self, request: Request, body: Any) -> Any:
        queue = self.queue(request)
        return {"jobs": await self._claim(request, queue, fields(body, bodies.CLAIM))}

    def _lease(self, request: Request, body: dict[str, Any], check_worker: bool = True) -> Lease:
        """The lease a /complete, /fail, /heartbeat, /release or /progress names (with its worker id
        checked, unless ``check_worker`` is False: a release gives the job back whatever)."""
        if not body["token"]:
            raise BadInput("token must be the lease token the claim returned")
        if check_worker and body["worker_id"] is not None:
            validate.worker_id(body["worker_id"])
        return Lease(request.path_params["id"], self.queue(request), body["token"])

    async def complete(self, request: Request, body: Any) -> Any:
        b = fields(body, bodies.COMPLETE)
        lease = self._lease(request, b)
        await self.aio.complete(lease, check_depth(b["result"], "result"))
        await self.workers.settled(request, b["worker_id"], lease.queue, f"{lease.queue}/{lease.id}", failed=False)
        return {"state": "done"}

    async def fail(self, request: Request, body: Any) -> Any:
        b = fields(body, bodies.FAIL)
        lease = self._lease(request, b)
        state = await self.aio.fail(lease, b["error"], retry=b["retry"], delay=b["delay"])
        await self.workers.settled(request, b["worker_id"], lease.queue, f"{lease.queue}/{lease.id}", failed=True)
        return {"state": state}

    async def heartbeat(self, request: Request, body: Any) -> Any:
        b = fields(body, bodies.HEARTBEAT)
        lease = self._lease(request, b)
        expires = await self.aio.heartbeat(lease, b["lease"])
        if b["worker_id"]:
            await self.workers.seen(request, b["worker_id"], lease.queue, taken={f"{lease.queue}/{lease.id}": expires})
        return {"lease_expires_at": expires}

    async def release(self, request: Request, body: Any) -> Any:
        b = fields(body, bodies.RELEASE)
        lease = self._lease(request, b, check_worker=False)
        await self.aio.release(lease)
        await self.workers.settled(request, b["worker_id"], lease.queue, f"{lease.queue}/{lease.id}", failed=None)
        return {"state": "ready"}

    async def progress(self, request: Request, body: Any) -> Any:
        b = fields(body, bodies.PROGRESS)
        lease = self._lease(request, b)
        at = await self.aio.progress(lease, b["value"], b["message"])
        return {"value": b["value"], "message": b["message"], "at": at}

    async def ack(self, request: Request, body: Any) -> Any:
        queue = self.queue(request)
        b = fields(body, bodies.ACK)
        done = [fields(c, bodies.ACK_DONE, f"complete[{i}]") for i, c in enumerate(b["complete"])]
        for i, c in enumerate(done):
            check_depth(c["result"], f"complete[{i}].result")
        failed = [fields(f, bodies.ACK_FAILED, f"fail[{i}]") for i, f in enumerate(b["fail"])]
        claim = fields(b["claim"], bodies.CLAIM, "claim") if b["claim"] is not None else None
        if len(done) + len(failed) > MAX_ITEMS:
            raise BadInput(f"at most {MAX_ITEMS} items per ack")
        for where, item in [(f"complete[{i}]", c) for i, c in enumerate(done)] + \
                [(f"fail[{i}]", f) for i, f in enumerate(failed)]:
            if not item["id"] or not item["token"]:
                raise BadInput(f"{where} needs the job's id and the lease token the claim returned")
        if claim is not None:  # checked before anything is finished
            self._claim_checks(claim)
        result = await self.aio.ack(queue,
            completed=[(Lease(c["id"], queue, c["token"]), c["result"]) for c in done],
            failed=[(Lease(f["id"], queue, f["token"]), f["error"], f["retry"], f["delay"]) for f in failed])
        results = [{"id": c["id"], "ok": ok, **({"state": "done"} if ok else {"error": "lease_lost"})}
                   for c, ok in zip(done, result.completed)]
        results += [{"id": f["id"], "ok": state is not None, **({"state": state} if state else {"error": "lease_lost"})}
                    for f, state in zip(failed, result.failed)]
        out: dict[str, Any] = {"results": results}
        if claim is not None:
            ok_done = sum(result.completed)
            ok_failed = sum(1 for state in result.failed if state is not None)
            try:
                out["jobs"] = await self._claim(request, queue, claim, ok_done + ok_failed, ok_failed,
                                                settled=[f"{queue}/{item['id']}" for item in done + failed])
            except CLAIM_TROUBLE as exc:  # the results stand: say so, and nothing is leased
                code = outage.kind(exc)
                message, _ = outage.public(code, str(exc), f"{request.method} {request.url.path} (claim)")
                out["jobs"], out["claim_error"] = [], {"error": code, "message": message}
        return out

    # ------------------------------------------------------------------ reading and acting
    async def list_queues(self, request: Request, body: Any) -> Any:
        out = []
        aio = self.aio
        for name in await aio.queues():
            s = await aio.stats(name)
            out.append({"name": name, "paused": s["paused"], "counts": {st: s[st] for st in STATES}})
        return out

    async def queue_stats(self, request: Request, body: Any) -> Any:
        return await self.aio.stats(self.queue(request))

    async def list_jobs(self, request: Request, body: Any) -> Any:
        queue = self.queue(request)
        state = _query(request, "state")
        state = "ready" if state is None else state
        if state not in STATES:
            raise BadInput(f"state must be one of {', '.join(STATES)}")
        limit = _int(_query(request, "limit"), 100, "limit", 1, 1000)
        cursor = _int(_query(request, "cursor"), 0, "cursor", 0, 10**12 - 1)
        infos = await self.aio.jobs(queue, state, limit=limit + 1, offset=cursor)
        more = len(infos) > limit
        return {"jobs": [wire.info(i) for i in infos[:limit]], "cursor": str(cursor + limit) if more else None}

    async def get_job(self, request: Request, body: Any) -> Any:
        queue, job_id = self.queue(request), request.path_params["id"]
        found = await self.aio.get(queue, job_id)
        if found is None:
            raise JobNotFound(f"no job {job_id!r} in queue {queue!r}")
        return wire.info(found)

    async def cancel_job(self, request: Request, body: Any) -> Any:
        queue, job_id = self.queue(request), request.path_params["id"]
        cancelled = await call(self.engine.cancel, queue, job_id)
        return {"cancelled": cancelled}

    # ------------------------------------------------------------------ workflows
    async def create_workflow(self, request: Request, body: Any) -> Any:
        if body is EMPTY:
            raise BadInput("the body is empty: send a JSON object")
        b = fields(body, bodies.WORKFLOW)
        jobs = b["jobs"]
        if not 1 <= len(jobs) <= bodies.WORKFLOW_MAX:
            raise BadInput(f"jobs must hold 1 to {bodies.WORKFLOW_MAX} jobs")
        nodes = []
        for i, j in enumerate(jobs):
            node = fields(j, bodies.WORKFLOW_NODE, f"jobs[{i}]")
            node["payload"] = check_depth(node["payload"], f"jobs[{i}].payload")
            nodes.append(node)
        made = await call(self.engine.enqueue_workflow, b["name"], nodes, workflow_id=b["workflow_id"])
        return JSONResponse(wire.workflow(made), status_code=201)

    async def list_workflows(self, request: Request, body: Any) -> Any:
        limit = _int(_query(request, "limit"), 20, "limit", 1, 1000)
        return [wire.workflow(w) for w in await call(self.engine.workflows, limit)]

    async def get_workflow(self, request: Request, body: Any) -> Any:
        return wire.workflow(await call(self.engine.workflow, request.path_params["id"]))

    async def cancel_workflow(self, request: Request, body: Any) -> Any:
        return {"cancelled": await call(self.engine.cancel_workflow, request.path_params["id"])}

    async def pause(self, request: Request, body: Any) -> Any:
        return {"changed": await call(self.engine.pause, self.queue(request))}

    async def resume(self, request: Request, body: Any) -> Any:
        return {"changed": await call(self.engine.resume, self.queue(request))}

    async def get_limits(self, request: Request, body: Any) -> Any:
        return await call(self.engine.limits, self.queue(request))

    async def put_limits(self, request: Request, body: Any) -> Any:
        """Replace the queue's limits (both: an absent or null one is removed)."""
        b = fields(body, bodies.LIMITS)
        return await call(lambda: self.engine.set_limits(self.queue(request), **b))

    async def replay(self, request: Request, body: Any) -> Any:
        ids = fields(body, bodies.REPLAY)["ids"]
        if ids is not None and not all(isinstance(i, str) for i in ids):
            raise BadInput("ids must be a list of job id strings")
        if ids is not None and len(ids) > bodies.MAX_REPLAY:
            raise BadInput(f"at most {bodies.MAX_REPLAY} ids per replay (or none: every dead job)")
        return {"replayed": await call(self.engine.replay_dead, self.queue(request), ids)}

    async def purge(self, request: Request, body: Any) -> Any:
        state = _query(request, "state")
        if state not in STATES:
            raise BadInput(f"give ?state= one of {', '.join(STATES)}")
        return {"purged": await call(self.engine.purge, self.queue(request), state)}

    async def list_cues(self, request: Request, body: Any) -> Any:
        return [wire.cue(c) for c in await call(self.engine.cues)]

    async def put_cue(self, request: Request, body: Any) -> Any:
        b = fields(body, bodies.CUE)
        cron = b.pop("cron")
        check_depth(b["payload"])
        info = await call(lambda: self.engine.add_cue(self.queue(request), request.path_params["name"],
                                                           cron, **b))
        return wire.cue(info)

    async def delete_cue(self, request: Request, body: Any) -> Any:
        await call(self.engine.remove_cue, self.queue(request), request.path_params["name"])
        return {"removed": True}

    def cue_verb(self, verb: str) -> Callable[..., Awaitable[Any]]:
        async def act(request: Request, body: Any) -> Any:
            method = getattr(self.engine, {"pause": "pause_cue", "resume": "resume_cue", "run": "run_cue"}[verb])
            result = await call(method, self.queue(request), request.path_params["name"])
            return {"job_id": result} if verb == "run" else {"ok": True}
        return act

    async def list_webhooks(self, request: Request, body: Any) -> Any:
        return [wire.webhook(w) for w in await call(self.engine.webhooks)]

    async def put_webhook(self, request: Request, body: Any) -> Any:
        b = fields(body, bodies.WEBHOOK)
        if b["queues"] == []:   # a webhook of no queue would never deliver anything
            raise BadInput("queues must name one or more queues (null, or no field: every queue)")
        return wire.webhook(await call(lambda: self.engine.add_webhook(request.path_params["name"], **b)))

    async def get_webhook(self, request: Request, body: Any) -> Any:
        name = request.path_params["name"]
        found = await call(self.engine.get_webhook, name)
        if found is None:
            raise WebhookNotFound(f"no webhook {name!r}")
        return wire.webhook(found)

    async def delete_webhook(self, request: Request, body: Any) -> Any:
        await call(self.engine.remove_webhook, request.path_params["name"])
        return {"removed": True}

    async def list_deliveries(self, request: Request, body: Any) -> Any:
        limit = _int(_query(request, "limit"), 100, "limit", 1, LOG_MAX)
        return [wire.delivery(d) for d in await call(self.engine.deliveries, request.path_params["name"], limit=limit)]

    async def list_workers(self, request: Request, body: Any) -> Any:
        return [wire.worker(w) for w in await self.aio.workers(timeout=self.worker_timeout)]

    async def health(self, request: Request, body: Any) -> Any:
        """200 while Redis answers; 503 ``unavailable`` only when it cannot be reached, 503
        ``busy`` when this server's connections stayed taken (Redis may be fine)."""
        try:
            await self.aio.client.ping()
        except Exception as exc:  # noqa: BLE001 - every failure is an answer here
            if pool_exhausted(exc):
                return unavailable("busy", str(ServerBusy(self.engine.url)))
            return unavailable("unavailable", "Redis cannot be reached")
        return {"status": "ok"}

    async def metrics_text(self, request: Request, body: Any) -> Any:
        text, content_type = await call(self.metrics.render)
        return Response(text, media_type=content_type)


def _query(request: Request, name: str) -> str | None:
    """A query parameter given once at most: each of the document's is one value, so of
    several none is taken (the last was, silently: a purge of ?state=dead&state=ready
    purged the ready jobs)."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise BadInput(f"give {name} once, not {len(values)} times")
    return values[0] if values else None


def _int(value: str | None, default: int, name: str, low: int, high: int) -> int:
    """A query parameter of ASCII digits in [low, high] (``str.isdigit`` also takes '²' and
    '①', which ``int`` refuses, and ``int`` takes other scripts' digits)."""
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()) or len(value) > len(str(high)) or not low <= int(value) <= high:
        raise BadInput(f"{name} must be an integer in [{low}, {high}]")
    return int(value)


Q = "/v1/queues/{queue}"
J = Q + "/jobs/{id:path}"
W = "/v1/webhooks/{name}"


def routes_of(api: Api) -> list[tuple[str, str, str, Callable[..., Awaitable[Any]], int, str]]:
    """(method, path, role, handler, success status, summary) of every API route."""
    return [
        ("POST", Q + "/jobs", "worker", api.enqueue, 201, "Enqueue a job"),
        ("POST", Q + "/jobs/batch", "worker", api.enqueue_batch, 201, "Enqueue many jobs in one call"),
        ("POST", Q + "/claim", "worker", api.claim, 200, "Lease jobs, waiting up to `wait` seconds"),
        ("POST", Q + "/ack", "worker", api.ack, 200, "Finish many leases and claim the next batch"),
        ("POST", J + "/complete", "worker", api.complete, 200, "Complete a leased job"),
        ("POST", J + "/fail", "worker", api.fail, 200, "Fail a leased job (retry or dead)"),
        ("POST", J + "/heartbeat", "worker", api.heartbeat, 200, "Extend a lease"),
        ("POST", J + "/release", "worker", api.release, 200, "Give a lease back"),
        ("POST", J + "/progress", "worker", api.progress, 200, "Record how far a leased job has got"),
        ("GET", "/v1/queues", "read", api.list_queues, 200, "Every queue with its counts"),
        ("GET", Q, "read", api.queue_stats, 200, "A queue's stats"),
        ("GET", Q + "/jobs", "read", api.list_jobs, 200, "A page of one state's jobs"),
        ("DELETE", Q + "/jobs", "admin", api.purge, 200, "Purge a state (?state=)"),
        ("GET", J, "read", api.get_job, 200, "One job"),
        ("DELETE", J, "admin", api.cancel_job, 200, "Cancel a job"),
        ("POST", Q + "/pause", "admin", api.pause, 200, "Pause a queue"),
        ("POST", Q + "/resume", "admin", api.resume, 200, "Resume a queue"),
        ("POST", Q + "/replay", "admin", api.replay, 200, "Replay dead jobs"),
        ("GET", Q + "/limits", "read", api.get_limits, 200, "A queue's limits (rate, concurrency)"),
        ("PUT", Q + "/limits", "admin", api.put_limits, 200, "Replace a queue's limits"),
        ("GET", "/v1/cues", "read", api.list_cues, 200, "Every cue"),
        ("PUT", Q + "/cues/{name}", "admin", api.put_cue, 200, "Create or replace a cue"),
        ("DELETE", Q + "/cues/{name}", "admin", api.delete_cue, 200, "Remove a cue"),
        ("POST", Q + "/cues/{name}/pause", "admin", api.cue_verb("pause"), 200, "Pause a cue"),
        ("POST", Q + "/cues/{name}/resume", "admin", api.cue_verb("resume"), 200, "Resume a cue"),
        ("POST", Q + "/cues/{name}/run", "admin", api.cue_verb("run"), 200, "Run a cue now"),
        ("GET", "/v1/webhooks", "read", api.list_webhooks, 200, "Every webhook"),
        ("PUT", W, "admin", api.put_webhook, 200, "Create or replace a webhook"),
        ("GET", W, "read", api.get_webhook, 200, "One webhook"),
        ("DELETE", W, "admin", api.delete_webhook, 200, "Remove a webhook (its waiting deliveries are dropped)"),
        ("GET", W + "/deliveries", "read", api.list_deliveries, 200, "A webhook's latest delivery attempts"),
        ("GET", "/v1/workers", "read", api.list_workers, 200, "Live workers"),
        ("POST", "/v1/workflows", "worker", api.create_workflow, 201, "Create a workflow (all or nothing)"),
        ("GET", "/v1/workflows", "read", api.list_workflows, 200, "The latest workflows, newest first"),
        ("GET", "/v1/workflows/{id}", "read", api.get_workflow, 200, "A workflow with its nodes' states"),
        ("POST", "/v1/workflows/{id}/cancel", "admin", api.cancel_workflow, 200,
         "Cancel every unfinished node of a workflow"),
        ("GET", "/v1/events", "read", events.handler(api), 200, "Queues' events as Server-Sent Events"),
    ]


def websocket_routes(api: Api) -> list[BaseRoute]:
    """``GET /v1/ws`` (ws.py: the events over a WebSocket), and 426 to a plain GET there."""
    async def upgrade_required(request: Request) -> Response:
        return error(426, "upgrade_required", "GET /v1/ws is a WebSocket: open it with the upgrade handshake "
                                              "(or read the events as Server-Sent Events: GET /v1/events)",
                     headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    return [WebSocketRoute("/v1/ws", ws.handler(api, error), name="GET /v1/ws"),
            Route("/v1/ws", upgrade_required, methods=["GET"], name="GET /v1/ws (no upgrade)")]


def openapi(api: Api) -> dict[str, Any]:
    """The OpenAPI document of the route table (schemas in openapi.py)."""
    return document((m, p.replace(":path", ""), role, status, summary)
                    for m, p, role, _, status, summary in routes_of(api))
