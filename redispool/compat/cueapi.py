"""The cueapi cron service's worker-transport protocol (``/v1/...``) on the Engine.

Mounted at ``/compat/cueapi``, so the official worker daemon and SDK work after one
change: ``api_base: http://HOST:PORT/compat/cueapi`` in the worker's YAML, or
``CueAPI(KEY, base_url="http://HOST:PORT/compat/cueapi")``.

How it maps:
- A cue with ``transport: "worker"`` is a redispool cue of one queue (``cueapi`` unless
  ``create_app(queue=...)`` says otherwise), named by its cue id (``cue_<hex>``); its
  fires are the jobs ``cue:<cue id>:<fire ms>`` (the scheduler fires them, and so does
  every ``GET /v1/executions/claimable``). A one-time cue (``schedule.type: "once"``)
  is one scheduled job of that id. The cueapi-side fields (name, description, retry,
  the one-time ``at``) are kept in ``rp:{cueapi}:cueapi``, a hash of cue id -> JSON.
- An execution is a job; its id is the job id. ``claimable`` lists ready jobs,
  ``/executions/{id}/claim`` leases exactly that job (``claim_id.lua``: ready -> leased
  for that id, 409 when it is not ready any more), ``/executions/claim`` leases the next.
- ``/outcome`` completes the job (success) or fails it (retried after the cue's
  ``retry.backoff_minutes`` until ``retry.max_attempts`` attempts, then dead). It is
  written once: a second outcome is 409 ``outcome_already_recorded``.
- ``/v1/worker/heartbeat`` registers the worker in the redispool registry and extends
  the leases of the executions it holds.

Stronger than the hosted service, and kept: an execution's claim is a lease with a
fencing token. The protocol's outcome and heartbeat calls carry no lease identity, so
the server applies them with the lease's current token (still fenced in Lua: a lease
that expired and went to another worker meanwhile is not touched), and only while the
job is leased. A claim lasts ``claim_lease`` (900 s, as the service's) and is extended by
every heartbeat of the worker holding it; a worker that stops heartbeating loses its
claims when the sweeper sees its registration expire (60 s), not after 900 s.

Errors are ``{"error": {"code", "message", "status"}}`` with the service's statuses.
"""
from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import time
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import codec, validate
from ..cron import Schedule, check_zone
from ..engine import Engine
from ..errors import CueNotFound, InvalidCron, InvalidOption, JobNotFound, LeaseLost, RedispoolError
from ..keys import DELIVERY_QUEUE, check_queue, cueapi_key, cueapi_secret_key
from ..models import Job, JobInfo, Lease
from ..web import endpoint
from ..web.body import REQUIRED, BadJson, BodyTooLarge, FieldError, check_depth, jsonable
from ..web.endpoint import Dialect, Forbidden, Refusal, Unauthorized, call
from ..web.workers import HttpWorkers, OnThreads
from ..webhooks import check_headers, check_method, check_url
from .common import ENVELOPE_DEPTH, FOREVER_S, fields, iso, parse_time, same_trouble

log = logging.getLogger("redispool.compat.cueapi")

QUEUE = "cueapi"
CLAIM_LEASE_S = 900.0
CLAIMABLE_MAX = 50
TEXT_MAX = 2000
DEFAULT_RETRY = {"max_attempts": 3, "backoff_minutes": [1, 5, 15]}
NEVER = "0 0 1 1 *"    # the cron of a one-time webhook cue's (paused) native cue
HTTP_STATUS = re.compile(r": HTTP ([0-9]{3})")


def error(status: int, code: str, message: str) -> JSONResponse:
    """An error in the service's shape: ``{"error": {"code", "message", "status"}}``."""
    return JSONResponse({"error": {"code": code, "message": message, "status": status}}, status_code=status)


DIALECT = Dialect(render=error, errors={
    Unauthorized: (401, "invalid_api_key", "Missing or invalid Authorization header"),
    Forbidden: (403, "forbidden", "this key may not do this (needs the {needed} role)"),
    JobNotFound: (404, "execution_not_found"),
    CueNotFound: (404, "cue_not_found"),
    LeaseLost: (409, "execution_not_claiming"),
    BodyTooLarge: (413, "payload_too_large", "Request body too large"),
    BadJson: (400, "invalid_json"),
    FieldError: (422, "validation_error"),     # a field missing or of the wrong type
    InvalidCron: (400, "invalid_schedule"),
    RedispoolError: (400, "validation_error"),
}, trouble=same_trouble(503, "service_unavailable"), max_depth=ENVELOPE_DEPTH)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def claim_by_id(engine: Engine, queue: str, job_id: str, worker_id: str, lease: float) -> Job | None:
    """Lease exactly job ``job_id`` if it is ready now (claim_id.lua); None if it is not.
    A damaged job, or one whose payload cannot be decoded, goes to dead as in claim."""
    return engine.claim_id(queue, job_id, worker_id, lease=lease)


