"""The spooled SDK's schedules, workflows (with job dependencies) and outgoing webhooks
against redispool's /compat/spooled on a real redis-server: ``SpooledClient`` unchanged,
a real ``redispool serve`` and ``redispool scheduler``, a real deliverer POSTing to a
loopback receiver that checks ``X-Spooled-Signature`` as the service defines it."""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

import redispool
from redispool.deliver import Deliverer
from redispool.keys import DELIVERY_QUEUE

pytest.importorskip("spooled")
from spooled.errors import ConflictError, NotFoundError, ValidationError  # noqa: E402

from support.compat import SPOOLED_KEYS  # noqa: E402
from support.processes import terminate  # noqa: E402
from support.receiver import Received, receiving  # noqa: E402
from support.waiting import running, wait_for  # noqa: E402

ADMIN, _, READ = SPOOLED_KEYS


@pytest.fixture
def queue(request):
    return "sr-" + request.node.name.replace("_", "-")[:60]


@contextlib.contextmanager
def scheduler(redis_url: str, prefix: str) -> Iterator[subprocess.Popen]:
    """A ``redispool scheduler`` process on that prefix (its log to a file, not a pipe)."""
    with open(os.devnull, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "redispool", "--url", redis_url, "--prefix", prefix,
                                 "scheduler", "--interval", "0.2"], stdout=sink, stderr=sink)
        try:
            yield proc
        finally:
            terminate(proc, 10)


@pytest.fixture
def deliverer(server, redis_url):
    """A deliverer on the server's prefix whose retries come quickly (backoff 50 ms)."""
    _, _, prefix = server
    engine = redispool.connect(redis_url, prefix=prefix, backoff_base=0.05, backoff_cap=0.1)
    yield engine
    engine.close()


def spooled_signature_ok(secret: str, r: Received) -> bool:
    """The service's check: X-Spooled-Signature = "sha256=" + hex HMAC-SHA256(secret,
    "<X-Spooled-Timestamp>.<raw body>"), the timestamp recent."""
    stamp = r.headers["X-Spooled-Timestamp"]
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + r.body, hashlib.sha256).hexdigest()
    return abs(time.time() - int(stamp)) < 300 and hmac.compare_digest(r.headers["X-Spooled-Signature"],
                                                                       "sha256=" + mac)


def native(public: str) -> tuple[str, str]:
    q, _, j = public.partition("~")
    return q, j


