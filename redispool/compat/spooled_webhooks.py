"""The spooled job service's ``/outgoing-webhooks`` on redispool's webhooks and deliverer
(webhooks.py, deliver.py).

An outgoing webhook is a redispool webhook named by its id (``wh_<hex>``), of every
queue, signed in the ``spooled`` scheme (signing.py: ``X-Spooled-Signature: sha256=<hex
HMAC-SHA256(secret, "<timestamp>.<raw body>")>``, ``X-Spooled-Timestamp``,
``X-Spooled-Event``, ``X-Spooled-Delivery-Attempt``, the ``{id, event, created_at, data}``
body), delivered by ``redispool deliver`` with its retries (5 attempts), and disabled by
the deliverer after 20 consecutive failed deliveries (``disable_after``), as the
service. The service's events are our event types:

    job.created = enqueued, job.started = claimed, job.completed = completed,
    job.failed and job.deadlettered = dead (sent as job.failed, status deadletter),
    job.cancelled = cancelled, job.retried = replayed, queue.paused / queue.resumed

``worker.*``, ``schedule.triggered`` and ``workflow.*`` have no event in the log, so a
webhook asking for them is refused (400), as is a ``format`` other than json. The
service's name, event names and times are kept in ``rp:spooled:webhooks``. Deliveries are
read from the webhook's delivery log (one row per delivery: its latest attempt);
retrying one replays its dead delivery job.
"""
from __future__ import annotations

import contextlib
import json
import secrets
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..deliver import Poster
from ..errors import WebhookNotFound
from ..keys import DELIVERY_QUEUE, spooled_key
from ..models import DeliveryInfo, WebhookInfo
from ..signing import Delivery, scheme
from ..web.body import EMPTY, REQUIRED, FieldError
from ..web.endpoint import Refusal, call
from ..webhooks import LOG_MAX
from .common import fields, iso

if TYPE_CHECKING:
    from .spooled import SpooledApi

EVENTS = {"job.created": ["enqueued"], "job.started": ["claimed"], "job.completed": ["completed"],
          "job.failed": ["dead"], "job.deadlettered": ["dead"], "job.cancelled": ["cancelled"],
          "job.retried": ["replayed"], "queue.paused": ["paused"], "queue.resumed": ["resumed"]}
NOT_EMITTED = ("worker.registered", "worker.deregistered", "schedule.triggered", "workflow.completed",
               "workflow.failed")
AUTO_DISABLE_AFTER = 20     # consecutive failed deliveries, as the service
MAX_ATTEMPTS = 5
NAME_MAX = 100
TEST_TIMEOUT_S = 10.0
STATUS = {"success": "success", "failed": "pending", "dead": "failed"}   # an attempt's -> its delivery's


def _native_events(events: Any) -> list[str]:
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise FieldError("events must be a non-empty list of event names")
    missing = [e for e in events if e in NOT_EMITTED]
    if missing:
        raise Refusal(400, "VALIDATION_ERROR", f"redispool emits no {', '.join(missing)} events (its event log "
                                               "holds job and queue events)")
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise Refusal(400, "VALIDATION_ERROR", f"unknown event {unknown[0]!r}")
    return list(dict.fromkeys(t for e in events for t in EVENTS[e]))


def _format(value: str | None) -> None:
    if value not in (None, "json"):
        raise Refusal(400, "VALIDATION_ERROR", "redispool delivers the json format only (no slack, discord "
                                               "or teams bodies)")


def _name(value: str) -> str:
    if not 1 <= len(value) <= NAME_MAX:
        raise Refusal(400, "VALIDATION_ERROR", f"name must be 1 to {NAME_MAX} characters")
    return value


