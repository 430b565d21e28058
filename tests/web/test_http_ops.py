"""What operators see of ``redispool serve``: every response logged and counted (with a
request id, the client and the role, control characters escaped), dashboard audit lines,
metrics that parse, and the server's memory and registry bounded (issue 15, §9-§12, §16-§18, §21)."""
from __future__ import annotations

import logging
import re
import time

import pytest

pytest.importorskip("starlette")
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as om_parse,
)
from prometheus_client.parser import text_string_to_metric_families as prom_parse
from starlette.testclient import TestClient

import redispool.aio
from redispool.http import create_app


def client(engine, **options) -> TestClient:
    return TestClient(create_app(engine, **options), base_url="http://127.0.0.1", follow_redirects=False,
                      headers={"Content-Type": "application/json"})


def lines(caplog, logger: str = "redispool.http") -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


def counted(c: TestClient, method: str, route: str, status: int) -> float:
    text = c.get("/metrics").text
    for family in prom_parse(text):
        for s in family.samples:
            if s.name == "redispool_http_requests_total" and s.labels == {
                    "method": method, "route": route, "status": str(status)}:
                return s.value
    return 0.0


def test_every_response_is_logged_and_counted(engine, caplog, monkeypatch):
    """500s, 404, 405, /healthz, /metrics, /compat and the dashboard: one line and one count each."""
    caplog.set_level(logging.INFO)
    c = client(engine)

    async def broken(self, *a, **k):
        raise RuntimeError("a bug")
    monkeypatch.setattr(redispool.aio.AsyncEngine, "queues", broken)
    r = c.get("/v1/queues")
    assert r.status_code == 500 and r.json()["error"] == "internal"
    monkeypatch.undo()
    assert c.get("/v1/nope").status_code == 404
    assert c.patch("/v1/queues/q/jobs").status_code == 405
    assert c.get("/healthz").status_code == 200
    assert c.get("/compat/spooled/api/v1/jobs").status_code in (200, 400, 401, 404, 422)
    assert c.get("/").status_code == 200
    log = lines(caplog)
    for wanted in ("GET /v1/queues 500", "GET /v1/nope 404", "PATCH /v1/queues/q/jobs 405", "GET /healthz 200",
                   "GET /compat/spooled/api/v1/jobs ", "GET / 200"):
        assert any(line.startswith(wanted) for line in log), (wanted, log)
    assert counted(c, "GET", "/v1/queues", 500) == 1
    assert counted(c, "PATCH", "/v1/{rest}", 405) == 1
    assert counted(c, "GET", "/healthz", 200) == 1
    assert counted(c, "GET", "/", 200) == 1
    assert any(line.startswith("GET /metrics 200") for line in lines(caplog))


def test_log_line_escapes_control_characters_and_carries_a_request_id(engine, caplog):
    caplog.set_level(logging.INFO)
    c = client(engine)
    r = c.get("/v1/queues/a%1b%5b2J%1b%5bHx/jobs/1", headers={"X-Request-ID": "req-42.a"})
    assert r.headers["x-request-id"] == "req-42.a"
    [line] = [x for x in lines(caplog) if "/jobs/1" in x]
    assert "\x1b" not in line and "\\x1b[2J" in line
    assert "rid=req-42.a" in line and "client=testclient" in line and "role=admin" in line
    r = c.get("/healthz", headers={"X-Request-ID": "bad id\x1b"})
    fresh = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", fresh) and f"rid={fresh}" in lines(caplog)[-1]


def test_dashboard_actions_leave_an_audit_line_with_the_role(engine, caplog):
    caplog.set_level(logging.INFO)
    tokens = {"admin-tok-1": "admin", "read-tok-1": "read"}
    engine.enqueue("mail", {"n": 1})
    c = client(engine, tokens=tokens)
    c.post("/login", data={"token": "admin-tok-1"}, headers={"Content-Type": "application/x-www-form-urlencoded"})
    csrf = c.cookies.get("rp_csrf")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert c.post("/queues/mail/pause", data={"csrf": csrf}, headers=form).status_code == 303
    assert c.post("/queues/mail/purge", data={"csrf": csrf, "state": "ready"}, headers=form).status_code == 303
    reader = client(engine, tokens=tokens)
    reader.post("/login", data={"token": "read-tok-1"}, headers=form)
    assert reader.post("/queues/mail/resume", data={"csrf": reader.cookies.get("rp_csrf")},
                       headers=form).status_code == 403
    audit = lines(caplog, "redispool.audit")
    assert any("POST /login by role=admin" in a and "login" in a for a in audit), audit
    assert any("POST /queues/mail/pause by role=admin" in a and "done" in a for a in audit), audit
    assert any("POST /queues/mail/purge by role=admin" in a and "state=ready" in a for a in audit), audit
    assert any("POST /queues/mail/resume by role=read" in a and "refused" in a for a in audit), audit
    assert any(x.startswith("POST /queues/mail/purge 303") and "role=admin" in x for x in lines(caplog))


