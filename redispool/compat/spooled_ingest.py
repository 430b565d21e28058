"""Inbound webhooks of the spooled protocol: a job from any sender that can POST JSON.

    POST /api/v1/webhooks/{org_id}/custom   the SDK's ``ingest.custom``: {queue_name, payload,
                                    event_type?, idempotency_key?, priority?} enqueued as a
                                    job (idempotency_key = unique_key; max_retries and timeout
                                    the queue's job defaults, as POST /jobs) -> {job_id,
                                    queue_name, status: created | duplicate}
    GET /api/v1/webhooks/deliveries the SDK's ``webhooks.list_inbound_deliveries``: the jobs
                                    taken so, newest first (?status, since, queue_name,
                                    limit 1-100 default 50, offset), from the stream
                                    ``rp:spooled:inbound`` (capped near 1,000 entries)

The service checks an organization's webhook token (``X-Webhook-Token``); a self-hosted
server is one organization, so any ``org_id`` names it, and the sender shows a redispool
token of role worker (or admin) either in ``X-Webhook-Token`` (what a third-party sender
can be configured with) or as ``Authorization: Bearer`` (what the SDK sends anyway).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..keys import check_queue, spooled_inbound_key
from ..spooled_jobs import job_options
from ..web.auth import allows, role_of
from ..web.body import REQUIRED, read_json
from ..web.endpoint import Forbidden, Refusal, Unauthorized, call
from .common import fields, iso, parse_time
from .spooled import DIALECT, public_id

if TYPE_CHECKING:
    from .spooled import SpooledApi

LOG_MAX = 1000
LIST_MAX, LIST_DEFAULT = 100, 50
STATUSES = ("created", "duplicate")


class Ingest:
    """The two routes' handlers (``api``: the protocol's SpooledApi)."""

    def __init__(self, api: SpooledApi) -> None:
        self.api = api
        self.engine = api.engine
        self.key = spooled_inbound_key(api.engine.prefix)

    def _sender_role(self, request: Request) -> None:
        """Unauthorized / Forbidden unless one of the two headers shows a worker's token."""
        tokens = self.api.tokens
        hook = request.headers.get("x-webhook-token")
        roles = [r for r in (role_of(request.headers.get("authorization"), tokens),
                             role_of(f"Bearer {hook}", tokens) if hook else None) if r]
        if not roles:
            raise Unauthorized("a valid X-Webhook-Token or 'Authorization: Bearer KEY' header is required")
        if not any(allows(r, "worker") for r in roles):
            raise Forbidden(roles[0], "worker")

    BODY = {"queue_name": (str, REQUIRED), "payload": (Any, None), "event_type": (str, None),
            "idempotency_key": (str, None), "priority": (int, None, None)}

    async def custom(self, request: Request) -> Response:
        try:
            self._sender_role(request)
            b = fields(await read_json(request, max_depth=DIALECT.max_depth), self.BODY)
            queue = check_queue(b["queue_name"])
            retries, timeout = job_options(await call(self.engine.job_defaults, queue), None, None)
            spec = self.api._spec({"payload": b["payload"], "idempotency_key": b["idempotency_key"]},
                                  max_retries=retries, priority=b["priority"] or 0, timeout=timeout)
            [(job_id, created)] = await call(self.engine.enqueue_specs, queue, [spec])
            status = "created" if created else "duplicate"
            public = public_id(queue, job_id)
            await call(self.engine.scripts.command, "XADD", self.key, "MAXLEN", "~", LOG_MAX, "*",
                       "q", queue, "j", public, "s", status, "e", b["event_type"] or "custom")
        except Exception as exc:  # noqa: BLE001 - answered in the protocol's shape
            return DIALECT.answer(exc, request)
        return JSONResponse({"job_id": public, "queue_name": queue, "status": status})

    async def deliveries(self, request: Request, body: Any) -> Any:
        q = request.query_params
        status, queue = q.get("status"), q.get("queue_name")
        if status is not None and status not in STATUSES:
            raise Refusal(400, "VALIDATION_ERROR", f"status must be created or duplicate, got {status!r}")
        since = parse_time(q["since"], "since", "VALIDATION_ERROR") if q.get("since") else None
        try:
            limit, offset = int(q.get("limit", LIST_DEFAULT)), int(q.get("offset", 0))
        except ValueError:
            raise Refusal(400, "VALIDATION_ERROR", "limit and offset must be integers") from None
        if not 1 <= limit <= LIST_MAX or offset < 0:
            raise Refusal(400, "VALIDATION_ERROR", f"limit must be in [1, {LIST_MAX}] and offset >= 0")
        end = "-" if since is None else f"{round(since * 1000)}-0"
        entries = await call(self.engine.scripts.command, "XREVRANGE", self.key, "+", end)
        out = []
        for raw_id, raw in entries:
            entry = dict(_pairs(raw))
            if (status is None or entry.get("s") == status) and (queue is None or entry.get("q") == queue):
                entry_id = _text(raw_id)
                out.append({"id": entry_id, "provider": "custom", "event_type": entry.get("e", "custom"),
                            "matched_queue": entry.get("q"), "job_id": entry.get("j"), "status": entry.get("s"),
                            "created_at": iso(int(entry_id.split("-", 1)[0]) / 1000)})
        return out[offset:offset + limit]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _pairs(raw: Any) -> list[tuple[str, str]]:
    items = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2])
    return [(_text(k), _text(v)) for k, v in items]


def ingest_routes(api: SpooledApi, v1: str) -> list[BaseRoute]:
    """The routes above, for ``spooled.create_app``."""
    ingest = Ingest(api)
    return [Route(v1 + "/webhooks/{org_id}/custom", ingest.custom, methods=["POST"]),
            api.route("GET", v1 + "/webhooks/deliveries", "read", ingest.deliveries)]
