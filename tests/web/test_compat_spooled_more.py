"""The spooled SDK's job history, ingest and metrics (issue 20), with the official client
unchanged, against ``redispool serve`` on a real redis-server."""
from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

pytest.importorskip("spooled")
from spooled import SpooledClient  # noqa: E402
from spooled.errors import AuthenticationError, NotFoundError  # noqa: E402

from support.compat import SPOOLED_KEYS, request  # noqa: E402

ADMIN, WORKER, READ = SPOOLED_KEYS


@pytest.fixture
def queue(request):
    return "spm-" + request.node.name.replace("_", "-")[:60]


def raw(server, method: str, path: str, key: str | None = ADMIN, **kw) -> httpx.Response:
    return request(server, method, "/compat/spooled" + path, key, **kw)


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


# ---------------------------------------------------------------------- ingest
def test_ingest_custom_enqueues_a_job_and_logs_it(client, server, queue):
    r = client.ingest.custom("org_from_the_cloud", {"queue_name": queue, "payload": {"order": 7},
                                                    "event_type": "order.paid", "idempotency_key": "o7",
                                                    "priority": 9})
    assert (r.queue_name, r.status) == (queue, "created") and r.job_id.startswith(queue + "~")
    job = client.jobs.get(r.job_id)
    assert (job.payload, job.priority, job.idempotency_key, job.status) == ({"order": 7}, 9, "o7", "pending")
    again = client.ingest.custom("any", {"queue_name": queue, "payload": {"order": 7}, "idempotency_key": "o7"})
    assert (again.job_id, again.status) == (r.job_id, "duplicate")
    log = client.webhooks.list_inbound_deliveries({"queue_name": queue})
    assert [(d.job_id, d.status, d.event_type, d.provider, d.matched_queue) for d in log] == [
        (r.job_id, "duplicate", "custom", "custom", queue), (r.job_id, "created", "order.paid", "custom", queue)]
    assert [d.status for d in client.webhooks.list_inbound_deliveries({"queue_name": queue, "status": "created"})] \
        == ["created"]
    assert client.webhooks.list_inbound_deliveries({"queue_name": queue, "limit": 1, "offset": 1})[0].status \
        == "created"
    assert client.webhooks.list_inbound_deliveries({"queue_name": queue, "since": log[0].created_at}) \
        [0].id == log[0].id


def test_ingest_takes_the_queues_job_defaults(client, queue):
    client.queues.update_config(queue, {"max_retries": 6, "default_timeout": 33})
    job = client.jobs.get(client.ingest.custom("o", {"queue_name": queue, "payload": 1}).job_id)
    assert (job.max_retries, job.timeout_seconds, job.payload) == (6, 33, 1)


def test_ingest_needs_a_worker_token_in_either_header(server, queue):
    body = {"queue_name": queue, "payload": {}}
    path = "/api/v1/webhooks/o/custom"
    assert raw(server, "POST", path, key=None, json=body).status_code == 401
    assert raw(server, "POST", path, key=None, json=body, headers={"X-Webhook-Token": "wrong"}).status_code == 401
    assert raw(server, "POST", path, key=READ, json=body).status_code == 403
    third_party = raw(server, "POST", path, key=None, json=body, headers={"X-Webhook-Token": WORKER})
    assert third_party.status_code == 200 and third_party.json()["status"] == "created"
    assert raw(server, "POST", path, key=WORKER, json={"payload": {}}).status_code == 422
    assert raw(server, "POST", path, key=WORKER, json={"queue_name": "bad queue!", "payload": {}}).status_code == 400
    assert raw(server, "GET", "/api/v1/webhooks/deliveries?status=maybe").status_code == 400


# ---------------------------------------------------------------------- metrics
def test_metrics_get(client, server, queue):
    client.jobs.create({"queue_name": queue, "payload": {}})
    text = client.metrics.get()
    assert "redispool_http_requests" in text and queue in text
    assert "redispool_http_requests" in client.metrics.get(token=READ)
    with pytest.raises(AuthenticationError):
        client.metrics.get(token="not-a-token")


# ---------------------------------------------------------------------- list filters
def test_jobs_list_filters_by_text_and_creation_time(client, server, queue):
    _, engine, _ = server
    first = client.jobs.create({"queue_name": queue, "payload": {"job_type": "Send-Email"}}).id
    second = client.jobs.create({"queue_name": queue, "payload": {"job_type": "resize"}}).id
    born = client.jobs.get(second).created_at
    ids = lambda **kw: [j.id for j in client.jobs.list({"queue_name": queue, **kw})]  # noqa: E731
    assert ids(q="send-") == [first], "job_type holds it, whatever the case"
    assert ids(q=queue.upper()) == [first, second], "the queue name holds it"
    assert ids(q=second) == [second], "the id starts with it"
    assert ids(created_after=born) == [second] and ids(created_before=born) == [first]
    many = [s.id for s in (client.jobs.create({"queue_name": queue, "payload": {"job_type": "bulk"}})
                           for _ in range(3))]
    engine.enqueue_many(queue, [{"job_type": "noise"}] * 600)   # a filter finds its jobs past the first page read
    last = client.jobs.create({"queue_name": queue, "payload": {"job_type": "needle"}}).id
    assert ids(job_type="needle") == [last] and ids(q="needle") == [last]
    assert ids(job_type="bulk", limit=2) == many[:2]


def test_dlq_list_filters_alike(client, queue):
    for kind in ("keep", "other"):
        client.jobs.create({"queue_name": queue, "payload": {"job_type": kind}, "max_retries": 0})
        work(client, queue, "w", fail="dead")
    [dead] = client.jobs.dlq.list({"queue_name": queue, "q": "KEEP"})
    assert dead.job_type == "keep"
    later = dead.created_at + timedelta(hours=1)
    assert client.jobs.dlq.list({"queue_name": queue, "created_after": later}) == []
    assert len(client.jobs.dlq.list({"queue_name": queue, "created_before": later})) == 2