def test_metrics_parse_as_text_and_openmetrics(engine):
    engine.enqueue("mail", 1)
    c = client(engine)
    c.get("/healthz")
    text = c.get("/metrics").text
    names = [f.name for f in prom_parse(text)]
    assert len(names) == len(set(names)), names
    assert "redispool_queue_jobs" in names and "redispool_jobs" in names
    assert "_created" not in text
    from prometheus_client.openmetrics.exposition import generate_latest as om_latest
    families = list(om_parse(om_latest(c.app.state.api.metrics.registry).decode()))  # type: ignore[attr-defined]
    assert {"redispool_queue_jobs", "redispool_jobs"} <= {f.name for f in families}


def test_route_labels_are_templates_and_removed_queues_leave_metrics(engine):
    c = client(engine)
    [job] = engine.claim("gone", "w") if engine.enqueue("gone", 1) else []
    assert c.post(f"/v1/queues/gone/jobs/{job.id}/complete", json={"token": job.token}).status_code == 200
    assert counted(c, "POST", "/v1/queues/{queue}/jobs/{id}/complete", 200) == 1
    assert 'queue="gone"' in c.get("/metrics").text
    engine.remove_queue("gone")
    assert 'queue="gone"' not in c.get("/metrics").text


def test_long_poll_waits_stay_out_of_the_latency_histogram(engine):
    c = client(engine)
    assert c.post("/v1/queues/lp/claim", json={"worker_id": "w", "wait": 0.3}).json()["jobs"] == []
    text = c.get("/metrics").text
    assert 'redispool_http_long_poll_seconds_count{method="POST",route="/v1/queues/{queue}/claim"} 1.0' in text
    assert 'redispool_http_request_seconds_count{method="POST",route="/v1/queues/{queue}/claim"}' not in text


def test_the_server_keeps_nothing_per_worker_and_the_registry_forgets_settled_jobs(engine):
    """§11: one-shot worker ids (pods, pids) do not pile up in the server's memory: what an
    HTTP worker holds lives in its registration, and leaves it when settled or expired."""
    c = client(engine, dashboard=False)
    api = c.app.state.api  # type: ignore[attr-defined]
    before = dict(vars(api))
    for i in range(60):    # claim, then complete / fail / release with the worker id
        c.post("/v1/queues/once/jobs", json={"payload": i})
        [job] = c.post("/v1/queues/once/claim", json={"worker_id": f"pod-{i}"}).json()["jobs"]
        verb, body = [("complete", {}), ("fail", {"error": "x", "retry": False}), ("release", {})][i % 3]
        r = c.post(f"/v1/queues/once/jobs/{job['id']}/{verb}", json={"token": job["token"], "worker_id": f"pod-{i}",
                                                                      **body})
        assert r.status_code == 200, r.text
    c.post("/v1/queues/empty/claim", json={"worker_id": "idle"})  # claims nothing
    for name, value in vars(api).items():  # no attribute grew with the worker ids seen
        assert not isinstance(value, (dict, list, set)) or len(value) <= len(before.get(name, ())), name
    workers = {w.id: w for w in engine.workers()}
    assert all(workers[f"pod-{i}"].jobs_in_progress == [] for i in range(60))
    # a worker that vanished holding a lease: the lease leaves its list once expired
    c.post("/v1/queues/gone/jobs", json={"payload": 1})
    [job] = c.post("/v1/queues/gone/claim", json={"worker_id": "gone-1", "lease": 0.2}).json()["jobs"]
    assert {w.id: w for w in engine.workers()}["gone-1"].jobs_in_progress == [f"gone/{job['id']}"]
    time.sleep(0.3)
    c.post("/v1/queues/empty/claim", json={"worker_id": "gone-1"})  # its next beat
    assert {w.id: w for w in engine.workers()}["gone-1"].jobs_in_progress == []


