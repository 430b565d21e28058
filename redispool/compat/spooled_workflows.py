"""The spooled job service's ``/workflows`` and ``/jobs/{id}/dependencies`` on
redispool's workflows (workflows.py) and dependencies (``depends_on``).

A workflow is ``Engine.enqueue_workflow``: each job of the body a node (``key``,
``queue_name`` -> queue, ``depends_on`` keys, ``dependency_mode`` all / any,
``priority``, ``max_retries`` -> max_attempts - 1, ``timeout_seconds`` -> timeout, 300
when not given as for ``POST /jobs``), created all or nothing; each child waits for its
parents, and a parent that ends dead or cancelled cancels the children that can no
longer run (the service's cancel sweep of a failed parent's children). Its status is
computed from the nodes' states when read: ``pending`` while no node has been claimed,
``running``, ``completed``, ``failed``, ``cancelled`` (``cancel_workflow``). The service's
description and metadata are kept in ``rp:spooled:workflows``. Job ids are this
protocol's (``<queue>~<job id>``).

``GET /jobs/{id}/dependencies`` reads a job's parents (``JobInfo.depends_on``) and its
dependents (the workflow's edges, and the children still waiting for it).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..errors import WorkflowNotFound
from ..keys import spooled_key
from ..models import JobInfo, Workflow
from ..web.body import REQUIRED, FieldError, jsonable
from ..web.endpoint import Refusal, call
from .common import fields, iso

if TYPE_CHECKING:
    from .spooled import SpooledApi

NAME_MAX = 255
JOBS_MAX = 100
LIST_MAX = 100
DEFAULT_TIMEOUT_S = 300
STARTED = ("leased", "done", "dead", "cancelled")


def _public(queue: str, job_id: str) -> str:
    return f"{queue}~{job_id}"


def _in(value: int, low: int, high: int, name: str) -> int:
    if not low <= value <= high:
        raise Refusal(400, "VALIDATION_ERROR", f"{name} must be in [{low}, {high}], got {value}")
    return value


def status(wf: Workflow) -> str:
    """The service's status of a workflow: ours, with ``pending`` while no node started."""
    if wf.status == "running" and not any(s in STARTED for s in wf.states.values()):
        return "pending"
    return wf.status


def counts(wf: Workflow) -> dict[str, Any]:
    total = len(wf.jobs)
    done = sum(1 for s in wf.states.values() if s in ("done", None))
    failed = sum(1 for s in wf.states.values() if s in ("dead", "cancelled"))
    return {"total_jobs": total, "completed_jobs": done, "failed_jobs": failed,
            "progress_percent": done / total * 100.0 if total else 0.0}


