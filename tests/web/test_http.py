"""The HTTP API: worker lifecycle, long-poll, batch ack, errors, roles, registry, docs."""
from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

import redispool  # noqa: E402
from redispool.http import create_app  # noqa: E402

from support.servers import RedisServer, free_port, script_calls  # noqa: E402

TOKENS = {"admin-token-1": "admin", "worker-token-1": "worker", "read-token-1": "read"}


def client(engine, tokens=None, role="admin") -> TestClient:
    # as a client on the machine reaches a server on loopback (no tokens: guard.py checks Host)
    c = TestClient(create_app(engine, tokens=tokens, dashboard=False), base_url="http://127.0.0.1",
                   headers={"Content-Type": "application/json"})  # what the API takes (415 otherwise)
    if tokens:
        token = next(t for t, r in tokens.items() if r == role)
        c.headers["Authorization"] = f"Bearer {token}"
    return c


@pytest.fixture
def api(engine):
    return client(engine)


def url(path: str, queue: str = "q") -> str:
    return f"/v1/queues/{queue}{path}"


def test_worker_lifecycle(api, engine):
    r = api.post(url("/jobs"), json={"payload": {"to": "a"}, "priority": 5, "max_attempts": 2})
    assert r.status_code == 201
    job_id = r.json()["id"]
    r = api.post(url("/claim"), json={"worker_id": "go-1", "limit": 10, "lease": 60})
    [job] = r.json()["jobs"]
    assert (job["id"], job["payload"], job["attempt"], job["max_attempts"]) == (job_id, {"to": "a"}, 1, 2)
    assert job["lease_expires_at"] > time.time() + 50
    beat = api.post(url(f"/jobs/{job_id}/heartbeat"), json={"token": job["token"], "lease": 120})
    assert beat.json()["lease_expires_at"] > time.time() + 100
    assert api.post(url(f"/jobs/{job_id}/fail"), json={"token": job["token"], "error": "E: x", "delay": 0}).json() \
        == {"state": "scheduled"}
    [job] = api.post(url("/claim"), json={"worker_id": "go-1"}).json()["jobs"]
    assert job["attempt"] == 2
    assert api.post(url(f"/jobs/{job_id}/complete"), json={"token": job["token"], "result": [1]}).json() \
        == {"state": "done"}
    info = api.get(url(f"/jobs/{job_id}")).json()
    assert info["state"] == "done" and info["result"] == [1] and info["errors"][0]["error"] == "E: x"
    assert engine.get("q", job_id).state == "done"


def test_stale_token_is_409_and_changes_nothing(api, engine):
    job_id = api.post(url("/jobs"), json={}).json()["id"]
    [job] = api.post(url("/claim"), json={"worker_id": "w"}).json()["jobs"]
    for verb, extra in (("complete", {}), ("fail", {"error": "x"}), ("heartbeat", {}), ("release", {})):
        r = api.post(url(f"/jobs/{job_id}/{verb}"), json={"token": "999999", **extra})
        assert r.status_code == 409 and r.json()["error"] == "lease_lost", verb
    assert engine.get("q", job_id).state == "leased"
    assert api.post(url(f"/jobs/{job_id}/release"), json={"token": job["token"]}).json() == {"state": "ready"}
    assert api.get(url("/jobs/nope")).status_code == 404


def test_long_poll_claim_answers_when_a_job_arrives(api, engine):
    got = {}

    def claim():
        start = time.monotonic()
        got["reply"] = api.post(url("/claim"), json={"worker_id": "w", "wait": 10}).json()
        got["took"] = time.monotonic() - start

    t = threading.Thread(target=claim)
    t.start()
    time.sleep(0.5)
    job_id = engine.enqueue("q", "hello")
    t.join(15)
    assert [j["id"] for j in got["reply"]["jobs"]] == [job_id]
    assert 0.4 < got["took"] < 5, "woken by the enqueue, long before the 10 s wait ends"
    start = time.monotonic()
    assert api.post(url("/claim"), json={"worker_id": "w", "wait": 0.5}).json() == {"jobs": []}
    assert time.monotonic() - start >= 0.45


def test_long_poll_does_not_poll_redis(redis_url):
    engine = redispool.connect(redis_url, prefix=f"lp{time.time_ns()}")
    api = client(engine)
    api.post(url("/claim"), json={"worker_id": "w"})  # warm up: scripts loaded, worker registered
    engine.client.config_resetstat()
    api.post(url("/claim"), json={"worker_id": "w", "wait": 2})
    stats = engine.client.info("commandstats")
    scripts, waits = script_calls(stats), stats["cmdstat_bzpopmin"]["calls"]
    assert scripts <= 4 and waits <= 2, f"a 2 s long-poll ran {scripts} scripts and {waits} waits"
    engine.close()


