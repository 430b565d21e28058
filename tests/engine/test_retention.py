"""Per-queue retention stored in Redis (honoured by every process, the CLI daemons too),
dropping payloads and big results of done jobs, and the job-record rules next to it:
naive run_at, replay vs unique_key, payloads that cannot be decoded, damaged job hashes.

Engine tests run on every backend (memory://, a real redis-server, a cluster); the CLI
ones on the session's redis-server, the daemons as real subprocesses."""
from __future__ import annotations

import functools
import json
import logging
import os
import signal
import subprocess
import sys
import uuid

import msgpack
import pytest
from click.testing import CliRunner

import redispool
from redispool import InvalidOption, PayloadError, codec, defaults
from redispool.cli import cli
from redispool.compat.cueapi import claim_by_id
from redispool.keys import STATES

from support import ROOT
from support.cli import cli_process, invoke
from support.waiting import wait_for


def finish(engine, queue: str, n: int, how: str = "complete", result=None) -> list[str]:
    """Enqueue n jobs and take each to done (complete/ack), dead (fail) or cancelled."""
    ids = engine.enqueue_many(queue, range(n), max_attempts=1)
    if how == "cancel":
        for job_id in ids:
            engine.cancel(queue, job_id)
        return ids
    for start in range(0, n, 1000):
        jobs = engine.claim(queue, "w", limit=min(1000, n - start))
        if how == "complete":
            for job in jobs:
                engine.complete(job, result)
        elif how == "ack":
            engine.ack(queue, completed=[(job, result) for job in jobs])
        elif how == "fail":
            for job in jobs:
                engine.fail(job, "boom")
        else:
            engine.ack(queue, failed=[(job, "boom") for job in jobs])
    return ids


def where(engine, queue: str, job_id: str) -> list[str]:
    """The state sets holding ``job_id`` (exactly one for every job that exists)."""
    k = engine.keys(queue)
    return [s for s in STATES if engine.client.zscore(k.state(s), job_id) is not None]


# ---------------------------------------------------------------- §4 stored retention
def test_set_retention_stores_replaces_and_shows_in_stats(make_engine):
    app, other = make_engine(done_max=50_000), make_engine(dead_ttl=60)
    got = app.set_retention("q", done_max=50_000, dead_ttl=30 * 86400, keep_payload=False, result_max=1000)
    assert got["stored"] == {"done_max": 50_000, "dead_ttl": 30 * 86400.0, "keep_payload": False,
                             "result_max": 1000}
    seen = other.retention("q")   # what another process applies: the stored settings, its own default otherwise
    assert (seen["done_max"], seen["dead_ttl"], seen["done_ttl"], seen["dead_max"]) == (
        50_000, 30 * 86400.0, defaults.DONE_TTL_S, defaults.DEAD_MAX)
    assert (seen["keep_payload"], seen["result_max"]) == (False, 1000)
    assert other.stats("q")["retention"] == seen
    replaced = app.set_retention("q", done_ttl=10)   # each call replaces what was stored
    assert replaced["stored"] == {"done_ttl": 10.0}
    assert (replaced["done_max"], replaced["keep_payload"], replaced["result_max"]) == (50_000, True, None)
    assert app.set_retention("q")["stored"] == {}
    assert "q" in other.queues()


@pytest.mark.parametrize("bad", [{"done_ttl": -1}, {"done_ttl": "60"}, {"dead_ttl": float("nan")},
                                 {"done_max": -1}, {"done_max": 1.5}, {"dead_max": True},
                                 {"keep_payload": "no"}, {"result_max": -5}, {"result_max": 2 ** 60}])
def test_bad_retention_values_raise_and_change_nothing(engine, bad):
    engine.set_retention("q", done_max=7, keep_payload=False)
    with pytest.raises(InvalidOption):
        engine.set_retention("q", **{"done_max": 9, **bad})
    assert engine.retention("q")["stored"] == {"done_max": 7, "keep_payload": False}
    with pytest.raises(TypeError):
        engine.set_retention("q", done_mx=5)


