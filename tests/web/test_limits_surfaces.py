"""Queue limits (issue 19) on every face: HTTP ``GET|PUT /v1/queues/{queue}/limits`` (read
and admin roles), ``stats``, ``/metrics``, the dashboard (shown, set and cleared with the
CSRF token) and ``redispool limits``."""
from __future__ import annotations

import json
import uuid

import pytest

pytest.importorskip("starlette")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

import redispool  # noqa: E402
from redispool.dashboard import create_dashboard  # noqa: E402
from redispool.http import create_app  # noqa: E402

from support.cli import invoke  # noqa: E402

TOKENS = {"admin-token-1": "admin", "worker-token-1": "worker", "read-token-1": "read"}
NONE = {"rate": None, "per": None, "concurrency": None}


def api(engine, role: str) -> TestClient:
    token = next(t for t, r in TOKENS.items() if r == role)
    return TestClient(create_app(engine, tokens=TOKENS, dashboard=False), base_url="http://127.0.0.1",
                      headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})


def test_http_limits_read_and_replace_by_role(engine):
    admin, worker, read = api(engine, "admin"), api(engine, "worker"), api(engine, "read")
    assert read.get("/v1/queues/q/limits").json() == NONE
    r = admin.put("/v1/queues/q/limits", json={"rate": 50, "per": 2, "concurrency": 4})
    assert r.status_code == 200 and r.json() == {"rate": 50, "per": 2.0, "concurrency": 4}
    assert read.get("/v1/queues/q/limits").json() == r.json()
    assert read.get("/v1/queues/q").json()["limits"] == r.json()
    for who in (worker, read):
        assert who.put("/v1/queues/q/limits", json={"concurrency": 1}).status_code == 403
    for bad in ({"rate": 0}, {"rate": 1.5}, {"rate": "5"}, {"concurrency": -1}, {"rate": 5, "per": 0},
                {"burst": 3}, [1]):
        r = admin.put("/v1/queues/q/limits", json=bad)
        assert r.status_code == 400 and r.json()["error"] == "bad_input", bad
    assert engine.limits("q") == {"rate": 50, "per": 2.0, "concurrency": 4}, "a refused PUT changes nothing"
    assert admin.put("/v1/queues/q/limits", json={"concurrency": 2}).json() == {**NONE, "concurrency": 2}
    assert admin.put("/v1/queues/q/limits").json() == NONE, "no body: both removed"
    assert admin.get("/v1/queues/bad%20name/limits").status_code == 400
    doc = admin.get("/openapi.json").json()
    assert set(doc["paths"]["/v1/queues/{queue}/limits"]) == {"get", "put"}
    assert doc["paths"]["/v1/queues/{queue}/limits"]["put"]["description"] == "Role: admin."


def test_http_claims_obey_the_limits(engine):
    admin = api(engine, "admin")
    engine.enqueue_many("hq", range(5))
    admin.put("/v1/queues/hq/limits", json={"concurrency": 2})
    jobs = admin.post("/v1/queues/hq/claim", json={"worker_id": "h", "limit": 5}).json()["jobs"]
    assert len(jobs) == 2
    r = admin.post("/v1/queues/hq/ack", json={"complete": [{"id": jobs[0]["id"], "token": jobs[0]["token"]}],
                                              "claim": {"worker_id": "h", "limit": 5}}).json()
    assert len(r["jobs"]) == 1, "the ack's next batch fills the one slot it freed"


def test_metrics_show_each_limit_a_queue_has(engine):
    engine.set_limits("fast", rate=100, per=0.5, concurrency=8)
    engine.set_limits("capped", concurrency=3)
    engine.enqueue("free", 1)
    text = api(engine, "read").get("/metrics").text
    samples = {(s.name, s.labels.get("queue")): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("redispool_queue_rate_limit", "fast")] == 100
    assert samples[("redispool_queue_rate_limit_window_seconds", "fast")] == 0.5
    assert samples[("redispool_queue_concurrency_limit", "fast")] == 8
    assert samples[("redispool_queue_concurrency_limit", "capped")] == 3
    assert ("redispool_queue_rate_limit", "capped") not in samples
    assert not any(queue == "free" and "limit" in name for name, queue in samples), "no limit: no series"