def read_records(engine: Engine, queue: str) -> dict[str, dict[str, Any]]:
    raw = engine.scripts.command("HGETALL", cueapi_key(engine.prefix, queue))
    return {_text(k): json.loads(v) for k, v in raw.items()}


def read_record(engine: Engine, queue: str, cue_id: str) -> dict[str, Any] | None:
    raw = engine.scripts.command("HGET", cueapi_key(engine.prefix, queue), cue_id)
    return json.loads(raw) if raw else None


def write_record(engine: Engine, queue: str, record: dict[str, Any]) -> None:
    engine.scripts.command("HSET", cueapi_key(engine.prefix, queue), record["id"], json.dumps(record, sort_keys=True))


def delete_record(engine: Engine, queue: str, cue_id: str) -> None:
    engine.scripts.command("HDEL", cueapi_key(engine.prefix, queue), cue_id)


def _paging(q: Any) -> tuple[int, int]:
    """(limit, offset) of a listing's query: 1-100 (20 when not given), offset >= 0."""
    try:
        limit, offset = int(q.get("limit", 20)), int(q.get("offset", 0))
    except ValueError:
        raise Refusal(400, "validation_error", "limit and offset must be integers") from None
    if not 1 <= limit <= 100 or offset < 0:
        raise Refusal(400, "validation_error", "limit must be 1 to 100 and offset >= 0")
    return limit, offset


FIRE_ID = re.compile(r"cue:(?:(?P<home>[^:/]+)/)?(?P<cue>[^:/]+):(?P<ms>[0-9]{1,15})(?:-[a-z0-9]{1,32})?")


def fire_of(job_id: str, home: str | None = None) -> tuple[str, int] | None:
    """(cue id, fire ms) of an execution's job id, else None: ``cue:<cue id>:<fire ms>``
    in the queue (a worker cue's), ``cue:<home>/<cue id>:<fire ms>`` in ``_webhooks`` (a
    webhook cue's; ``home`` is the cueapi queue), either maybe ending ``-<suffix>`` (a
    manual fire's). Any producer may put a job in a queue, so the ms must be ASCII
    digits of a time the engine can hold."""
    m = FIRE_ID.fullmatch(job_id)
    if m is None or m["home"] != home or int(m["ms"]) > validate.MAX_SECONDS * 1000:
        return None
    return m["cue"], int(m["ms"])


def _keeps_cue(record: dict[str, Any]) -> bool:
    """Whether a cue has a native cue: a recurring one, and every webhook cue (a one-time
    one's holds its URL and secret for the deliverer)."""
    return record["schedule"]["type"] == "recurring" or record.get("transport") == "webhook"


def delivered(info: JobInfo, fire: tuple[str, int] | None, status: str) -> dict[str, Any]:
    """A webhook cue's execution: its fire's delivery job in ``_webhooks``. The receiver's
    answer is the outcome: a 2xx completes the job (its result holds the status and the
    answer's first 1 KiB), anything else fails the attempt (its error names the status)."""
    result = info.result if isinstance(info.result, dict) else {}
    code: int | None = result.get("status") if info.state == "done" else None
    if code is None and info.error:
        found = HTTP_STATUS.search(info.error)
        code = int(found[1]) if found else None
    outcome = None
    if info.state == "done":
        outcome = {"success": True, "result": result.get("response"), "error": None, "metadata": None,
                   "recorded_at": iso(info.finished_at)}
    elif info.state == "dead" or (info.state == "scheduled" and info.attempts):
        outcome = {"success": False, "result": None, "error": info.error, "metadata": None,
                   "recorded_at": iso(info.updated_at)}
    return {"id": info.id, "cue_id": fire[0] if fire else None,
            "scheduled_for": iso(fire[1] / 1000 if fire else info.created_at), "status": status,
            "http_status": code, "attempts": info.attempts, "error_message": info.error,
            "started_at": None, "delivered_at": iso(info.finished_at) if info.state == "done" else None,
            "last_attempt_at": iso(info.updated_at) if info.attempts else None, "claimed_by_worker": None,
            "outcome": outcome, "triggered_by": "manual_fire" if "-f" in info.id.rpartition(":")[2] else
            "scheduled", "created_at": iso(info.created_at), "updated_at": iso(info.updated_at)}


