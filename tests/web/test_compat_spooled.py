"""The spooled job service's official Python SDK (``spooled``, pinned in the dev extra)
against redispool's /compat/spooled on a real redis-server: producing, the whole worker
lifecycle, the dead-letter list, two SpooledWorker processes with one SIGKILLed, and
every route's error answers."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

pytest.importorskip("spooled")
from spooled import SpooledClient, SpooledWorker  # noqa: E402
from spooled.errors import (  # noqa: E402
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    NotFoundError,
    ValidationError,
    is_lease_expired,
)

from support.compat import SPOOLED_KEYS, request, sweeper  # noqa: E402
from support.waiting import wait_for  # noqa: E402

ADMIN, WORKER, READ = SPOOLED_KEYS
HERE = Path(__file__).resolve().parent


@pytest.fixture
def queue(request):
    return "sp-" + request.node.name.replace("_", "-")[:60]


def raw(server, method: str, path: str, key: str | None = ADMIN, **kw) -> httpx.Response:
    return request(server, method, "/compat/spooled/api/v1" + path, key, **kw)


def test_produce_and_the_worker_lifecycle(client, server, queue):
    _, engine, _ = server
    made = client.jobs.create({"queue_name": queue, "payload": {"n": 1}, "priority": 5, "max_retries": 2,
                               "idempotency_key": "order-1"})
    assert made.created and made.id == f"{queue}~{made.id.split('~', 1)[1]}"
    assert client.jobs.create({"queue_name": queue, "payload": {"n": 1}, "idempotency_key": "order-1"}).created is False
    job = client.jobs.get(made.id)
    assert (job.status, job.payload, job.priority, job.max_retries, job.idempotency_key) == (
        "pending", {"n": 1}, 5, 2, "order-1")
    assert engine.get(queue, made.id.split("~", 1)[1]).max_attempts == 3

    reg = client.workers.register({"queue_name": queue, "hostname": "box-1", "worker_id": "w-lifecycle"})
    assert (reg.id, reg.queue_name) == ("w-lifecycle", queue) and reg.heartbeat_interval_secs > 0
    [claimed] = client.jobs.claim({"queue_name": queue, "worker_id": reg.id, "limit": 10,
                                   "lease_duration_secs": 30}).jobs
    assert (claimed.id, claimed.retry_count, claimed.max_retries, claimed.payload) == (made.id, 0, 2, {"n": 1})
    assert claimed.lease_id and claimed.lease_expires_at is not None
    assert client.jobs.get(made.id).status == "processing"
    client.jobs.heartbeat(made.id, {"worker_id": reg.id, "lease_id": claimed.lease_id, "lease_duration_secs": 60})
    assert engine.get(queue, made.id.split("~", 1)[1]).lease_expires_at > time.time() + 50

    assert client.jobs.complete(made.id, {"worker_id": reg.id, "lease_id": claimed.lease_id,
                                          "result": {"sent": True}}).success
    done = client.jobs.get(made.id)
    assert (done.status, done.result) == ("completed", {"sent": True}) and done.completed_at is not None
    with pytest.raises(ConflictError) as replay:      # a replayed ack: the SDK counts it as done
        client.jobs.complete(made.id, {"worker_id": reg.id, "lease_id": claimed.lease_id})
    assert "already completed" in replay.value.message.lower() and not is_lease_expired(replay.value)
    stats = client.jobs.get_stats()
    assert stats.completed >= 1 and stats.total >= stats.completed
    assert [w.id for w in client.workers.list() if w.id == reg.id] == [reg.id]
    client.workers.heartbeat(reg.id, {"current_jobs": 0, "status": "healthy"})
    [info] = [w for w in engine.workers() if w.id == reg.id]
    assert (info.processed, info.failed, info.queues) == (1, 0, [queue])
    client.workers.deregister(reg.id)
    assert reg.id not in [w.id for w in engine.workers()]


def test_stale_lease_is_lease_expired(client, server, queue):
    _, engine, _ = server
    made = client.jobs.create({"queue_name": queue, "payload": {}})
    [first] = client.jobs.claim({"queue_name": queue, "worker_id": "w-old", "lease_duration_secs": 30}).jobs
    assert engine.sweep(queue, worker_id="w-old") == 1          # its lease taken back (as after expiry)
    [second] = client.jobs.claim({"queue_name": queue, "worker_id": "w-new", "lease_duration_secs": 30}).jobs
    assert second.id == made.id and second.lease_id != first.lease_id and second.retry_count == 1
    for call, body in ((client.jobs.complete, {"result": 1}), (client.jobs.fail, {"error": "late"}),
                       (client.jobs.heartbeat, {"lease_duration_secs": 30})):
        with pytest.raises(ConflictError) as stale:
            call(made.id, {"worker_id": "w-old", "lease_id": first.lease_id, **body})
        assert is_lease_expired(stale.value)
    assert client.jobs.get(made.id).status == "processing"     # the stale worker changed nothing
    client.jobs.complete(made.id, {"worker_id": "w-new", "lease_id": second.lease_id})
    with pytest.raises(NotFoundError):
        client.jobs.complete(f"{queue}~nope", {"worker_id": "w", "lease_id": "1"})


def run_worker(worker: SpooledWorker) -> threading.Thread:
    thread = threading.Thread(target=worker.start, daemon=True)
    thread.start()
    wait_for(lambda: worker.state == "running", 10, "the worker to start")
    return thread


def test_failing_handlers_retry_then_dead_letter_and_the_sdk_retries_them(client, server, queue):
    _, engine, _ = server
    ids = [client.jobs.create({"queue_name": queue, "payload": {"n": i}, "max_retries": 1}).id for i in range(3)]
    attempts: list[tuple[str, int]] = []
    worker = SpooledWorker(client, queue_name=queue, concurrency=3, poll_interval=0.05, lease_duration=5)

    @worker.process
    def handle(ctx):
        attempts.append((ctx.job_id, ctx.retry_count))
        raise RuntimeError(f"cannot handle {ctx.payload['n']}")

    thread = run_worker(worker)
    try:
        wait_for(lambda: engine.stats(queue)["dead"] == 3, 15, "3 dead jobs")   # 2 attempts, ~1 s backoff
    finally:
        worker.stop()
        thread.join(15)
    assert sorted(attempts) == sorted([(i, 0) for i in ids] + [(i, 1) for i in ids])
    dead = client.jobs.dlq.list({"queue_name": queue})
    assert sorted(j.id for j in dead) == sorted(ids) and dead.has_more is False
    assert {j.status for j in dead} == {"deadletter"} and all("cannot handle" in j.last_error for j in dead)
    job = client.jobs.get(ids[0])
    assert (job.status, job.retry_count, job.last_error) == ("deadletter", 1, "cannot handle 0")

    assert client.jobs.retry(ids[0]).status == "pending"
    retried = client.jobs.dlq.retry({"queue_name": queue})
    assert retried.retried_count == 2 and sorted(retried.retried_jobs) == sorted(ids[1:])
    assert client.jobs.dlq.list({"queue_name": queue}) == []
    ok = SpooledWorker(client, queue_name=queue, concurrency=3, poll_interval=0.05, lease_duration=5)
    ok.process(lambda ctx: {"ok": ctx.payload["n"]})
    thread = run_worker(ok)
    try:
        wait_for(lambda: engine.stats(queue)["done"] == 3, 10, "3 done jobs")
    finally:
        ok.stop()
        thread.join(15)
    assert client.jobs.get(ids[2]).result == {"ok": 2}
    assert client.jobs.dlq.purge({"queue_name": queue, "confirm": True}).purged_count == 0


def test_deregister_gives_back_the_workers_jobs(client, server, queue):
    _, engine, _ = server
    ids = [client.jobs.create({"queue_name": queue, "payload": {"n": i}}).id for i in range(3)]
    reg = client.workers.register({"queue_name": queue, "hostname": "box-2"})
    claimed = client.jobs.claim({"queue_name": queue, "worker_id": reg.id, "limit": 2,
                                 "lease_duration_secs": 60}).jobs
    assert len(claimed) == 2
    client.workers.deregister(reg.id)
    for job_id in ids:
        job = client.jobs.get(job_id)
        assert (job.status, job.retry_count) == ("pending", 0)   # released, the attempt not counted
    with pytest.raises(NotFoundError):
        client.workers.heartbeat(reg.id, {"current_jobs": 0})
    with pytest.raises(NotFoundError):
        client.workers.deregister(reg.id)
    with pytest.raises(ConflictError) as lost:
        client.jobs.complete(claimed[0].id, {"worker_id": reg.id, "lease_id": claimed[0].lease_id})
    assert is_lease_expired(lost.value)


def test_bulk_cancel_list_and_status(client, server, queue):
    out = client.jobs.bulk_enqueue({"queue_name": queue, "default_priority": 3, "jobs": [
        {"payload": {"n": 1}}, {"payload": {"n": 2}, "priority": 9, "idempotency_key": "b-2"},
        {"payload": {"n": 3}, "scheduled_at": "2999-01-01T00:00:00Z"}]})
    assert (out.success_count, out.failure_count, out.total) == (3, 0, 3)
    ids = [r.job_id for r in out.succeeded]
    assert [client.jobs.get(i).priority for i in ids] == [3, 9, 3]
    assert client.jobs.get(ids[2]).status == "scheduled"
    client.jobs.cancel(ids[2])
    assert client.jobs.get(ids[2]).status == "cancelled"
    with pytest.raises(ConflictError):
        client.jobs.cancel(ids[2])
    with pytest.raises(ConflictError):
        client.jobs.retry(ids[0])                 # only dead jobs are retried by hand
    pending = client.jobs.list({"queue_name": queue, "status": "pending"})
    assert [j.id for j in pending] == [ids[1], ids[0]]              # priority first
    assert {s.id: s.status for s in client.jobs.batch_status(ids)} == {
        ids[0]: "pending", ids[1]: "pending", ids[2]: "cancelled"}


def test_timeout_seconds_is_the_jobs_timeout(client, server, queue):
    """The service's timeout_seconds (300 when not given) is stored as the job's timeout
    and answered as it is: by GET /jobs/{id} and in the claim, whose SDK worker enforces it."""
    _, engine, _ = server
    own = client.jobs.create({"queue_name": queue, "payload": {}, "timeout_seconds": 120}).id
    default = client.jobs.create({"queue_name": queue, "payload": {}}).id
    bulk = client.jobs.bulk_enqueue({"queue_name": queue, "default_timeout_seconds": 45,
                                     "jobs": [{"payload": {"n": 1}}]}).succeeded[0].job_id
    native = engine.enqueue(queue, {"n": 2}, timeout=0.2)
    assert [client.jobs.get(i).timeout_seconds for i in (own, default, bulk)] == [120, 300, 45]
    assert [engine.get(queue, i.split("~", 1)[1]).timeout for i in (own, default, bulk)] == [120, 300, 45]
    assert client.jobs.get(f"{queue}~{native}").timeout_seconds == 1, "whole seconds, never 0 for a timeout"
    claimed = client.jobs.claim({"queue_name": queue, "worker_id": "w-timeout", "limit": 10}).jobs
    assert {j.id: j.timeout_seconds for j in claimed} == {own: 120, default: 300, bulk: 45, f"{queue}~{native}": 1}
    assert raw(server, "POST", "/jobs", json={"queue_name": queue, "timeout_seconds": 0}).status_code == 400
    assert raw(server, "POST", "/jobs", json={"queue_name": queue, "timeout_seconds": 86401}).status_code == 400
    assert engine.stats(queue)["totals"]["enqueued"] == 4


def test_thousand_jobs_two_worker_processes_one_killed(client, server, queue, redis_url, tmp_path):
    """1,000 jobs from the SDK; two SpooledWorker processes drain them; one is SIGKILLed
    mid-job. Every job ends done, none is completed twice."""
    base, engine, prefix = server
    ids = []
    for start in range(0, 1000, 100):      # every 50th job takes 2 s, so a kill finds one running
        out = client.jobs.bulk_enqueue({"queue_name": queue, "jobs": [
            {"payload": {"n": n, **({"slow": 2} if n % 50 == 25 else {})}} for n in range(start, start + 100)]})
        ids += [r.job_id for r in out.succeeded]
    assert len(set(ids)) == 1000
    outs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    procs = []
    for name, out in zip(("sp-a", "sp-b"), outs):
        with open(tmp_path / f"{name}.log", "w") as log:  # the child keeps its own copy
            procs.append(subprocess.Popen([sys.executable, str(HERE / "spooled_worker_app.py"),
                                           base + "/compat/spooled", WORKER, queue, name, str(out)], stderr=log))

    def slow_job_held_by_a() -> list:
        return [j for j in engine.jobs(queue, "leased", limit=100)
                if j.worker_id == "sp-a" and j.payload.get("slow")]
    try:
        with sweeper(redis_url, prefix):
            wait_for(lambda: outs[0].exists() and len(outs[0].read_text().split()) >= 150
                     and slow_job_held_by_a(), 30, "the first worker to complete 150 jobs and run a slow one")
            procs[0].send_signal(signal.SIGKILL)
            killed_mid_job = [j.id for j in slow_job_held_by_a()]
            procs[0].wait(10)
            wait_for(lambda: engine.stats(queue)["done"] == 1000, 40, "every job done")
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(20) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    completed = outs[0].read_text().split() + outs[1].read_text().split()
    assert len(completed) == len(set(completed)), "a job was completed twice"
    assert set(completed) <= set(ids)
    stats = engine.stats(queue)
    assert (stats["done"], stats["totals"]["completed"]) == (1000, 1000)
    assert {j.id for j in engine.jobs(queue, "done", limit=2000)} == {i.split("~", 1)[1] for i in ids}
    assert killed_mid_job
    for job_id in killed_mid_job:      # the killed run counted as a failed attempt; sp-b finished it
        info = engine.get(queue, job_id)
        assert (info.state, info.attempts, info.worker_id) == ("done", 2, "sp-b")
        assert f"{queue}~{job_id}" in outs[1].read_text().split()


# ---------------------------------------------------------------------- error answers
def test_auth_and_roles(server, queue):
    base, _, _ = server
    with pytest.raises(AuthenticationError):
        SpooledClient(api_key="sp_live_not_a_key_0000", base_url=base + "/compat/spooled").jobs.get_stats()
    reader = SpooledClient(api_key=READ, base_url=base + "/compat/spooled")
    reader.jobs.get_stats()
    with pytest.raises(AuthorizationError):
        reader.jobs.create({"queue_name": queue, "payload": {}})
    r = raw(server, "GET", "/jobs/stats", key=None)
    assert r.status_code == 401 and set(r.json()) == {"code", "message"}
    worker = SpooledClient(api_key=WORKER, base_url=base + "/compat/spooled")
    worker.jobs.create({"queue_name": queue, "payload": {}})
    with pytest.raises(AuthorizationError):
        worker.jobs.dlq.purge({"confirm": True})


@pytest.mark.parametrize("method,path,body,status", [
    ("POST", "/jobs", {"payload": {}}, 422),                                       # queue_name missing
    ("POST", "/jobs", {"queue_name": "q", "priority": "high"}, 422),                # wrong type
    ("POST", "/jobs", {"queue_name": "q", "priority": 101}, 400),                   # out of range
    ("POST", "/jobs", {"queue_name": "bad queue", "payload": 1}, 400),
    ("POST", "/jobs", {"queue_name": "q", "parent_job_id": "x"}, 400),              # not supported
    ("POST", "/jobs", {"queue_name": "q", "scheduled_at": "tomorrow"}, 400),
    ("POST", "/jobs/bulk", {"queue_name": "q", "jobs": []}, 400),
    ("POST", "/jobs/claim", {"queue_name": "q", "worker_id": "w", "limit": 101}, 400),
    ("POST", "/jobs/claim", {"queue_name": "q", "worker_id": "w", "lease_duration_secs": 4}, 400),
    ("POST", "/jobs/claim", {"queue_name": "q"}, 422),
    ("POST", "/jobs/q~1/complete", {"worker_id": "w"}, 422),                        # lease_id missing
    ("POST", "/jobs/q~1/fail", {"worker_id": "w", "lease_id": "1", "error": ""}, 400),
    ("POST", "/jobs/dlq/purge", {"confirm": False}, 400),
    ("POST", "/workers/register", {"queue_name": "q"}, 422),
    ("POST", "/workers/register", {"queue_name": "q", "hostname": "h", "max_concurrency": 0}, 400),
    ("GET", "/jobs/no-separator", None, 404),
    ("GET", "/jobs/q~404", None, 404),
    ("POST", "/jobs/q~404/retry", None, 404),
    ("DELETE", "/jobs/q~404", None, 404),
    ("GET", "/workers/nobody", None, 404),
    ("GET", "/no/such/route", None, 404),
])
def test_bad_requests_answer_in_the_services_shape_and_write_nothing(server, method, path, body, status):
    _, engine, _ = server
    before = engine.queues()
    r = raw(server, method, path, json=body) if body is not None else raw(server, method, path)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"code", "message"}
    assert engine.queues() == before


def test_sdk_raises_its_validation_error(client):
    with pytest.raises(ValidationError) as bad:
        client.jobs.claim({"queue_name": "bad queue", "worker_id": "w"})
    assert bad.value.status_code == 400 and bad.value.code == "VALIDATION_ERROR"


def test_body_too_large_and_redis_down(server, tmp_path):
    r = raw(server, "POST", "/jobs", content=b'{"queue_name": "q", "payload": "' + b"x" * (1 << 20) + b'"}')
    assert r.status_code == 413 and r.json()["code"] == "PAYLOAD_TOO_LARGE"
    from starlette.testclient import TestClient

    import redispool
    from redispool.compat import create_spooled_app
    down = redispool.Engine(redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)),
                            url="redis://localhost:1/0")
    with TestClient(create_spooled_app(down)) as c:
        r = c.post("/api/v1/jobs", json={"queue_name": "q", "payload": 1})
        assert r.status_code == 503 and r.json()["code"] == "SERVICE_UNAVAILABLE"
        assert c.post("/api/v1/jobs/claim", json={"queue_name": "q", "worker_id": "w"}).status_code == 503