class Webhooks:
    def __init__(self, api: SpooledApi) -> None:
        self.api = api
        self.engine = api.engine
        self.key = spooled_key(self.engine.prefix, "webhooks")
        self.poster = Poster(TEST_TIMEOUT_S)

    def routes(self, v1: str) -> list[Route]:
        r, H = self.api.route, v1 + "/outgoing-webhooks/{id}"
        return [
            r("GET", v1 + "/outgoing-webhooks", "read", self.listing),
            r("POST", v1 + "/outgoing-webhooks", "admin", self.create, 201),
            r("GET", H, "read", self.get),
            r("PUT", H, "admin", self.update),
            r("DELETE", H, "admin", self.delete),
            r("POST", H + "/test", "admin", self.test),
            r("GET", H + "/deliveries", "read", self.deliveries),
            r("POST", H + "/retry/{delivery:path}", "admin", self.retry),
        ]

    # ------------------------------------------------------------------ records
    def _record(self, wid: str) -> dict[str, Any]:
        raw = self.engine.scripts.command("HGET", self.key, wid)
        if not raw or self.engine.get_webhook(wid) is None:
            raise Refusal(404, "NOT_FOUND", "Webhook not found")
        return dict(json.loads(raw))

    def _write(self, record: dict[str, Any]) -> None:
        self.engine.scripts.command("HSET", self.key, record["id"], json.dumps(record, sort_keys=True))

    def _json(self, record: dict[str, Any], info: WebhookInfo) -> dict[str, Any]:
        newest = self.engine.deliveries(info.name, limit=1)
        last = newest[0] if newest else None
        status = "auto_disabled" if info.auto_disabled_at is not None and not info.enabled else \
            ("success" if last.status == "success" else "failed") if last else None
        return {"id": record["id"], "organization_id": "redispool", "name": record["name"], "url": info.url,
                "events": record["events"], "format": "json", "enabled": info.enabled,
                "failure_count": info.failures, "last_triggered_at": iso(last.at) if last else None,
                "last_status": status, "created_at": iso(record["created"]), "updated_at": iso(record["updated"])}

    def _show(self, wid: str) -> dict[str, Any]:
        record = self._record(wid)
        info = self.engine.get_webhook(wid)
        if info is None:
            raise Refusal(404, "NOT_FOUND", "Webhook not found")
        return self._json(record, info)

    # ------------------------------------------------------------------ routes
    CREATE = {"name": (str, REQUIRED), "url": (str, REQUIRED), "events": (list, REQUIRED), "secret": (str, None),
              "enabled": (bool, True), "format": (str, None)}

    def _create(self, b: dict[str, Any]) -> dict[str, Any]:
        wid = "wh_" + secrets.token_hex(8)
        info = self.engine.add_webhook(wid, b["url"], events=_native_events(b["events"]), secret=b["secret"],
                                       scheme="spooled", max_attempts=MAX_ATTEMPTS, enabled=b["enabled"],
                                       disable_after=AUTO_DISABLE_AFTER)
        now = time.time()
        record = {"id": wid, "name": b["name"], "events": b["events"], "created": now, "updated": now}
        self._write(record)
        return self._json(record, info)

    async def create(self, request: Request, body: Any) -> Any:
        b = fields(body, self.CREATE)
        _name(b["name"])
        _format(b["format"])
        return JSONResponse(await call(self._create, b), status_code=201)

    def _list(self) -> list[dict[str, Any]]:
        raw = self.engine.scripts.command("HGETALL", self.key) or {}
        records = [json.loads(v) for v in raw.values()]
        infos = {w.name: w for w in self.engine.webhooks()}
        return [self._json(r, infos[r["id"]]) for r in sorted(records, key=lambda r: (r["created"], r["id"]))
                if r["id"] in infos]

    async def listing(self, request: Request, body: Any) -> Any:
        return await call(self._list)

    async def get(self, request: Request, body: Any) -> Any:
        return await call(self._show, request.path_params["id"])

    UPDATE = {"name": (str, None, None), "url": (str, None, None), "events": (list, None, None),
              "secret": (str, None, None), "enabled": (bool, None, None), "format": (str, None, None)}

    def _update(self, wid: str, b: dict[str, Any], secret_given: bool) -> dict[str, Any]:
        record = self._record(wid)
        definition = self.engine.webhook_definitions().get(wid)
        info = self.engine.get_webhook(wid)
        if definition is None or info is None:
            raise Refusal(404, "NOT_FOUND", "Webhook not found")
        if b["name"] is not None:
            record["name"] = _name(b["name"])
        events = definition["events"]
        if b["events"] is not None:
            events = _native_events(b["events"])
            record["events"] = b["events"]
        info = self.engine.add_webhook(
            wid, b["url"] if b["url"] is not None else definition["url"], events=events,
            secret=b["secret"] if secret_given else definition.get("secret"), scheme="spooled",
            max_attempts=definition.get("max_attempts", MAX_ATTEMPTS),
            enabled=b["enabled"] if b["enabled"] is not None else info.enabled,
            disable_after=definition.get("disable_after", AUTO_DISABLE_AFTER))
        record["updated"] = time.time()
        self._write(record)
        return self._json(record, info)

    async def update(self, request: Request, body: Any) -> Any:
        b = fields(body, self.UPDATE)
        _format(b["format"])
        return await call(self._update, request.path_params["id"], b,
                          body is not EMPTY and isinstance(body, dict) and "secret" in body)

    def _delete(self, wid: str) -> None:
        self._record(wid)
        with contextlib.suppress(WebhookNotFound):   # removed meanwhile
            self.engine.remove_webhook(wid)
        self.engine.scripts.command("HDEL", self.key, wid)

    async def delete(self, request: Request, body: Any) -> Any:
        await call(self._delete, request.path_params["id"])
        return None

    def _test(self, wid: str) -> dict[str, Any]:
        self._record(wid)
        definition = self.engine.webhook_definitions().get(wid)
        if definition is None:
            raise Refusal(404, "NOT_FOUND", "Webhook not found")
        now = time.time()
        delivery = Delivery(id="test_" + secrets.token_hex(8), event="webhook.test", queue="", job_id="", at=now,
                            data={"message": "a test delivery from redispool", "webhook_id": wid})
        body, headers = scheme("spooled").request(delivery, definition.get("secret"))
        answer = self.poster.post(definition["url"], body, headers)
        error = answer.error
        if error is None and not answer.ok:
            error = f"HTTP {answer.code}"
        return {"success": answer.ok, "status_code": answer.code, "response_time_ms": round(answer.ms),
                "error": error}

    async def test(self, request: Request, body: Any) -> Any:
        return await call(self._test, request.path_params["id"])

    def _delivery_json(self, wid: str, row: DeliveryInfo) -> dict[str, Any]:
        job = self.engine.get(DELIVERY_QUEUE, row.id)
        event = job.payload.get("event") if job is not None and isinstance(job.payload, dict) else None
        if not isinstance(event, dict):
            event = {"type": row.event, "queue": row.queue, "job_id": row.job_id, "at": row.at, "data": {}}
        envelope = scheme("spooled").envelope(Delivery(
            id=row.id, event=event["type"], queue=event["queue"], job_id=event.get("job_id") or "", at=event["at"],
            data=event.get("data") or {}, attempt=row.attempt))
        return {"id": row.id, "webhook_id": wid, "event": envelope["event"], "payload": envelope,
                "status": STATUS.get(row.status, row.status), "status_code": row.code,
                "response_body": row.response or None, "error": row.error, "attempts": row.attempt,
                "created_at": iso(event["at"]), "delivered_at": iso(row.at) if row.status == "success" else None}

    def _deliveries(self, wid: str, wanted: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        self._record(wid)
        latest: dict[str, DeliveryInfo] = {}
        for row in self.engine.deliveries(wid, limit=LOG_MAX):   # newest first: each delivery's latest attempt
            latest.setdefault(row.id, row)
        rows = [r for r in latest.values() if wanted in (None, STATUS.get(r.status))]
        return [self._delivery_json(wid, r) for r in rows[offset:offset + limit]]

    async def deliveries(self, request: Request, body: Any) -> Any:
        q = request.query_params
        try:
            limit, offset = int(q.get("limit", 50)), int(q.get("offset", 0))
        except ValueError:
            raise Refusal(400, "VALIDATION_ERROR", "limit and offset must be integers") from None
        if not 1 <= limit <= 100 or offset < 0:
            raise Refusal(400, "VALIDATION_ERROR", "limit must be 1 to 100 and offset >= 0")
        wanted = q.get("status")
        if wanted not in (None, "pending", "success", "failed"):
            raise Refusal(400, "VALIDATION_ERROR", f"unknown status {wanted!r}")
        return await call(self._deliveries, request.path_params["id"], wanted, limit, offset)

    def _retry(self, wid: str, delivery: str) -> dict[str, Any]:
        self._record(wid)
        job = self.engine.get(DELIVERY_QUEUE, delivery)
        if job is None or not isinstance(job.payload, dict) or job.payload.get("webhook") != wid:
            raise Refusal(404, "NOT_FOUND", "Delivery not found")
        if job.state != "dead":
            raise Refusal(409, "CONFLICT", "only a failed delivery can be retried (this one is "
                                           f"{'delivered' if job.state == 'done' else 'still being delivered'})")
        if not self.engine.replay_dead(DELIVERY_QUEUE, [delivery]):
            raise Refusal(409, "CONFLICT", "the delivery could not be queued again")
        return {"success": True, "message": "the delivery is queued again; the deliverer sends it next"}

    async def retry(self, request: Request, body: Any) -> Any:
        return await call(self._retry, request.path_params["id"], request.path_params["delivery"])