class CueapiApi:
    def __init__(self, engine: Engine, tokens: dict[str, str] | None, queue: str, claim_lease: float) -> None:
        self.engine = engine
        self.tokens = tokens
        self.queue = check_queue(queue)
        self.claim_lease = claim_lease
        validate.lease_ms(claim_lease)

        registry = OnThreads(engine)
        self.workers = HttpWorkers(lambda: registry)   # what each worker holds: in its registration

    def route(self, method: str, path: str, role: str, handler: endpoint.Handler, status: int = 200) -> Route:
        return endpoint.route(DIALECT, self.tokens, method, path, role, handler, status)

    # ------------------------------------------------------------------ cues
    def secret(self) -> str:
        """The webhook signing secret (``whsec_`` + 64 hex), made on first use."""
        key = cueapi_secret_key(self.engine.prefix, self.queue)
        self.engine.scripts.command("SET", key, "whsec_" + secrets.token_hex(32), "NX")
        return _text(self.engine.scripts.command("GET", key))

    def regenerate_secret(self) -> str:
        """A new secret; every webhook cue signs with it from now on."""
        key = cueapi_secret_key(self.engine.prefix, self.queue)
        self.engine.scripts.command("SET", key, "whsec_" + secrets.token_hex(32))
        for record in read_records(self.engine, self.queue).values():
            if record.get("transport") == "webhook":
                self._webhook_cue(record)
        return self.secret()

    def _webhook_cue(self, record: dict[str, Any]) -> None:
        """The native webhook cue of a webhook cue: it fires a recurring one; a one-time
        one's is paused and holds the URL, secret and name the deliverer reads."""
        s, cb = record["schedule"], record["callback"]
        self.engine.add_cue(self.queue, record["id"], s["cron"] or NEVER, tz=s["timezone"], payload=record["payload"],
                            max_attempts=record["retry"]["max_attempts"], url=cb["url"], secret=self.secret(),
                            scheme="cueapi", label=record["name"], headers=cb["headers"] or None, method=cb["method"])
        if s["type"] == "once":
            self.engine.pause_cue(self.queue, record["id"])

    @staticmethod
    def _check_retry(retry: Any, old: dict[str, Any]) -> dict[str, Any]:
        r = fields(retry, {"max_attempts": (int, old["max_attempts"]),
                           "backoff_minutes": (list, old["backoff_minutes"])}, "retry")
        if not 1 <= r["max_attempts"] <= 100:
            raise Refusal(400, "validation_error", "retry.max_attempts must be 1 to 100")
        if not r["backoff_minutes"] or not all(isinstance(m, (int, float)) and not isinstance(m, bool)
                                               and 0 <= m <= 1440 for m in r["backoff_minutes"]):
            raise Refusal(400, "validation_error", "retry.backoff_minutes must be a list of 0-1440 minutes")
        return r

    @staticmethod
    def _check_schedule(s: Any, old: dict[str, Any] | None = None) -> dict[str, Any]:
        old = old or {"type": None, "cron": None, "at": None, "timezone": "UTC"}
        sch = fields(s, {"type": (str, old["type"]), "cron": (str, None), "at": (str, None),
                         "timezone": (str, old["timezone"])}, "schedule")
        kind = sch["type"] or ("recurring" if sch["cron"] else "once" if sch["at"] else None)
        if kind == "recurring":
            cron = sch["cron"] or old["cron"]
            if not cron:
                raise Refusal(400, "invalid_schedule", "a recurring schedule needs cron")
            Schedule(cron, check_zone(sch["timezone"]))   # new cues: IANA names only, as the native API's
            return {"type": "recurring", "cron": cron, "at": None, "timezone": sch["timezone"]}
        if kind == "once":
            at = sch["at"] or old["at"]
            if not at:
                raise Refusal(400, "invalid_schedule", "a one-time schedule needs at")
            check_zone(sch["timezone"])
            try:   # checked here, before anything is written: _apply must not fail half-way
                validate.run_at_ms(parse_time(at, "schedule.at", "invalid_schedule"))
            except InvalidOption as exc:
                raise Refusal(400, "invalid_schedule", f"schedule.at is out of range: {exc}") from None
            return {"type": "once", "cron": None, "at": at, "timezone": sch["timezone"]}
        raise Refusal(400, "invalid_schedule", "schedule.type must be 'recurring' or 'once'")

    def _apply(self, record: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        """Make the engine's side of a cue match ``record`` (from ``old``): a cue for a
        recurring schedule, a scheduled job for a one-time one."""
        q = self.queue
        if old and old["schedule"]["type"] == "once":   # an unfired one-time job goes; a new one comes
            unfired = self.engine.get(self.home(old)[0], self._once_job(old))
            if unfired is not None and unfired.state in ("scheduled", "ready"):
                self.engine.delete_job(unfired.queue, unfired.id)
        if old and _keeps_cue(old) and not _keeps_cue(record):
            self.engine.remove_cue(q, record["id"])
        s = record["schedule"]
        if record.get("transport") == "webhook":
            self._webhook_cue(record)
            if old and old["schedule"]["type"] == "once" and s["type"] == "recurring":
                self.engine.resume_cue(q, record["id"])   # a one-time cue's was paused
        elif s["type"] == "recurring":
            self.engine.add_cue(q, record["id"], s["cron"], tz=s["timezone"], payload=record["payload"],
                                max_attempts=record["retry"]["max_attempts"])
        if s["type"] == "once":
            self.engine.enqueue(self.home(record)[0], record["payload"],
                                run_at=parse_time(s["at"], "at", "invalid_schedule"),
                                max_attempts=record["retry"]["max_attempts"], job_id=self._once_job(record))

    def home(self, record: dict[str, Any]) -> tuple[str, str]:
        """(queue, job id prefix) of a cue's fires: its queue for a worker cue, the
        deliverer's for a webhook cue (kept there as the native webhook cue
        ``<queue>/<cue id>``)."""
        if record.get("transport") == "webhook":
            return DELIVERY_QUEUE, f"cue:{self.queue}/{record['id']}"
        return self.queue, f"cue:{record['id']}"

    def _once_job(self, record: dict[str, Any]) -> str:
        at = round(parse_time(record['schedule']['at'], 'at', 'invalid_schedule') * 1000)
        return f"{self.home(record)[1]}:{at}"

    def _cue_json(self, record: dict[str, Any]) -> dict[str, Any]:
        """The service's Cue shape of one record, with its state read from the engine."""
        s = record["schedule"]
        status, next_run, last_run = "active", None, None
        if s["type"] == "recurring":
            info = self.engine.get_cue(self.queue, record["id"])
            if info is not None:
                status = "paused" if info.paused else "active"
                next_run = None if info.paused else iso(info.next_fire_at)
                last_run = iso(info.last_fire_at)
        else:
            job = self.engine.get(self.home(record)[0], self._once_job(record))
            if job is not None and job.state in ("scheduled", "ready"):
                next_run = iso(job.run_at or job.created_at)
            else:
                status = "completed"
                last_run = iso(parse_time(s["at"], "at", "invalid_schedule"))
        return {"id": record["id"], "name": record["name"], "description": record.get("description"),
                "status": status, "transport": record.get("transport", "worker"),
                "schedule": {"type": s["type"], "cron": s["cron"], "at": s["at"], "timezone": s["timezone"]},
                "callback": record.get("callback") or {"url": None, "method": "POST", "headers": {}},
                "payload": jsonable(record["payload"]), "retry": record["retry"], "next_run": next_run,
                "last_run": last_run, "run_count": 0, "fired_count": 0, "on_failure": record.get("on_failure"),
                "warning": None, "created_at": iso(record["created_at"]), "updated_at": iso(record["updated_at"])}

    async def _record(self, cue_id: str) -> dict[str, Any]:
        record = await call(read_record, self.engine, self.queue, cue_id)
        if record is None:
            raise Refusal(404, "cue_not_found", "Cue not found")
        return record

    CUE = {"name": (str, REQUIRED), "description": (str, None), "schedule": (dict, REQUIRED),
           "transport": (str, "webhook"), "payload": (dict, None), "callback": (dict, None),
           "retry": (dict, None), "on_failure": (dict, None)}

    async def _name_taken(self, name: str, cue_id: str = "") -> None:
        records = await call(read_records, self.engine, self.queue)
        if any(r["name"] == name and r["id"] != cue_id for r in records.values()):
            raise Refusal(409, "duplicate_cue_name", f"a cue named {name!r} exists already")

    @staticmethod
    def _check_callback(transport: str, callback: Any, old: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """A webhook cue's callback ``{url, method, headers}`` (checked as the native
        webhook cue's), None for a worker cue (which has none)."""
        if transport == "worker":
            if callback is not None:
                raise Refusal(400, "validation_error", "a worker-transport cue has no callback")
            return None
        old = old or {"url": None, "method": "POST", "headers": {}}
        cb = fields(callback, {"url": (str, old["url"]), "method": (str, old["method"]),
                               "headers": (dict, old["headers"])}, "callback")
        if cb["url"] is None:
            raise Refusal(400, "validation_error", "a webhook cue needs callback.url")
        return {"url": check_url(cb["url"]), "method": check_method(cb["method"]),
                "headers": check_headers(cb["headers"]) or {}}

    def _check_name(self, name: str) -> str:
        if not 1 <= len(name) <= 255:
            raise Refusal(400, "validation_error", "name must be 1 to 255 characters")
        return name

    async def create_cue(self, request: Request, body: Any) -> Any:
        b = fields(body, self.CUE)
        if b["transport"] not in ("worker", "webhook"):
            raise Refusal(400, "unsupported_transport", "transport must be \"webhook\" or \"worker\"")
        callback = self._check_callback(b["transport"], b["callback"])
        name = self._check_name(b["name"])
        schedule = self._check_schedule(b["schedule"])
        payload = check_depth(b["payload"] or {})
        codec.encode(payload)
        await self._name_taken(name)
        now = time.time()
        record = {"id": f"cue_{uuid.uuid4().hex[:12]}", "name": name, "description": b["description"],
                  "transport": b["transport"], "callback": callback,
                  "schedule": schedule, "payload": payload, "on_failure": b["on_failure"],
                  "retry": self._check_retry(b["retry"], DEFAULT_RETRY), "created_at": now, "updated_at": now}
        await call(write_record, self.engine, self.queue, record)
        try:
            await call(self._apply, record)
        except BaseException:
            await call(delete_record, self.engine, self.queue, record["id"])
            raise
        return JSONResponse(await call(self._cue_json, record), status_code=201)

    async def list_cues(self, request: Request, body: Any) -> Any:
        q = request.query_params
        limit, offset = _paging(q)
        records = sorted((await call(read_records, self.engine, self.queue)).values(),
                         key=lambda r: (r["created_at"], r["id"]))
        cues = [await call(self._cue_json, r) for r in records]
        if q.get("status"):
            cues = [c for c in cues if c["status"] == q["status"]]
        return {"cues": cues[offset:offset + limit], "total": len(cues), "limit": limit, "offset": offset}

    async def get_cue(self, request: Request, body: Any) -> Any:
        return await call(self._cue_json, await self._record(request.path_params["id"]))

    async def update_cue(self, request: Request, body: Any) -> Any:
        record = await self._record(request.path_params["id"])
        b = fields(body, {"name": (str, None), "description": (str, None), "status": (str, None),
                          "schedule": (dict, None), "payload": (dict, None), "callback": (dict, None),
                          "retry": (dict, None), "on_failure": (dict, None)})
        if b["status"] not in (None, "active", "paused"):
            raise Refusal(400, "validation_error", "status must be 'active' or 'paused'")
        new = dict(record)
        if b["callback"] is not None:
            new["callback"] = self._check_callback(record.get("transport", "worker"), b["callback"],
                                                   record.get("callback"))
        if b["name"] is not None:
            new["name"] = self._check_name(b["name"])
            await self._name_taken(new["name"], record["id"])
        for key in ("description", "on_failure"):
            if b[key] is not None:
                new[key] = b[key]
        if b["schedule"] is not None:
            new["schedule"] = self._check_schedule(b["schedule"], record["schedule"])
        if b["payload"] is not None:
            codec.encode(check_depth(b["payload"]))
            new["payload"] = b["payload"]
        if b["retry"] is not None:
            new["retry"] = self._check_retry(b["retry"], record["retry"])
        if b["status"] is not None and new["schedule"]["type"] == "once":
            raise Refusal(400, "validation_error", "a one-time cue cannot be paused; delete it instead")
        new["updated_at"] = time.time()
        await call(write_record, self.engine, self.queue, new)
        if any(new.get(k) != record.get(k) for k in ("schedule", "payload", "retry", "callback", "name")):
            await call(self._apply, new, record)
        if b["status"] == "paused":
            await call(self.engine.pause_cue, self.queue, new["id"])
        elif b["status"] == "active":
            await call(self.engine.resume_cue, self.queue, new["id"])
        return await call(self._cue_json, new)

    async def delete_cue(self, request: Request, body: Any) -> Any:
        record = await self._record(request.path_params["id"])
        if _keeps_cue(record):
            with contextlib.suppress(CueNotFound):
                await call(self.engine.remove_cue, self.queue, record["id"])
        await call(self._cancel_fires, record)
        await call(delete_record, self.engine, self.queue, record["id"])
        return None

    def _cancel_fires(self, record: dict[str, Any]) -> None:
        """Cancel the cue's fires nobody has claimed yet (a claimed one finishes as it may)."""
        queue, prefix = self.home(record)
        for state in ("ready", "scheduled"):
            for info in self.engine.jobs(queue, state, limit=1000):
                if info.id.startswith(prefix + ":"):
                    self.engine.cancel(queue, info.id)

    # ------------------------------------------------------------------ executions
    @staticmethod
    def _status(info: JobInfo) -> str:
        if info.state == "scheduled" and info.attempts:
            return "retry_ready"
        return {"scheduled": "pending", "ready": "pending", "leased": "delivering", "done": "success",
                "dead": "failed", "cancelled": "cancelled"}[info.state]

    def _claimable(self, task: str | None) -> list[dict[str, Any]]:
        self.engine.fire_due_cues(self.queue)
        self.engine.promote(self.queue)
        records = read_records(self.engine, self.queue)
        out = []
        for info in self.engine.jobs(self.queue, "ready", limit=4 * CLAIMABLE_MAX):
            fire = fire_of(info.id)
            if fire is None or fire[0] not in records:
                continue
            payload = info.payload if isinstance(info.payload, dict) else {}
            if task and payload.get("task") != task:
                continue
            out.append({"execution_id": info.id, "cue_id": fire[0], "cue_name": records[fire[0]]["name"],
                        "task": payload.get("task"), "scheduled_for": iso(fire[1] / 1000),
                        "payload": jsonable(payload), "attempt": info.attempts})
            if len(out) == CLAIMABLE_MAX:
                break
        return out

    async def claimable(self, request: Request, body: Any) -> Any:
        return {"executions": await call(self._claimable, request.query_params.get("task"))}

    def _worker_id(self, body: Any) -> str:
        b = fields(body, {"worker_id": (str, REQUIRED)})
        if len(b["worker_id"]) > 255:
            raise Refusal(400, "validation_error", "worker_id must be at most 255 characters")
        return validate.worker_id(b["worker_id"])

    async def _claimed(self, request: Request, worker_id: str, job: Job) -> dict[str, Any]:
        """The answer to a claim; the worker's registration (when it has one: it registers
        by heartbeating) lists the execution from now on."""
        await self.workers.took(request, worker_id, self.queue, {job.id: job.lease_expires_at}, register=False)
        return {"claimed": True, "execution_id": job.id, "lease_seconds": int(job.lease),
                "lease_expires_at": iso(job.lease_expires_at)}

    async def claim_one(self, request: Request, body: Any) -> Any:
        worker_id = self._worker_id(body)
        execution_id = request.path_params["id"]
        job = await call(claim_by_id, self.engine, self.queue, execution_id, worker_id, self.claim_lease)
        if job is None:
            if await call(self.engine.get, self.queue, execution_id) is None:
                raise Refusal(404, "execution_not_found", "Execution not found")
            raise Refusal(409, "claim_failed", "Execution not available for claiming")
        return await self._claimed(request, worker_id, job)

    async def claim_next(self, request: Request, body: Any) -> Any:
        worker_id = self._worker_id(body)
        await call(self.engine.fire_due_cues, self.queue)
        jobs = await call(self.engine.claim, self.queue, worker_id, limit=1, lease=self.claim_lease)
        if not jobs:
            raise Refusal(409, "claim_failed", "No executions available for claiming")
        return await self._claimed(request, worker_id, jobs[0])

    async def _lease(self, execution_id: str) -> tuple[str | None, str | None, str | None]:
        state, token, worker = await call(self.engine.current_lease, self.queue, execution_id)
        if state is None:
            raise Refusal(404, "execution_not_found", "Execution not found")
        return state, token, worker

    async def heartbeat(self, request: Request, body: Any) -> Any:
        execution_id = request.path_params["id"]
        state, token, worker = await self._lease(execution_id)
        if state != "leased" or token is None:
            raise Refusal(409, "execution_not_claiming", "Execution is not currently being claimed")
        claimant = request.headers.get("x-worker-id")
        if claimant and worker and claimant != worker:
            raise Refusal(403, "not_execution_owner", "Only the claiming worker can heartbeat")
        expires = await call(self.engine.heartbeat, Lease(execution_id, self.queue, token), self.claim_lease)
        return {"execution_id": execution_id, "lease_extended_until": iso(expires), "acknowledged": True}

    OUTCOME = {"success": (bool, REQUIRED), "result": (str, None), "error": (str, None), "metadata": (dict, None),
               "external_id": (str, None), "result_url": (str, None), "result_ref": (str, None),
               "result_type": (str, None), "summary": (str, None), "artifacts": (list, None)}

    async def outcome(self, request: Request, body: Any) -> Any:
        execution_id = request.path_params["id"]
        b = fields(body, self.OUTCOME)
        for name in ("result", "error"):
            if b[name] is not None and len(b[name]) > TEXT_MAX:
                raise Refusal(400, "validation_error", f"{name} must be at most {TEXT_MAX} characters")
        # stored as the job's result: what is stored can be handed back (as /v1's)
        kept = check_depth({k: v for k, v in b.items() if k not in ("success", "error") and v is not None}, "result")
        state, token, worker = await self._lease(execution_id)
        if state != "leased" or token is None:
            info = await call(self.engine.get, self.queue, execution_id)
            if info is not None and (info.state in ("done", "dead", "cancelled") or info.attempts):
                raise Refusal(409, "outcome_already_recorded", "Outcome already recorded for this execution")
            raise Refusal(409, "execution_not_claimed", "Execution has not been claimed")
        lease = Lease(execution_id, self.queue, token)
        try:
            if b["success"]:
                await call(self.engine.complete, lease, kept or None)
                outcome_state = "reported_success"
            else:
                await call(self._fail, lease, b["error"] or "handler reported failure")
                outcome_state = "reported_failure"
        except LeaseLost:
            raise Refusal(409, "outcome_already_recorded", "Outcome already recorded for this execution") from None
        await self.workers.settled(request, worker, self.queue, execution_id, failed=not b["success"],
                                   register=False)
        return {"execution_id": execution_id, "outcome_recorded": True, "outcome_state": outcome_state,
                "reason": None}

    def _fail(self, lease: Lease, message: str) -> str:
        """Fail with the cue's backoff (``retry.backoff_minutes``, the last one repeating)."""
        delay = None
        fire = fire_of(lease.id)
        record = read_record(self.engine, self.queue, fire[0]) if fire else None
        info = self.engine.get(self.queue, lease.id)
        if record and info:
            minutes = record["retry"]["backoff_minutes"]
            delay = 60.0 * minutes[min(max(info.attempts, 1), len(minutes)) - 1]
        return self.engine.fail(lease, message, delay=delay)

    def fire(self, info: JobInfo) -> tuple[str, int] | None:
        """(cue id, fire ms) of an execution's job (in the queue or in ``_webhooks``)."""
        return fire_of(info.id, self.queue if info.queue == DELIVERY_QUEUE else None)

    def _execution(self, info: JobInfo) -> dict[str, Any]:
        fire = self.fire(info)
        if info.queue == DELIVERY_QUEUE:
            return delivered(info, fire, self._status(info))
        outcome = None
        if info.state == "done":
            result = info.result if isinstance(info.result, dict) else {}
            outcome = {"success": True, "result": result.get("result"), "error": None,
                       "metadata": result.get("metadata"), "recorded_at": iso(info.finished_at)}
        elif info.state == "dead" or (info.state == "scheduled" and info.attempts):
            outcome = {"success": False, "result": None, "error": info.error, "metadata": None,
                       "recorded_at": iso(info.errors[0][2] if info.errors else info.updated_at)}
        return {"id": info.id, "cue_id": fire[0] if fire else None,
                "scheduled_for": iso(fire[1] / 1000 if fire else info.created_at), "status": self._status(info),
                "http_status": None, "attempts": info.attempts, "error_message": info.error,
                "started_at": None, "delivered_at": None, "last_attempt_at": None,
                "claimed_by_worker": info.worker_id, "outcome": outcome,
                "created_at": iso(info.created_at), "updated_at": iso(info.updated_at)}

    async def get_execution(self, request: Request, body: Any) -> Any:
        execution_id = request.path_params["id"]
        webhook = execution_id.startswith(f"cue:{self.queue}/")
        info = await call(self.engine.get, DELIVERY_QUEUE if webhook else self.queue, execution_id)
        if info is None:
            raise Refusal(404, "execution_not_found", "Execution not found")
        return self._execution(info)

    STATES_OF = {"pending": ("ready", "scheduled"), "retry_ready": ("scheduled",), "delivering": ("leased",),
                 "success": ("done",), "failed": ("dead",), "cancelled": ("cancelled",)}

    async def list_executions(self, request: Request, body: Any) -> Any:
        q = request.query_params
        limit, offset = _paging(q)
        status, cue_id, worker_id = q.get("status"), q.get("cue_id"), q.get("worker_id")
        if status is not None and status not in self.STATES_OF:
            raise Refusal(400, "validation_error", f"unknown status {status!r}")
        found = []
        states = self.STATES_OF[status] if status else ("leased", "ready", "scheduled", "done", "dead", "cancelled")
        for queue, state in [(q, s) for s in states for q in (self.queue, DELIVERY_QUEUE)]:
            for info in await call(self.engine.jobs, queue, state, limit=1000):
                fire = self.fire(info)
                if fire is None and queue == DELIVERY_QUEUE or cue_id and (fire is None or fire[0] != cue_id):
                    continue
                if worker_id and info.worker_id != worker_id:
                    continue
                if status and self._status(info) != status:
                    continue
                found.append(self._execution(info))
        return {"executions": found[offset:offset + limit], "total": len(found), "limit": limit,
                "offset": offset, "has_more": offset + limit < len(found)}

    # ------------------------------------------------------------------ workers
    async def worker_heartbeat(self, request: Request, body: Any) -> Any:
        """Register or refresh the worker, and extend every claim it holds."""
        b = fields(body, {"worker_id": (str, REQUIRED), "handlers": (list, None)})
        worker_id = self._worker_id({"worker_id": b["worker_id"]})
        held = await call(self.engine.leases_of, self.queue, worker_id)
        expiries = await call(self.engine.heartbeat_many, self.queue, held, self.claim_lease) if held else []
        taken = {lease.id: expires for lease, expires in zip(held, expiries) if expires is not None}
        await self.workers.seen(request, worker_id, self.queue, taken=taken)   # registers it if unknown
        return {"acknowledged": True, "server_time": iso(time.time())}

    async def list_workers(self, request: Request, body: Any) -> Any:
        now = time.time()
        out = []
        for w in await call(self.engine.workers, timeout=FOREVER_S):
            if self.queue not in w.queues:
                continue
            ago = max(0, int(now - w.last_heartbeat))
            out.append({"worker_id": w.id, "last_heartbeat": iso(w.last_heartbeat), "seconds_since_heartbeat": ago,
                        "heartbeat_status": "active" if ago < 180 else "stale" if ago < 900 else "dead",
                        "handlers": None, "registered_since": iso(w.started_at)})
        return {"workers": out}

    async def delete_worker(self, request: Request, body: Any) -> Any:
        """Give back the worker's claims (attempt not counted) and remove it."""
        worker_id = request.path_params["id"]
        for lease in await call(self.engine.leases_of, self.queue, worker_id):
            with contextlib.suppress(LeaseLost):
                await call(self.engine.release, lease)
        if not await call(self.engine.deregister_worker, validate.worker_id(worker_id)):
            raise Refusal(404, "worker_not_found", "Worker not found")
        return None


def create_app(engine: Engine, tokens: dict[str, str] | None = None, *, queue: str = QUEUE,
               claim_lease: float = CLAIM_LEASE_S) -> Starlette:
    """The cueapi worker protocol as an ASGI app; mount it at ``/compat/cueapi``. Its cues
    and executions live in ``queue``; a claim lasts ``claim_lease`` seconds unless the
    worker heartbeats."""
    from .cueapi_fire import Fires
    api = CueapiApi(engine, tokens, queue, claim_lease)
    fires = Fires(api)
    E = "/v1/executions/{id:path}"
    routes = [
        api.route("POST", "/v1/cues", "admin", api.create_cue, 201),
        api.route("POST", "/v1/cues/{id}/fire", "admin", fires.fire),
        api.route("GET", "/v1/auth/webhook-secret", "admin", fires.webhook_secret),
        api.route("POST", "/v1/auth/webhook-secret/regenerate", "admin", fires.regenerate),
        api.route("GET", "/v1/cues", "read", api.list_cues),
        api.route("GET", "/v1/cues/{id}", "read", api.get_cue),
        api.route("PATCH", "/v1/cues/{id}", "admin", api.update_cue),
        api.route("DELETE", "/v1/cues/{id}", "admin", api.delete_cue),
        api.route("GET", "/v1/executions", "read", api.list_executions),
        api.route("GET", "/v1/executions/claimable", "worker", api.claimable),
        api.route("POST", "/v1/executions/claim", "worker", api.claim_next),
        api.route("POST", E + "/claim", "worker", api.claim_one),
        api.route("POST", E + "/heartbeat", "worker", api.heartbeat),
        api.route("POST", E + "/outcome", "worker", api.outcome),
        api.route("GET", E, "read", api.get_execution),
        api.route("POST", "/v1/worker/heartbeat", "worker", api.worker_heartbeat),
        api.route("GET", "/v1/workers", "read", api.list_workers),
        api.route("DELETE", "/v1/workers/{id}", "admin", api.delete_worker),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return error(404, "not_found", f"no route {request.method} {request.url.path} in the cueapi protocol")

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.state.api = api
    return app
