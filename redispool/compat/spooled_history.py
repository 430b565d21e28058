"""``GET /api/v1/jobs/{id}/history`` of the spooled protocol: a job's lifecycle events.

Served from what redispool records anyway, no history table of its own:

- the queue's event log (``Engine.job_events``: the log's entries of this job, from its
  creation on), each entry one event, its id the stream entry id;
- the job's own record (``Engine.get``) for what the log no longer holds. The log is
  capped near ``events_max`` events per queue (10,000 by default), so an older job's
  early events are trimmed: its creation, the failed attempts its record keeps (the last
  10 errors) and how it ended (when it ended before the oldest event kept) are then
  given from the record, marked ``details.source = "job record"``, ids ``record:...``.
  What the record does not keep (when each attempt started, progress) is gone with the
  log. A job removed by retention has no history (404, as ``GET /jobs/{id}``).

Event types (the service's names where it has one; the SDK takes any string)::

    enqueued, waiting         created          {status, priority}
    enqueued after waiting    dependencies_met {status}
    claimed                   processing       {attempt}, worker_id
    progress                  progress         {value, message}
    completed                 completed
    failed (will retry)       retry_scheduled  {attempt, error, status}
    dead                      deadlettered     {attempt, error}
    expired (lease ran out)   lease_expired    {attempt, error, status}
    released                  released
    cancelled                 cancelled        {old_status, error}
    replayed (DLQ retry)      retried

``?order_dir=asc`` (default, oldest first) or ``desc``, ``limit`` 1-500 (default 100),
``offset``; ``X-Has-More`` tells whether more follow.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..models import Event, JobInfo
from ..web.endpoint import Refusal, call
from .common import iso
from .spooled import STATUS

if TYPE_CHECKING:
    from .spooled import SpooledApi

LIMIT_MAX, LIMIT_DEFAULT = 500, 100
RECORD = "job record"
TYPES = {"claimed": "processing", "failed": "retry_scheduled", "dead": "deadlettered",
         "expired": "lease_expired", "replayed": "retried", "enqueued": "created", "waiting": "created"}
DETAILS = {"attempt": "attempt", "error": "error", "state": "status", "previous": "old_status",
           "priority": "priority", "value": "value", "message": "message"}
ENDED = {"done": "completed", "dead": "deadlettered", "cancelled": "cancelled"}
CREATED = ("created", "dependencies_met")


def from_log(public: str, event: Event) -> dict[str, Any]:
    """One log entry as a history event."""
    data = event.data
    kind = TYPES.get(event.type, event.type)
    if event.type == "enqueued" and data.get("previous") == "waiting":
        kind = "dependencies_met"
    details: dict[str, Any] = {}
    for name, value in data.items():
        if name in DETAILS:
            details[DETAILS[name]] = STATUS.get(value, value) if name in ("state", "previous") else value
    if kind == "created":
        details.setdefault("priority", 0)
    return {"id": event.id, "job_id": public, "event_type": kind, "worker_id": data.get("worker_id"),
            "details": details, "created_at": iso(event.at)}


def _record(public: str, name: str, kind: str, at: float, **details: Any) -> dict[str, Any]:
    return {"id": f"record:{name}", "job_id": public, "event_type": kind, "worker_id": None,
            "details": {**details, "source": RECORD}, "created_at": iso(at)}


def history(public: str, info: JobInfo, events: list[Event], kept: float | None) -> list[dict[str, Any]]:
    """The job's events, oldest first: the log's, with what the record adds for the time
    before the oldest event the log keeps (``kept``; None: it keeps none)."""
    logged = [(e.at, 1, from_log(public, e)) for e in events]
    kinds = {entry["event_type"] for _, _, entry in logged}
    before = (lambda at: True) if kept is None else (lambda at: at < kept)
    added: list[tuple[float, int, dict[str, Any]]] = []
    if "created" not in kinds:
        added.append((info.created_at, 0, _record(public, "created", "created", info.created_at,
                                                   priority=info.priority)))
    ended = ENDED.get(info.state)
    finished = info.finished_at
    if ended is not None and finished is not None and ended not in kinds and before(finished):
        extra = {"error": info.error} if info.state in ("dead", "cancelled") and info.error else {}
        added.append((finished, 2, _record(public, ended, ended, finished, **extra)))
    for attempt, error, at in info.errors:
        if at and before(at) and not (ended == "deadlettered" and at == finished):
            added.append((at, 1, _record(public, f"failed:{attempt}:{round(at * 1000)}", "failed", at,
                                         attempt=attempt, error=error)))
    merged = sorted(added + logged, key=lambda item: (item[0], item[1]))   # stable: the log's order kept
    return [entry for _, _, entry in merged]


class JobHistory:
    """The route's handler (``api``: the protocol's SpooledApi)."""

    def __init__(self, api: SpooledApi) -> None:
        self.api = api

    @staticmethod
    def _paging(request: Request) -> tuple[bool, int, int]:
        q = request.query_params
        order = q.get("order_dir", "asc").lower()
        if order not in ("asc", "desc"):
            raise Refusal(400, "VALIDATION_ERROR", f"order_dir must be asc or desc, got {order!r}")
        try:
            limit, offset = int(q.get("limit", LIMIT_DEFAULT)), int(q.get("offset", 0))
        except ValueError:
            raise Refusal(400, "VALIDATION_ERROR", "limit and offset must be integers") from None
        if not 1 <= limit <= LIMIT_MAX:
            raise Refusal(400, "VALIDATION_ERROR", f"limit must be in [1, {LIMIT_MAX}], got {limit}")
        if offset < 0:
            raise Refusal(400, "VALIDATION_ERROR", f"offset must be >= 0, got {offset}")
        return order == "desc", limit, offset

    async def get(self, request: Request, body: Any) -> Any:
        newest_first, limit, offset = self._paging(request)
        public = request.path_params["id"]
        info = await self.api.info(public)
        events, kept = await call(self.api.engine.job_events, info.queue, info.id, since=info.created_at)
        items = history(public, info, events, kept)
        if newest_first:
            items.reverse()
        page = items[offset:offset + limit]
        return JSONResponse(page, headers={"X-Has-More": "true" if len(items) > offset + limit else "false"})