def test_jobs_in_progress_agree_across_server_replicas(engine):
    """§12: behind a load balancer each request of one HTTP worker may reach another
    replica; the registry shows every lease it holds, whichever replica leased it."""
    replicas = [client(engine, dashboard=False), client(engine, dashboard=False)]
    replicas[0].post("/v1/queues/lb/jobs/batch", json={"jobs": [{"payload": n} for n in range(6)]})
    held = []
    for n in range(3):   # round robin: one job per claim
        held += replicas[n % 2].post("/v1/queues/lb/claim", json={"worker_id": "w", "limit": 2}).json()["jobs"]
    assert len(held) == 6

    def listed() -> list[str]:
        [w] = [w for w in engine.workers() if w.id == "w"]
        return w.jobs_in_progress

    assert listed() == sorted(f"lb/{j['id']}" for j in held)
    # settled through the other replica than the one that leased them
    first, second, third = held[0], held[1], held[2]
    assert replicas[1].post(f"/v1/queues/lb/jobs/{first['id']}/complete",
                            json={"token": first["token"], "worker_id": "w"}).status_code == 200
    assert replicas[0].post(f"/v1/queues/lb/jobs/{second['id']}/fail",
                            json={"token": second["token"], "worker_id": "w", "error": "x"}).status_code == 200
    assert replicas[1].post(f"/v1/queues/lb/jobs/{third['id']}/release",
                            json={"token": third["token"], "worker_id": "w"}).status_code == 200
    r = replicas[0].post("/v1/queues/lb/ack", json={"complete": [{"id": held[3]["id"], "token": held[3]["token"]}],
                                                   "claim": {"worker_id": "w", "limit": 1}})
    assert r.status_code == 200, r.text
    [again] = r.json()["jobs"]    # the released job comes back
    assert listed() == sorted(f"lb/{j['id']}" for j in [held[4], held[5], again])
    [w] = [w for w in engine.workers() if w.id == "w"]
    assert (w.processed, w.failed) == (3, 1)
    # a heartbeat through either replica keeps the list as it is
    assert replicas[1].post(f"/v1/queues/lb/jobs/{held[4]['id']}/heartbeat",
                            json={"token": held[4]["token"], "worker_id": "w"}).status_code == 200
    assert listed() == sorted(f"lb/{j['id']}" for j in [held[4], held[5], again])


@pytest.mark.parametrize("body", [b'{"payload": {"x": -Infinity, "y": NaN}}', b'{"payload": Infinity}',
                                  b'{"jobs": [{"payload": NaN}]}', b""])
def test_non_json_numbers_and_an_empty_body_are_400_and_write_nothing(engine, body):
    """§16: NaN/Infinity are not JSON; no body is not a null job."""
    c = client(engine, dashboard=False)
    path = "/v1/queues/nan/jobs/batch" if b"jobs" in body else "/v1/queues/nan/jobs"
    r = c.post(path, content=body)
    assert r.status_code == 400 and r.json()["error"] == "bad_input", r.text
    assert engine.stats("nan")["ready"] == 0
    r = c.post("/compat/spooled/api/v1/jobs", content=b'{"queue_name": "nan", "payload": {"x": NaN}}')
    assert r.status_code in (400, 422) and engine.stats("nan")["ready"] == 0, r.text


def test_registry_counts_complete_and_fail_and_records_every_queue(engine):
    """§12: /complete and /fail count in processed/failed; every queue a worker claims from
    is in its registration, so the sweeper takes back its leases there."""
    c = client(engine, dashboard=False)
    for q in ("mqa", "mqb", "mqc"):
        c.post(f"/v1/queues/{q}/jobs/batch", json={"jobs": [{"payload": n} for n in range(3)]})
    held = []
    for q in ("mqa", "mqb", "mqc"):
        claimed = c.post(f"/v1/queues/{q}/claim", json={"worker_id": "node-1", "limit": 3}).json()["jobs"]
        held += [(q, j) for j in claimed]
    for n, (q, j) in enumerate(held[:5]):
        verb, extra = ("complete", {}) if n < 3 else ("fail", {"error": "boom"})
        assert c.post(f"/v1/queues/{q}/jobs/{j['id']}/{verb}",
                      json={"token": j["token"], "worker_id": "node-1", **extra}).status_code == 200
    [w] = [w for w in engine.workers() if w.id == "node-1"]
    assert (w.processed, w.failed) == (5, 2)
    assert sorted(w.queues) == ["mqa", "mqb", "mqc"]
    assert len(w.jobs_in_progress) == 4
    from redispool import Sweeper
    deadline = time.time() + 20
    while sum(engine.stats(q)["leased"] for q in ("mqa", "mqb", "mqc")) and time.time() < deadline:
        Sweeper(engine, worker_timeout=0.2).sweep_workers()   # node-1 went silent: all its leases back
        time.sleep(0.1)
    assert [engine.stats(q)["leased"] for q in ("mqa", "mqb", "mqc")] == [0, 0, 0]