def test_dashboard_shows_sets_and_clears_the_limits(engine):
    engine.enqueue("dq", 1)
    c = TestClient(create_dashboard(engine), follow_redirects=False)
    assert "limits: none" in c.get("/queues/dq").text
    token = c.cookies.get("rp_csrf")
    form = {"rate": "20", "per": "2", "concurrency": "3", "action": "save"}
    assert c.post("/queues/dq/limits", data=form).status_code == 403, "no CSRF token: refused"
    assert engine.limits("dq") == NONE
    r = c.post("/queues/dq/limits", data={**form, "csrf": token})
    assert r.status_code == 303 and engine.limits("dq") == {"rate": 20, "per": 2.0, "concurrency": 3}
    page = c.get("/queues/dq").text
    assert "at most 20 claims per 2s" in page and "at most 3 leased at once" in page and "Clear limits" in page
    r = c.post("/queues/dq/limits", data={"csrf": token, "rate": "x", "concurrency": "3", "action": "save"})
    assert "err=1" in r.headers["location"] and "rate+must+be+a+whole+number" in r.headers["location"]
    r = c.post("/queues/dq/limits", data={"csrf": token, "rate": "", "per": "", "concurrency": "0"})
    assert "err=1" in r.headers["location"], "the engine's refusal is shown"
    assert engine.limits("dq") == {"rate": 20, "per": 2.0, "concurrency": 3}, "a refused form changes nothing"
    c.post("/queues/dq/limits", data={"csrf": token, "concurrency": "5", "action": "save"})
    assert engine.limits("dq") == {**NONE, "concurrency": 5}, "an empty field: no such limit"
    c.post("/queues/dq/limits", data={"csrf": token, "action": "clear"})
    assert engine.limits("dq") == NONE
    reader = TestClient(create_dashboard(engine, tokens={"look": "read"}), follow_redirects=False)
    reader.post("/login", data={"token": "look"})
    assert "limits: none" in reader.get("/queues/dq").text
    assert reader.post("/queues/dq/limits", data={"csrf": reader.cookies.get("rp_csrf"),
                                                  "concurrency": "1"}).status_code == 403


def test_cli_limits_shows_sets_and_refuses(redis_url):
    prefix = f"cli{uuid.uuid4().hex[:8]}"
    engine = redispool.connect(redis_url, prefix=prefix)
    try:
        assert "rate         none" in invoke(redis_url, prefix, "limits", "q").output
        out = invoke(redis_url, prefix, "limits", "q", "--rate", "50", "--per", "2", "--json").output
        assert json.loads(out) == {"rate": 50, "per": 2.0, "concurrency": None}
        invoke(redis_url, prefix, "limits", "q", "--concurrency", "4")
        assert engine.limits("q") == {"rate": 50, "per": 2.0, "concurrency": 4}, "options change just those given"
        invoke(redis_url, prefix, "limits", "q", "--rate", "60")
        assert engine.limits("q")["per"] == 2.0, "the stored window stays"
        assert "60 per 2s" in invoke(redis_url, prefix, "limits", "q").output
        for bad in (["--rate", "0"], ["--concurrency", "-3"], ["--per", "0"], ["--rate", "x"]):
            invoke(redis_url, prefix, "limits", "q", *bad, code=2)
        assert engine.limits("q") == {"rate": 60, "per": 2.0, "concurrency": 4}
        invoke(redis_url, prefix, "limits", "q", "--clear", "--concurrency", "2")
        assert engine.limits("q") == {**NONE, "concurrency": 2}
        invoke(redis_url, prefix, "limits", "q", "--per", "3", code=2)   # a window without a rate
        invoke(redis_url, prefix, "limits", "q", "--clear")
        assert engine.limits("q") == NONE
    finally:
        engine.close()
