"""The cueapi cron service's official clients (``cueapi-worker`` daemon, ``cueapi-sdk``,
pinned in the dev extra) against redispool's /compat/cueapi on a real redis-server:
cues become redispool cues, the pull worker runs their fires with shell handlers and
reports outcomes that land as done/dead jobs, and every route's error answers."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import yaml

pytest.importorskip("cueapi")
pytest.importorskip("cueapi_worker")
from cueapi import CueAPI  # noqa: E402
from cueapi.exceptions import (  # noqa: E402
    AuthenticationError,
    CueAPIError,
    CueLimitExceededError,
    CueNotFoundError,
    InvalidScheduleError,
)

import redispool  # noqa: E402
from redispool.compat.cueapi import QUEUE, claim_by_id  # noqa: E402

from support.compat import CUEAPI_KEYS, request  # noqa: E402
from support.waiting import wait_for  # noqa: E402

ADMIN, WORKER, READ = CUEAPI_KEYS


@pytest.fixture
def sdk(server):
    c = CueAPI(ADMIN, base_url=server[0] + "/compat/cueapi")
    yield c
    for cue in c.cues.list(limit=100).cues:     # each test starts with no cue
        c.cues.delete(cue.id)
    server[1].purge(QUEUE, "ready")
    c.close()


def call(server, method: str, path: str, key: str | None = WORKER, **kw) -> httpx.Response:
    return request(server, method, "/compat/cueapi" + path, key, **kw)


def fires_of(engine, cue_id: str, state: str) -> list:
    return [j for j in engine.jobs(QUEUE, state, limit=1000) if j.id.startswith(f"cue:{cue_id}:")]


def test_the_worker_daemon_runs_fires_and_reports_outcomes(sdk, server, tmp_path):
    """cueapi-worker, configured by YAML with api_base on redispool and shell handlers,
    runs the fires of an every-second cue and of a failing cue; the outcomes show up as
    done and dead jobs."""
    _, engine, _ = server
    greet = sdk.cues.create("greet-every-second", cron="* * * * * *", transport="worker",
                            payload={"task": "greet", "who": "redispool"})
    boom = sdk.cues.create("always-fails", cron="* * * * * *", transport="worker", payload={"task": "boom"},
                           retry={"max_attempts": 1, "backoff_minutes": [1]})
    assert engine.get_cue(QUEUE, greet.id).cron == "* * * * * *"
    config = tmp_path / "worker.yaml"
    config.write_text(yaml.safe_dump({
        "api_key": WORKER, "api_base": server[0] + "/compat/cueapi", "worker_id": "laptop-1",
        "poll_interval": 1, "heartbeat_interval": 1, "max_concurrent": 4,
        "handlers": {"greet": {"cmd": "echo hello {{ payload.who }} $CUEAPI_CUE_NAME", "timeout": 10},
                     "boom": {"cmd": "echo broken >&2; exit 3", "timeout": 10}}}))
    # the `cueapi-worker start` console script, run by this interpreter
    daemon = subprocess.Popen([sys.executable, "-c", "from cueapi_worker.cli import main; main()",
                               "start", "--config", str(config)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        wait_for(lambda: len(fires_of(engine, greet.id, "done")) >= 3 and fires_of(engine, boom.id, "dead"),
                 30, "three greetings done and a failure dead")
        assert "laptop-1" in [w.id for w in engine.workers()]
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            out = daemon.communicate(timeout=40)[0].decode()
        except subprocess.TimeoutExpired:
            daemon.kill()
            out = daemon.communicate()[0].decode()
    done = fires_of(engine, greet.id, "done")
    assert {j.result["result"].strip() for j in done} == {"hello redispool greet-every-second"}, out
    assert all(j.attempts == 1 and j.worker_id == "laptop-1" for j in done)
    [dead, *_] = fires_of(engine, boom.id, "dead")
    assert "broken" in dead.error and dead.attempts == 1
    execution = sdk.executions.get(dead.id)
    assert (execution["status"], execution["cue_id"], execution["outcome"]["success"]) == ("failed", boom.id, False)
    assert sdk.executions.get(done[0].id)["status"] == "success"


def test_cues_crud(sdk, server):
    _, engine, _ = server
    cue = sdk.cues.create("nightly", cron="0 3 * * *", timezone="Europe/Berlin", transport="worker",
                          payload={"task": "report", "n": 1}, description="the nightly report",
                          retry={"max_attempts": 5, "backoff_minutes": [1, 2]})
    assert (cue.status, cue.transport, cue.schedule.cron, cue.schedule.timezone) == (
        "active", "worker", "0 3 * * *", "Europe/Berlin")
    assert cue.retry.max_attempts == 5 and cue.next_run is not None and cue.id.startswith("cue_")
    info = engine.get_cue(QUEUE, cue.id)
    assert (info.tz, info.max_attempts, info.payload) == ("Europe/Berlin", 5, {"task": "report", "n": 1})
    assert sdk.cues.get(cue.id).description == "the nightly report"
    assert [c.id for c in sdk.cues.list().cues] == [cue.id]
    assert sdk.cues.pause(cue.id).status == "paused" and engine.get_cue(QUEUE, cue.id).paused
    assert [c.id for c in sdk.cues.list(status="paused").cues] == [cue.id]
    assert sdk.cues.resume(cue.id).status == "active"
    moved = sdk.cues.update(cue.id, cron="*/5 * * * *", payload={"task": "report", "n": 2}, name="every-5")
    assert (moved.name, moved.schedule.cron, moved.payload["n"]) == ("every-5", "*/5 * * * *", 2)
    assert engine.get_cue(QUEUE, cue.id).cron == "*/5 * * * *"
    with pytest.raises(CueAPIError) as dup:
        sdk.cues.create("every-5", cron="* * * * *", transport="worker")
    assert dup.value.status_code == 409
    sdk.cues.delete(cue.id)
    assert engine.get_cue(QUEUE, cue.id) is None
    with pytest.raises(CueNotFoundError):
        sdk.cues.get(cue.id)
    with pytest.raises(CueNotFoundError):
        sdk.cues.delete(cue.id)


def test_a_one_time_cue_is_one_scheduled_job(sdk, server):
    _, engine, _ = server
    at = time.time() + 3600
    cue = sdk.cues.create("once-later", at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)),
                          transport="worker", payload={"task": "once"})
    assert cue.schedule.type == "once" and cue.status == "active"
    [job] = fires_of(engine, cue.id, "scheduled")
    assert abs(job.run_at - int(at)) < 1
    soon = sdk.cues.update(cue.id, at="2000-01-01T00:00:00Z")          # due at once
    assert fires_of(engine, cue.id, "scheduled") == [] and len(fires_of(engine, cue.id, "ready")) == 1
    assert soon.status == "active"
    [ex] = call(server, "GET", "/v1/executions/claimable?task=once").json()["executions"]
    assert ex["cue_id"] == cue.id and ex["scheduled_for"].startswith("2000-01-01")
    with pytest.raises(InvalidScheduleError):
        sdk.cues.pause(cue.id)
    sdk.cues.delete(cue.id)
    assert [j.state for j in engine.jobs(QUEUE, "cancelled", limit=100) if j.id == ex["execution_id"]] == ["cancelled"]


@pytest.mark.parametrize("at", ["1960-01-01T00:00:00Z", "9999-01-01T00:00:00Z"])   # before 1970; past year ~5100
def test_a_one_time_cue_out_of_range_is_refused_and_changes_nothing(sdk, server, at):
    """An ``at`` the engine cannot schedule is an invalid schedule, found before anything
    is written: an update with one answered 400 but had already rewritten the cue, and
    deleted its pending job (or removed its recurring cue)."""
    _, engine, _ = server
    once = sdk.cues.create("once-kept", at="2030-01-01T00:00:00Z", transport="worker")
    nightly = sdk.cues.create("nightly-kept", cron="0 3 * * *", transport="worker")
    with pytest.raises(InvalidScheduleError):
        sdk.cues.create("once-never", at=at, transport="worker")
    for cue in (once, nightly):
        r = call(server, "PATCH", f"/v1/cues/{cue.id}", key=ADMIN, json={"schedule": {"type": "once", "at": at}})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_schedule", r.text
        assert sdk.cues.get(cue.id).schedule == cue.schedule and sdk.cues.get(cue.id).status == "active"
    assert len(fires_of(engine, once.id, "scheduled")) == 1 and engine.get_cue(QUEUE, nightly.id) is not None
    assert [c.name for c in sdk.cues.list().cues] == ["once-kept", "nightly-kept"]


def test_claim_heartbeat_and_write_once_outcomes(sdk, server):
    _, engine, _ = server
    cue = sdk.cues.create("ticks", cron="* * * * * *", transport="worker", payload={"task": "tick"},
                          retry={"max_attempts": 2, "backoff_minutes": [0]})
    wait_for(lambda: call(server, "GET", "/v1/executions/claimable?task=tick").json()["executions"], 5,
             "a claimable fire")
    assert call(server, "GET", "/v1/executions/claimable?task=other").json()["executions"] == []
    sdk.cues.pause(cue.id)
    [ex, *_] = call(server, "GET", "/v1/executions/claimable").json()["executions"]
    assert (ex["cue_name"], ex["task"], ex["payload"], ex["attempt"]) == ("ticks", "tick", {"task": "tick"}, 0)
    eid = ex["execution_id"]

    r = call(server, "POST", f"/v1/executions/{eid}/outcome", json={"success": True})
    assert r.status_code == 409 and r.json()["error"]["code"] == "execution_not_claimed"
    r = call(server, "POST", f"/v1/executions/{eid}/claim", json={"worker_id": "w-1"})
    assert r.status_code == 200 and r.json()["claimed"] and r.json()["lease_seconds"] == 900
    r = call(server, "POST", f"/v1/executions/{eid}/claim", json={"worker_id": "w-2"})
    assert r.status_code == 409 and r.json()["error"] == {"code": "claim_failed", "status": 409,
                                                          "message": "Execution not available for claiming"}
    r = call(server, "POST", f"/v1/executions/{eid}/heartbeat", headers={"X-Worker-Id": "w-2"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_execution_owner"
    assert sdk.executions.heartbeat(eid)["acknowledged"] is True

    r = sdk.executions.report_outcome(eid, success=False, error="disk full")      # retried (2 attempts)
    assert r["outcome_state"] == "reported_failure"
    with pytest.raises(CueAPIError) as again:
        sdk.executions.report_outcome(eid, success=True)
    assert again.value.status_code == 409 and again.value.code == "outcome_already_recorded"
    assert engine.promote(QUEUE) >= 1                                              # backoff 0 minutes
    claimed = call(server, "POST", "/v1/executions/claim", json={"worker_id": "w-1"}).json()
    assert claimed["claimed"]
    second = claimed["execution_id"]
    sdk.executions.report_outcome(second, success=True, result="ok", metadata={"rows": 3})
    info = engine.get(QUEUE, second)
    assert info.state == "done" and info.result == {"result": "ok", "metadata": {"rows": 3}}
    r = call(server, "POST", f"/v1/executions/{second}/heartbeat")
    assert r.status_code == 409 and r.json()["error"]["code"] == "execution_not_claiming"
    listed = sdk.executions.list(cue_id=cue.id, status="success")
    assert second in [e["id"] for e in listed["executions"]]


def test_worker_heartbeat_registers_and_extends_claims(sdk, server):
    _, engine, _ = server
    sdk.cues.create("hb", cron="* * * * * *", transport="worker", payload={"task": "hb"})
    wait_for(lambda: call(server, "GET", "/v1/executions/claimable").json()["executions"], 5, "a fire")
    r = call(server, "POST", "/v1/worker/heartbeat", json={"worker_id": "w-hb", "handlers": ["hb"]})
    assert r.status_code == 200 and r.json()["acknowledged"]
    assert "w-hb" in [w.id for w in engine.workers()]
    eid = call(server, "POST", "/v1/executions/claim", json={"worker_id": "w-hb"}).json()["execution_id"]
    before = engine.get(QUEUE, eid).lease_expires_at
    time.sleep(0.05)
    call(server, "POST", "/v1/worker/heartbeat", json={"worker_id": "w-hb"})
    assert engine.get(QUEUE, eid).lease_expires_at > before
    [w] = [w for w in engine.workers() if w.id == "w-hb"]
    assert w.jobs_in_progress == [eid]
    assert "w-hb" in [w["worker_id"] for w in call(server, "GET", "/v1/workers").json()["workers"]]
    assert call(server, "DELETE", "/v1/workers/w-hb", key=ADMIN).status_code == 204
    assert engine.get(QUEUE, eid).state == "ready"                     # its claim given back
    assert call(server, "DELETE", "/v1/workers/w-hb", key=ADMIN).status_code == 404


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_claim_id_script(backend, redis_url):
    engine = redispool.connect("memory://" if backend == "memory" else redis_url, prefix=f"cid{time.time_ns()}")
    a, b = engine.enqueue("q", {"n": 1}), engine.enqueue("q", {"n": 2}, delay=60)
    job = claim_by_id(engine, "q", a, "w", 30)
    assert (job.id, job.payload, job.attempt, job.worker_id) == (a, {"n": 1}, 1, "w")
    info = engine.get("q", a)
    assert info.state == "leased" and info.lease_expires_at == pytest.approx(job.lease_expires_at)
    assert claim_by_id(engine, "q", a, "w2", 30) is None                 # leased already
    assert claim_by_id(engine, "q", b, "w", 30) is None                  # scheduled, not ready
    assert claim_by_id(engine, "q", "nope", "w", 30) is None
    engine.complete(job, "ok")
    c = engine.enqueue("q", 3)
    engine.pause("q")
    assert claim_by_id(engine, "q", c, "w", 30) is None                  # a paused queue hands out nothing
    engine.resume("q")
    assert claim_by_id(engine, "q", c, "w", 30).attempt == 1
    assert engine.stats("q")["ready"] == 0 and engine.stats("q")["leased"] == 1


# ---------------------------------------------------------------------- error answers
def test_auth_and_roles(server):
    with pytest.raises(AuthenticationError):
        CueAPI("cue_sk_unknown_000000", base_url=server[0] + "/compat/cueapi").cues.list()
    r = call(server, "GET", "/v1/executions/claimable", key=None)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(CueLimitExceededError):                            # their client's name for 403
        CueAPI(WORKER, base_url=server[0] + "/compat/cueapi").cues.create("x", cron="* * * * *", transport="worker")
    assert call(server, "GET", "/v1/executions/claimable", key=READ).status_code == 403
    assert call(server, "GET", "/v1/cues", key=READ).status_code == 200


@pytest.mark.parametrize("method,path,body,status,code", [
    ("POST", "/v1/cues", {"name": "w", "schedule": {"type": "recurring", "cron": "* * * * *"}}, 400,
     "validation_error"),                                       # webhook (the default) needs a callback
    ("POST", "/v1/cues", {"name": "w", "schedule": {"type": "recurring", "cron": "* * * * *"},
                          "callback": {"url": "ftp://x.example/hook"}}, 400, "validation_error"),
    ("POST", "/v1/cues", {"name": "w", "schedule": {"type": "recurring", "cron": "* * * * *"},
                          "callback": {"url": "http://x.example/hook", "headers": {"Bad Name": "v"}}},
     400, "validation_error"),
    ("POST", "/v1/cues", {"name": "w", "transport": "pigeon", "schedule": {"type": "recurring", "cron": "* * * * *"}},
     400, "unsupported_transport"),
    ("POST", "/v1/cues/cue_nope/fire", {}, 404, "cue_not_found"),
    ("POST", "/v1/auth/webhook-secret/regenerate", None, 400, "confirmation_required"),
    ("POST", "/v1/cues", {"name": "w", "transport": "worker", "schedule": {"type": "recurring", "cron": "61 * * * *"}},
     400, "invalid_schedule"),
    ("POST", "/v1/cues", {"name": "w", "transport": "worker",
                          "schedule": {"type": "recurring", "cron": "* * * * *", "timezone": "Mars/Base"}},
     400, "invalid_schedule"),
    *[("POST", "/v1/cues", {"name": "w", "transport": "worker", "schedule": {**schedule, "timezone": tz}},
       400, "invalid_schedule")   # a directory of the zone files, a name too long for a file: were 503s
      for schedule in ({"type": "recurring", "cron": "* * * * *"}, {"type": "once", "at": "2030-01-01T00:00:00Z"})
      for tz in ("Etc", "a" * 300, "localtime")],   # and each host's own clock: not for a new cue (native's rule)
    ("POST", "/v1/cues", {"name": "w", "transport": "worker", "schedule": {"type": "once", "at": "soon"}}, 400,
     "invalid_schedule"),
    ("POST", "/v1/cues", {"transport": "worker", "schedule": {"type": "once"}}, 422, "validation_error"),
    ("POST", "/v1/cues", {"name": "w", "transport": "worker", "schedule": {"cron": "* * * * *"},
                          "retry": {"max_attempts": 0}}, 400, "validation_error"),
    ("POST", "/v1/cues", "not json", 400, "invalid_json"),
    ("GET", "/v1/cues/cue_nope", None, 404, "cue_not_found"),
    ("PATCH", "/v1/cues/cue_nope", {"status": "paused"}, 404, "cue_not_found"),
    ("GET", "/v1/cues?limit=500", None, 400, "validation_error"),
    ("POST", "/v1/executions/nope/claim", {"worker_id": "w"}, 404, "execution_not_found"),
    ("POST", "/v1/executions/nope/claim", {}, 422, "validation_error"),
    ("POST", "/v1/executions/nope/heartbeat", None, 404, "execution_not_found"),
    ("POST", "/v1/executions/nope/outcome", {"success": True}, 404, "execution_not_found"),
    ("POST", "/v1/executions/nope/outcome", {"result": "x"}, 422, "validation_error"),
    ("POST", "/v1/executions/nope/outcome", {"success": True, "result": "x" * 2001}, 400, "validation_error"),
    ("GET", "/v1/executions/nope", None, 404, "execution_not_found"),
    ("GET", "/v1/executions?status=weird", None, 400, "validation_error"),
    ("POST", "/v1/executions/claim", {"worker_id": "has space"}, 400, "validation_error"),
    ("POST", "/v1/worker/heartbeat", {}, 422, "validation_error"),
    ("GET", "/v1/nothing/here", None, 404, "not_found"),
])
def test_bad_requests_answer_in_the_services_shape(server, method, path, body, status, code):
    _, engine, _ = server
    cues_before = engine.cues(QUEUE)
    kw = {"content": body} if isinstance(body, str) else {"json": body} if body is not None else {}
    r = call(server, method, path, key=ADMIN, **kw)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert (err["code"], err["status"]) == (code, status) and err["message"]
    assert engine.cues(QUEUE) == cues_before


@pytest.mark.parametrize("job_id", ["cue:x:99999999999999999999", "cue:x:\u00b2", "cue:x:\u0663"])
def test_a_job_id_like_a_fire_but_not_one_is_listed_as_a_plain_execution(sdk, server, job_id):
    """Any producer may put a job in the cueapi queue: an id shaped ``cue:<id>:<ms>`` whose
    ms is past any date ('99...9': 503 'Redis cannot be reached', from the OSError of a
    time that large) or other digits than ASCII ('²': 500) broke every listing."""
    _, engine, _ = server
    engine.enqueue(QUEUE, {"task": "t"}, job_id=job_id)
    r = call(server, "GET", "/v1/executions", key=ADMIN)
    assert r.status_code == 200, r.text
    [ex] = [e for e in r.json()["executions"] if e["id"] == job_id]
    assert ex["cue_id"] is None and ex["status"] == "pending"
    assert call(server, "GET", "/v1/executions/" + job_id, key=ADMIN).json()["id"] == job_id


def test_nothing_to_claim_is_409(sdk, server):
    r = call(server, "POST", "/v1/executions/claim", json={"worker_id": "w"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "claim_failed"
