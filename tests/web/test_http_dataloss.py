"""Jobs the HTTP API must never lose (issue 15, "Data loss"), through a real
`redispool serve` process on a real redis-server:

- §1 a payload nested deeper than JSON can hand back is refused at enqueue (400, nothing
  written); a deep job a Python producer stored goes to dead alone at its claim, and its
  batch-mates are delivered; reads show it instead of answering 500.
- §2 at maxmemory a claim delivers what it leased (the worker registry write that Redis
  refuses no longer strands the batch), an ack's results stand when its claim fails,
  and a full Redis answers 507 ``redis_full``.
"""
from __future__ import annotations

import json
import uuid

import pytest
import redis

pytest.importorskip("starlette")

import redispool

from support.served import Served
from support.servers import RedisServer

pytestmark = pytest.mark.slow
JSON = {"Content-Type": "application/json"}


def nested(levels: int) -> object:
    value: object = "bottom"
    for _ in range(levels):
        value = [value]
    return value


@pytest.fixture
def served(redis_url, tmp_path):
    prefix = f"dl{uuid.uuid4().hex[:8]}"
    server = Served(redis_url, prefix, log=tmp_path / "serve.log").wait_ready()
    engine = redispool.connect(redis_url, prefix=prefix)
    yield server, engine
    code = server.stop()
    engine.close()
    assert code == 0, server.output[-3000:]
    assert "Traceback" not in server.output, server.output[-3000:]


def test_a_payload_too_deep_to_hand_back_is_refused_at_enqueue(served):
    server, engine = served
    with server.client(None) as http:
        deep = '{"payload":' + "[" * 600 + "]" * 600 + "}"
        batch = '{"jobs":[' + ",".join(json.dumps({"payload": {"order": i}}) for i in range(99)) + "," + deep + "]}"
        r = http.post("/v1/queues/poison/jobs/batch", content=batch, headers=JSON)
        assert (r.status_code, r.json()["error"]) == (400, "bad_input"), r.text
        assert "jobs[99].payload" in r.json()["message"]
        r = http.post("/v1/queues/poison/jobs", json={"payload": nested(101)})
        assert r.status_code == 400 and "100 levels" in r.json()["message"], r.text
        assert http.post("/v1/queues/poison/jobs", json={"payload": nested(99)}).status_code == 201
        # past json.loads' recursion
        r = http.post("/v1/queues/poison/jobs", content="[" * 5000 + "]" * 5000, headers=JSON)
        assert (r.status_code, r.json()["error"]) == (400, "bad_input"), r.text
        assert engine.stats("poison")["ready"] == 1, "nothing of the refused requests was written"
        [job] = http.post("/v1/queues/poison/claim", json={"worker_id": "w", "limit": 10}).json()["jobs"]
        r = http.post(f"/v1/queues/poison/jobs/{job['id']}/complete", json={"token": job["token"],
                                                                            "result": nested(150)})
        assert r.status_code == 400 and engine.get("poison", job["id"]).state == "leased", r.text


@pytest.mark.parametrize("route", ["claim", "ack"])
def test_a_deep_job_from_a_python_producer_goes_dead_alone(served, route):
    """The claim that picks it up answers 200 with its 9 batch-mates (attempt 1 each); the
    deep one is dead with the reason; nothing stays leased to nobody."""
    server, engine = served
    q = f"deep-{route}"
    ids = engine.enqueue_many(q, [{"order": i} for i in range(4)])
    deep_id = engine.enqueue(q, nested(300))      # msgpack takes it; JSON clients cannot
    ids += engine.enqueue_many(q, [{"order": i} for i in range(4, 9)])
    with server.client(None) as http:
        claim = {"worker_id": "w1", "limit": 100}
        r = http.post(f"/v1/queues/{q}/{route}", json={"claim": claim} if route == "ack" else claim)
        assert r.status_code == 200, r.text
        jobs = r.json()["jobs"]
        assert sorted(j["id"] for j in jobs) == sorted(ids) and all(j["attempt"] == 1 for j in jobs)
        info = engine.get(q, deep_id)
        assert info.state == "dead" and "deeper than 100 levels" in info.errors[-1][1], info
        stats = engine.stats(q)
        assert (stats["leased"], stats["dead"], stats["ready"]) == (9, 1, 0)
        shown = http.get(f"/v1/queues/{q}/jobs/{deep_id}")
        assert shown.status_code == 200 and "$undeliverable" in shown.json()["payload"], shown.text
        assert http.get(f"/v1/queues/{q}/jobs", params={"state": "dead"}).status_code == 200


@pytest.fixture
def full_redis(tmp_path):
    server = RedisServer("--maxmemory-policy", "noeviction").start()
    prefix = f"oom{uuid.uuid4().hex[:6]}"
    api = Served(server.url, prefix, log=tmp_path / "serve.log").wait_ready()
    engine = redispool.connect(server.url, prefix=prefix)
    admin = redis.Redis(port=server.port)
    yield api, engine, admin
    admin.config_set("maxmemory", 0)
    api.stop()
    engine.close()
    admin.close()
    server.stop()


def test_at_maxmemory_a_write_answers_507_redis_full(full_redis):
    api, engine, admin = full_redis
    engine.enqueue_many("oomq", range(3))
    admin.config_set("maxmemory", 1)   # over the limit from now on: every deny-oom write is refused
    with api.client(None) as http:
        for path, body in (("/v1/queues/oomq/jobs", {"payload": 1}),
                           ("/v1/queues/oomq/jobs/batch", {"jobs": [{"payload": 1}]})):
            r = http.post(path, json=body)
            assert (r.status_code, r.json()["error"]) == (507, "redis_full"), r.text
            assert "maxmemory" in r.json()["message"]
        assert http.get("/healthz").status_code == 200, "a full Redis still answers"
    admin.config_set("maxmemory", 0)
    assert engine.stats("oomq")["ready"] == 3, "nothing was written"


def test_at_maxmemory_claims_deliver_what_they_lease(full_redis):
    api, engine, admin = full_redis
    ids = engine.enqueue_many("oomq", range(30))
    admin.config_set("maxmemory", 1)   # over the limit from now on: every deny-oom write is refused
    with api.client(None) as http:
        # a worker the registry has never seen: registering it is refused, its jobs are not
        r = http.post("/v1/queues/oomq/claim", json={"worker_id": "drainer", "limit": 10})
        assert r.status_code == 200, r.text
        jobs = r.json()["jobs"]
        assert len(jobs) == 10 and all(j["attempt"] == 1 for j in jobs)
        assert engine.stats("oomq")["leased"] == 10, "leased exactly what was delivered"
        # drain on: finish the batch and take the next one in one request
        r = http.post("/v1/queues/oomq/ack", json={
            "complete": [{"id": j["id"], "token": j["token"]} for j in jobs],
            "claim": {"worker_id": "drainer", "limit": 10}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert all(x["ok"] for x in body["results"]), body["results"]
        assert len(body["jobs"]) == 10 and all(j["attempt"] == 1 for j in body["jobs"]), body
        assert engine.stats("oomq")["leased"] == 10
    admin.config_set("maxmemory", 0)
    stats = engine.stats("oomq")
    assert (stats["done"], stats["leased"], stats["ready"]) == (10, 10, 10), stats
    assert sorted(j.id for j in engine.jobs("oomq", "leased")) == sorted(j["id"] for j in body["jobs"])
    assert len(ids) == 30