def test_ack_finishes_many_and_claims_the_next_batch(api, engine):
    engine.enqueue_many("q", range(6), max_attempts=1)
    jobs = api.post(url("/claim"), json={"worker_id": "go-2", "limit": 3}).json()["jobs"]
    body = {"complete": [{"id": jobs[0]["id"], "token": jobs[0]["token"], "result": "ok"},
                         {"id": jobs[1]["id"], "token": "stale"}],
            "fail": [{"id": jobs[2]["id"], "token": jobs[2]["token"], "error": "boom"}],
            "claim": {"worker_id": "go-2", "limit": 3}}
    r = api.post(url("/ack"), json=body).json()
    assert r["results"] == [{"id": jobs[0]["id"], "ok": True, "state": "done"},
                            {"id": jobs[1]["id"], "ok": False, "error": "lease_lost"},
                            {"id": jobs[2]["id"], "ok": True, "state": "dead"}]
    assert len(r["jobs"]) == 3
    [w] = api.get("/v1/workers").json()
    assert w["id"] == "go-2" and w["processed"] == 2 and w["failed"] == 1
    assert sorted(w["jobs_in_progress"]) == sorted(f"q/{j['id']}" for j in r["jobs"])  # acked ones are off


def test_batch_enqueue_and_listing(api, engine):
    r = api.post(url("/jobs/batch"), json={"jobs": [{"payload": i, "priority": i} for i in range(5)]})
    assert r.status_code == 201 and len(r.json()["ids"]) == 5
    page = api.get(url("/jobs?state=ready&limit=2")).json()
    assert [j["payload"] for j in page["jobs"]] == [4, 3] and page["cursor"] == "2"
    rest = api.get(url(f"/jobs?state=ready&limit=10&cursor={page['cursor']}")).json()
    assert len(rest["jobs"]) == 3 and rest["cursor"] is None
    assert api.get("/v1/queues").json() == [{"name": "q", "paused": False,
                                             "counts": {**dict.fromkeys(redispool.keys.STATES, 0), "ready": 5}}]
    assert api.get(url("")).json()["ready"] == 5


@pytest.mark.parametrize("path, body", [
    ("/jobs", b"{broken"),
    ("/jobs", b"[1, 2]"),
    ("/jobs", json.dumps({"payload": 1, "priority": "high"}).encode()),
    ("/jobs", json.dumps({"payload": 1, "colour": "red"}).encode()),
    ("/jobs", json.dumps({"lease": 0}).encode()),
    ("/jobs", json.dumps({"priority": 5000}).encode()),
    ("/jobs", json.dumps({"max_attempts": True}).encode()),
    ("/jobs", json.dumps({"job_id": "123"}).encode()),
    ("/jobs", json.dumps({"delay": 1, "run_at": 5}).encode()),
    ("/jobs/batch", json.dumps({"jobs": [{"payload": 1}, {"priority": "x"}]}).encode()),
    ("/jobs/batch", json.dumps({"jobs": []}).encode()),
    ("/claim", json.dumps({"limit": 1}).encode()),
    ("/claim", json.dumps({"worker_id": "w", "limit": 1001}).encode()),
    ("/claim", json.dumps({"worker_id": "w", "wait": 31}).encode()),
    ("/claim", json.dumps({"worker_id": "w", "lease": 50000}).encode()),
    ("/ack", json.dumps({"complete": [{"id": "1"}]}).encode()),
    ("/replay", json.dumps({"ids": ["1"] * 100_001}).encode()),   # the document's maxItems (was 200)
])
def test_bad_input_is_400_and_writes_nothing(api, engine, path, body):
    r = api.post(url(path), content=body)
    assert r.status_code == 400 and r.json()["error"] == "bad_input" and r.json()["message"]
    assert engine.stats("q")["ready"] == 0 and engine.workers() == []


@pytest.mark.parametrize("job_id", ["\u00b2", "\u0661\u0662", "\u2460"])
def test_a_job_id_of_other_digits_than_ascii_is_a_custom_id(api, engine, job_id):
    """The document's job_id pattern refuses ids of ASCII digits only (generated ids are
    those); '²', '١٢' and '①' are not, but passed str.isdigit and were refused."""
    r = api.post(url("/jobs"), json={"payload": 1, "job_id": job_id})
    assert r.status_code == 201 and r.json()["id"] == job_id, r.text
    assert engine.get("q", job_id).payload == 1


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=%C2%B2", "cursor=-1", "cursor=%E2%91%A0",
                                   "cursor=%D9%A3", "cursor=%EF%BC%91", "cursor=1000000000000", "cursor=" + "9" * 5000])
