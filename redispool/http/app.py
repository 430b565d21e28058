"""``redispool serve``: the HTTP API over the Engine, metrics, health, and the dashboard.

Every route calls an Engine method (the same Lua scripts as the Python worker): no second
state machine. The worker's routes (enqueue, claim, ack, complete, fail, heartbeat,
release), the registry and the reads run on ``redispool.aio.AsyncEngine`` -- the Engine's
own calls and reply parsers on ``redis.asyncio`` -- so no request holds a thread; the
long-poll of a claim (``wait`` up to 30 s) blocks in Redis (BZPOPMIN on the queue's
wake-up marker) and ends early, giving back what it leased, when the client goes away.
Rare administrative calls (cancel, pause, replay, purge, cues) run the sync Engine on
Starlette's thread pool. Routes are listed once, in ``routes_of``, which builds both the
app and its OpenAPI document.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Match, Mount, Route

from .. import defaults, validate
from ..aio import GIVE_UP, ServerBusy, pool_exhausted
from ..errors import (REDIS_TROUBLE, ConnectionFailed, CueNotFound, InvalidCron, InvalidQueueName, JobNotFound,
                      LeaseLost, PayloadError, RedisFull, RedispoolError)
from ..keys import STATES, check_queue
from ..registry import _worker_id as check_worker_id
from . import outage, wire
from .access import Access, note
from .auth import allows, role_of
from .guard import Guard
from .metrics import Metrics
from .openapi import document
from .waiting import GONE, LoopEngines
from .wire import MISSING, BadInput

log = logging.getLogger("redispool.http")
MAX_BODY = 1 << 20        # 1 MiB
MAX_WAIT_S = 30.0
MAX_CLAIM = 1000


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Lease:
    """What a client hands back for a leased job: enough for complete/fail/heartbeat."""

    id: str
    queue: str
    token: str
    lease: float | None = None


def error(status: int, code: str, message: str) -> JSONResponse:
    headers = None
    if status in (503, 507):  # Redis trouble: the client is not told where Redis is (outage.py)
        message, headers = outage.public(code, message)
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


CLAIM_TROUBLE: tuple[type[BaseException], ...] = (ConnectionFailed, RedisFull, *REDIS_TROUBLE)


def trouble_of(exc: BaseException) -> tuple[int, str, str]:
    """(status, code, message) of Redis trouble: 507 ``redis_full`` for a Redis at
    maxmemory, 503 ``busy`` when no pooled connection came free in time (Redis may be
    fine), else 503 ``unavailable``."""
    if isinstance(exc, (RedisFull, redis.exceptions.OutOfMemoryError)):
        return 507, "redis_full", str(exc)
    if isinstance(exc, ServerBusy):
        return 503, "busy", str(exc)
    return 503, "unavailable", str(exc)


def trouble(exc: BaseException) -> JSONResponse:
    return error(*trouble_of(exc))


class Api:
    def __init__(self, engine: Any, tokens: dict[str, str] | None, worker_timeout: float) -> None:
        self.engine = engine
        self.tokens = tokens
        self.worker_timeout = worker_timeout
        self.waits = LoopEngines(engine)   # the async engine; interrupt() ends long-polls at shutdown
        self.metrics = Metrics(engine)
        # An HTTP worker's jobs in progress ("queue/id") live in its registration in Redis,
        # changed by each request (taken, settled), so every server replica shows one list
        # and this process keeps nothing per worker.

    @property
    def aio(self) -> Any:
        return self.waits.get()

    # ------------------------------------------------------------------ plumbing
    def route(self, method: str, path: str, role: str, handler: Callable[..., Awaitable[Any]],
              status: int = 200) -> Route:
        async def endpoint(request: Request) -> Response:  # logged and counted by access.Access
            return await self._handle(request, role, handler, status)
        return Route(path, endpoint, methods=[method], name=f"{method} {path}")

    async def _handle(self, request: Request, needed: str, handler: Callable[..., Awaitable[Any]],
                      status: int) -> Response:
        role = role_of(request.headers.get("authorization"), self.tokens)
        note(request, role=role or "-")
        if role is None:
            return error(401, "unauthorized", "a valid 'Authorization: Bearer TOKEN' header is required")
        if not allows(role, needed):
            return error(403, "forbidden", f"the {role} role may not do this (needs {needed})")
        try:
            body = b""
            if request.method in ("POST", "PUT"):
                length = request.headers.get("content-length")
                if length and length.isdigit() and int(length) > MAX_BODY:
                    return error(413, "too_large", f"the body is over {MAX_BODY} bytes")
                chunks, size = [], 0
                try:
                    async for chunk in request.stream():
                        size += len(chunk)
                        if size > MAX_BODY:
                            return error(413, "too_large", f"the body is over {MAX_BODY} bytes")
                        chunks.append(chunk)
                except ClientDisconnect:  # gone, or cut off at the read timeout: nobody reads this
                    return error(400, "bad_input", "the client went away before its body arrived")
                body = b"".join(chunks)
            result = await handler(request, body)
        except ApiError as exc:
            return error(exc.status, exc.code, exc.message)
        except LeaseLost as exc:
            return error(409, "lease_lost", str(exc))
        except (JobNotFound, CueNotFound) as exc:
            return error(404, "not_found", str(exc))
        except (RedisFull, redis.exceptions.OutOfMemoryError, ServerBusy, ConnectionFailed, ConnectionError,
                TimeoutError, redis.ConnectionError, redis.TimeoutError) as exc:
            return trouble(exc)
        except redis.RedisError as exc:
            log.error("%s %s: %s", request.method, request.url.path, exc)
            return error(503, "unavailable", f"Redis answered with an error: {exc}")
        except (BadInput, InvalidQueueName, InvalidCron, PayloadError, RedispoolError, ValueError,
                TypeError, LookupError) as exc:
            return error(400, "bad_input", str(exc))
        if isinstance(result, Response):
            return result
        return JSONResponse(result, status_code=status)

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a (short) Engine call on the thread pool."""
        return await run_in_threadpool(fn, *args, **kwargs)

    @staticmethod
    def queue(request: Request) -> str:
        return check_queue(request.path_params["queue"])

    # ------------------------------------------------------------------ producing
    JOB_FIELDS = {"payload": (Any, None), "priority": (int, 0), "delay": (float, None, None),
                  "run_at": (float, None, None), "max_attempts": (int, defaults.MAX_ATTEMPTS),
                  "lease": (float, None, None), "unique_key": (str, None, None), "job_id": (str, None, None)}

    def _spec(self, body: dict, where: str = "payload") -> list[Any]:
        o = {k: v for k, v in body.items() if k != "payload"}
        payload = wire.check_depth(body["payload"], where)  # what is stored can be handed back
        return self.engine._job_args(payload, backoff_base=None, backoff_cap=None, **o)

    async def enqueue(self, request: Request, raw: bytes) -> Any:
        queue = self.queue(request)
        body = wire.parse(raw, self.JOB_FIELDS, required=True)  # no body is not a null job
        spec = self._spec(body)
        [(job_id, created)] = await self.aio.enqueue_specs(queue, [spec])
        return JSONResponse({"id": job_id, "created": created}, status_code=201 if created else 200)

    async def enqueue_batch(self, request: Request, raw: bytes) -> Any:
        queue = self.queue(request)
        body = wire.parse(raw, {"jobs": (list, MISSING)})
        if not 1 <= len(body["jobs"]) <= MAX_CLAIM:
            raise BadInput(f"jobs must hold 1 to {MAX_CLAIM} jobs")
        specs = [self._spec(wire.check(j, self.JOB_FIELDS, f"jobs[{i}]"), f"jobs[{i}].payload")
                 for i, j in enumerate(body["jobs"])]
        out = await self.aio.enqueue_specs(queue, specs)
        return JSONResponse({"ids": [job_id for job_id, _ in out]}, status_code=201)

    # ------------------------------------------------------------------ consuming
    CLAIM_FIELDS = {"worker_id": (str, MISSING), "limit": (int, 1), "lease": (float, None, None),
                    "wait": (float, 0)}

    async def _claim(self, request: Request, queue: str, c: dict, processed: int = 0, failed: int = 0,
                     settled: Sequence[str] = ()) -> list[dict]:
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

    async def _deliver(self, request: Request, queue: str, worker_id: str, jobs: list[Any], processed: int,
                       failed: int, settled: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The JSON of jobs just leased to ``worker_id``. Nothing after a lease may lose the
        jobs: one that cannot be sent as JSON goes to dead alone (its batch-mates are sent);
        the registry write is best effort (a full or lost Redis must not strand the jobs
        the claim already holds); anything else gives the batch back (released, the
        attempt not counted) before the error is answered."""
        try:
            out, broken = [], []
            for j in jobs:
                try:
                    out.append(wire.job(j))
                except wire.Undeliverable as exc:
                    broken.append((j, f"Undeliverable: {exc}"))
            if broken:
                await self.aio.bury(broken)
                gone = {j.id for j, _ in broken}
                jobs = [j for j in jobs if j.id not in gone]
            try:
                await self._seen(request, worker_id, queue, processed, failed,
                                 taken={f"{queue}/{j.id}": j.lease_expires_at for j in jobs}, settled=settled)
            except GIVE_UP as exc:
                log.warning("worker %s not registered/refreshed (its %d jobs are delivered): %s",
                            worker_id, len(jobs), exc)
            return out
        except BaseException:
            await asyncio.shield(self._give_back(jobs))
            raise

    async def _give_back(self, jobs: list[Any]) -> None:
        """Release leased jobs nobody will get (attempt not counted); best effort, at once."""
        async def one(job: Any) -> None:
            with contextlib.suppress(*GIVE_UP):
                await self.aio.release(job)
        await asyncio.gather(*(one(j) for j in jobs))

    @staticmethod
    def _claim_checks(c: dict) -> str:
        """Everything a claim needs to be valid, checked before anything is written."""
        if not 1 <= c["limit"] <= MAX_CLAIM:
            raise BadInput(f"limit must be 1 to {MAX_CLAIM}")
        if not 0 <= c["wait"] <= MAX_WAIT_S:
            raise BadInput(f"wait must be 0 to {MAX_WAIT_S:g} seconds")
        validate.lease_ms(c["lease"])
        return check_worker_id(c["worker_id"])  # the registry's rule, so registering cannot fail

    async def claim(self, request: Request, raw: bytes) -> Any:
        queue = self.queue(request)
        return {"jobs": await self._claim(request, queue, wire.parse(raw, self.CLAIM_FIELDS))}

    async def _seen(self, request: Request, worker_id: str, queue: str, processed: int = 0, failed: int = 0,
                    taken: dict[str, float] | None = None, settled: Sequence[str] = ()) -> None:
        """Register or refresh an HTTP worker in the registry (host = client address), with
        the leases it took or extended (``taken``: "queue/id" -> expiry) and those it
        finished or gave back (``settled``)."""
        host = request.client.host if request.client else "?"
        aio = self.aio
        changes = {"processed": processed, "failed": failed, "taken": taken, "settled": settled}
        if not await aio.beat_worker(worker_id, queue=queue, **changes):  # every queue: the sweeper looks there
            await aio.register_worker(worker_id, host=host, pid=0, queues=[queue])
            if processed or failed or taken or settled:
                await aio.beat_worker(worker_id, **changes)

    async def _counted(self, request: Request, worker_id: str | None, queue: str, job_id: str,
                       failed: bool | None) -> None:
        """A job finished through /complete or /fail (``failed`` True/False) counts in its
        worker's processed (and failed), or was released (None); either way its worker no
        longer holds it. Best effort: the job's outcome stands whatever the registry write does."""
        if not worker_id:
            return
        try:
            await self._seen(request, worker_id, queue, processed=0 if failed is None else 1,
                             failed=1 if failed else 0, settled=[f"{queue}/{job_id}"])
        except GIVE_UP as exc:
            log.warning("worker %s: its processed/failed not counted: %s", worker_id, exc)

    def _lease(self, request: Request, token: Any) -> Lease:
        if not isinstance(token, str) or not token:
            raise BadInput("token must be the lease token the claim returned")
        return Lease(request.path_params["id"], self.queue(request), token)

    async def complete(self, request: Request, raw: bytes) -> Any:
        body = wire.parse(raw, {"token": (str, MISSING), "result": (Any, None), "worker_id": (str, None, None)})
        lease = self._lease(request, body["token"])
        if body["worker_id"] is not None:
            check_worker_id(body["worker_id"])
        await self.aio.complete(lease, wire.check_depth(body["result"], "result"))
        await self._counted(request, body["worker_id"], lease.queue, lease.id, failed=False)
        return {"state": "done"}

    async def fail(self, request: Request, raw: bytes) -> Any:
        body = wire.parse(raw, {"token": (str, MISSING), "error": (str, MISSING), "retry": (bool, True),
                                "delay": (float, None, None), "worker_id": (str, None, None)})
        lease = self._lease(request, body["token"])
        if body["worker_id"] is not None:
            check_worker_id(body["worker_id"])
        state = await self.aio.fail(lease, body["error"], retry=body["retry"], delay=body["delay"])
        await self._counted(request, body["worker_id"], lease.queue, lease.id, failed=True)
        return {"state": state}

    async def heartbeat(self, request: Request, raw: bytes) -> Any:
        body = wire.parse(raw, {"token": (str, MISSING), "lease": (float, None, None), "worker_id": (str, None, None)})
        lease = self._lease(request, body["token"])
        if body["worker_id"] is not None:
            check_worker_id(body["worker_id"])
        expires = await self.aio.heartbeat(lease, body["lease"])
        if body["worker_id"]:
            await self._seen(request, body["worker_id"], lease.queue, taken={f"{lease.queue}/{lease.id}": expires})
        return {"lease_expires_at": expires}

    async def release(self, request: Request, raw: bytes) -> Any:
        body = wire.parse(raw, {"token": (str, MISSING), "worker_id": (str, None, None)})
        lease = self._lease(request, body["token"])
        await self.aio.release(lease)
        await self._counted(request, body["worker_id"], lease.queue, lease.id, failed=None)
        return {"state": "ready"}

    async def ack(self, request: Request, raw: bytes) -> Any:
        queue = self.queue(request)
        body = wire.parse(raw, {"complete": (list, []), "fail": (list, []), "claim": (dict, None, None)})
        done = [wire.check(c, {"id": (str, MISSING), "token": (str, MISSING), "result": (Any, None)}, f"complete[{i}]")
                for i, c in enumerate(body["complete"])]
        for i, c in enumerate(done):
            wire.check_depth(c["result"], f"complete[{i}].result")
        failed = [wire.check(f, {"id": (str, MISSING), "token": (str, MISSING), "error": (str, MISSING),
                                 "retry": (bool, True), "delay": (float, None, None)}, f"fail[{i}]")
                  for i, f in enumerate(body["fail"])]
        claim = wire.check(body["claim"], self.CLAIM_FIELDS, "claim") if body["claim"] is not None else None
        if len(done) + len(failed) > MAX_CLAIM:
            raise BadInput(f"at most {MAX_CLAIM} items per ack")
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
                _, code, detail = trouble_of(exc)
                message, _ = outage.public(code, detail, f"{request.method} {request.url.path} (claim)")
                out["jobs"], out["claim_error"] = [], {"error": code, "message": message}
        return out

    # ------------------------------------------------------------------ reading and acting
    async def list_queues(self, request: Request, raw: bytes) -> Any:
        out = []
        aio = self.aio
        for name in await aio.queues():
            s = await aio.stats(name)
            out.append({"name": name, "paused": s["paused"], "counts": {st: s[st] for st in STATES}})
        return out

    async def queue_stats(self, request: Request, raw: bytes) -> Any:
        return await self.aio.stats(self.queue(request))

    async def list_jobs(self, request: Request, raw: bytes) -> Any:
        queue = self.queue(request)
        q = request.query_params
        state = q.get("state", "ready")
        if state not in STATES:
            raise BadInput(f"state must be one of {', '.join(STATES)}")
        limit, cursor = _int(q.get("limit"), 100, "limit", 1, 1000), _int(q.get("cursor"), 0, "cursor", 0, 10**12)
        infos = await self.aio.jobs(queue, state, limit=limit + 1, offset=cursor)
        more = len(infos) > limit
        return {"jobs": [wire.info(i) for i in infos[:limit]], "cursor": str(cursor + limit) if more else None}

    async def get_job(self, request: Request, raw: bytes) -> Any:
        queue, job_id = self.queue(request), request.path_params["id"]
        found = await self.aio.get(queue, job_id)
        if found is None:
            raise JobNotFound(f"no job {job_id!r} in queue {queue!r}")
        return wire.info(found)

    async def cancel_job(self, request: Request, raw: bytes) -> Any:
        queue, job_id = self.queue(request), request.path_params["id"]
        cancelled = await self.call(self.engine.cancel, queue, job_id)
        return {"cancelled": cancelled}

    async def pause(self, request: Request, raw: bytes) -> Any:
        return {"changed": await self.call(self.engine.pause, self.queue(request))}

    async def resume(self, request: Request, raw: bytes) -> Any:
        return {"changed": await self.call(self.engine.resume, self.queue(request))}

    async def replay(self, request: Request, raw: bytes) -> Any:
        body = wire.parse(raw, {"ids": (list, None, None)})
        ids = body["ids"]
        if ids is not None and not all(isinstance(i, str) for i in ids):
            raise BadInput("ids must be a list of job id strings")
        return {"replayed": await self.call(self.engine.replay_dead, self.queue(request), ids)}

    async def purge(self, request: Request, raw: bytes) -> Any:
        state = request.query_params.get("state")
        if state not in STATES:
            raise BadInput(f"give ?state= one of {', '.join(STATES)}")
        return {"purged": await self.call(self.engine.purge, self.queue(request), state)}

    async def list_cues(self, request: Request, raw: bytes) -> Any:
        return [wire.cue(c) for c in await self.call(self.engine.cues)]

    async def put_cue(self, request: Request, raw: bytes) -> Any:
        body = wire.parse(raw, {"cron": (str, MISSING), "tz": (str, "UTC"), "payload": (Any, None),
                                "priority": (int, 0), "misfire": (str, "skip"),
                                "max_attempts": (int, defaults.MAX_ATTEMPTS), "lease": (float, None, None)})
        cron = body.pop("cron")
        wire.check_depth(body["payload"])
        info = await self.call(lambda: self.engine.add_cue(self.queue(request), request.path_params["name"],
                                                           cron, **body))
        return wire.cue(info)

    async def delete_cue(self, request: Request, raw: bytes) -> Any:
        await self.call(self.engine.remove_cue, self.queue(request), request.path_params["name"])
        return {"removed": True}

    def cue_verb(self, verb: str) -> Callable[..., Awaitable[Any]]:
        async def act(request: Request, raw: bytes) -> Any:
            method = getattr(self.engine, {"pause": "pause_cue", "resume": "resume_cue", "run": "run_cue"}[verb])
            result = await self.call(method, self.queue(request), request.path_params["name"])
            return {"job_id": result} if verb == "run" else {"ok": True}
        return act

    async def list_workers(self, request: Request, raw: bytes) -> Any:
        return [wire.worker(w) for w in await self.aio.workers(timeout=self.worker_timeout)]

    async def health(self, request: Request, raw: bytes) -> Any:
        """200 while Redis answers; 503 ``unavailable`` only when it cannot be reached, 503
        ``busy`` when this server's connections stayed taken (Redis may be fine)."""
        try:
            await self.aio.client.ping()
        except Exception as exc:  # noqa: BLE001 - every failure is an answer here
            if pool_exhausted(exc):
                return error(503, "busy", str(ServerBusy(self.engine.url)))
            return error(503, "unavailable", "Redis cannot be reached")
        return {"status": "ok"}

    async def metrics_text(self, request: Request, raw: bytes) -> Any:
        body, content_type = await self.call(self.metrics.render)
        return Response(body, media_type=content_type)


def _int(value: str | None, default: int, name: str, low: int, high: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise BadInput(f"{name} must be an integer in [{low}, {high}]")
    return int(value)


Q = "/v1/queues/{queue}"
J = Q + "/jobs/{id:path}"


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
        ("GET", "/v1/queues", "read", api.list_queues, 200, "Every queue with its counts"),
        ("GET", Q, "read", api.queue_stats, 200, "A queue's stats"),
        ("GET", Q + "/jobs", "read", api.list_jobs, 200, "A page of one state's jobs"),
        ("DELETE", Q + "/jobs", "admin", api.purge, 200, "Purge a state (?state=)"),
        ("GET", J, "read", api.get_job, 200, "One job"),
        ("DELETE", J, "admin", api.cancel_job, 200, "Cancel a job"),
        ("POST", Q + "/pause", "admin", api.pause, 200, "Pause a queue"),
        ("POST", Q + "/resume", "admin", api.resume, 200, "Resume a queue"),
        ("POST", Q + "/replay", "admin", api.replay, 200, "Replay dead jobs"),
        ("GET", "/v1/cues", "read", api.list_cues, 200, "Every cue"),
        ("PUT", Q + "/cues/{name}", "admin", api.put_cue, 200, "Create or replace a cue"),
        ("DELETE", Q + "/cues/{name}", "admin", api.delete_cue, 200, "Remove a cue"),
        ("POST", Q + "/cues/{name}/pause", "admin", api.cue_verb("pause"), 200, "Pause a cue"),
        ("POST", Q + "/cues/{name}/resume", "admin", api.cue_verb("resume"), 200, "Resume a cue"),
        ("POST", Q + "/cues/{name}/run", "admin", api.cue_verb("run"), 200, "Run a cue now"),
        ("GET", "/v1/workers", "read", api.list_workers, 200, "Live workers"),
    ]


def openapi(api: Api) -> dict[str, Any]:
    """The OpenAPI document of the route table (schemas in openapi.py)."""
    return document((m, p.replace(":path", ""), role, status, summary)
                    for m, p, role, _, status, summary in routes_of(api))


def create_app(engine: Any, *, tokens: dict[str, str] | None = None,
               worker_timeout: float = defaults.WORKER_TIMEOUT_S, dashboard: bool = True,
               public_metrics: bool = False, secure_cookies: bool = False,
               allow_hosts: Sequence[str] = ()) -> Starlette:
    """The whole server: API, /healthz, /metrics, /openapi.json and the dashboard at /.
    With ``tokens``, /metrics needs one (any role) unless ``public_metrics``; without,
    guard.py keeps other web pages out (``allow_hosts``: extra names for the Host header).
    ``secure_cookies``: the dashboard's cookies are Secure (also set per request behind
    TLS, ``X-Forwarded-Proto: https``)."""
    api = Api(engine, tokens, worker_timeout)
    routes: list[Any] = [api.route(m, p, role, h, status) for m, p, role, h, status, _ in routes_of(api)]
    doc = openapi(api)

    async def healthz(request: Request) -> Response:
        return await _plain(api.health, request)

    async def metrics(request: Request) -> Response:
        if not public_metrics and role_of(request.headers.get("authorization"), tokens) is None:
            return error(401, "unauthorized", "a valid 'Authorization: Bearer TOKEN' header is required "
                                              "(any role; or serve with --public-metrics)")
        return await _plain(api.metrics_text, request)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(doc)

    api_routes = list(routes)

    async def no_route(request: Request) -> Response:
        allowed = sorted({m for r in api_routes if r.matches(request.scope)[0] is Match.PARTIAL
                          for m in (r.methods or ()) if m != "HEAD"})
        if allowed:
            return JSONResponse({"error": "method_not_allowed",
                                 "message": f"{request.method} is not allowed here (allowed: {', '.join(allowed)})"},
                                status_code=405, headers={"Allow": ", ".join(allowed)})
        return error(404, "not_found", f"no route {request.method} {request.url.path}")

    routes += [Route("/healthz", healthz, methods=["GET"]), Route("/metrics", metrics, methods=["GET"]),
               Route("/openapi.json", openapi_json, methods=["GET"]),
               Route("/v1/{rest:path}", no_route, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])]
    from ..compat import create_cueapi_app, create_spooled_app   # hosted services' clients, unchanged
    routes += [Mount("/compat/spooled", create_spooled_app(engine, tokens)),
               Mount("/compat/cueapi", create_cueapi_app(engine, tokens))]
    if dashboard:
        from ..dashboard import create_dashboard
        routes.append(Mount("/", create_dashboard(engine, tokens=tokens, worker_timeout=worker_timeout,
                                                  secure_cookies=secure_cookies)))

    async def not_found(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/v1/"):
            return error(404, "not_found", f"no route {request.method} {request.url.path}")
        return PlainTextResponse("not found", status_code=404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        allowed = getattr(exc, "headers", None) or {}
        if request.url.path.startswith("/v1/"):
            return JSONResponse({"error": "method_not_allowed", "message": f"{request.method} is not allowed here"},
                                status_code=405, headers=allowed)
        return PlainTextResponse("method not allowed", status_code=405, headers=allowed)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await api.waits.close()

    guard = Middleware(Guard, no_tokens=tokens is None, allow_hosts=allow_hosts)
    access = Middleware(Access, metrics=api.metrics)   # outside the guard: its refusals are logged too
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed}, lifespan=lifespan,
                    middleware=[access, guard])
    app.state.api = api
    return app


async def _plain(handler: Callable[..., Awaitable[Any]], request: Request) -> Response:
    try:
        result = await handler(request, b"")
    except Exception as exc:  # health and metrics must answer, never raise
        return error(503, "unavailable", str(exc))
    return result if isinstance(result, Response) else JSONResponse(result)