# ---------------------------------------------------------------------- schedules
def test_schedules_create_read_update_pause_trigger_history_delete(client, server, queue, redis_url):
    _, engine, prefix = server
    made = client.schedules.create({
        "name": "Nightly report", "description": "the 2 am one", "cron_expression": "0 2 * * *",
        "timezone": "Europe/Berlin", "queue_name": queue, "payload_template": {"kind": "daily"}, "priority": 7,
        "max_retries": 2, "timeout_seconds": 120, "tags": {"team": "ops"}, "metadata": {"owner": "ana"}})
    assert made.name == "Nightly report" and made.cron_expression == "0 2 * * *" and made.next_run_at is not None
    s = client.schedules.get(made.id)
    assert (s.queue_name, s.timezone, s.payload_template, s.priority, s.max_retries, s.timeout_seconds) == (
        queue, "Europe/Berlin", {"kind": "daily"}, 7, 2, 120)
    assert s.is_active and s.run_count == 0 and s.last_run_at is None and s.tags == {"team": "ops"}
    assert s.metadata == {"owner": "ana"} and s.description == "the 2 am one"
    assert s.next_run_at.astimezone().hour is not None and s.next_run_at.timestamp() > time.time()
    [cue] = engine.cues(queue)        # a redispool cue: the scheduler, CLI and dashboard see it
    assert (cue.name, cue.cron, cue.tz, cue.max_attempts, cue.timeout) == (made.id, "0 2 * * *", "Europe/Berlin",
                                                                           3, 120.0)
    # six fields, seconds first: every second, fired by a real scheduler
    every = client.schedules.create({"name": "tick", "cron_expression": "* * * * * *", "queue_name": queue,
                                     "payload_template": {"tick": True}})
    assert {x.id for x in client.schedules.list({"queue_name": queue})} == {made.id, every.id}
    with scheduler(redis_url, prefix):
        wait_for(lambda: client.schedules.get(every.id).run_count >= 1, 30, what="the scheduler fired the schedule")
    client.schedules.pause(every.id)
    fired = client.schedules.get(every.id)
    assert fired.last_run_at is not None and not fired.is_active
    [run, *_] = client.schedules.get_history(every.id)
    assert run.schedule_id == every.id and run.status == "completed" and run.completed_at is not None
    job = client.jobs.get(run.job_id)
    assert job.payload == {"tick": True} and job.queue_name == queue and job.timeout_seconds == 300

    # update: only what is sent changes; queue_name is not applied (as the service)
    updated = client.schedules.update(made.id, {"name": "Nightly", "cron_expression": "30 3 * * *",
                                                "payload_template": {"kind": "v2"}, "priority": -3,
                                                "queue_name": "elsewhere"})
    assert (updated.name, updated.cron_expression, updated.payload_template, updated.priority) == (
        "Nightly", "30 3 * * *", {"kind": "v2"}, -3)
    assert updated.queue_name == queue and updated.timezone == "Europe/Berlin" and updated.max_retries == 2
    assert updated.description == "the 2 am one" and updated.updated_at >= updated.created_at

    # pause / resume / list filters
    assert client.schedules.pause(made.id).is_active is False
    assert engine.get_cue(queue, made.id).paused
    inactive = {x.id for x in client.schedules.list({"queue_name": queue, "is_active": False})}
    assert inactive == {made.id, every.id}
    assert client.schedules.resume(made.id).is_active is True
    assert {x.id for x in client.schedules.list({"queue_name": queue, "is_active": True})} == {made.id}
    assert len(client.schedules.list({"queue_name": queue, "limit": 1})) == 1

    # trigger: one job now, its options the schedule's; history newest first
    triggered = client.schedules.trigger(made.id)
    job = client.jobs.get(triggered.job_id)
    assert (job.payload, job.priority, job.max_retries, job.timeout_seconds) == ({"kind": "v2"}, -3, 2, 120)
    history = client.schedules.get_history(made.id, limit=5)
    assert [h.job_id for h in history] == [triggered.job_id]
    assert client.schedules.get(made.id).run_count == 1

    client.schedules.delete(made.id)
    with pytest.raises(NotFoundError):
        client.schedules.get(made.id)
    assert engine.get_cue(queue, made.id) is None and client.jobs.get(triggered.job_id).status == "pending"
    client.schedules.delete(every.id)
    assert client.schedules.list({"queue_name": queue}) == []


def test_schedule_errors(client, queue):
    base = {"name": "x", "queue_name": queue, "payload_template": None}
    for bad in ({"cron_expression": "61 * * * *"}, {"cron_expression": "* * *"},
                {"cron_expression": "* * * * *", "timezone": "Mars/Olympus"}):
        with pytest.raises(ValidationError):
            client.schedules.create({**base, **bad})
    with pytest.raises(ValidationError):
        client.schedules.create({**base, "cron_expression": "* * * * *", "queue_name": "bad queue"})
    for call in (client.schedules.get, client.schedules.pause, client.schedules.resume, client.schedules.trigger,
                 client.schedules.get_history, client.schedules.delete):
        with pytest.raises(NotFoundError):
            call("sch_missing")
    assert client.schedules.list({"queue_name": queue}) == []


# ---------------------------------------------------------------------- workflows
def claim_one(client, queue: str) -> object:
    jobs = client.jobs.claim({"queue_name": queue, "worker_id": "w-wf", "limit": 1}).jobs
    return jobs[0] if jobs else None


