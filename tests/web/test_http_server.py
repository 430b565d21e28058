"""Every route through a real `redispool serve` process (uvicorn) on a real redis-server,
with httpx as the client: the worker lifecycle, roles, the loopback-only default, a
long-poll that wakes at once, a client that goes away mid-poll, SIGTERM during a poll."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest

pytest.importorskip("starlette")

import redispool  # noqa: E402

from support import ROOT  # noqa: E402
from support.served import TOKENS, Served, tokens_file  # noqa: E402

pytestmark = pytest.mark.slow


def test_every_route(served):
    server, engine = served
    q = "/v1/queues/mail"
    with server.client("admin") as http:
        r = http.post(q + "/jobs", json={"payload": {"to": "ada"}, "max_attempts": 2, "unique_key": "u1"})
        assert r.status_code == 201 and r.json()["created"]
        job_id = r.json()["id"]
        again = http.post(q + "/jobs", json={"payload": {"to": "ada"}, "unique_key": "u1"})
        assert (again.status_code, again.json()) == (200, {"id": job_id, "created": False})
        ids = http.post(q + "/jobs/batch", json={"jobs": [{"payload": i} for i in range(3)]}).json()["ids"]
        assert len(ids) == 3
        [job] = http.post(q + "/claim", json={"worker_id": "go-1", "lease": 60}).json()["jobs"]
        assert job["id"] == job_id and job["attempt"] == 1
        assert http.post(f"{q}/jobs/{job_id}/heartbeat",
                         json={"token": job["token"], "lease": 90, "worker_id": "go-1"}).json()["lease_expires_at"] \
            > time.time() + 80
        stale = http.post(f"{q}/jobs/{job_id}/complete", json={"token": "1"})
        assert stale.status_code == 409 and stale.json()["error"] == "lease_lost"
        assert engine.get("mail", job_id).state == "leased", "a stale token changes nothing"
        assert http.post(f"{q}/jobs/{job_id}/fail", json={"token": job["token"], "error": "E", "delay": 0}).json() \
            == {"state": "scheduled"}
        [job] = http.post(q + "/claim", json={"worker_id": "go-1"}).json()["jobs"]
        assert http.post(f"{q}/jobs/{job['id']}/release", json={"token": job["token"]}).json() == {"state": "ready"}
        batch = http.post(q + "/claim", json={"worker_id": "go-1", "limit": 10}).json()["jobs"]
        assert len(batch) == 4
        [w] = http.get("/v1/workers").json()
        assert sorted(w["jobs_in_progress"]) == sorted(f"mail/{j['id']}" for j in batch)
        r = http.post(q + "/ack", json={
            "complete": [{"id": j["id"], "token": j["token"], "result": j["payload"]} for j in batch[:2]]
            + [{"id": batch[2]["id"], "token": "stale"}],
            "fail": [{"id": batch[3]["id"], "token": batch[3]["token"], "error": "x", "retry": False}],
            "claim": {"worker_id": "go-1", "limit": 10}}).json()
        assert [(x["ok"], x.get("state"), x.get("error")) for x in r["results"]] == \
            [(True, "done", None), (True, "done", None), (False, None, "lease_lost"), (True, "dead", None)]
        assert r["jobs"] == []
        assert engine.get("mail", batch[2]["id"]).state == "leased"
        [w] = http.get("/v1/workers").json()
        assert (w["id"], w["host"], w["processed"], w["failed"]) == ("go-1", "127.0.0.1", 3, 1)
        assert w["jobs_in_progress"] == []
        info = http.get(f"{q}/jobs/{batch[3]['id']}").json()
        assert info["state"] == "dead" and info["errors"][0]["error"] == "x"
        stats = http.get(q).json()
        assert (stats["done"], stats["dead"], stats["leased"]) == (2, 1, 1)
        assert http.get("/v1/queues").json()[0]["counts"]["done"] == 2
        page = http.get(q + "/jobs", params={"state": "done", "limit": 1}).json()
        assert len(page["jobs"]) == 1 and page["cursor"] == "1"
        assert http.post(q + "/replay", json={}).json() == {"replayed": 1}
        assert http.delete(f"{q}/jobs/{batch[3]['id']}").json() == {"cancelled": True}
        assert http.delete(q + "/jobs", params={"state": "cancelled"}).json() == {"purged": 1}
        assert http.post(q + "/pause").json() == {"changed": True}
        assert http.post(q + "/resume").json() == {"changed": True}
        cue = http.put(q + "/cues/tick", json={"cron": "*/5 * * * *", "payload": {"k": 1}}).json()
        assert cue["name"] == "tick" and not cue["paused"]
        assert http.post(q + "/cues/tick/pause").json() == {"ok": True}
        assert http.post(q + "/cues/tick/resume").json() == {"ok": True}
        run = http.post(q + "/cues/tick/run").json()
        assert engine.get("mail", run["job_id"]).payload == {"k": 1}
        assert [c["name"] for c in http.get("/v1/cues").json()] == ["tick"]
        assert http.delete(q + "/cues/tick").json() == {"removed": True}
        hook = http.put("/v1/webhooks/ops", json={"url": "https://example.com/h", "secret": "s", "queues": ["mail"]})
        assert hook.json()["signed"] and "secret" not in hook.json()
        assert [w["name"] for w in http.get("/v1/webhooks").json()] == ["ops"]
        assert http.get("/v1/webhooks/ops").json() == hook.json()
        assert http.get("/v1/webhooks/ops/deliveries", params={"limit": 5}).json() == []
        assert http.delete("/v1/webhooks/ops").json() == {"removed": True}
        assert http.get("/v1/webhooks/ops").status_code == 404 and engine.webhooks() == []
        assert http.get("/healthz").json() == {"status": "ok"}
        metrics = http.get("/metrics").text
        assert 'redispool_queue_jobs{queue="mail",state="done"} 2.0' in metrics
        assert 'redispool_jobs_total{event="completed",queue="mail"} 2.0' in metrics
        assert 'redispool_workers 1.0' in metrics
        doc = http.get("/openapi.json").json()
        assert "/v1/queues/{queue}/ack" in doc["paths"]
        for bad in ({"delay": 1e300}, {"priority": 1001}, {"payload": 1, "extra": True}):
            r = http.post(q + "/jobs", json=bad)
            assert r.status_code == 400 and r.json()["error"] == "bad_input"
        as_json = {"Content-Type": "application/json"}
        assert http.post(q + "/jobs", content=b"{" * 10, headers=as_json).status_code == 400
        assert http.post(q + "/jobs", content=b"x" * (1 << 20 | 1), headers=as_json).status_code == 413
        assert http.post(q + "/jobs", content=b'{"payload": 1}').status_code == 415  # JSON bodies say so
        assert http.post("/v1/queues/bad name/jobs", json={}).status_code == 400


# (method, path, body) and the lowest role allowed
ROUTES = [
    ("POST", "/v1/queues/r/jobs", {}, "worker"), ("POST", "/v1/queues/r/jobs/batch", {"jobs": [{}]}, "worker"),
    ("POST", "/v1/queues/r/claim", {"worker_id": "w"}, "worker"), ("POST", "/v1/queues/r/ack", {}, "worker"),
    ("POST", "/v1/queues/r/jobs/1/complete", {"token": "9"}, "worker"),
    ("POST", "/v1/queues/r/jobs/1/heartbeat", {"token": "9"}, "worker"),
    ("GET", "/v1/queues", None, "read"), ("GET", "/v1/queues/r", None, "read"),
    ("GET", "/v1/queues/r/jobs", None, "read"), ("GET", "/v1/workers", None, "read"), ("GET", "/v1/cues", None, "read"),
    ("POST", "/v1/queues/r/pause", None, "admin"), ("POST", "/v1/queues/r/replay", {}, "admin"),
    ("DELETE", "/v1/queues/r/jobs/1", None, "admin"), ("DELETE", "/v1/queues/r/jobs?state=dead", None, "admin"),
    ("PUT", "/v1/queues/r/cues/c", {"cron": "0 0 * * *"}, "admin"),
    ("GET", "/v1/webhooks", None, "read"), ("PUT", "/v1/webhooks/h", {"url": "http://127.0.0.1:9/x"}, "admin"),
    ("GET", "/v1/webhooks/h", None, "read"), ("GET", "/v1/webhooks/h/deliveries", None, "read"),
    ("DELETE", "/v1/webhooks/h", None, "admin"),
]
RANK = {"read": 0, "worker": 1, "admin": 2}


def test_roles(served):
    server, _ = served
    clients = {role: server.client(role) for role in TOKENS}
    nobody, wrong = server.client(None), httpx.Client(base_url=server.base, headers={"Authorization": "Bearer nope"})
    try:
        for method, path, body, needed in ROUTES:
            for c in (nobody, wrong):
                r = c.request(method, path, json=body)
                assert (r.status_code, r.json()["error"]) == (401, "unauthorized"), (method, path)
            for role, c in clients.items():
                r = c.request(method, path, json=body)
                if RANK[role] < RANK[needed]:
                    assert (r.status_code, r.json()["error"]) == (403, "forbidden"), (role, method, path)
                else:
                    assert r.status_code not in (401, 403), (role, method, path, r.text)
        assert nobody.get("/healthz").status_code == 200 and nobody.get("/metrics").status_code == 401
        assert clients["read"].get("/metrics").status_code == 200
    finally:
        for c in (*clients.values(), nobody, wrong):
            c.close()


def test_long_poll_answers_as_soon_as_a_job_is_ready(served):
    server, engine = served
    got = {}

    def claim():
        with server.client("worker") as http:
            start = time.monotonic()
            got["jobs"] = http.post("/v1/queues/lp/claim", json={"worker_id": "w", "wait": 20}).json()["jobs"]
            got["at"] = time.monotonic()
            got["took"] = got["at"] - start

    t = threading.Thread(target=claim)
    t.start()
    time.sleep(0.5)
    enqueued = time.monotonic()
    job_id = engine.enqueue("lp", "now")
    t.join(25)
    assert [j["id"] for j in got["jobs"]] == [job_id]
    assert got["at"] - enqueued < 0.5, "picked up within milliseconds, not at the end of the wait"


def raw_request(port: int, body: bytes, path: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Authorization: Bearer " + TOKENS["worker"].encode() + b"\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    return s


def test_a_client_that_goes_away_mid_poll_leases_nothing(served):
    """The long-poll ends when its client disconnects: a job enqueued after that stays
    ready for the next worker instead of being leased to nobody."""
    server, engine = served
    s = raw_request(server.port, b'{"worker_id": "gone", "wait": 20}', "/v1/queues/dc/claim")
    time.sleep(0.5)
    s.close()
    time.sleep(0.5)
    job_id = engine.enqueue("dc", 1)
    time.sleep(0.5)
    assert engine.get("dc", job_id).state == "ready"
    with server.client("worker") as http:  # and the next long-poll gets it at once
        start = time.monotonic()
        [job] = http.post("/v1/queues/dc/claim", json={"worker_id": "next", "wait": 5}).json()["jobs"]
        assert job["id"] == job_id and time.monotonic() - start < 1


def test_sigterm_ends_open_long_polls_and_exits_0(redis_url, tmp_path):
    server = Served(redis_url, f"t{uuid.uuid4().hex[:8]}", tokens_file=tokens_file(tmp_path)).wait_ready()
    got = {}

    def claim():
        with server.client("worker") as http:
            r = http.post("/v1/queues/term/claim", json={"worker_id": "w", "wait": 30})
            got["reply"] = (r.status_code, r.json())

    t = threading.Thread(target=claim)
    t.start()
    time.sleep(0.5)
    start = time.monotonic()
    assert server.stop() == 0, server.output
    t.join(10)
    assert time.monotonic() - start < 5, "SIGTERM did not wait for the 30 s poll"
    assert got["reply"] == (200, {"jobs": []})


def test_open_on_a_public_address_needs_a_flag(redis_url):
    no_tokens = Served(redis_url, "open", host="0.0.0.0")
    no_tokens.proc.wait(timeout=30)  # it refuses to start, by itself
    assert no_tokens.stop() == 2
    [line] = [x for x in no_tokens.output.splitlines() if x.strip()]
    assert "refusing" in line and "--insecure-no-auth" in line
    server = Served(redis_url, "open", "--insecure-no-auth", host="0.0.0.0").wait_ready()
    try:
        with httpx.Client(base_url=server.base) as http:
            assert http.post("/v1/queues/o/jobs", json={}).status_code == 201  # everyone is admin
    finally:
        assert server.stop() == 0
    local = Served(redis_url, "open").wait_ready()  # loopback without tokens: allowed
    assert local.stop() == 0


def test_without_the_http_extra_serve_says_what_to_install():
    code = ("import sys; sys.modules['uvicorn'] = None; sys.argv = ['redispool', 'serve']; "
            "from redispool.cli import main; main()")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "pip install 'redispool[http]'" in r.stderr


def test_worker_metrics_port(redis_url, tmp_path):
    """`redispool worker --metrics-port` serves the queue figures redispool serve does."""
    from support.servers import free_port
    prefix, port = f"m{uuid.uuid4().hex[:8]}", free_port()
    engine = redispool.connect(redis_url, prefix=prefix)
    engine.enqueue_many("crash", [{"n": i} for i in range(3)])
    engine.pause("crash")  # nothing is taken: the figures stay put
    (tmp_path / "app.py").write_text("import redispool\nworker = redispool.Worker(redispool.connect(), "
                                     "queues=['crash'])\nworker.process(lambda job: None)\n")
    proc = subprocess.Popen([sys.executable, "-m", "redispool", "--url", redis_url, "--prefix", prefix, "worker",
                             "app:worker", "--metrics-port", str(port)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.1)
        assert 'redispool_queue_jobs{queue="crash",state="ready"} 3.0' in text
        assert 'redispool_queue_paused{queue="crash"} 1.0' in text
        assert 'redispool_jobs_total{event="enqueued",queue="crash"} 3.0' in text
    finally:
        proc.terminate()
        proc.wait(30)
        engine.close()


def test_serve_sweeps_expired_leases_by_default(redis_url):
    """§18: a worker that claimed and vanished: its job is back in ready without a sweeper
    process (``serve`` runs the sweep step unless --no-sweep)."""
    server = Served(redis_url, f"sw{time.time_ns()}").wait_ready()   # the defaults
    try:
        with httpx.Client(base_url=server.base, timeout=40) as http:
            assert http.post("/v1/queues/nosweep/jobs", json={"payload": 1}).status_code == 201
            [job] = http.post("/v1/queues/nosweep/claim", json={"worker_id": "crashy", "lease": 0.3}).json()["jobs"]
            deadline = time.monotonic() + 20
            while True:
                jobs = http.post("/v1/queues/nosweep/claim", json={"worker_id": "other"}).json()["jobs"]
                if jobs:
                    break
                assert time.monotonic() < deadline, "the expired lease was never taken back"
                time.sleep(0.1)
            assert jobs[0]["id"] == job["id"] and jobs[0]["attempt"] == 2
    finally:
        assert server.stop() == 0
