"""Timeouts and progress in a running worker, on a real redis-server (issue 19): an attempt
past its timeout fails with ``TimeoutError: ...`` and is retried by its policy; an async
handler is cancelled (its ``finally`` runs); a sync handler's thread runs on, holding its
slot, and what it returns is discarded; the worker's default timeout against a job's own;
progress from handlers; the CLI's ``--timeout`` and ``job`` output."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid

import pytest

import redispool
from redispool import Worker

from support.cli import cli_process, invoke
from support.waiting import running, wait_for

QUICK = dict(idle_wait=0.2, beat_interval=0.1)
TIMED_OUT = "TimeoutError: the attempt ran longer than its timeout of"


@pytest.fixture
def engine(redis_url):
    engine = redispool.connect(redis_url, prefix=f"t{uuid.uuid4().hex[:10]}", backoff_base=0.01, backoff_cap=0.02)
    yield engine
    engine.close()


def state(engine, queue: str, job_id: str) -> str | None:
    info = engine.get(queue, job_id)
    return info.state if info else None


def test_a_sync_handler_past_its_timeout_is_retried_then_dead_and_its_late_results_are_discarded(engine, caplog):
    caplog.set_level(logging.INFO, "redispool.worker")
    job_id = engine.enqueue("q", "x", timeout=0.3, max_attempts=3)
    worker = Worker(engine, queues=["q"], concurrency=2, **QUICK)
    started, returned = [], []

    @worker.process
    def slow(job):
        started.append(job.attempt)
        threading.Event().wait(0.6)   # past the timeout, then it returns all the same
        returned.append(job.attempt)
        return f"late {job.attempt}"

    with running(worker):
        wait_for(lambda: state(engine, "q", job_id) == "dead", what="the job to go dead")
        wait_for(lambda: len(returned) == 3, what="every handler thread to return")
        wait_for(lambda: sum("late result discarded" in r.getMessage() for r in caplog.records) == 3,
                 what="the late results to be discarded")
    info = engine.get("q", job_id)
    assert started == [1, 2, 3] and info.attempts == 3
    assert [a for a, _, _ in info.errors] == [3, 2, 1]
    assert all(error == f"{TIMED_OUT} 0.3 s" for _, error, _ in info.errors)
    assert info.result is None, "a late return never completes the job"
    assert engine.stats("q")["totals"]["retried"] == 2


def test_a_timed_out_sync_handler_keeps_its_slot_until_it_returns(engine, caplog):
    """concurrency=1: while the thread of a timed-out attempt still runs, nothing else is
    leased (not even in the ack that fails the attempt); once it returns, the retry and
    the next job run, and the retry's result is the one stored."""
    caplog.set_level(logging.INFO, "redispool.worker")
    slow_id = engine.enqueue("q", "slow", timeout=0.3, max_attempts=2)
    next_id = engine.enqueue("q", "next")
    gate = threading.Event()
    worker = Worker(engine, queues=["q"], concurrency=1, **QUICK)

    @worker.process
    def handle(job):
        if job.payload == "slow" and job.attempt == 1:
            gate.wait(10)
            return "late"
        return f"{job.payload} {job.attempt}"

    with running(worker):
        wait_for(lambda: engine.get("q", slow_id).errors, what="the first attempt to time out")
        assert engine.get("q", slow_id).error.startswith(TIMED_OUT)
        assert state(engine, "q", next_id) == "ready", "the timed-out thread still holds the only slot"
        time.sleep(0.3)  # the worker has had time to lease more, had it freed the slot
        assert state(engine, "q", next_id) == "ready" and engine.get("q", slow_id).attempts == 1
        gate.set()
        wait_for(lambda: state(engine, "q", slow_id) == state(engine, "q", next_id) == "done",
                 what="the retry and the next job")
    assert engine.get("q", slow_id).result == "slow 2"
    assert engine.get("q", next_id).result == "next 1"
    assert any("late result discarded" in r.getMessage() and "outcome=done" in r.getMessage()
               for r in caplog.records)