def test_a_workflow_runs_its_jobs_in_dependency_order(client, server, queue):
    _, engine, _ = server
    other = queue + "-b"
    made = client.workflows.create({
        "name": "ingest", "description": "the nightly ingest", "metadata": {"run": 1}, "jobs": [
            {"key": "fetch", "queue_name": queue, "payload": {"step": "fetch"}},
            {"key": "parse", "queue_name": queue, "payload": {"step": "parse"}, "depends_on": ["fetch"],
             "max_retries": 0},
            {"key": "thumbs", "queue_name": other, "payload": {"step": "thumbs"}, "depends_on": ["fetch"],
             "priority": 5, "timeout_seconds": 60},
            {"key": "index", "queue_name": queue, "payload": {"step": "index"}, "depends_on": ["parse", "thumbs"],
             "dependency_mode": "any"}]})
    ids = {m.key: m.job_id for m in made.job_ids}
    assert made.status == "pending" and set(ids) == {"fetch", "parse", "thumbs", "index"}
    wf = client.workflows.get(made.workflow_id)
    assert (wf.name, wf.status, wf.total_jobs, wf.completed_jobs, wf.progress_percent) == (
        "ingest", "pending", 4, 0, 0.0)
    assert wf.description == "the nightly ingest" and wf.metadata == {"run": 1}
    jobs = {j.id: j for j in client.workflows.jobs.list(made.workflow_id)}
    assert jobs[ids["index"]].depends_on == [ids["parse"], ids["thumbs"]]
    assert jobs[ids["index"]].dependency_mode == "any" and jobs[ids["thumbs"]].timeout_seconds == 60
    assert jobs[ids["thumbs"]].queue_name == other and jobs[ids["thumbs"]].priority == 5
    assert client.workflows.jobs.get(made.workflow_id, ids["fetch"]).payload == {"step": "fetch"}
    assert {s.job_id: s.status for s in client.workflows.jobs.get_status(made.workflow_id)}[ids["parse"]] == "pending"
    assert engine.workflow(made.workflow_id).states["parse"] == "waiting"   # it waits for its parent

    deps = client.workflows.jobs.get_dependencies(ids["parse"])
    assert [d.job_id for d in deps.dependencies] == [ids["fetch"]] and deps.dependencies_met is False
    root = client.workflows.jobs.get_dependencies(ids["fetch"])
    assert {d.job_id for d in root.dependents} == {ids["parse"], ids["thumbs"]} and root.dependencies_met

    first = claim_one(client, queue)
    assert first.id == ids["fetch"] and claim_one(client, queue) is None   # parse is not claimable yet
    assert client.workflows.get(made.workflow_id).status == "running"
    client.jobs.complete(first.id, {"worker_id": "w-wf", "lease_id": first.lease_id, "result": {"n": 1}})
    wait_for(lambda: client.workflows.jobs.get_dependencies(ids["thumbs"]).dependencies_met, 30, what="thumbs released")
    parse = claim_one(client, queue)
    assert parse.id == ids["parse"] and client.workflows.jobs.get_dependencies(ids["parse"]).dependencies[0].completed
    # parse fails for good: index ("any") still runs once thumbs is done
    client.jobs.fail(parse.id, {"worker_id": "w-wf", "lease_id": parse.lease_id, "error": "bad input"})
    thumbs = claim_one(client, other)
    client.jobs.complete(thumbs.id, {"worker_id": "w-wf", "lease_id": thumbs.lease_id})
    wait_for(lambda: claim_one(client, queue) is not None, 30, what="index released by thumbs")
    detail = client.workflows.get(made.workflow_id)
    assert detail.status == "failed" and detail.failed_jobs == 1 and detail.completed_jobs == 2
    assert {w.id for w in client.workflows.list({"status": "failed"})} >= {made.workflow_id}
    failed_row = client.workflows.jobs.get(made.workflow_id, ids["parse"])
    assert failed_row.status == "deadletter" and failed_row.error.message == "bad input"


