"""The native API's JSON records: leased jobs, job infos, cues, workers, webhooks and their
deliveries as ``/v1`` sends them. Bodies are read and checked by ``redispool.web.body``
(with the field specs of ``bodies.py``); payloads and results go out through its
``deliverable``/``jsonable``, so what JSON cannot carry is sent in the tagged forms of
``redispool.tojson``.
"""
from __future__ import annotations

from typing import Any

from ..models import CueInfo, DeliveryInfo, Job, JobInfo, WebhookInfo, WorkerInfo, Workflow
from ..web.body import deliverable, jsonable


def job(j: Job) -> dict[str, Any]:
    """A leased job as the claim routes send it (Undeliverable: see ``deliverable``)."""
    return {"id": j.id, "queue": j.queue, "payload": deliverable(j.payload), "attempt": j.attempt,
            "max_attempts": j.max_attempts, "token": j.token, "lease_expires_at": j.lease_expires_at,
            "timeout": j.timeout}


def info(i: JobInfo) -> dict[str, Any]:
    return {"id": i.id, "queue": i.queue, "state": i.state, "payload": jsonable(i.payload),
            "attempts": i.attempts, "max_attempts": i.max_attempts, "priority": i.priority,
            "result": jsonable(i.result), "error": i.error, "worker_id": i.worker_id,
            "created_at": i.created_at, "updated_at": i.updated_at, "unique_key": i.unique_key,
            "run_at": i.run_at, "lease_expires_at": i.lease_expires_at, "finished_at": i.finished_at,
            "payload_dropped": i.payload_dropped, "result_dropped": i.result_dropped,
            "timeout": i.timeout, "progress": i.progress,
            "errors": [{"attempt": a, "error": e, "at": at} for a, e, at in i.errors]}


def cue(c: CueInfo) -> dict[str, Any]:
    return {"queue": c.queue, "name": c.name, "cron": c.cron, "tz": c.tz, "next_fire_at": c.next_fire_at,
            "paused": c.paused, "payload": jsonable(c.payload), "priority": c.priority, "misfire": c.misfire,
            "max_attempts": c.max_attempts, "lease": c.lease, "last_fire_at": c.last_fire_at, "url": c.url,
            "timeout": c.timeout, "runs": c.runs}


def worker(w: WorkerInfo) -> dict[str, Any]:
    return {"id": w.id, "host": w.host, "pid": w.pid, "queues": w.queues, "started_at": w.started_at,
            "last_heartbeat": w.last_heartbeat, "jobs_in_progress": w.jobs_in_progress,
            "processed": w.processed, "failed": w.failed}


def webhook(w: WebhookInfo) -> dict[str, Any]:
    """A webhook; its secret is never sent (``signed`` says whether it has one)."""
    return {"name": w.name, "url": w.url, "events": w.events, "queues": w.queues, "signed": w.signed,
            "scheme": w.scheme, "max_attempts": w.max_attempts, "created_at": w.created_at, "enabled": w.enabled,
            "disable_after": w.disable_after, "failures": w.failures, "auto_disabled_at": w.auto_disabled_at}


def delivery(d: DeliveryInfo) -> dict[str, Any]:
    return {"id": d.id, "webhook": d.webhook, "event": d.event, "queue": d.queue, "job_id": d.job_id,
            "attempt": d.attempt, "status": d.status, "code": d.code, "error": d.error, "response": d.response,
            "duration_ms": d.duration_ms, "at": d.at}


def workflow(w: Workflow) -> dict[str, Any]:
    return w.to_dict()