def test_a_page_query_outside_the_document_is_400(api, query):
    """limit 1-1000 and cursor ``^[0-9]{1,12}$``, as /openapi.json says: digits of other
    scripts ('²', '①') and a number past Python's 4,300 digits were 500s; Arabic-Indic and
    fullwidth digits, and a 13-digit cursor, were taken."""
    r = api.get(url(f"/jobs?{query}"))
    assert r.status_code == 400 and r.json()["error"] == "bad_input", r.text


@pytest.mark.parametrize("worker_id", ["has space", "x" * 257, ""])
def test_a_release_gives_the_job_back_whatever_its_worker_id_and_the_document_says_so(api, engine, worker_id):
    """A release is not refused for its worker_id (the job goes back; the registry write
    is best effort): the document gave it the claim's pattern, so the fuzzer, once it held
    live leases, found schema-invalid releases answered 200."""
    jsonschema = pytest.importorskip("jsonschema")
    engine.enqueue("q", 1)
    [job] = api.post(url("/claim"), json={"worker_id": "w"}).json()["jobs"]
    body = {"token": job["token"], "worker_id": worker_id}
    r = api.post(url(f"/jobs/{job['id']}/release"), json=body)
    assert r.status_code == 200 and engine.get("q", job["id"]).state == "ready", r.text
    doc = api.get("/openapi.json").json()
    schema = doc["paths"]["/v1/queues/{queue}/jobs/{id}/release"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    jsonschema.validate(body, schema)   # what the server takes, the document takes


@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/queues/q/jobs?limit=&limit=2"), ("GET", "/v1/queues/q/jobs?state=dead&state=ready"),
    ("GET", "/v1/queues/q/jobs?cursor=0&cursor=1"), ("DELETE", "/v1/queues/q/jobs?state=dead&state=ready"),
    ("GET", "/v1/workflows?limit=1&limit=2"), ("GET", "/v1/webhooks/h/deliveries?limit=1&limit=2"),
])
def test_a_query_parameter_given_twice_is_400(api, engine, method, path):
    """Each query parameter of the document is one value: the last of several was used
    silently (the fuzzer's ?limit=&limit=2 answered 200), and a purge of
    ?state=dead&state=ready purged the ready jobs."""
    engine.enqueue("q", 1)
    engine.add_webhook("h", "https://example.com/h")
    r = api.request(method, path)
    assert r.status_code == 400 and r.json()["error"] == "bad_input", r.text
    assert engine.stats("q")["ready"] == 1


def test_bad_queue_name_and_too_large_body(api, engine):
    assert api.post("/v1/queues/bad%20q/jobs", json={}).status_code == 400
    assert api.post(url("/jobs"), content=b"x" * (2 << 20)).status_code == 413
    assert api.get(url("/jobs?state=nope")).status_code == 400
    assert api.delete(url("/jobs")).status_code == 400
    assert engine.queues() == []


def test_roles(engine, caplog):
    admin, worker, read = (client(engine, TOKENS, role) for role in ("admin", "worker", "read"))
    anonymous = TestClient(create_app(engine, tokens=TOKENS, dashboard=False))
    with caplog.at_level(logging.INFO, logger="redispool.http"):
        assert anonymous.get("/v1/queues").status_code == 401
        assert read.get("/v1/queues").status_code == 200
        assert read.post(url("/jobs"), json={}).status_code == 403
        job_id = worker.post(url("/jobs"), json={}).json()["id"]
        assert worker.post(url("/pause")).status_code == 403
        assert worker.delete(url(f"/jobs/{job_id}")).status_code == 403
        assert admin.delete(url(f"/jobs/{job_id}")).json() == {"cancelled": True}
    assert "POST /v1/queues/q/jobs 201" in caplog.text
    assert not any(token in caplog.text for token in TOKENS), "tokens are never logged"


def test_bytes_payload_has_a_json_form(api, engine):
    job_id = engine.enqueue("q", {"blob": b"\x00\xff"})
    assert api.get(url(f"/jobs/{job_id}")).json()["payload"] == {"blob": {"$bytes_base64": "AP8="}}


def test_nan_and_infinity_have_a_strict_json_form(api, engine):
    """The one encoding the CLI's --json shares (redispool.tojson): tagged, never a bare NaN."""
    job_id = engine.enqueue("q", {"f": float("nan"), "g": [float("inf"), float("-inf")], "s": "nan"})

    def strict(token):
        raise ValueError(token)
    payload = json.loads(api.get(url(f"/jobs/{job_id}")).text, parse_constant=strict)["payload"]
    assert payload == {"f": {"$float": "NaN"}, "g": [{"$float": "Infinity"}, {"$float": "-Infinity"}], "s": "nan"}