def test_a_failed_parent_cancels_its_children_and_cancel_and_retry(client, server, queue):
    made = client.workflows.create({"name": "chain", "jobs": [
        {"key": "a", "queue_name": queue, "payload": 1, "max_retries": 0},
        {"key": "b", "queue_name": queue, "payload": 2, "depends_on": ["a"]},
        {"key": "c", "queue_name": queue, "payload": 3, "depends_on": ["b"]}]})
    ids = {m.key: m.job_id for m in made.job_ids}
    a = claim_one(client, queue)
    client.jobs.fail(a.id, {"worker_id": "w-wf", "lease_id": a.lease_id, "error": "boom"})
    wait_for(lambda: client.jobs.get(ids["c"]).status == "cancelled", 30, what="the children cancelled")
    b = client.jobs.get(ids["b"])
    assert b.status == "cancelled" and "parent" in b.last_error and native(ids["a"])[1] in b.last_error
    assert client.workflows.get(made.workflow_id).status == "failed"
    with pytest.raises(ValidationError):
        client.workflows.retry(made.workflow_id)
    assert client.workflows.jobs.get_dependencies(ids["b"]).dependencies_met is False

    other = client.workflows.create({"name": "to cancel", "jobs": [
        {"key": "x", "queue_name": queue, "payload": None},
        {"key": "y", "queue_name": queue, "payload": None, "depends_on": ["x"]}]})
    cancelled = client.workflows.cancel(other.workflow_id)
    assert cancelled.status == "cancelled" and cancelled.completed_at is not None
    assert {s.status for s in client.workflows.jobs.get_status(other.workflow_id)} == {"cancelled"}
    assert claim_one(client, queue) is None
    assert {w.id for w in client.workflows.list({"status": "cancelled", "limit": 100})} >= {other.workflow_id}


def test_workflow_and_dependency_errors(client, queue):
    with pytest.raises(ValidationError):     # a cycle
        client.workflows.create({"name": "loop", "jobs": [
            {"key": "a", "queue_name": queue, "payload": None, "depends_on": ["b"]},
            {"key": "b", "queue_name": queue, "payload": None, "depends_on": ["a"]}]})
    with pytest.raises(ValidationError):     # an unknown key
        client.workflows.create({"name": "x", "jobs": [{"key": "a", "queue_name": queue, "payload": None,
                                                         "depends_on": ["zz"]}]})
    with pytest.raises(NotFoundError):
        client.workflows.get("wf-missing")
    with pytest.raises(NotFoundError):
        client.workflows.cancel("wf-missing")
    with pytest.raises(NotFoundError):
        client.workflows.jobs.get_dependencies(f"{queue}~404")
    made = client.jobs.create({"queue_name": queue, "payload": None})
    plain = client.workflows.jobs.get_dependencies(made.id)
    assert plain.dependencies == [] and plain.dependents == [] and plain.dependencies_met
    with pytest.raises(ValidationError):
        client.workflows.jobs.add_dependencies(made.id, {"dependency_job_ids": [made.id]})