class Workflows:
    def __init__(self, api: SpooledApi) -> None:
        self.api = api
        self.engine = api.engine
        self.key = spooled_key(self.engine.prefix, "workflows")

    def routes(self, v1: str) -> list[Route]:
        r, W = self.api.route, v1 + "/workflows/{id}"
        return [
            r("GET", v1 + "/workflows", "read", self.listing),
            r("POST", v1 + "/workflows", "worker", self.create, 201),
            r("GET", W, "read", self.get),
            r("POST", W + "/cancel", "admin", self.cancel),
            r("POST", W + "/retry", "admin", self.retry),
            r("GET", v1 + "/jobs/{id:path}/dependencies", "read", self.dependencies),
            r("POST", v1 + "/jobs/{id:path}/dependencies", "admin", self.add_dependencies),
        ]

    # ------------------------------------------------------------------ reading
    def _extra(self, wid: str) -> dict[str, Any]:
        raw = self.engine.scripts.command("HGET", self.key, wid)
        return json.loads(raw) if raw else {}

    def _workflow(self, wid: str) -> Workflow:
        try:
            return self.engine.workflow(wid)
        except WorkflowNotFound:
            raise Refusal(404, "NOT_FOUND", "Workflow not found") from None

    def _summary(self, wf: Workflow, extra: dict[str, Any], finished: float | None = None) -> dict[str, Any]:
        s = status(wf)
        if finished is None and s == "cancelled":
            finished = wf.cancelled_at
        return {"id": wf.id, "name": wf.name, "status": s, **counts(wf), "created_at": iso(wf.created_at),
                "started_at": None, "completed_at": iso(finished) if s in ("completed", "failed", "cancelled")
                else None, "description": extra.get("description"), "metadata": extra.get("metadata")}

    def _detail(self, wid: str) -> dict[str, Any]:
        from .spooled import _status  # the job statuses of GET /jobs/{id}

        wf = self._workflow(wid)
        rows, finished = [], []
        for key, (queue, job_id) in wf.jobs.items():
            info = self.engine.get(queue, job_id)
            parents = [_public(*wf.jobs[p]) for p in wf.depends_on.get(key, [])]
            row: dict[str, Any] = {"id": _public(queue, job_id), "queue_name": queue, "workflow_id": wid,
                                   "dependency_mode": wf.dependency_mode.get(key, "all"),
                                   "parent_job_id": parents[0] if parents else None}
            if info is None:   # trimmed by its queue's retention: finished
                rows.append({**row, "status": "completed"})
                continue
            if info.finished_at is not None:
                finished.append(info.finished_at)
            rows.append({**row, "status": _status(info), "payload": jsonable(info.payload),
                         "result": jsonable(info.result),
                         "error": {"type": "JobError", "message": info.error} if info.error else None,
                         "priority": info.priority, "max_retries": info.max_attempts - 1,
                         "attempt": info.attempts, "timeout_ms": round(info.timeout * 1000) if info.timeout else None,
                         "created_at": iso(info.created_at), "started_at": None,
                         "completed_at": iso(info.finished_at if info.state == "done" else None)})
        edges = [{"parent_job_id": _public(*wf.jobs[p]), "child_job_id": _public(*wf.jobs[k])}
                 for k, ps in wf.depends_on.items() for p in ps]
        out = self._summary(wf, self._extra(wid), max(finished) if finished else None)
        return {**out, "progress": {"total": out["total_jobs"], "completed": out["completed_jobs"],
                                    "failed": out["failed_jobs"]}, "jobs": rows, "dependencies": edges}

    # ------------------------------------------------------------------ routes
    JOB = {"key": (str, REQUIRED), "queue_name": (str, REQUIRED), "payload": (Any, None),
           "depends_on": (list, None, None), "dependency_mode": (str, None, None), "priority": (int, None, None),
           "max_retries": (int, None, None), "timeout_seconds": (int, None, None)}

    def _node(self, index: int, raw: Any) -> dict[str, Any]:
        j = fields(raw, self.JOB, f"jobs[{index}]")
        if not 1 <= len(j["key"]) <= 100:
            raise Refusal(400, "VALIDATION_ERROR", f"jobs[{index}].key must be 1 to 100 characters")
        node: dict[str, Any] = {"key": j["key"], "queue": j["queue_name"], "payload": j["payload"],
                                "timeout": _in(j["timeout_seconds"], 1, 86400, "timeout_seconds")
                                if j["timeout_seconds"] is not None else DEFAULT_TIMEOUT_S}
        if j["depends_on"]:
            if not all(isinstance(k, str) for k in j["depends_on"]):
                raise FieldError(f"jobs[{index}].depends_on must be a list of keys")
            node["depends_on"] = j["depends_on"]
        if j["dependency_mode"] is not None:
            node["dependency_mode"] = j["dependency_mode"]
        if j["priority"] is not None:
            node["priority"] = _in(j["priority"], -100, 100, "priority")
        if j["max_retries"] is not None:
            node["max_attempts"] = _in(j["max_retries"], 0, 100, "max_retries") + 1
        return node

    async def create(self, request: Request, body: Any) -> Any:
        b = fields(body, {"name": (str, REQUIRED), "description": (str, None), "metadata": (Any, None),
                          "jobs": (list, REQUIRED)})
        if not 1 <= len(b["name"]) <= NAME_MAX:
            raise Refusal(400, "VALIDATION_ERROR", f"name must be 1 to {NAME_MAX} characters")
        if not 1 <= len(b["jobs"]) <= JOBS_MAX:
            raise Refusal(400, "VALIDATION_ERROR", f"a workflow holds 1 to {JOBS_MAX} jobs")
        nodes = [self._node(i, raw) for i, raw in enumerate(b["jobs"])]
        wf = await call(self.engine.enqueue_workflow, b["name"], nodes)
        if b["description"] is not None or b["metadata"] is not None:
            await call(self.engine.scripts.command, "HSET", self.key, wf.id,
                       json.dumps({"description": b["description"], "metadata": b["metadata"]}))
        return JSONResponse({"workflow_id": wf.id, "status": status(wf),
                             "job_ids": [{"key": k, "job_id": _public(q, j)} for k, (q, j) in wf.jobs.items()]},
                            status_code=201)

    async def listing(self, request: Request, body: Any) -> Any:
        q = request.query_params
        try:
            limit, offset = int(q.get("limit", 50)), int(q.get("offset", 0))
        except ValueError:
            raise Refusal(400, "VALIDATION_ERROR", "limit and offset must be integers") from None
        _in(limit, 1, LIST_MAX, "limit")
        _in(offset, 0, 900, "offset")
        wanted = q.get("status")
        if wanted not in (None, "pending", "running", "completed", "failed", "cancelled"):
            raise Refusal(400, "VALIDATION_ERROR", f"unknown status {wanted!r}")
        found = [wf for wf in await call(self.engine.workflows, 1000) if wanted in (None, status(wf))]
        page = found[offset:offset + limit]
        return [self._summary(wf, await call(self._extra, wf.id)) for wf in page]

    async def get(self, request: Request, body: Any) -> Any:
        return await call(self._detail, request.path_params["id"])

    async def cancel(self, request: Request, body: Any) -> Any:
        try:
            await call(self.engine.cancel_workflow, request.path_params["id"])
        except WorkflowNotFound:
            raise Refusal(404, "NOT_FOUND", "Workflow not found") from None
        return await call(self._detail, request.path_params["id"])

    async def retry(self, request: Request, body: Any) -> Any:
        await call(self._workflow, request.path_params["id"])
        raise Refusal(400, "VALIDATION_ERROR", "redispool does not retry a workflow: a dead job cancels the jobs "
                                               "that depend on it, for good; retry a dead job with POST "
                                               "/jobs/{id}/retry, or create the workflow again")

    # ------------------------------------------------------------------ dependencies
    def _dependents(self, info: JobInfo) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        wid = self.engine.workflow_of(info.queue, info.id)
        if wid is not None:
            wf = self.engine.workflow(wid)
            key = next((k for k, (q, j) in wf.jobs.items() if (q, j) == (info.queue, info.id)), None)
            out += [wf.jobs[k] for k, ps in wf.depends_on.items() if key in ps]
        waiting = self.engine.scripts.command("SMEMBERS", self.engine.keys(info.queue).children_prefix + info.id)
        for member in waiting or []:
            queue, _, job_id = (member.decode() if isinstance(member, bytes) else str(member)).partition("\n")
            if (queue, job_id) not in out:
                out.append((queue, job_id))
        return out

    def _edge(self, queue: str, job_id: str) -> dict[str, Any]:
        from .spooled import _status

        info = self.engine.get(queue, job_id)
        return {"job_id": _public(queue, job_id), "status": _status(info) if info else "completed",
                "queue_name": queue}

    def _dependencies(self, info: JobInfo) -> dict[str, Any]:
        parents = [self._edge(q, j) for q, j in info.depends_on or []]
        mode = info.dependency_mode or "all"
        done = [p["status"] == "completed" for p in parents]
        met = not parents or (all(done) if mode == "all" else any(done))
        return {"job_id": _public(info.queue, info.id), "dependencies": parents,
                "dependents": [self._edge(q, j) for q, j in self._dependents(info)],
                "dependency_mode": mode, "dependencies_met": met}

    async def dependencies(self, request: Request, body: Any) -> Any:
        info = await self.api.info(request.path_params["id"])
        return await call(self._dependencies, info)

    async def add_dependencies(self, request: Request, body: Any) -> Any:
        await self.api.info(request.path_params["id"])
        raise Refusal(400, "VALIDATION_ERROR", "redispool sets a job's dependencies when it is created "
                                               "(a workflow's depends_on): it does not add them to a job "
                                               "that exists")
