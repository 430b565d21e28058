"""The spooled protocol's health checks and ``/queues`` resource, on the Engine.

    GET /health                     {"status": "healthy" | "degraded", "database", "cache"}: the
                                    /healthz check (Redis answers) in the service's shape
    GET /health/live, /health/ready 200 while the server runs / while Redis answers (else 503)
    GET /api/v1/queues              every queue in use (not the internal ``_...`` ones)
    GET /api/v1/queues/{name}       its configuration (404 for a queue not in use)
    PUT /api/v1/queues/{name}/config  max_retries and default_timeout: the job defaults of the
                                    queue (Engine.set_job_defaults), applied to jobs enqueued
                                    here without their own; rate_limit: set_limits(rate, per
                                    1 s; the concurrency cap stays); enabled: resume / pause
    GET /api/v1/queues/{name}/stats pending, processing, completed and failed (dead) in the
                                    last 24 h (within retention), active workers
    POST /api/v1/queues/{name}/pause|resume   pause(reason) / resume, with the time paused
    DELETE /api/v1/queues/{name}    remove_queue; 409 while it has unfinished jobs (or cues),
                                    unless ?delete_jobs=true (its jobs purged first)

The health routes need no key (the service's do not); the rest check it as every route.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import QueueNotEmpty
from ..keys import STATES, check_queue
from ..spooled_jobs import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_S, timeout_seconds
from ..web.body import FieldError
from ..web.endpoint import Refusal, call
from .common import fields, iso
from .spooled import ORGANIZATION

if TYPE_CHECKING:
    from .spooled import SpooledApi

DAY_S = 86400
RATE_MAX = 100_000        # the service caps rate_limit here
INTERNAL = "_"            # queues of redispool's own (_webhooks, _workflows) are not listed


def _rate(limits: dict[str, Any]) -> int | None:
    """The queue's rate limit as the service's jobs per second (None: none)."""
    if limits["rate"] is None:
        return None
    return max(1, round(int(limits["rate"]) / float(limits["per"])))


class QueuesApi:
    """Route handlers of the queues resource (``api``: the protocol's SpooledApi)."""

    def __init__(self, api: SpooledApi) -> None:
        self.api = api
        self.engine = api.engine

    async def _known(self, name: str) -> str:
        queue = check_queue(name)
        if queue not in await call(self.engine.queues):
            raise Refusal(404, "NOT_FOUND", "Queue not found")
        return queue

    async def _config(self, queue: str, full: bool) -> dict[str, Any]:
        stored = await call(self.engine.job_defaults, queue)
        limits = await call(self.engine.limits, queue)
        paused, paused_at, reason = await call(self.engine.paused_info, queue)
        out: dict[str, Any] = {
            "queue_name": queue,
            "max_retries": min(100, stored["max_attempts"] - 1) if stored["max_attempts"] else DEFAULT_MAX_RETRIES,
            "default_timeout": timeout_seconds(stored["timeout"]) if stored["timeout"] else DEFAULT_TIMEOUT_S,
            "rate_limit": _rate(limits), "enabled": not paused}
        if full:
            settings: dict[str, Any] = {}
            if limits["concurrency"] is not None:
                settings["concurrency"] = limits["concurrency"]
            if paused:
                settings.update({"paused": True, "paused_at": iso(paused_at), "paused_reason": reason})
            now = time.time()
            out.update({"id": queue, "organization_id": ORGANIZATION, "settings": settings,
                        "created_at": iso(stored["created_at"] or now),
                        "updated_at": iso(stored["updated_at"] or stored["created_at"] or now)})
        return out

    async def list(self, request: Request, body: Any) -> Any:
        queues = [q for q in await call(self.engine.queues) if not q.startswith(INTERNAL)]
        return [await self._config(q, full=False) for q in queues[:100]]

    async def get(self, request: Request, body: Any) -> Any:
        return await self._config(await self._known(request.path_params["name"]), full=True)

    CONFIG = {"max_retries": (int, None, None), "default_timeout": (int, None, None),
              "rate_limit": (int, None, None), "enabled": (bool, None, None), "settings": (Any, None)}

    async def update_config(self, request: Request, body: Any) -> Any:
        """As the service's upsert: the values given, the service's defaults for the others
        (a rate_limit not given is removed); ``enabled`` pauses or resumes when given."""
        b = fields(body, self.CONFIG)
        queue = check_queue(request.path_params["name"])
        retries = DEFAULT_MAX_RETRIES if b["max_retries"] is None else b["max_retries"]
        timeout = DEFAULT_TIMEOUT_S if b["default_timeout"] is None else b["default_timeout"]
        if not 0 <= retries <= 100:
            raise Refusal(400, "VALIDATION_ERROR", f"max_retries must be in [0, 100], got {retries}")
        if not 1 <= timeout <= DAY_S:
            raise Refusal(400, "VALIDATION_ERROR", f"default_timeout must be in [1, {DAY_S}], got {timeout}")
        rate = b["rate_limit"]
        if rate is not None and rate < 1:
            raise Refusal(400, "VALIDATION_ERROR", f"rate_limit must be >= 1, got {rate}")
        await call(self.engine.set_job_defaults, queue, max_attempts=retries + 1, timeout=timeout)
        concurrency = (await call(self.engine.limits, queue))["concurrency"]
        await call(self.engine.set_limits, queue, rate=None if rate is None else min(rate, RATE_MAX), per=1.0,
                   concurrency=concurrency)
        if b["enabled"] is True:
            await call(self.engine.resume, queue)
        elif b["enabled"] is False:
            await call(self.engine.pause, queue)
        return await self._config(queue, full=True)

    async def stats(self, request: Request, body: Any) -> Any:
        queue = check_queue(request.path_params["name"])
        s = await call(self.engine.stats, queue)
        since = time.time() - DAY_S
        done = await call(self.engine.finished_since, queue, "done", since)
        dead = await call(self.engine.finished_since, queue, "dead", since)
        workers = await call(self.engine.workers)
        return {"queue_name": queue, "pending_jobs": s["ready"] + s["waiting"], "processing_jobs": s["leased"],
                "completed_jobs_24h": done, "failed_jobs_24h": dead, "avg_processing_time_ms": None,
                "max_job_age_seconds": round(s["latency"]) if s["ready"] else None,
                "active_workers": sum(1 for w in workers if queue in w.queues)}

    async def pause(self, request: Request, body: Any) -> Any:
        b = fields(body, {"reason": (str, None)})
        queue = check_queue(request.path_params["name"])
        await call(self.engine.pause, queue, b["reason"])
        _, paused_at, reason = await call(self.engine.paused_info, queue)
        return {"queue_name": queue, "paused": True, "paused_at": iso(paused_at or time.time()), "reason": reason}

    async def resume(self, request: Request, body: Any) -> Any:
        queue = await self._known(request.path_params["name"])
        paused, paused_at, _ = await call(self.engine.paused_info, queue)
        await call(self.engine.resume, queue)
        duration = max(0, int(time.time() - paused_at)) if paused and paused_at else 0
        return {"queue_name": queue, "resumed": True, "paused_duration_secs": duration}

    async def delete(self, request: Request, body: Any) -> Any:
        """409 while the queue has pending or processing jobs (scheduled and waiting ones
        and cues too: removing it would orphan them), unless ``delete_jobs=true``."""
        queue = await self._known(request.path_params["name"])
        flag = request.query_params.get("delete_jobs", "false").lower()
        if flag not in ("true", "false", "1", "0"):
            raise FieldError("delete_jobs must be true or false")
        if flag in ("true", "1"):
            for state in STATES:
                await call(self.engine.purge, queue, state)
        try:
            await call(self.engine.remove_queue, queue)
        except QueueNotEmpty as exc:
            raise Refusal(409, "CONFLICT", f"Cannot delete queue {queue}: {exc}") from None
        return None


def queue_routes(api: SpooledApi) -> list[BaseRoute]:
    """The routes above, for ``spooled.create_app``."""
    queues = QueuesApi(api)
    engine = api.engine

    async def redis_answers() -> bool:
        try:
            return await call(engine.ping)
        except Exception:  # noqa: BLE001 - whatever the trouble, the answer is "not healthy"
            return False

    async def health(request: Request) -> Response:
        ok = await redis_answers()
        return JSONResponse({"status": "healthy" if ok else "degraded", "database": ok, "cache": ok})

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def ready(request: Request) -> Response:
        ok = await redis_answers()
        return JSONResponse({"status": "ready" if ok else "unavailable"}, status_code=200 if ok else 503)

    v1 = "/api/v1/queues"
    Q = v1 + "/{name}"
    return [
        Route("/health", health, methods=["GET"]),
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        api.route("GET", v1, "read", queues.list),
        api.route("GET", Q, "read", queues.get),
        api.route("PUT", Q + "/config", "admin", queues.update_config),
        api.route("GET", Q + "/stats", "read", queues.stats),
        api.route("POST", Q + "/pause", "admin", queues.pause),
        api.route("POST", Q + "/resume", "admin", queues.resume),
        api.route("DELETE", Q, "admin", queues.delete),
    ]