# ---------------------------------------------------------------------- outgoing webhooks
def test_outgoing_webhooks_deliver_signed_events_and_are_managed(client, server, queue, deliverer):
    with receiving() as receiver:
        hook = client.webhooks.create({"name": "billing", "url": receiver.url, "secret": "whsec_test",
                                       "events": ["job.created", "job.completed", "job.failed"]})
        assert (hook.name, hook.url, hook.enabled, hook.failure_count, hook.format) == (
            "billing", receiver.url, True, 0, "json")
        assert hook.events == ["job.created", "job.completed", "job.failed"] and hook.last_status is None
        assert [w.id for w in client.webhooks.list()].count(hook.id) == 1
        made = client.jobs.create({"queue_name": queue, "payload": {"n": 1}, "priority": 4})
        [job] = client.jobs.claim({"queue_name": queue, "worker_id": "w-hook", "limit": 1}).jobs
        client.jobs.complete(job.id, {"worker_id": "w-hook", "lease_id": job.lease_id, "result": {"ok": 1}})
        with running(Deliverer(deliverer)):
            wait_for(lambda: len(receiver.requests) >= 2, 30, what="two deliveries")
            ping = client.webhooks.test(hook.id)
        completed, created = sorted(receiver.requests[:2], key=lambda r: r.json["event"])
        for r in (created, completed):
            assert spooled_signature_ok("whsec_test", r), r.headers
            assert r.headers["User-Agent"] == "Spooled-OutgoingWebhook/1.0"
            assert r.headers["X-Spooled-Event"] == r.json["event"] and r.headers["X-Spooled-Delivery-Attempt"] == "1"
            assert set(r.json) == {"id", "event", "created_at", "data"}
        assert created.json["event"] == "job.created" and created.json["data"] == {
            "job_id": made.id, "queue_name": queue, "status": "pending", "priority": 4}
        assert completed.json["event"] == "job.completed" and completed.json["data"]["job_id"] == made.id
        assert completed.json["data"]["status"] == "completed"
        assert client.jobs.get(completed.json["data"]["job_id"]).result == {"ok": 1}
        # the test delivery: sent at once, signed the same way
        assert ping.success and ping.status_code == 200 and ping.error is None
        test_request = receiver.requests[-1]
        assert test_request.json["event"] == "webhook.test" and spooled_signature_ok("whsec_test", test_request)

        deliveries = client.webhooks.get_deliveries(hook.id)
        assert sorted(d.event for d in deliveries) == ["job.completed", "job.created"]
        assert all(d.status == "success" and d.attempts == 1 and d.status_code == 200 for d in deliveries)
        assert {d.payload["data"]["job_id"] for d in deliveries} == {made.id}
        assert client.webhooks.get_deliveries(hook.id, {"status": "failed"}) == []
        got = client.webhooks.get(hook.id)
        assert got.last_status == "success" and got.last_triggered_at is not None

        # update: only what is sent; secret=None clears it (deliveries go out unsigned)
        updated = client.webhooks.update(hook.id, {"name": "billing-2", "events": ["job.created"]})
        assert updated.name == "billing-2" and updated.events == ["job.created"] and updated.url == receiver.url
        client.webhooks.update(hook.id, {"secret": None})
        seen = len(receiver.requests)
        client.jobs.create({"queue_name": queue, "payload": {"n": 2}})
        with running(Deliverer(deliverer)):
            wait_for(lambda: len(receiver.requests) > seen, 30, what="the unsigned delivery")
        assert "X-Spooled-Signature" not in receiver.requests[-1].headers
        client.webhooks.delete(hook.id)
        with pytest.raises(NotFoundError):
            client.webhooks.get(hook.id)
        assert hook.id not in [w.id for w in client.webhooks.list()]


def test_failed_deliveries_are_retried_counted_and_auto_disable_the_webhook(client, server, queue, deliverer):
    _, engine, _ = server
    up = {"ok": False}
    with receiving(lambda r: (200, b"ok", {}) if up["ok"] else (500, b"down", {})) as receiver:
        hook = client.webhooks.create({"name": "flaky", "url": receiver.url, "events": ["job.created"],
                                       "secret": "s3"})
        made = client.jobs.create({"queue_name": queue, "payload": {"n": 1}})
        with running(Deliverer(deliverer)):
            wait_for(lambda: engine.stats(DELIVERY_QUEUE)["dead"] >= 1, 30, what="the delivery dead after 5 attempts")
        [failed] = client.webhooks.get_deliveries(hook.id)
        assert (failed.status, failed.attempts, failed.status_code, failed.response_body) == ("failed", 5, 500, "down")
        assert failed.payload["data"]["job_id"] == made.id and failed.event == "job.created"
        got = client.webhooks.get(hook.id)
        assert (got.failure_count, got.last_status, got.enabled) == (1, "failed", True)
        assert len(receiver.requests) == 5 and all(spooled_signature_ok("s3", r) for r in receiver.requests)
        assert [r.headers["X-Spooled-Delivery-Attempt"] for r in receiver.requests] == ["1", "2", "3", "4", "5"]

        # retry the failed delivery: delivered now, the count back to 0
        up["ok"] = True
        assert client.webhooks.retry_delivery(hook.id, failed.id).success
        with pytest.raises(ConflictError):
            client.webhooks.retry_delivery(hook.id, failed.id)   # queued again already: not failed now
        with running(Deliverer(deliverer)):
            wait_for(lambda: client.webhooks.get_deliveries(hook.id)[0].status == "success", 30, what="the retry")
        assert client.webhooks.get(hook.id).failure_count == 0
        with pytest.raises(NotFoundError):
            client.webhooks.retry_delivery(hook.id, "hook:nope:q:1-0")

        # auto-disable: the service's 20 consecutive failed deliveries, here lowered natively to 1
        definition = engine.webhook_definitions()[hook.id]
        engine.add_webhook(hook.id, receiver.url, events=definition["events"], secret="s3", scheme="spooled",
                           max_attempts=1, disable_after=1)
        up["ok"] = False
        client.jobs.create({"queue_name": queue, "payload": {"n": 2}})
        with running(Deliverer(deliverer)):
            wait_for(lambda: not client.webhooks.get(hook.id).enabled, 30, what="auto-disabled")
        got = client.webhooks.get(hook.id)
        assert (got.enabled, got.last_status, got.failure_count) == (False, "auto_disabled", 1)
        again = client.webhooks.update(hook.id, {"enabled": True})
        assert (again.enabled, again.failure_count) == (True, 0) and again.last_status == "failed"
        client.webhooks.delete(hook.id)


