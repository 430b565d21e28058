"""The worker runtime, in-process, on memory:// and a real redis-server.

(Real worker processes killed mid-job are in test_worker_crash.py.)
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

import redispool
from redispool import Worker
from redispool.sweeper import Sweeper
from redispool.waiter import is_cluster

from support.servers import RedisServer, free_port
from support.waiting import running, wait_for

QUICK = dict(idle_wait=0.2, beat_interval=0.1)


def state(engine, queue: str, job_id: str) -> str | None:
    info = engine.get(queue, job_id)
    return info.state if info else None


def worker_events(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "redispool.worker" and hasattr(r, "event")]


# ---------------------------------------------------------------- handlers
def test_handlers_per_queue_and_catch_all(engine):
    ids = {q: engine.enqueue(q, {"n": i}) for i, q in enumerate(["a", "b", "c"])}
    worker = Worker(engine, queues=["a", "b", "c"], **QUICK)

    @worker.process("a")
    def only_a(job):
        return ["a", job.payload["n"]]

    @worker.process
    def any_queue(job):
        return ["any", job.queue, job.payload["n"]]

    worker.run(burst=True)
    assert engine.get("a", ids["a"]).result == ["a", 0]
    assert engine.get("b", ids["b"]).result == ["any", "b", 1]
    assert engine.get("c", ids["c"]).result == ["any", "c", 2]


def test_async_and_sync_handlers_side_by_side(engine):
    async_ids = engine.enqueue_many("aio", range(5))
    sync_id = engine.enqueue("plain", "x")
    worker = Worker(engine, queues=["aio", "plain"], **QUICK)

    @worker.process("aio")
    async def coroutine(job):
        await asyncio.sleep(0.01)
        return {"n": job.payload, "loop": asyncio.get_running_loop().is_running()}

    @worker.process("plain")
    def plain(job):
        return threading.current_thread().name

    worker.run(burst=True)
    assert [engine.get("aio", i).result for i in async_ids] == [{"n": n, "loop": True} for n in range(5)]
    assert engine.get("plain", sync_id).result.startswith("redispool-")


def test_job_fields_reach_the_handler(engine):
    job_id = engine.enqueue("q", {"k": [1, 2]}, max_attempts=5)
    worker = Worker(engine, queues=["q"], lease=12, **QUICK)
    seen = []

    @worker.process
    def handle(job):
        seen.append(job)

    worker.run(burst=True)
    [job] = seen
    assert (job.id, job.queue, job.payload, job.attempt, job.max_attempts, job.worker_id, job.lease) == \
        (job_id, "q", {"k": [1, 2]}, 1, 5, worker.id, 12.0)


@pytest.mark.parametrize("queues", [["q"], ["q", "other"]], ids=["one-queue", "two-queues"])
def test_exceptions_retry_then_go_dead_with_the_error(make_engine, queues):
    engine = make_engine(backoff_base=0.01, backoff_cap=0.02)
    job_id = engine.enqueue("q", "x", max_attempts=3)
    worker = Worker(engine, queues=queues, **QUICK)
    attempts = []

    @worker.process
    def boom(job):
        attempts.append(job.attempt)
        raise ValueError(f"boom {job.attempt}")

    with running(worker):  # no scheduler: the worker itself picks up the due retries
        wait_for(lambda: state(engine, "q", job_id) == "dead", what="the job to go dead")
    info = engine.get("q", job_id)
    assert attempts == [1, 2, 3]
    assert info.error == "ValueError: boom 3"
    assert [e[:2] for e in info.errors] == [(3, "ValueError: boom 3"), (2, "ValueError: boom 2"),
                                            (1, "ValueError: boom 1")]
    assert engine.stats("q")["totals"]["retried"] == 2


def test_a_result_that_cannot_be_stored_fails_the_job(engine):
    job_id = engine.enqueue("q", None, max_attempts=1)
    worker = Worker(engine, queues=["q"], **QUICK)
    worker.process(lambda job: object())
    worker.run(burst=True)
    info = engine.get("q", job_id)
    assert info.state == "dead"
    assert info.error.startswith("PayloadError: result cannot be encoded")


# ---------------------------------------------------------------- concurrency
def test_sync_handlers_run_in_parallel_up_to_concurrency(engine):
    barrier = threading.Barrier(4, timeout=10)  # breaks (failing the jobs) unless 4 run at once
    lock = threading.Lock()
    active, peak = [0], [0]
    engine.enqueue_many("q", range(8))
    worker = Worker(engine, queues=["q"], concurrency=4, **QUICK)

    @worker.process
    def meet(job):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        barrier.wait()
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return "met"

    worker.run(burst=True)
    totals = engine.stats("q")["totals"]
    assert (totals["completed"], totals["failed"]) == (8, 0)
    assert peak[0] == 4


def test_async_handlers_run_concurrently(engine):
    engine.enqueue_many("q", range(3))
    worker = Worker(engine, queues=["q"], concurrency=3, **QUICK)
    arrived, gate = [0], []

    @worker.process
    async def meet(job):
        if not gate:
            gate.append(asyncio.Event())
        arrived[0] += 1
        if arrived[0] == 3:
            gate[0].set()
        await asyncio.wait_for(gate[0].wait(), 10)  # times out (failing) unless all 3 run at once
        return "met"

    worker.run(burst=True)
    totals = engine.stats("q")["totals"]
    assert (totals["completed"], totals["failed"]) == (3, 0)


# ---------------------------------------------------------------- leases
def test_heartbeats_keep_a_long_job_alive_past_its_lease(redis_engine):
    engine = redis_engine
    job_id = engine.enqueue("q", "long")
    worker = Worker(engine, queues=["q"], lease=0.6, **QUICK)

    @worker.process
    def slow(job):
        time.sleep(2.0)  # more than three leases
        return job.attempt

    with running(Sweeper(engine, interval=0.05)), running(worker):
        wait_for(lambda: state(engine, "q", job_id) == "done", what="the long job")
    info = engine.get("q", job_id)
    assert (info.result, info.attempts, info.errors) == (1, 1, [])


def test_a_lease_lost_while_running_is_noticed_by_the_heartbeat(redis_engine, caplog):
    caplog.set_level(logging.INFO, logger="redispool.worker")
    engine = redis_engine
    job_id = engine.enqueue("q", "x")
    started, release = threading.Event(), threading.Event()
    worker = Worker(engine, queues=["q"], concurrency=1, lease=0.4, **QUICK)

    @worker.process
    def handle(job):
        if job.attempt == 1:
            started.set()
            release.wait(10)
            return "first"
        return "second"

    with running(worker):
        assert started.wait(10)
        assert engine.sweep("q", worker_id=worker.id) == 1  # as if the worker had vanished
        wait_for(lambda: any(r.event == "lease lost" for r in worker_events(caplog)), what="lease lost")
        release.set()
        wait_for(lambda: state(engine, "q", job_id) == "done", what="the second attempt")
    info = engine.get("q", job_id)
    assert (info.result, info.attempts) == ("second", 2)
    assert info.errors[-1][1] == f"worker {worker.id} stopped heartbeating"
    events = [(r.event, getattr(r, "job_id", None), getattr(r, "attempt", None)) for r in worker_events(caplog)]
    assert [e for e in events if e[0] in ("done", "lease lost")] == [
        ("lease lost", job_id, 1), ("done", job_id, 2)], "the lost job was dropped at once"


def test_a_lease_lost_before_the_ack_stores_nothing(engine, caplog):
    caplog.set_level(logging.INFO, logger="redispool.worker")
    job_id = engine.enqueue("q", "x")
    started, release = threading.Event(), threading.Event()
    worker = Worker(engine, queues=["q"], concurrency=1, lease=30, **QUICK)

    @worker.process
    def handle(job):
        if job.attempt == 1:
            started.set()
            release.wait(10)
            return "first"
        return "second"

    with running(worker):
        assert started.wait(10)
        engine.sweep("q", worker_id=worker.id)
        release.set()
        wait_for(lambda: state(engine, "q", job_id) == "done", what="the second attempt")
    assert engine.get("q", job_id).result == "second"
    lost = [(r.job_id, r.attempt) for r in worker_events(caplog) if r.event == "lease lost"]
    assert lost == [(job_id, 1)]


# ---------------------------------------------------------------- registry
def test_worker_registers_reports_counts_and_deregisters(engine):
    gate = threading.Event()
    engine.enqueue_many("q", ["ok", "ok", "ok"])
    engine.enqueue("q", "fail", max_attempts=1)
    block_id = engine.enqueue("q", "block")
    worker = Worker(engine, queues=["q"], concurrency=2, **QUICK)

    @worker.process
    def handle(job):
        if job.payload == "block":
            gate.wait(10)
        if job.payload == "fail":
            raise RuntimeError("no")
        return job.payload

    def mine():
        return next((w for w in engine.workers() if w.id == worker.id), None)

    with running(worker):
        wait_for(lambda: (w := mine()) is not None and (w.processed, w.failed) == (4, 1)
                   and w.jobs_in_progress == [f"q/{block_id}"], what="the registry to show the counts")
        info = mine()
        assert (info.host, info.pid, info.queues) == (socket.gethostname(), os.getpid(), ["q"])
        assert info.started_at <= info.last_heartbeat
        gate.set()
        wait_for(lambda: (w := mine()) is not None and w.processed == 5 and w.jobs_in_progress == [],
                   what="the last job to be counted")
    assert mine() is None


# ---------------------------------------------------------------- running modes
def test_burst_returns_once_the_queues_are_empty(engine):
    engine.enqueue_many("a", range(25))
    engine.enqueue_many("b", range(5))
    worker = Worker(engine, queues=["a", "b", "empty"], concurrency=3, **QUICK)
    worker.process(lambda job: job.payload)
    worker.run(burst=True)
    assert [engine.stats(q)["totals"]["completed"] for q in ("a", "b", "empty")] == [25, 5, 0]
    assert (worker.processed, worker.failed) == (30, 0)
    assert worker.id not in [w.id for w in engine.workers()]
    with pytest.raises(RuntimeError):
        worker.run(burst=True)


def test_an_idle_worker_is_woken_by_new_jobs_on_any_queue(engine):
    worker = Worker(engine, queues=["a", "b"], idle_wait=2.0, beat_interval=0.1)
    worker.process(lambda job: job.queue)
    with running(worker):
        wait_for(lambda: worker.id in [w.id for w in engine.workers()], what="registration")
        time.sleep(0.1)  # now blocked on both queues' markers
        # picked up well before the 2 s wait would end: woken, not polled
        for queue in ("b", "a", "b"):
            job_id = engine.enqueue(queue, None)
            wait_for(lambda q=queue, j=job_id: state(engine, q, j) == "done", timeout=1.0,
                     what=f"pickup on {queue}")


def test_stop_lets_jobs_finish_within_grace_and_releases_the_rest(engine, caplog):
    caplog.set_level(logging.INFO, logger="redispool.worker")
    finish_id = engine.enqueue("q", "finish")
    hang_id = engine.enqueue("q", "hang")
    started, go, hang = threading.Semaphore(0), threading.Event(), threading.Event()
    worker = Worker(engine, queues=["q"], concurrency=2, grace=0.5, **QUICK)

    @worker.process
    def handle(job):
        started.release()
        (go if job.payload == "finish" else hang).wait(10)
        return job.payload

    try:
        with running(worker):
            assert started.acquire(timeout=10) and started.acquire(timeout=10)
            worker.stop()
            go.set()
        assert state(engine, "q", finish_id) == "done"
        info = engine.get("q", hang_id)
        assert (info.state, info.attempts) == ("ready", 0)
        assert engine.stats("q")["leased"] == 0
        assert worker.id not in [w.id for w in engine.workers()]
        assert [r.job_id for r in worker_events(caplog) if r.event == "released"] == [hang_id]
    finally:
        hang.set()


@pytest.mark.parametrize("woken", [False, True], ids=["plain-wait", "wait-with-claim"])
def test_stop_ends_an_idle_wait_at_once(engine, woken):
    """An idle worker blocks for up to idle_wait (10 s by default; 30 here) per wait;
    stop() ends the wait at once: off Cluster the worker sets its stop key, which the wait
    pops with the queue's marker (a wait sent with its claim, after a job woke the worker,
    too), on Cluster its watchers let go. Nothing is left leased, and the stop key is gone."""
    worker = Worker(engine, queues=["idle"], idle_wait=30, beat_interval=0.1)
    handled = threading.Event()

    @worker.process
    def handle(job):
        handled.set()

    with running(worker) as thread:
        if woken:   # a job wakes the idle worker: its next wait is sent with its claim
            time.sleep(0.3)
            engine.enqueue("idle", 1)
            assert handled.wait(10)
        time.sleep(0.5)   # now blocked in its wait
        stopped = time.monotonic()
        worker.stop()
        thread.join(20)
        took = time.monotonic() - stopped
    assert took < 5, f"stop took {took:.1f}s: the wait (10 s per call) was not ended"
    assert engine.stats("idle")["leased"] == 0
    if not is_cluster(engine.client):
        assert engine.client.exists(engine.keys("idle").stop(worker.id)) == 0


def test_an_idle_worker_refreshes_its_registration_less_often(engine):
    """With jobs in progress the registration is refreshed every beat_interval; idle, with
    nothing new, every third; a claim brings the next refresh back to one interval."""
    worker = Worker(engine, queues=["quiet"], idle_wait=0.2, beat_interval=1.0)
    release = threading.Event()

    @worker.process
    def handle(job):
        release.wait(10)

    def beat() -> float:
        [me] = [w for w in engine.workers() if w.id == worker.id]
        return me.last_heartbeat

    with running(worker):
        wait_for(lambda: [w for w in engine.workers() if w.id == worker.id], what="registration")
        time.sleep(0.5)   # (its first refresh follows the registration at once)
        first = beat()
        time.sleep(1.0)   # idle: no refresh 1 s after the first, the next is 3 s after it
        assert beat() == first
        engine.enqueue("quiet", 1)   # a claim: the refresh is due now, not 1.5 s from now
        wait_for(lambda: [w for w in engine.workers() if w.id == worker.id and w.jobs_in_progress],
                 timeout=1.0, what="the job in progress listed within one interval")
        release.set()


def test_log_lines_are_json_with_log_format_json(engine, caplog):
    caplog.set_level(logging.INFO, logger="redispool.worker")
    ok_id = engine.enqueue("q", "ok")
    bad_id = engine.enqueue("q", "bad", max_attempts=1)
    worker = Worker(engine, queues=["q"], log_format="json", **QUICK)

    @worker.process
    def handle(job):
        if job.payload == "bad":
            raise RuntimeError("bad payload")

    worker.run(burst=True)
    lines = [json.loads(r.getMessage()) for r in worker_events(caplog)]
    assert all(line["worker_id"] == worker.id and "ts" in line and "level" in line for line in lines)
    events = [(line["event"], line.get("job_id")) for line in lines if "job_id" in line]
    for expected in [("claimed", ok_id), ("done", ok_id), ("claimed", bad_id), ("dead", bad_id)]:
        assert expected in events
    assert [e for e in events if e[1] == bad_id] == [("claimed", bad_id), ("dead", bad_id)], \
        "one line per event: no separate 'failed' line before 'dead'"
    [dead] = [line for line in lines if line["event"] == "dead"]
    assert dead["queue"] == "q" and dead["error"] == "RuntimeError: bad payload"
    assert dead["level"] == "ERROR" and "Traceback" in dead["traceback"]


def test_text_log_lines_carry_queue_and_job_id(engine, caplog):
    caplog.set_level(logging.INFO, logger="redispool.worker")
    job_id = engine.enqueue("q", 1)
    worker = Worker(engine, queues=["q"], **QUICK)
    worker.process(lambda job: None)
    worker.run(burst=True)
    messages = [r.getMessage() for r in worker_events(caplog)]
    assert f"claimed queue=q job_id={job_id} attempt=1" in messages
    assert any(m.startswith(f"done queue=q job_id={job_id} attempt=1 duration_ms=") for m in messages)


def test_job_log_level_sets_the_level_of_claimed_and_done_lines_only(redis_engine, caplog):
    caplog.set_level(logging.DEBUG, logger="redispool.worker")
    ok_id = redis_engine.enqueue("q", "ok")
    bad_id = redis_engine.enqueue("q", "bad", max_attempts=1)
    worker = Worker(redis_engine, queues=["q"], job_log_level=logging.DEBUG, **QUICK)

    @worker.process
    def handle(job):
        if job.payload == "bad":
            raise RuntimeError("bad")

    worker.run(burst=True)
    levels = {(r.event, getattr(r, "job_id", None)): r.levelno for r in worker_events(caplog)}
    assert levels[("claimed", ok_id)] == levels[("done", ok_id)] == levels[("claimed", bad_id)] == logging.DEBUG
    assert levels[("dead", bad_id)] == logging.ERROR and levels[("worker started", None)] == logging.INFO
    with pytest.raises(redispool.InvalidOption):
        Worker(redis_engine, queues=["q"], job_log_level="debug")


# ---------------------------------------------------------------- health and outages
def health(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_health_port_and_surviving_a_redis_outage():
    server = RedisServer().start()
    engine = redispool.connect(server.url, prefix="h")
    port = free_port()
    worker = Worker(engine, queues=["q"], health_port=port, health_host="127.0.0.1", **QUICK)
    worker.process(lambda job: job.payload)
    try:
        with running(worker):
            wait_for(lambda: health(port) == 200, what="200 while Redis is up")
            first = engine.enqueue("q", 1)
            wait_for(lambda: state(engine, "q", first) == "done", what="a job before the outage")
            server.stop()
            wait_for(lambda: health(port) == 503, what="503 while Redis is down")
            time.sleep(0.5)  # the worker keeps retrying, it does not die
            server.start()
            wait_for(lambda: health(port) == 200, what="200 once Redis is back")
            second = engine.enqueue("q", 2)
            wait_for(lambda: state(engine, "q", second) == "done", what="a job after the outage")
            wait_for(lambda: worker.id in [w.id for w in engine.workers()], what="registration again")
        assert health(port) is None, "the endpoint closes with the worker"
    finally:
        engine.close()
        server.stop()


# ---------------------------------------------------------------- set-up errors
def test_bad_set_up_is_refused(engine):
    with pytest.raises(TypeError):
        Worker(engine, queues="q")
    for bad in [dict(queues=[]), dict(queues=["bad name"]), dict(queues=["q"], concurrency=0),
                dict(queues=["q"], lease=0), dict(queues=["q"], batch=0),
                dict(queues=["q"], log_format="xml"), dict(queues=["q"], health_port=70000)]:
        with pytest.raises(ValueError):
            Worker(engine, **bad)
    worker = Worker(engine, queues=["q", "r"])
    with pytest.raises(ValueError):
        worker.process("elsewhere")
    worker.process("q")(lambda job: None)
    with pytest.raises(ValueError):
        worker.process("q")(lambda job: None)
    job_id = engine.enqueue("r", 1)
    with pytest.raises(LookupError):
        worker.run(burst=True)  # no handler for "r": refused before anything is claimed
    assert state(engine, "r", job_id) == "ready"


def test_override_checks_options_as_the_constructor_does_and_only_before_a_run(engine):
    worker = Worker(engine, queues=["q"], concurrency=4, batch=2, lease=10, **QUICK)
    for bad in [dict(lease=0), dict(grace=-1), dict(concurrency=0), dict(health_port=70000),
                dict(log_format="xml")]:
        with pytest.raises(ValueError):
            worker.override(**bad)
    assert (worker.concurrency, worker.batch, worker.lease, worker.grace) == (4, 2, 10.0, 30.0), "nothing changed"
    worker.override(concurrency=20, grace=1)  # batch follows a new concurrency, as in the constructor
    assert (worker.concurrency, worker.batch, worker.lease, worker.grace) == (20, 20, 10.0, 1.0)
    worker.process(lambda job: None)
    worker.run(burst=True)
    with pytest.raises(RuntimeError):
        worker.override(lease=5)


# ---------------------------------------------------------------- Redis Cluster
# (the 3-master cluster is the session fixture ``cluster_url`` of conftest.py)


@pytest.mark.slow
def test_worker_registry_and_sweeper_on_redis_cluster(cluster_url):
    engine = redispool.connect(cluster_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    queues = ["alpha", "beta", "gamma"]
    assert len({engine.client.keyslot(engine.keys(q).marker) for q in queues}) == 3, \
        "the queues' markers must live in different slots for this test to mean anything"
    assert is_cluster(engine.client), "so the worker waits on one queue at a time"
    worker = Worker(engine, queues=queues, concurrency=4, idle_wait=0.6, beat_interval=0.1)
    worker.process(lambda job: [job.queue, job.payload])
    try:
        with running(worker):
            wait_for(lambda: worker.id in [w.id for w in engine.workers()], what="registration")
            ids = [(q, engine.enqueue(q, n)) for n, q in enumerate(queues * 3)]
            wait_for(lambda: all(state(engine, q, i) == "done" for q, i in ids), what="every job")
            assert [engine.get(q, i).result for q, i in ids] == [[q, n] for n, (q, _) in enumerate(ids)]
            wait_for(lambda: [w.processed for w in engine.workers() if w.id == worker.id] == [9],
                       what="the registry to count the jobs")
        assert worker.id not in [w.id for w in engine.workers()]
        engine.register_worker("gone", host="h", pid=1, queues=["beta"])
        engine.enqueue("beta", "x")
        engine.claim("beta", "gone", lease=600)
        time.sleep(0.3)
        assert Sweeper(engine, worker_timeout=0.2).step() == 1
        assert engine.stats("beta")["ready"] == 1
    finally:
        engine.close()