@pytest.mark.parametrize("how", ["complete", "ack"])
def test_stored_done_max_wins_over_the_finishing_engines_default(make_engine, how):
    make_engine().set_retention("q", done_max=6)
    worker = make_engine(done_max=2)            # its own default would keep 2
    finish(worker, "q", 9, how)
    assert worker.stats("q")["done"] == 6
    make_engine().set_retention("small", done_max=1)
    finish(make_engine(done_max=100), "small", 5, how)   # and a smaller stored one too
    assert worker.stats("small")["done"] == 1


@pytest.mark.parametrize("how", ["fail", "ack_fail"])
def test_stored_dead_max_wins_in_fail_and_ack(make_engine, how):
    make_engine().set_retention("q", dead_max=3)
    worker = make_engine(dead_max=1)
    finish(worker, "q", 5, how)
    assert worker.stats("q")["dead"] == 3


def test_stored_retention_wins_in_cancel(make_engine):
    make_engine().set_retention("q", done_max=3)
    engine = make_engine(done_max=1)
    finish(engine, "q", 5, "cancel")
    assert engine.stats("q")["cancelled"] == 3


def test_sweep_trims_by_the_stored_retention(make_engine):
    filler = make_engine(done_max=1000, dead_max=1000)
    finish(filler, "keep", 60)
    finish(filler, "keep", 45, "fail")
    finish(filler, "short", 5)
    filler.set_retention("keep", done_max=50, dead_max=40)
    filler.set_retention("short", done_ttl=0.2)
    sweeper = make_engine(done_max=10, dead_max=10)     # a daemon with other defaults
    sweeper.sweep("keep")
    assert (sweeper.stats("keep")["done"], sweeper.stats("keep")["dead"]) == (50, 40)
    wait_for(lambda: sweeper.sweep("short") >= 0 and sweeper.stats("short")["done"] == 0, 10,
             "the stored 0.2 s done_ttl (the sweeper's default is 1 h)")


# ---------------------------------------------------------------- §6 payloads and results
@pytest.mark.parametrize("how", ["complete", "ack"])
def test_keep_payload_false_drops_the_payload_of_done_jobs_only(engine, how):
    engine.set_retention("q", keep_payload=False)
    payload = {"blob": "x" * 5000}
    done_id = engine.enqueue("q", payload)
    [job] = engine.claim("q", "w")
    if how == "ack":
        engine.ack("q", completed=[(job, "ok")])
    else:
        engine.complete(job, "ok")
    info = engine.get("q", done_id)
    assert info.state == "done" and info.result == "ok" and info.result_dropped is None
    assert info.payload is None and info.payload_dropped == len(codec.encode(payload))
    assert engine.client.hget(engine.keys("q").job(done_id), "p") is None
    dead_id = engine.enqueue("q", payload, max_attempts=1)
    engine.fail(engine.claim("q", "w")[0], "boom")
    dead = engine.get("q", dead_id)
    assert dead.payload == payload and dead.payload_dropped is None, "a dead job keeps its payload (replay)"


@pytest.mark.parametrize("how", ["complete", "ack"])
def test_result_max_stores_no_bigger_result_and_get_says_so(engine, how):
    engine.set_retention("q", result_max=100)
    big, small = "r" * 200, {"ok": True}
    ids = engine.enqueue_many("q", [1, 2])
    jobs = engine.claim("q", "w", limit=2)
    if how == "ack":
        engine.ack("q", completed=[(jobs[0], big), (jobs[1], small)])
    else:
        engine.complete(jobs[0], big)
        engine.complete(jobs[1], small)
    dropped, kept = engine.get("q", ids[0]), engine.get("q", ids[1])
    assert dropped.result is None and dropped.result_dropped == len(codec.encode(big))
    assert dropped.payload == 1, "the payload stays (keep_payload not set)"
    assert kept.result == small and kept.result_dropped is None
    engine.set_retention("q", result_max=0)                     # 0: no result at all
    engine.enqueue("q", 3)
    [job] = engine.claim("q", "w")
    engine.complete(job, None)
    assert engine.get("q", job.id).result_dropped == 1


# ---------------------------------------------------------------- §7 naive run_at
NAIVE = """
import datetime as dt, sys, time, redispool
pool = redispool.connect(sys.argv[1], prefix=sys.argv[2])
naive = pool.enqueue("naive", None, run_at=dt.datetime.now() + dt.timedelta(hours=1))
aware = pool.enqueue("naive", None, run_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2))
print(time.time(), pool.get("naive", naive).state, pool.get("naive", naive).run_at, pool.get("naive", aware).run_at)
"""


