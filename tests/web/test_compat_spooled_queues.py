"""The spooled SDK's health and queues resources and its jobs' tags, expiry and priority
(issue 20), with the official client unchanged, against ``redispool serve`` on a real
redis-server."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

pytest.importorskip("spooled")
from spooled import SpooledClient  # noqa: E402
from spooled.errors import AuthenticationError, AuthorizationError, ConflictError, NotFoundError  # noqa: E402

from support.compat import SPOOLED_KEYS, request, sweeper  # noqa: E402
from support.waiting import wait_for  # noqa: E402

ADMIN, WORKER, READ = SPOOLED_KEYS
EXPIRED = "expired: not claimed before its expires_at"


@pytest.fixture
def queue(request):
    return "spq-" + request.node.name.replace("_", "-")[:60]


def raw(server, method: str, path: str, key: str | None = ADMIN, **kw) -> httpx.Response:
    return request(server, method, "/compat/spooled" + path, key, **kw)


def in_(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


# ---------------------------------------------------------------------- health
def test_health(client, server):
    health = client.health.get()
    assert (health.status, health.database, health.cache) == ("healthy", True, True)
    assert client.health.liveness() and client.health.readiness()
    for path in ("/health", "/health/live", "/health/ready"):
        assert raw(server, "GET", path, key=None).status_code == 200, "no key needed, as the service"


def test_health_while_redis_is_down():
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    from starlette.testclient import TestClient

    import redispool
    from redispool.compat import create_spooled_app
    down = redispool.Engine(redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)),
                            url="redis://localhost:1/0")
    with TestClient(create_spooled_app(down)) as c:
        health = c.get("/health")
        assert health.status_code == 200 and health.json() == {"status": "degraded", "database": False,
                                                                "cache": False}
        assert c.get("/health/live").status_code == 200
        assert c.get("/health/ready").status_code == 503


# ---------------------------------------------------------------------- queues
def test_queue_config_becomes_the_queues_job_defaults_and_limit(client, server, queue):
    _, engine, _ = server
    client.jobs.create({"queue_name": queue, "payload": {}})
    assert queue in [q.queue_name for q in client.queues.list()]
    got = client.queues.get(queue)
    assert (got.queue_name, got.max_retries, got.default_timeout, got.rate_limit, got.enabled) == (
        queue, 3, 300, None, True)
    engine.set_limits(queue, concurrency=4)
    out = client.queues.update_config(queue, {"max_retries": 5, "default_timeout": 60, "rate_limit": 10})
    assert (out.max_retries, out.default_timeout, out.rate_limit, out.enabled) == (5, 60, 10, True)
    assert engine.limits(queue) == {"rate": 10, "per": 1.0, "concurrency": 4}, "the cap stays"
    assert client.queues.get(queue).settings == {"concurrency": 4}

    plain = client.jobs.create({"queue_name": queue, "payload": {}}).id
    own = client.jobs.create({"queue_name": queue, "payload": {}, "max_retries": 1, "timeout_seconds": 9}).id
    bulk = client.jobs.bulk_enqueue({"queue_name": queue, "jobs": [{"payload": {}}]}).succeeded[0].job_id
    assert [(client.jobs.get(i).max_retries, client.jobs.get(i).timeout_seconds) for i in (plain, own, bulk)] == [
        (5, 60), (1, 9), (5, 60)]
    assert engine.get(queue, plain.split("~", 1)[1]).max_attempts == 6
    summary = {q.queue_name: q for q in client.queues.list()}[queue]
    assert (summary.max_retries, summary.default_timeout, summary.rate_limit) == (5, 60, 10)

    client.queues.update_config(queue, {"max_retries": 2})   # a PUT: what is not given goes back to defaults
    assert (client.queues.get(queue).default_timeout, client.queues.get(queue).rate_limit) == (300, None)
    assert engine.limits(queue)["rate"] is None
    with pytest.raises(Exception) as bad:
        client.queues.update_config(queue, {"max_retries": 101})   # the SDK refuses it before sending
    assert "max_retries" in str(bad.value)
    assert raw(server, "PUT", f"/api/v1/queues/{queue}/config", json={"max_retries": 101}).status_code == 400
    assert client.queues.get(queue).max_retries == 2, "nothing written"


def test_queue_stats_count_the_last_day_and_active_workers(client, server, queue):
    ids = [client.jobs.create({"queue_name": queue, "payload": {"n": i}, "max_retries": 0}).id for i in range(4)]
    client.workers.register({"queue_name": queue, "hostname": "h", "worker_id": f"w-{queue}"})
    first, second = client.jobs.claim({"queue_name": queue, "worker_id": f"w-{queue}", "limit": 2}).jobs
    client.jobs.complete(first.id, {"worker_id": f"w-{queue}", "lease_id": first.lease_id})
    client.jobs.fail(second.id, {"worker_id": f"w-{queue}", "lease_id": second.lease_id, "error": "boom"})
    [third] = client.jobs.claim({"queue_name": queue, "worker_id": f"w-{queue}"}).jobs
    stats = client.queues.get_stats(queue)
    assert (stats.queue_name, stats.pending_jobs, stats.processing_jobs, stats.completed_jobs_24h,
            stats.failed_jobs_24h, stats.active_workers) == (queue, 1, 1, 1, 1, 1)
    assert stats.max_job_age_seconds is not None and stats.max_job_age_seconds >= 0
    assert third.id == ids[2]


def test_pause_with_a_reason_and_resume_with_the_time_paused(client, server, queue):
    _, engine, _ = server
    job = client.jobs.create({"queue_name": queue, "payload": {}}).id
    paused = client.queues.pause(queue, reason="maintenance")
    assert (paused.queue_name, paused.paused, paused.reason) == (queue, True, "maintenance")
    assert abs(paused.paused_at.timestamp() - time.time()) < 60
    got = client.queues.get(queue)
    assert not got.enabled and got.settings["paused_reason"] == "maintenance"
    assert client.jobs.claim({"queue_name": queue, "worker_id": "w-p"}).jobs == []
    assert engine.stats(queue)["paused"]
    resumed = client.queues.resume(queue)
    assert (resumed.queue_name, resumed.resumed) == (queue, True) and resumed.paused_duration_secs >= 0
    assert client.queues.get(queue).enabled
    assert [j.id for j in client.jobs.claim({"queue_name": queue, "worker_id": "w-p"}).jobs] == [job]
    assert client.queues.pause(queue).reason is None
    client.queues.update_config(queue, {"enabled": True})
    assert not engine.stats(queue)["paused"]
    client.queues.update_config(queue, {"enabled": False})
    assert engine.stats(queue)["paused"]
    with pytest.raises(NotFoundError):
        client.queues.resume("spq-never-used")


def test_delete_is_refused_while_jobs_wait_unless_they_go_too(client, server, queue):
    _, engine, _ = server
    client.jobs.create({"queue_name": queue, "payload": {}})
    with pytest.raises(ConflictError):
        client.queues.delete(queue)
    assert engine.stats(queue)["ready"] == 1, "nothing removed"
    client.queues.delete(queue, delete_jobs=True)
    assert queue not in engine.queues()
    with pytest.raises(NotFoundError):
        client.queues.get(queue)
    with pytest.raises(NotFoundError):
        client.queues.delete(queue)
    done = client.jobs.create({"queue_name": queue, "payload": {}}).id
    [claimed] = client.jobs.claim({"queue_name": queue, "worker_id": "w-d"}).jobs
    client.jobs.complete(done, {"worker_id": "w-d", "lease_id": claimed.lease_id})
    client.queues.delete(queue)                       # only finished jobs: no 409
    assert queue not in [q.queue_name for q in client.queues.list()]


def test_queue_roles(server, queue):
    base, _, _ = server
    reader = SpooledClient(api_key=READ, base_url=base + "/compat/spooled")
    reader.queues.list()
    reader.queues.get_stats(queue)
    with pytest.raises(AuthorizationError):
        reader.queues.pause(queue)
    worker = SpooledClient(api_key=WORKER, base_url=base + "/compat/spooled")
    with pytest.raises(AuthorizationError):
        worker.queues.update_config(queue, {"max_retries": 1})


# ---------------------------------------------------------------------- jobs: tags, expiry, priority
def test_tags_are_stored_returned_and_filter_lists(client, server, queue):
    _, engine, _ = server
    urgent = client.jobs.create({"queue_name": queue, "payload": {}, "tags": ["urgent", "billing"]}).id
    keyed = client.jobs.create({"queue_name": queue, "payload": {}, "tags": {"urgent": True, "team": "ops"}}).id
    plain = client.jobs.create({"queue_name": queue, "payload": {}}).id
    assert client.jobs.get(urgent).tags == ["urgent", "billing"]
    assert client.jobs.get(keyed).tags == {"urgent": True, "team": "ops"}
    assert client.jobs.get(plain).tags is None
    assert engine.get(queue, urgent.split("~", 1)[1]).tags == ["urgent", "billing"]
    assert {j.id for j in client.jobs.list({"queue_name": queue, "tag": "urgent"})} == {urgent, keyed}
    assert [j.id for j in client.jobs.list({"queue_name": queue, "tag": "team"})] == [keyed]
    assert list(client.jobs.list({"queue_name": queue, "tag": "ops"})) == [], "a value is not a tag"
    assert len(list(client.jobs.list({"queue_name": queue}))) == 3
    assert raw(server, "POST", "/api/v1/jobs", json={"queue_name": queue, "tags": ["a", 1]}).status_code == 400


def test_a_job_that_expires_while_queued_never_reaches_a_worker(client, server, queue):
    expiring = client.jobs.create({"queue_name": queue, "payload": {"n": 1}, "expires_at": in_(1)}).id
    later = client.jobs.create({"queue_name": queue, "payload": {"n": 2}, "expires_at": in_(3600)}).id
    plain = client.jobs.create({"queue_name": queue, "payload": {"n": 3}}).id
    job = client.jobs.get(expiring)
    assert job.expires_at is not None and job.status == "pending"
    assert client.jobs.get(plain).expires_at is None
    wait_for(lambda: time.time() > job.expires_at.timestamp() + 0.2, 10, "the expiry to pass")
    claimed = client.jobs.claim({"queue_name": queue, "worker_id": "w-x", "limit": 10}).jobs
    assert {j.id for j in claimed} == {later, plain}, "the expired job is not handed out"
    gone = client.jobs.get(expiring)
    assert (gone.status, gone.last_error) == ("cancelled", EXPIRED)
    assert [j.id for j in client.jobs.list({"queue_name": queue, "status": "cancelled"})] == [expiring]


def test_the_sweeper_cancels_a_job_that_expires_in_a_paused_queue(client, server, queue, redis_url):
    _, _, prefix = server
    client.queues.pause(queue)
    expiring = client.jobs.create({"queue_name": queue, "payload": {}, "expires_at": in_(0.5)}).id
    kept = client.jobs.create({"queue_name": queue, "payload": {}}).id
    with sweeper(redis_url, prefix):
        wait_for(lambda: client.jobs.get(expiring).status == "cancelled", 20, "the sweeper to cancel it")
    assert client.jobs.get(expiring).last_error == EXPIRED
    client.queues.resume(queue)
    assert [j.id for j in client.jobs.claim({"queue_name": queue, "worker_id": "w-s", "limit": 5}).jobs] == [kept]


def test_boost_priority_rescores_a_waiting_job_in_place(client, server, queue):
    ids = [client.jobs.create({"queue_name": queue, "payload": {"n": i}}).id for i in range(3)]
    later = client.jobs.create({"queue_name": queue, "payload": {}, "scheduled_at": in_(3600)}).id
    out = client.jobs.boost_priority(ids[2], 10)
    assert (out.job_id, out.old_priority, out.new_priority) == (ids[2], 0, 10)
    assert client.jobs.get(ids[2]).priority == 10
    assert client.jobs.boost_priority(later, 5000).new_priority == 1000, "clamped as the service"
    assert client.jobs.get(later).status == "scheduled"
    [first] = client.jobs.claim({"queue_name": queue, "worker_id": "w-b"}).jobs
    assert first.id == ids[2]
    with pytest.raises(NotFoundError):
        client.jobs.boost_priority(first.id, 1)       # processing: not pending or scheduled
    with pytest.raises(NotFoundError):
        client.jobs.boost_priority(f"{queue}~404", 1)
    assert [j.id for j in client.jobs.claim({"queue_name": queue, "worker_id": "w-b", "limit": 5}).jobs] == ids[:2]


# ---------------------------------------------------------------------- the key before the route
def test_a_bad_key_is_401_before_any_404(server):
    base, _, _ = server
    for key in (None, "sp_live_not_a_key_0000"):
        for method, path in (("GET", "/api/v1/no/such/route"), ("POST", "/api/v1/queues/q/nothing"),
                             ("GET", "/nowhere"), ("PATCH", "/api/v1/jobs")):
            r = raw(server, method, path, key=key)
            assert r.status_code == 401 and set(r.json()) == {"code", "message"}, (method, path, r.text)
    assert raw(server, "GET", "/api/v1/no/such/route").status_code == 404
    with pytest.raises(AuthenticationError):
        SpooledClient(api_key="sp_live_not_a_key_0000", base_url=base + "/compat/spooled").queues.list()


@pytest.mark.parametrize("method,path,body,status", [
    ("POST", "/jobs/q~1/complete", {"worker_id": "w"}, 422),                        # lease_id required
    ("POST", "/jobs/q~1/fail", {"worker_id": "w", "error": "x"}, 422),
    ("POST", "/jobs/q~1/heartbeat", {"worker_id": "w"}, 422),
    ("POST", "/jobs", {"queue_name": "q", "tags": 5}, 422),
    ("POST", "/jobs", {"queue_name": "q", "expires_at": "tomorrow"}, 400),
    ("PUT", "/jobs/q~1/priority", {}, 422),
    ("PUT", "/jobs/q~404/priority", {"priority": 1}, 404),
    ("GET", "/queues/nope-never", None, 404),
    ("GET", "/queues/bad queue", None, 400),
    ("PUT", "/queues/q/config", {"default_timeout": 0}, 400),
    ("PUT", "/queues/q/config", {"rate_limit": 0}, 400),
    ("POST", "/queues/nope-never/resume", None, 404),
    ("DELETE", "/queues/nope-never", None, 404),
])
def test_bad_requests_answer_in_the_services_shape_and_write_nothing(server, method, path, body, status):
    _, engine, _ = server
    before = engine.queues()
    r = raw(server, method, "/api/v1" + path, json=body) if body is not None else raw(server, method, "/api/v1" + path)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"code", "message"}
    assert engine.queues() == before
