"""The spooled SDK's job history, ingest and metrics (issue 20), with the official client
unchanged, against ``redispool serve`` on a real redis-server."""
from __future__ import annotations

import httpx
import pytest

pytest.importorskip("spooled")
from spooled import SpooledClient  # noqa: E402
from spooled.errors import AuthenticationError, NotFoundError  # noqa: E402

from support.compat import compat_server  # noqa: E402

ADMIN, WORKER, READ = "sp_live_admin_0123456789", "sp_live_worker_0123456789", "sp_live_read_0123456789"


@pytest.fixture(scope="module")
def server(redis_url):
    with compat_server(redis_url) as s:
        yield s


@pytest.fixture
def client(server):
    base, _, _ = server
    c = SpooledClient(api_key=ADMIN, base_url=base + "/compat/spooled")
    yield c
    c.close()


@pytest.fixture
def queue(request):
    return "spm-" + request.node.name.replace("_", "-")[:60]


def raw(server, method: str, path: str, key: str | None = ADMIN, **kw) -> httpx.Response:
    base, _, _ = server
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    headers.update(kw.pop("headers", {}))
    return httpx.request(method, base + "/compat/spooled" + path, headers=headers, timeout=10, **kw)


def work(client, queue: str, worker: str, *, fail: str | None = None, result=None):
    """Claim the one ready job of ``queue`` and complete or fail it."""
    [job] = client.jobs.claim({"queue_name": queue, "worker_id": worker}).jobs
    if fail is None:
        client.jobs.complete(job.id, {"worker_id": worker, "lease_id": job.lease_id, "result": result})
    else:
        client.jobs.fail(job.id, {"worker_id": worker, "lease_id": job.lease_id, "error": fail})
    return job


def kinds(events) -> list[str]:
    return [e.event_type for e in events]


# ---------------------------------------------------------------------- history
def test_history_follows_a_jobs_life_from_the_event_log(client, queue):
    job = client.jobs.create({"queue_name": queue, "payload": {"n": 1}, "max_retries": 0, "priority": 5}).id
    work(client, queue, "w-1", fail="boom")                       # no retries left: dead
    client.jobs.dlq.retry({"job_ids": [job]})                     # replayed
    work(client, queue, "w-2", result={"ok": True})
    events = client.jobs.history(job)
    assert kinds(events) == ["created", "processing", "deadlettered", "retried", "processing", "completed"]
    assert not events.has_more
    created, first, dead, _, second, _ = events
    assert created.details == {"status": "pending", "priority": 5} and created.job_id == job
    assert (first.worker_id, first.details) == ("w-1", {"attempt": 1})
    assert (second.worker_id, second.details) == ("w-2", {"attempt": 1}), "a replayed job starts its attempts over"
    assert dead.details == {"attempt": 1, "error": "boom"}
    assert [e.created_at for e in events] == sorted(e.created_at for e in events)
    assert all("source" not in e.details for e in events), "all of it is in the log"


def test_history_of_a_retry_and_a_cancel(client, queue):
    retried = client.jobs.create({"queue_name": queue, "payload": {}, "max_retries": 2}).id
    work(client, queue, "w", fail="try again")
    cancelled = client.jobs.create({"queue_name": queue, "payload": {}}).id
    client.jobs.cancel(cancelled)
    *_, failed = client.jobs.history(retried)
    assert failed.event_type == "retry_scheduled"
    assert failed.details == {"attempt": 1, "error": "try again", "status": "scheduled"}
    assert kinds(client.jobs.history(cancelled)) == ["created", "cancelled"]
    assert client.jobs.history(cancelled)[-1].details == {"old_status": "pending"}


def test_history_pages_either_way(client, queue):
    job = client.jobs.create({"queue_name": queue, "payload": {}}).id
    work(client, queue, "w")
    every = client.jobs.history(job)
    assert kinds(every) == ["created", "processing", "completed"]
    newest = client.jobs.history(job, {"order_dir": "desc", "limit": 2})
    assert [e.id for e in newest] == [every[2].id, every[1].id] and newest.has_more
    rest = client.jobs.history(job, {"order_dir": "desc", "limit": 2, "offset": 2})
    assert [e.id for e in rest] == [every[0].id] and not rest.has_more
    assert client.jobs.history(job, {"offset": 3}) == []


def test_history_of_a_job_whose_events_were_trimmed_comes_from_its_record(client, server, queue):
    _, engine, _ = server
    job = client.jobs.create({"queue_name": queue, "payload": {}, "max_retries": 0}).id
    work(client, queue, "w-old", fail="first life")              # dead
    engine.client.xtrim(engine.keys(queue).events, maxlen=0)      # the log trimmed past all of it
    events = client.jobs.history(job)
    assert kinds(events) == ["created", "deadlettered"]
    assert all(e.details["source"] == "job record" for e in events)
    assert events[1].details["error"] == "first life"

    client.jobs.dlq.retry({"job_ids": [job]})                     # its second life is in the log
    work(client, queue, "w-new", fail="second life")
    client.jobs.dlq.retry({"job_ids": [job]})
    work(client, queue, "w-new")
    events = client.jobs.history(job)
    assert kinds(events) == ["created", "failed", "retried", "processing", "deadlettered", "retried",
                             "processing", "completed"]
    assert [e.details.get("source") for e in events[:2]] == ["job record"] * 2
    assert events[1].details == {"attempt": 1, "error": "first life", "source": "job record"}
    assert "source" not in events[2].details


def test_history_of_an_unknown_job_or_without_a_key(client, server, queue):
    with pytest.raises(NotFoundError):
        client.jobs.history(queue + "~nope")
    with pytest.raises(NotFoundError):
        client.jobs.history("no-queue-separator")
    job = client.jobs.create({"queue_name": queue, "payload": {}}).id
    reader = SpooledClient(api_key=READ, base_url=server[0] + "/compat/spooled")
    assert kinds(reader.jobs.history(job)) == ["created"], "the read role may look"
    reader.close()
    assert raw(server, "GET", f"/api/v1/jobs/{job}/history", key=None).status_code == 401
    assert raw(server, "GET", f"/api/v1/jobs/{job}/history?order_dir=up").status_code == 400
    assert raw(server, "GET", f"/api/v1/jobs/{job}/history?limit=501").status_code == 400
    with pytest.raises(AuthenticationError):
        SpooledClient(api_key="sp_live_wrong_000000000", base_url=server[0] + "/compat/spooled").jobs.history(job)
