"""The spooled job service's ``/schedules`` on cues (cues.py).

A schedule is a redispool cue of its ``queue_name``, named by the schedule's id
(``sch_<hex>``): the cron (5 fields, or 6 with seconds first) and time zone are the cue's,
``payload_template`` its payload, ``priority``, ``max_retries`` (= max_attempts - 1) and
``timeout_seconds`` (its jobs' timeout) its options. The scheduler fires it exactly once
per fire time like any cue; pause, resume, trigger (``run_cue``) and delete are the cue's.
The service's own fields (name, description, tags, metadata, created and updated times)
are kept in ``rp:spooled:schedules`` (id -> JSON, with the queue). ``run_count``,
``last_run_at`` and the history come from the cue's run log (``Engine.cue_runs``: the
latest 100 fires and triggers, each with its job): a run is ``completed`` once its job
exists, as the service records a run when it has created the job.
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

from .. import defaults
from ..errors import CueNotFound
from ..keys import check_queue, spooled_key
from ..models import CueInfo
from ..web.body import REQUIRED, jsonable
from ..web.endpoint import Refusal, call
from .common import fields, iso

if TYPE_CHECKING:
    from .spooled import SpooledApi

NAME_MAX = 255
TEXT_MAX = 4096
LIST_MAX = 100


def _check(value: int, low: int, high: int, name: str) -> int:
    if not low <= value <= high:
        raise Refusal(400, "VALIDATION_ERROR", f"{name} must be in [{low}, {high}], got {value}")
    return value


def _name(value: str) -> str:
    if not 1 <= len(value) <= NAME_MAX:
        raise Refusal(400, "VALIDATION_ERROR", f"name must be 1 to {NAME_MAX} characters")
    return value


def _tags(value: Any) -> Any:
    if value is not None and not isinstance(value, (dict, list)):
        raise Refusal(400, "VALIDATION_ERROR", "tags must be an object or an array")
    return value


class Schedules:
    def __init__(self, api: SpooledApi) -> None:
        self.api = api
        self.engine = api.engine
        self.key = spooled_key(self.engine.prefix, "schedules")

    def routes(self, v1: str) -> list[Route]:
        r, S = self.api.route, v1 + "/schedules/{id}"
        return [
            r("GET", v1 + "/schedules", "read", self.listing),
            r("POST", v1 + "/schedules", "admin", self.create, 201),
            r("GET", S, "read", self.get),
            r("PUT", S, "admin", self.update),
            r("DELETE", S, "admin", self.delete),
            r("POST", S + "/pause", "admin", self.pause),
            r("POST", S + "/resume", "admin", self.resume),
            r("POST", S + "/trigger", "admin", self.trigger),
            r("GET", S + "/history", "read", self.history),
        ]

    # ------------------------------------------------------------------ records
    def _records(self) -> dict[str, dict[str, Any]]:
        raw = self.engine.scripts.command("HGETALL", self.key) or {}
        return {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in raw.items()}

    def _read(self, sid: str) -> tuple[dict[str, Any], CueInfo]:
        raw = self.engine.scripts.command("HGET", self.key, sid)
        cue = None
        if raw:
            record = json.loads(raw)
            cue = self.engine.get_cue(record["queue"], sid)
        if not raw or cue is None:
            raise Refusal(404, "NOT_FOUND", "Schedule not found")
        return record, cue

    def _write(self, record: dict[str, Any]) -> None:
        self.engine.scripts.command("HSET", self.key, record["id"], json.dumps(record, sort_keys=True))

    @staticmethod
    def _json(record: dict[str, Any], cue: CueInfo) -> dict[str, Any]:
        return {"id": record["id"], "organization_id": "redispool", "name": record["name"],
                "description": record.get("description"), "cron_expression": cue.cron, "timezone": cue.tz,
                "queue_name": cue.queue, "payload_template": jsonable(cue.payload), "priority": cue.priority,
                "max_retries": cue.max_attempts - 1, "timeout_seconds": round(cue.timeout or 0),
                "is_active": not cue.paused, "last_run_at": iso(cue.last_fire_at),
                "next_run_at": iso(cue.next_fire_at), "run_count": cue.runs, "tags": record.get("tags"),
                "metadata": record.get("metadata"), "created_at": iso(record["created"]),
                "updated_at": iso(record["updated"])}

    def _add(self, queue: str, sid: str, b: dict[str, Any], old: CueInfo | None) -> CueInfo:
        return self.engine.add_cue(
            queue, sid, b["cron_expression"], tz=b["timezone"], payload=b["payload_template"],
            priority=_check(b["priority"], -100, 100, "priority"),
            max_attempts=_check(b["max_retries"], 0, 100, "max_retries") + 1,
            timeout=_check(b["timeout_seconds"], 1, 86400, "timeout_seconds"),
            misfire=old.misfire if old else "skip", lease=old.lease if old else None)

    # ------------------------------------------------------------------ routes
    CREATE = {"name": (str, REQUIRED), "description": (str, None), "cron_expression": (str, REQUIRED),
              "timezone": (str, "UTC"), "queue_name": (str, REQUIRED), "payload_template": (Any, None),
              "priority": (int, 0), "max_retries": (int, 3), "timeout_seconds": (int, 300),
              "tags": (Any, None), "metadata": (Any, None)}

    async def create(self, request: Request, body: Any) -> Any:
        b = fields(body, self.CREATE)
        queue = check_queue(b["queue_name"])
        _name(b["name"])
        _tags(b["tags"])
        sid = "sch_" + secrets.token_hex(8)
        cue = await call(self._add, queue, sid, b, None)
        now = time.time()
        await call(self._write, {"id": sid, "queue": queue, "name": b["name"], "description": b["description"],
                                 "tags": b["tags"], "metadata": b["metadata"], "created": now, "updated": now})
        return JSONResponse({"id": sid, "name": b["name"], "cron_expression": cue.cron,
                             "next_run_at": iso(cue.next_fire_at)}, status_code=201)

    async def listing(self, request: Request, body: Any) -> Any:
        q = request.query_params
        try:
            limit, offset = int(q.get("limit", 50)), int(q.get("offset", 0))
        except ValueError:
            raise Refusal(400, "VALIDATION_ERROR", "limit and offset must be integers") from None
        _check(limit, 1, LIST_MAX, "limit")
        _check(offset, 0, 10**9, "offset")
        active = q.get("is_active")
        if active not in (None, "true", "false"):
            raise Refusal(400, "VALIDATION_ERROR", "is_active must be true or false")
        queue = check_queue(q["queue_name"]) if q.get("queue_name") else None
        records = [r for r in (await call(self._records)).values() if queue in (None, r["queue"])]
        cues: dict[tuple[str, str], CueInfo] = {}
        for name in sorted({r["queue"] for r in records}):
            cues.update({(c.queue, c.name): c for c in await call(self.engine.cues, name)})
        out = []
        for record in sorted(records, key=lambda r: (-r["created"], r["id"])):
            cue = cues.get((record["queue"], record["id"]))
            if cue is not None and (active is None or (active == "true") == (not cue.paused)):
                out.append(self._json(record, cue))
        return out[offset:offset + limit]

    async def get(self, request: Request, body: Any) -> Any:
        return self._json(*await call(self._read, request.path_params["id"]))

    UPDATE = {name: (kind, None, None) for name, (kind, _) in CREATE.items()}

    async def update(self, request: Request, body: Any) -> Any:
        b = fields(body, self.UPDATE)   # queue_name is not applied (as the service)
        record, cue = await call(self._read, request.path_params["id"])
        merged = {"cron_expression": cue.cron, "timezone": cue.tz, "payload_template": cue.payload,
                  "priority": cue.priority, "max_retries": cue.max_attempts - 1,
                  "timeout_seconds": round(cue.timeout or 300)}
        merged.update({k: v for k, v in b.items() if k in merged and v is not None})
        if b["name"] is not None:
            record["name"] = _name(b["name"])
        for field in ("description", "tags", "metadata"):
            if b[field] is not None:
                record[field] = _tags(b[field]) if field == "tags" else b[field]
        cue = await call(self._add, cue.queue, cue.name, merged, cue)
        record["updated"] = time.time()
        await call(self._write, record)
        return self._json(record, cue)

    async def delete(self, request: Request, body: Any) -> Any:
        record, cue = await call(self._read, request.path_params["id"])
        with contextlib.suppress(CueNotFound):   # removed meanwhile
            await call(self.engine.remove_cue, cue.queue, cue.name)
        await call(self.engine.scripts.command, "HDEL", self.key, record["id"])
        return None

    async def _pause(self, request: Request, paused: bool) -> Any:
        record, cue = await call(self._read, request.path_params["id"])
        await call(self.engine.pause_cue if paused else self.engine.resume_cue, cue.queue, cue.name)
        record["updated"] = time.time()
        await call(self._write, record)
        return self._json(*await call(self._read, record["id"]))

    async def pause(self, request: Request, body: Any) -> Any:
        return await self._pause(request, True)

    async def resume(self, request: Request, body: Any) -> Any:
        return await self._pause(request, False)

    async def trigger(self, request: Request, body: Any) -> Any:
        _, cue = await call(self._read, request.path_params["id"])
        job_id = await call(self.engine.run_cue, cue.queue, cue.name)
        return {"job_id": f"{cue.queue}~{job_id}", "triggered_at": iso(time.time())}

    async def history(self, request: Request, body: Any) -> Any:
        try:
            limit = int(request.query_params.get("limit", 10))
        except ValueError:
            raise Refusal(400, "VALIDATION_ERROR", "limit must be an integer") from None
        _check(limit, 1, defaults.CUE_RUNS_MAX, "limit")
        record, cue = await call(self._read, request.path_params["id"])
        runs = await call(self.engine.cue_runs, cue.queue, cue.name, limit)
        return [{"id": f"{cue.queue}~{job_id}", "schedule_id": record["id"], "job_id": f"{cue.queue}~{job_id}",
                 "status": "completed", "error_message": None, "started_at": iso(at), "completed_at": iso(at)}
                for job_id, at in runs]