def test_admin_routes_and_cues(api, engine):
    ids = engine.enqueue_many("q", [1, 2], max_attempts=1)
    for job in engine.claim("q", "w", limit=2):
        engine.fail(job, "x")
    assert api.post(url("/pause")).json() == {"changed": True} and engine.stats("q")["paused"]
    assert api.post(url("/resume")).json() == {"changed": True}
    assert api.post(url("/replay"), json={"ids": [ids[0]]}).json() == {"replayed": 1}
    assert api.delete(url("/jobs?state=dead")).json() == {"purged": 1}
    cue = api.put(url("/cues/nightly"), json={"cron": "0 3 * * *", "tz": "Europe/Paris", "payload": {"k": 1}}).json()
    assert cue["tz"] == "Europe/Paris" and cue["next_fire_at"] > time.time()
    assert api.put(url("/cues/bad"), json={"cron": "nope"}).status_code == 400
    assert api.post(url("/cues/nightly/pause")).json() == {"ok": True} and engine.get_cue("q", "nightly").paused
    job_id = api.post(url("/cues/nightly/run")).json()["job_id"]
    assert engine.get("q", job_id).payload == {"k": 1}
    assert [c["name"] for c in api.get("/v1/cues").json()] == ["nightly"]
    assert api.delete(url("/cues/nightly")).json() == {"removed": True}
    assert api.delete(url("/cues/nightly")).status_code == 404
    assert api.post(url("/cues/missing/run")).status_code == 404


def test_openapi_matches_the_routes(api):
    doc = api.get("/openapi.json").json()
    app = api.app
    served = {(m, r.path.replace(":path", "")) for r in app.routes if getattr(r, "methods", None)
              and r.path.startswith("/v1/") and "{rest" not in r.path for m in r.methods if m != "HEAD"}
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() if p.startswith("/v1/") for m in ops}
    assert served == documented
    assert "/healthz" in doc["paths"] and "/metrics" in doc["paths"]


@pytest.mark.parametrize("headers,status", [
    ({"Content-Type": "text/plain"}, 415),
    ({"Host": "rebound.example"}, 421),
    ({"Origin": "http://other.example"}, 403),
])
def test_the_guards_refusals_are_in_the_document(engine, headers, status):
    """The guard answers before any route (web/guard.py): its statuses and codes are
    answers of every /v1 route, so the document lists them (415 and 421 were missing, and
    no code of the guard was in the Error schema's list)."""
    jsonschema = pytest.importorskip("jsonschema")
    c = client(engine)   # no tokens: every check of the guard is on
    doc = c.get("/openapi.json").json()
    r = c.post(url("/jobs"), content=b"{}", headers=headers)
    assert r.status_code == status, r.text
    responses = doc["paths"]["/v1/queues/{queue}/jobs"]["post"]["responses"]
    assert str(status) in responses
    jsonschema.validate(r.json(), {**doc["components"]["schemas"]["Error"], "components": doc["components"]})
    assert engine.stats("q")["ready"] == 0


def test_health_and_metrics(api, engine):
    engine.enqueue("q", 1)
    assert api.get("/healthz").json() == {"status": "ok"}
    text = api.get("/metrics").text
    assert 'redispool_queue_jobs{queue="q",state="ready"} 1.0' in text
    assert "redispool_http_requests_total" in text


def test_unreachable_redis_is_503(tmp_path):
    server = RedisServer().start()
    engine = redispool.connect(server.url, prefix="down")
    api = client(engine)
    server.stop()
    r = api.post(url("/jobs"), json={})
    assert r.status_code == 503 and r.json()["error"] == "unavailable"
    assert api.get("/healthz").status_code == 503


def _call(base: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": "Bearer worker-token-1",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=40) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_real_server_process(redis_url, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.touch(mode=0o600)
    tokens.write_text("# role token\nadmin admin-token-1\nworker worker-token-1\n")
    port, prefix = free_port(), f"srv{time.time_ns()}"
    proc = subprocess.Popen([sys.executable, "-m", "redispool", "--url", redis_url, "--prefix", prefix, "serve",
                             "--port", str(port), "--tokens-file", str(tokens)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except Exception:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.1)
        status, body = _call(base, "POST", "/v1/queues/q/jobs", {"payload": {"n": 1}})
        assert status == 201
        status, claimed = _call(base, "POST", "/v1/queues/q/claim", {"worker_id": "curl-1", "wait": 5})
        [job] = claimed["jobs"]
        assert _call(base, "POST", f"/v1/queues/q/jobs/{job['id']}/complete", {"token": job["token"]}) == \
            (200, {"state": "done"})
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "worker-token-1" not in err and "POST /v1/queues/q/claim 200" in err