def test_an_async_handler_past_its_timeout_is_cancelled_and_retried(engine):
    job_id = engine.enqueue("aq", "x", timeout=0.3, max_attempts=2)
    quick_id = engine.enqueue("aq", "quick")
    worker = Worker(engine, queues=["aq"], concurrency=4, **QUICK)
    cleaned = []

    @worker.process
    async def handle(job):
        if job.payload == "quick":
            return "ok"
        try:
            await asyncio.sleep(30)
        finally:
            cleaned.append(job.attempt)

    with running(worker):
        wait_for(lambda: state(engine, "aq", job_id) == "dead", what="the job to go dead")
        wait_for(lambda: cleaned == [1, 2], what="both attempts' finally blocks")
    info = engine.get("aq", job_id)
    assert [e for _, e, _ in info.errors] == [f"{TIMED_OUT} 0.3 s"] * 2
    assert engine.get("aq", quick_id).result == "ok"


def test_the_workers_timeout_applies_to_jobs_without_their_own(engine):
    default_id = engine.enqueue("q", "default", max_attempts=1)
    own_id = engine.enqueue("q", "own", timeout=5, max_attempts=1)
    worker = Worker(engine, queues=["q"], concurrency=2, timeout=0.3, **QUICK)
    seen = {}

    @worker.process
    async def handle(job):
        seen[job.payload] = job.timeout
        await asyncio.sleep(0.6)
        return "finished"

    worker.run(burst=True, burst_wait=0)
    assert seen == {"default": 0.3, "own": 5.0}, "the handler sees the limit that applies"
    assert engine.get("q", default_id).error == f"{TIMED_OUT} 0.3 s"
    assert (state(engine, "q", own_id), engine.get("q", own_id).result) == ("done", "finished")
    assert engine.get("q", default_id).timeout is None, "the worker's default is not written to the job"


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "1"])
def test_a_bad_worker_timeout_is_refused(engine, bad):
    with pytest.raises(redispool.InvalidOption, match="timeout"):
        Worker(engine, queues=["q"], timeout=bad)


def test_handlers_report_progress_to_get_the_event_log_and_the_cli(engine, redis_url):
    sync_id, async_id = engine.enqueue("p", "sync"), engine.enqueue("pa", "async")
    worker = Worker(engine, queues=["p", "pa"], **QUICK)

    @worker.process("p")
    def report(job):
        job.progress(30)
        job.progress(100, "all rows copied")

    @worker.process("pa")
    async def report_async(job):
        await job.progress_async(12.5, "warming up")

    worker.run(burst=True, burst_wait=0)
    done = engine.get("p", sync_id)
    assert (done.state, done.progress["value"], done.progress["message"]) == ("done", 100, "all rows copied")
    assert engine.get("pa", async_id).progress["value"] == 12.5
    assert [e.data for e in engine.events("p") if e.type == "progress"] == [
        {"value": 30}, {"value": 100, "message": "all rows copied"}]
    shown = invoke(redis_url, engine.prefix, "job", "p", sync_id).stdout
    assert "progress         100% all rows copied (at " in shown


def test_cli_enqueue_timeout_job_output_and_worker_timeout(engine, redis_url, tmp_path):
    job_id = invoke(redis_url, engine.prefix, "enqueue", "cq", '"x"', "--timeout", "0.25",
                    "--max-attempts", "1").stdout.strip()
    assert engine.get("cq", job_id).timeout == 0.25
    assert "timeout          0.25 s" in invoke(redis_url, engine.prefix, "job", "cq", job_id).stdout
    for bad in ("0", "-1", "nan"):
        err = invoke(redis_url, engine.prefix, "enqueue", "cq", '"y"', "--timeout", bad, code=2).stderr
        assert "timeout" in err
    assert engine.stats("cq")["totals"]["enqueued"] == 1, "a refused enqueue writes nothing"
    default_id = engine.enqueue("cq", "no timeout of its own", max_attempts=1)
    (tmp_path / "timeoutapp.py").write_text(
        "import time, redispool\n"
        "worker = redispool.Worker(redispool.connect(), queues=['cq'], idle_wait=0.2)\n"
        "@worker.process\n"
        "def handle(job):\n"
        "    time.sleep(0.6)\n")
    proc = cli_process("--url", redis_url, "--prefix", engine.prefix, "worker", "timeoutapp:worker",
                       "--timeout", "0.3", "--burst", "--burst-wait", "0", cwd=tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert engine.get("cq", job_id).error == f"{TIMED_OUT} 0.25 s", "the job's own timeout wins"
    assert engine.get("cq", default_id).error == f"{TIMED_OUT} 0.3 s", "--timeout for the others"