@pytest.mark.parametrize("tz", ["America/New_York", "Asia/Tokyo", "UTC"])
def test_naive_run_at_is_local_time(redis_url, tz):
    prefix = f"tz{uuid.uuid4().hex[:8]}"
    out = subprocess.run([sys.executable, "-c", NAIVE, redis_url, prefix], check=False, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "TZ": tz, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    now, state, naive_at, aware_at = out.stdout.split()
    assert state == "scheduled"
    assert abs(float(naive_at) - (float(now) + 3600)) < 60, "an hour from now, as datetime.timestamp() reads it"
    assert abs(float(aware_at) - (float(now) + 7200)) < 60


# ---------------------------------------------------------------- §8 replay vs unique_key
def dead_job(engine, queue: str, payload, **options) -> str:
    job_id = engine.enqueue(queue, payload, max_attempts=1, **options)
    [job] = engine.claim(queue, "w")
    assert job.id == job_id
    engine.fail(job, "x")
    return job_id


def test_replay_refuses_a_job_whose_unique_key_another_unfinished_job_holds(engine, caplog):
    a = dead_job(engine, "uk", {"v": 1}, unique_key="nightly")
    b = engine.enqueue("uk", {"v": 2}, unique_key="nightly")        # b holds the key now
    with caplog.at_level(logging.WARNING, logger="redispool.engine"):
        assert engine.replay_dead("uk", [a]) == 0
        assert engine.replay_dead("uk") == 0                          # "retry all dead" too
    assert any("stay dead" in r.getMessage() and a in r.getMessage() for r in caplog.records)
    info = engine.get("uk", a)
    assert info.state == "dead" and where(engine, "uk", a) == ["dead"]
    assert info.error == f"not replayed: unique key nightly is held by unfinished job {b}"
    assert [e for _, e, _ in info.errors].count("x") == 1, "its own error is kept"
    assert engine.client.hget(engine.keys("uk").unique, "nightly").decode() == b
    assert engine.enqueue("uk", {"v": 3}, unique_key="nightly") == b
    [job] = engine.claim("uk", "w")
    engine.complete(job)                                              # b finished: the key is free
    assert engine.replay_dead("uk", [a]) == 1
    assert engine.get("uk", a).state == "ready"
    assert engine.enqueue("uk", {"v": 4}, unique_key="nightly") == a, "the replayed job holds the key again"


def test_replay_of_two_dead_jobs_sharing_a_key_replays_one(engine):
    first = dead_job(engine, "uk", 1, unique_key="k")
    second = dead_job(engine, "uk", 2, unique_key="k")
    assert engine.replay_dead("uk") == 1
    assert (engine.get("uk", first).state, engine.get("uk", second).state) == ("ready", "dead")


def test_replay_all_goes_past_refused_jobs_in_front(engine):
    refused = dead_job(engine, "q", 0, unique_key="k")
    engine.enqueue("q", 1, unique_key="k", delay=3600)               # holds k, stays out of the way
    ids = engine.enqueue_many("q", range(1200), max_attempts=1)
    for _ in range(0, 1200, 1000):
        jobs = engine.claim("q", "w", limit=1000)
        engine.ack("q", failed=[(job, "boom") for job in jobs])
    assert engine.stats("q")["dead"] == 1201
    assert engine.replay_dead("q") == 1200
    stats = engine.stats("q")
    assert (stats["dead"], stats["ready"]) == (1, 1200) and engine.get("q", refused).state == "dead"
    assert {where(engine, "q", i)[0] for i in ids} == {"ready"}


def test_cli_replay_all_leaves_the_refused_job_dead(redis_url):
    """`redispool replay --all` (and the dashboard's "retry all dead") run replay_dead."""
    prefix = f"r{uuid.uuid4().hex[:8]}"
    engine = redispool.connect(redis_url, prefix=prefix)
    try:
        a = dead_job(engine, "uk", 1, unique_key="k")
        other = dead_job(engine, "uk", 2)
        engine.enqueue("uk", 3, unique_key="k")
        result = CliRunner().invoke(cli, ["--url", redis_url, "--prefix", prefix, "replay", "uk", "--all"],
                                    catch_exceptions=False)
        assert result.exit_code == 0 and result.stdout.strip() == "replayed 1"
        assert (engine.get("uk", a).state, engine.get("uk", other).state) == ("dead", "ready")
    finally:
        engine.close()


# ---------------------------------------------------------------- §9 payloads that cannot be decoded
@pytest.mark.parametrize("payload", [{("us", "east"): 5}, {"deep": [{"x": {(1, 2): 3}}]}])
def test_enqueue_refuses_a_payload_that_cannot_be_decoded(engine, payload):
    with pytest.raises(PayloadError, match="cannot be decoded again: a map key decodes to a list"):
        engine.enqueue("q", payload)
    with pytest.raises(PayloadError):
        engine.enqueue_many("q", [{"fine": 1}, payload])
    with pytest.raises(PayloadError):
        engine.enqueue_many("q", [payload, {"fine": 1}])
    assert engine.stats("q")["ready"] == 0, "nothing half-written"
    assert engine.get("q", engine.enqueue("q", {"us": [1, 2], 3: (4, 5)})).payload == {"us": [1, 2], 3: [4, 5]}


def test_a_stored_payload_with_an_unusable_map_key_says_so(engine):
    job_id = engine.enqueue("q", 1)
    engine.client.hset(engine.keys("q").job(job_id), "p", msgpack.packb({("us", "east"): 5}))
    assert engine.claim("q", "w") == []
    info = engine.get("q", job_id)
    assert info.state == "dead" and "not valid msgpack" not in info.error
    assert "map key decodes to a list" in info.error and info.error.startswith("PayloadError: stored payload")


# ---------------------------------------------------------------- damaged job hashes
DAMAGE = [("p", None), ("p", b"\xc1"), ("p", msgpack.packb({(1, 2): 3})), ("m", None), ("m", "three"),
          ("m", "nan"), ("l", "soon"), ("l", "0"), ("l", "inf"), ("a", "many"), ("a", "1.5"), ("a", "-1"),
          ("a", " 1"), ("a", "1e3"), ("bb", "fast"), ("bc", "nan")]


@pytest.mark.parametrize("field,value", DAMAGE, ids=[f"{f}={v!r}" for f, v in DAMAGE])
@pytest.mark.parametrize("via", ["claim", "claim_id"])
def test_a_damaged_job_goes_dead_and_never_ends_in_no_set(engine, field, value, via):
    ids = engine.enqueue_many("q", ["before", "damaged", "after"], lease=30)
    k = engine.keys("q")
    if value is None:
        engine.client.hdel(k.job(ids[1]), field)
    else:
        engine.client.hset(k.job(ids[1]), field, value)
    if via == "claim":
        got = [j.id for j in engine.claim("q", "w", limit=3)]
        assert got == [ids[0], ids[2]], "the jobs claimed with it are leased as usual"
    else:
        assert claim_by_id(engine, "q", ids[1], "w", 30) is None
        assert claim_by_id(engine, "q", ids[1], "w", 30) is None     # and stays out of reach
        assert [claim_by_id(engine, "q", i, "w", 30).id for i in (ids[0], ids[2])] == [ids[0], ids[2]]
    assert where(engine, "q", ids[1]) == ["dead"]
    info = engine.get("q", ids[1])
    assert info.state == "dead" and (info.error.startswith("malformed job: ") or "PayloadError" in info.error)
    assert [where(engine, "q", i) for i in (ids[0], ids[2])] == [["leased"], ["leased"]]
    stats = engine.stats("q")
    assert (stats["dead"], stats["leased"], stats["ready"]) == (1, 2, 0)


# ---------------------------------------------------------------- CLI
@pytest.fixture
def prefix() -> str:
    return f"c{uuid.uuid4().hex[:10]}"


@pytest.fixture
def run(redis_url, prefix):
    return functools.partial(invoke, redis_url, prefix)


def test_retention_command_shows_and_sets(run, redis_url, prefix):
    shown = run("retention", "q").stdout
    assert "done_max" in shown and "10000" in shown and "stored" not in shown
    run("retention", "q", "--done-max", "50000", "--drop-payloads", "--result-max", "1000")
    got = json.loads(run("retention", "q", "--dead-ttl", "60", "--json").stdout)   # changes just that one
    assert got["stored"] == {"done_max": 50000, "keep_payload": False, "result_max": 1000, "dead_ttl": 60.0}
    assert "stored" in run("retention", "q").stdout
    got = json.loads(run("retention", "q", "--keep-payloads", "--json").stdout)
    assert "keep_payload" not in got["stored"] and got["keep_payload"] is True
    assert json.loads(run("retention", "q", "--clear", "--json").stdout)["stored"] == {}
    for bad in (["--done-ttl", "-1"], ["--done-max", "-1"], ["--dead-ttl", "nan"], ["--result-max", "x"]):
        run("retention", "q", *bad, code=2)
    run("retention", "bad queue", code=2)
    engine = redispool.connect(redis_url, prefix=prefix)
    assert engine.retention("q")["stored"] == {}
    engine.close()


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, err
    return err


@pytest.mark.slow
def test_cli_sweeper_honours_the_stored_retention(redis_url, prefix):
    """The probe's scenario: an app keeps 50,000 done jobs (stored), 12,000 are done, and
    `redispool sweeper` with its default retention (10,000) runs: the stored queue keeps
    all 12,000, a queue whose app only passed connect(done_max=50000) is cut to the
    sweeper's default, and a stored shorter done_ttl empties its queue."""
    app = redispool.connect(redis_url, prefix=prefix, done_max=50_000)
    try:
        app.set_retention("keep", done_max=50_000, dead_ttl=30 * 86400)
        finish(app, "keep", 12_000, "ack")
        finish(app, "unstored", 12_000, "ack")
        app.set_retention("short", done_ttl=1)
        finish(app, "short", 20, "ack")
        proc = cli_process("--url", redis_url, "--prefix", prefix, "sweeper", "--interval", "0.1")
        try:
            wait_for(lambda: app.stats("unstored")["done"] == 10_000, 60, "the sweeper to trim the unstored queue")
            wait_for(lambda: app.stats("short")["done"] == 0, 60, "the stored 1 s done_ttl")
        finally:
            stop(proc)
        assert app.stats("keep")["done"] == 12_000
    finally:
        app.close()


def test_daemon_retention_options_and_env_apply_to_queues_without_stored_retention(redis_url, prefix, tmp_path):
    app = redispool.connect(redis_url, prefix=prefix, done_max=1000)
    try:
        finish(app, "a", 30, "ack")
        app.set_retention("stored", done_max=25)
        finish(app, "stored", 30, "ack")
        proc = cli_process("--url", redis_url, "--prefix", prefix, "sweeper", "--interval", "0.1",
                           "--done-max", "10", env={defaults.DONE_MAX_ENV: "20"})
        try:
            wait_for(lambda: app.stats("a")["done"] == 10, 30, "sweeper --done-max 10")
        finally:
            stop(proc)
        assert app.stats("stored")["done"] == 25
        proc = cli_process("--url", redis_url, "--prefix", prefix, "sweeper", "--interval", "0.1",
                           env={defaults.DONE_MAX_ENV: "5"})
        try:
            wait_for(lambda: app.stats("a")["done"] == 5, 30, "REDISPOOL_DONE_MAX=5")
        finally:
            stop(proc)
        assert app.stats("stored")["done"] == 25
        (tmp_path / "retapp.py").write_text(
            "import redispool\nworker = redispool.Worker(redispool.connect(done_max=1000), queues=['w'])\n"
            "worker.process(lambda job: job.payload)\n")
        app.enqueue_many("w", range(30))
        proc = cli_process("--url", redis_url, "--prefix", prefix, "worker", "retapp:worker", "--burst",
                           "--done-max", "3", cwd=tmp_path)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert app.stats("w")["totals"]["completed"] == 30 and app.stats("w")["done"] == 3
        bad = cli_process("--url", redis_url, "--prefix", prefix, "sweeper", "--done-ttl", "-5")
        _, err = bad.communicate(timeout=30)
        assert bad.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err
    finally:
        app.close()
