"""The webhook routes of the HTTP API (issue 18): /v1/webhooks create, read, replace,
remove and deliveries; roles; bad input refused with nothing written; webhook cues."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from redispool.http import create_app  # noqa: E402
from redispool.models import DeliveryInfo  # noqa: E402

TOKENS = {"admin-token-1": "admin", "worker-token-1": "worker", "read-token-1": "read"}


def client(engine, role: str | None = "admin") -> TestClient:
    c = TestClient(create_app(engine, tokens=TOKENS, dashboard=False), base_url="http://127.0.0.1",
                   headers={"Content-Type": "application/json"})
    if role:
        c.headers["Authorization"] = "Bearer " + next(t for t, r in TOKENS.items() if r == role)
    return c


def attempt(name: str, n: int, **fields) -> DeliveryInfo:
    return DeliveryInfo(**{"id": f"hook:{name}:q:{n}-0", "webhook": name, "event": "completed", "queue": "q",
                           "job_id": str(n), "attempt": 1, "status": "success", "code": 200, "error": None,
                           "response": "ok", "duration_ms": 1.5, "at": time.time(), **fields})


def test_webhooks_are_created_read_replaced_and_removed(engine):
    api = client(engine)
    r = api.put("/v1/webhooks/ops", json={"url": "https://example.com/hook", "events": ["dead"],
                                          "queues": ["b", "a"], "secret": "s3cret", "max_attempts": 3})
    assert r.status_code == 200 and "s3cret" not in r.text
    made = r.json()
    assert made == {"name": "ops", "url": "https://example.com/hook", "events": ["dead"], "queues": ["a", "b"],
                    "signed": True, "scheme": "redispool", "max_attempts": 3, "created_at": made["created_at"],
                    "enabled": True, "disable_after": 0, "failures": 0, "auto_disabled_at": None}
    assert engine.get_webhook("ops").signed
    defaults = api.put("/v1/webhooks/all", json={"url": "http://127.0.0.1:9/x", "scheme": "spooled"}).json()
    assert (defaults["events"], defaults["queues"], defaults["signed"], defaults["max_attempts"]) == \
        (["completed", "dead"], None, False, 5)
    assert [w["name"] for w in api.get("/v1/webhooks").json()] == ["all", "ops"]
    assert "s3cret" not in api.get("/v1/webhooks").text
    again = api.put("/v1/webhooks/ops", json={"url": "https://example.com/v2"}).json()
    assert again["created_at"] == made["created_at"] and not again["signed"] and again["queues"] is None
    assert api.get("/v1/webhooks/ops").json() == again
    off = api.put("/v1/webhooks/ops", json={"url": "https://example.com/v2", "enabled": False,
                                            "disable_after": 20}).json()
    assert (off["enabled"], off["disable_after"]) == (False, 20) and not engine.get_webhook("ops").enabled
    again = api.put("/v1/webhooks/ops", json={"url": "https://example.com/v2"}).json()
    assert api.get("/v1/webhooks/ops/deliveries").json() == []
    for n in range(3):
        engine.log_delivery(attempt("ops", n, status="failed" if n else "success", code=None if n else 200,
                                    error="timed out" if n else None))
    got = api.get("/v1/webhooks/ops/deliveries", params={"limit": 2}).json()
    assert [(d["job_id"], d["status"], d["code"], d["error"]) for d in got] == \
        [("2", "failed", None, "timed out"), ("1", "failed", None, "timed out")]
    assert set(got[0]) == {"id", "webhook", "event", "queue", "job_id", "attempt", "status", "code", "error",
                           "response", "duration_ms", "at"}
    assert len(api.get("/v1/webhooks/ops/deliveries").json()) == 3
    assert api.delete("/v1/webhooks/ops").json() == {"removed": True}
    assert engine.get_webhook("ops") is None
    for method, path in (("GET", "/v1/webhooks/ops"), ("DELETE", "/v1/webhooks/ops"),
                         ("GET", "/v1/webhooks/ops/deliveries")):
        r = api.request(method, path)
        assert (r.status_code, r.json()["error"]) == (404, "not_found"), (method, path)
        assert "ops" in r.json()["message"]


BAD = [
    None, {}, {"url": "ftp://example.com/x"}, {"url": "http://"}, {"url": "http://x/a b"}, {"url": 5},
    {"url": "http://x/" + "a" * 2048}, {"url": "http://x", "events": []}, {"url": "http://x", "events": ["nope"]},
    {"url": "http://x", "events": "dead"}, {"url": "http://x", "queues": []}, {"url": "http://x", "queues": ["a b"]},
    {"url": "http://x", "scheme": "nope"}, {"url": "http://x", "max_attempts": 0},
    {"url": "http://x", "max_attempts": True}, {"url": "http://x", "secret": 5},
    {"url": "http://x", "secret": "s" * 1025}, {"url": "http://x", "extra": 1}, [1],
    {"url": "http://x", "enabled": "yes"}, {"url": "http://x", "disable_after": -1},
    {"url": "http://x", "disable_after": 1.5},
    # what http.client cannot send (control characters) or resolve (a label past 63 characters): never delivered
    {"url": "http://x/a\x01"}, {"url": "http://x/\x7f"}, {"url": "http://ex\x00ample.com/"},
    {"url": "http://" + "a" * 64 + ".example/"}, {"url": "http://a..b/"},
]


def test_bad_webhooks_are_400_and_write_nothing(engine):
    api = client(engine)
    for body in BAD:
        r = api.put("/v1/webhooks/h", json=body) if body is not None else api.put("/v1/webhooks/h")
        assert (r.status_code, r.json()["error"]) == (400, "bad_input"), (body, r.text)
    assert engine.webhooks() == []


def test_bad_names_and_limits_are_400(engine):
    api = client(engine)
    assert api.put("/v1/webhooks/a%20b", json={"url": "http://x"}).status_code == 400
    assert api.get("/v1/webhooks/a%20b").status_code == 400
    assert engine.webhooks() == []
    api.put("/v1/webhooks/h", json={"url": "http://x"})
    for limit in ("0", "1001", "x", "²", "-1", "1.5"):
        r = api.get("/v1/webhooks/h/deliveries", params={"limit": limit})
        assert (r.status_code, r.json()["error"]) == (400, "bad_input"), limit


def test_roles(engine):
    engine.add_webhook("h", "http://127.0.0.1:9/x", secret="s")
    reads = [("GET", "/v1/webhooks"), ("GET", "/v1/webhooks/h"), ("GET", "/v1/webhooks/h/deliveries")]
    changes = [("PUT", "/v1/webhooks/n", {"url": "http://127.0.0.1:9/y"}), ("DELETE", "/v1/webhooks/h", None)]
    for method, path in reads:
        assert client(engine, None).request(method, path).status_code == 401
        for role in ("read", "worker", "admin"):
            assert client(engine, role).request(method, path).status_code == 200, (role, method, path)
    for method, path, body in changes:
        assert client(engine, None).request(method, path, json=body).status_code == 401
        for role in ("read", "worker"):
            r = client(engine, role).request(method, path, json=body)
            assert (r.status_code, r.json()["error"]) == (403, "forbidden"), (role, method, path)
    assert [w.name for w in engine.webhooks()] == ["h"], "a refused change wrote nothing"
    for method, path, body in changes:
        assert client(engine, "admin").request(method, path, json=body).status_code == 200
    assert [w.name for w in engine.webhooks()] == ["n"]


def test_webhook_cues(engine):
    api = client(engine)
    cue = api.put("/v1/queues/q/cues/ping", json={"cron": "*/5 * * * *", "url": "https://example.com/cue",
                                                  "secret": "s", "scheme": "cueapi", "payload": {"k": 1}})
    assert cue.status_code == 200, cue.text
    assert cue.json()["url"] == "https://example.com/cue" and "secret" not in cue.json()
    assert engine.get_cue("q", "ping").url == "https://example.com/cue"
    pull = api.put("/v1/queues/q/cues/pull", json={"cron": "0 3 * * *"}).json()
    assert pull["url"] is None
    assert {c["name"]: c["url"] for c in api.get("/v1/cues").json()} == {"ping": "https://example.com/cue",
                                                                         "pull": None}
    for bad in ({"cron": "0 3 * * *", "secret": "s"}, {"cron": "0 3 * * *", "url": "ftp://x"},
                {"cron": "0 3 * * *", "url": "http://x", "scheme": "nope"}):
        r = api.put("/v1/queues/q/cues/other", json=bad)
        assert (r.status_code, r.json()["error"]) == (400, "bad_input"), bad
    assert {c.name for c in engine.cues()} == {"ping", "pull"}