def test_webhook_errors(client):
    base = {"name": "x", "url": "http://127.0.0.1:9/x"}
    with pytest.raises(ValidationError):
        client.webhooks.create({**base, "events": ["worker.registered"]})   # no such event in the log
    with pytest.raises(ValidationError):
        client.webhooks.create({**base, "events": ["job.created"], "format": "slack"})
    with pytest.raises(ValidationError):
        client.webhooks.create({**base, "url": "ftp://example.com/x", "events": ["job.created"]})
    for call in (client.webhooks.get, client.webhooks.delete, client.webhooks.test, client.webhooks.get_deliveries):
        with pytest.raises(NotFoundError):
            call("wh_missing")
    with pytest.raises(NotFoundError):
        client.webhooks.update("wh_missing", {"name": "y"})
    assert "x" not in [w.name for w in client.webhooks.list()]


def test_roles_and_the_services_error_shape_on_the_new_routes(server, queue):
    base, _, _ = server

    def raw(method: str, path: str, key: str | None, **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.request(method, base + "/compat/spooled/api/v1" + path, headers=headers, timeout=10, **kw)

    schedule = {"name": "n", "cron_expression": "0 0 * * *", "queue_name": queue, "payload_template": None}
    hook = {"name": "n", "url": "http://127.0.0.1:9/x", "events": ["job.created"]}
    for method, path, body in (("POST", "/schedules", schedule), ("POST", "/outgoing-webhooks", hook),
                               ("POST", "/workflows/wf-x/cancel", None), ("POST", "/schedules/sch_x/trigger", None)):
        r = raw(method, path, READ, json=body)
        assert (r.status_code, r.json()["code"]) == (403, "ACCESS_DENIED"), path
        r = raw(method, path, None, json=body)
        assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED"), path
    for path in ("/schedules", "/workflows", "/outgoing-webhooks"):
        assert raw("GET", path, READ).status_code == 200, path
    for path in ("/schedules/sch_x", "/workflows/wf-x", "/outgoing-webhooks/wh_x", f"/jobs/{queue}~1/dependencies"):
        r = raw("GET", path, READ)
        assert r.status_code == 404 and set(r.json()) == {"code", "message"} and r.json()["code"] == "NOT_FOUND"
    r = raw("POST", "/schedules", ADMIN, json={**schedule, "priority": 101})
    assert (r.status_code, r.json()["code"]) == (400, "VALIDATION_ERROR")
    r = raw("POST", "/workflows", ADMIN, json={"name": "x"})
    assert (r.status_code, r.json()["code"]) == (422, "VALIDATION_ERROR")
