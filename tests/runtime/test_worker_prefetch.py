"""Prefetch: while its handlers are quick, a worker holds up to ``prefetch`` jobs beyond
``concurrency``, leased and waiting for a thread, so its threads never wait for the ack's
round trip. When they turn slow it gives the waiting jobs back; at shutdown it gives them
back too; a job given back never starts here; async handlers are never prefetched.

Each scenario first runs quick jobs (the handlers' running mean falls under
PREFETCH_JOB_S), then jobs that block their thread until the test lets them go.
"""
from __future__ import annotations

import asyncio
import collections
import threading
import time

import pytest

import redispool.worker
from redispool import InvalidOption, Worker

from support.waiting import running, wait_for

QUICK = dict(idle_wait=0.2, beat_interval=0.1)
QUICK_JOBS = 30


def blocking_handler(gate: threading.Event, calls: collections.Counter):
    def handle(job):
        calls[job.id] += 1
        if job.payload == "block":
            gate.wait(30)
        return job.payload
    return handle


def leased(engine, queue: str) -> int:
    return engine.stats(queue)["leased"]


def stays(condition, seconds: float = 0.5) -> bool:
    """``condition()`` holds at every look over ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not condition():
            return False
        time.sleep(0.01)
    return True


def test_quick_handlers_prefetch_and_slow_ones_give_the_waiting_jobs_back(engine):
    quick = engine.enqueue_many("pf", ["q"] * QUICK_JOBS)
    blocked = engine.enqueue_many("pf", ["block"] * 8)
    gate, calls = threading.Event(), collections.Counter()
    worker = Worker(engine, queues=["pf"], concurrency=2, **QUICK)
    worker.process(blocking_handler(gate, calls))
    try:
        with running(worker):
            # 2 threads blocked, 2 more jobs leased and waiting for them
            wait_for(lambda: leased(engine, "pf") == 4 and engine.stats("pf")["done"] == QUICK_JOBS,
                     what="2 running + 2 prefetched")
            # no job finishes for PREFETCH_HOLD_S: the 2 waiting ones go back to ready
            wait_for(lambda: leased(engine, "pf") == 2, what="the prefetched jobs given back")
            assert engine.stats("pf")["ready"] == 6
            assert stays(lambda: leased(engine, "pf") == 2, 0.3), "no prefetch while the handlers are slow"
            assert sum(calls[i] for i in blocked) == 2, "only the two running jobs started"
            gate.set()
            wait_for(lambda: engine.stats("pf")["done"] == QUICK_JOBS + 8, timeout=20, what="every job done")
    finally:
        gate.set()
    assert all(calls[i] == 1 for i in quick + blocked), "each job ran once"
    assert all(engine.get("pf", i).attempts == 1 for i in blocked), "a job given back keeps its attempt"


def holds_only_concurrency(engine, queue: str, worker: Worker, gate: threading.Event) -> None:
    """Run ``worker`` (concurrency 2) over ``queue``'s quick jobs, then 6 blocking ones:
    while two of those are blocked, nothing else is leased; then let them all finish."""
    try:
        with running(worker):
            wait_for(lambda: leased(engine, queue) == 2 and engine.stats(queue)["done"] == QUICK_JOBS,
                     what="two jobs blocked")
            assert stays(lambda: leased(engine, queue) == 2), "nothing leased beyond concurrency"
            gate.set()
            wait_for(lambda: engine.stats(queue)["done"] == QUICK_JOBS + 6, timeout=20, what="every job done")
    finally:
        gate.set()


def test_prefetch_zero_holds_no_more_than_concurrency(engine):
    engine.enqueue_many("pz", ["q"] * QUICK_JOBS + ["block"] * 6)
    gate = threading.Event()
    worker = Worker(engine, queues=["pz"], concurrency=2, prefetch=0, **QUICK)
    worker.process(blocking_handler(gate, collections.Counter()))
    holds_only_concurrency(engine, "pz", worker, gate)


def test_slow_handlers_are_never_prefetched(engine):
    engine.enqueue_many("ps", list(range(12)))
    worker = Worker(engine, queues=["ps"], concurrency=2, **QUICK)
    most = [0]

    @worker.process
    def slow(job):
        time.sleep(0.05)   # > PREFETCH_JOB_S
        most[0] = max(most[0], leased(engine, "ps"))

    with running(worker):
        wait_for(lambda: engine.stats("ps")["done"] == 12, timeout=20, what="every job done")
    assert most[0] <= 2


def test_async_handlers_are_never_prefetched(engine):
    engine.enqueue_many("pa", ["q"] * QUICK_JOBS + ["block"] * 6)
    gate = threading.Event()
    worker = Worker(engine, queues=["pa"], concurrency=2, **QUICK)

    @worker.process
    async def handle(job):
        while job.payload == "block" and not gate.is_set():
            await asyncio.sleep(0.01)

    holds_only_concurrency(engine, "pa", worker, gate)   # async jobs start at once: none is held


def test_stop_gives_the_prefetched_jobs_back_and_they_never_start(engine, monkeypatch):
    monkeypatch.setattr(redispool.worker, "PREFETCH_HOLD_S", 30.0)   # only the stop gives them back
    engine.enqueue_many("pst", ["q"] * QUICK_JOBS)
    blocked = engine.enqueue_many("pst", ["block"] * 8)
    gate, calls = threading.Event(), collections.Counter()
    worker = Worker(engine, queues=["pst"], concurrency=2, grace=0.2, **QUICK)
    worker.process(blocking_handler(gate, calls))
    try:
        with running(worker):
            wait_for(lambda: leased(engine, "pst") == 4 and engine.stats("pst")["done"] == QUICK_JOBS,
                     what="2 running + 2 prefetched")
        # stopped: past the grace, the 2 running jobs and the 2 waiting ones were released
        stats = engine.stats("pst")
        assert (stats["leased"], stats["ready"], stats["done"]) == (0, 8, QUICK_JOBS)
    finally:
        gate.set()
    time.sleep(0.2)   # the blocked threads return now: the waiting jobs must not start after them
    assert sum(calls[i] for i in blocked) == 2


def test_a_prefetched_job_past_its_timeout_never_starts(engine, monkeypatch):
    monkeypatch.setattr(redispool.worker, "PREFETCH_HOLD_S", 30.0)
    engine.enqueue_many("pt", ["q"] * QUICK_JOBS)
    first, waiting = engine.enqueue_many("pt", ["block", "block"], max_attempts=1)
    gate, calls = threading.Event(), collections.Counter()
    worker = Worker(engine, queues=["pt"], concurrency=1, timeout=0.5, **QUICK)
    worker.process(blocking_handler(gate, calls))
    try:
        with running(worker):
            wait_for(lambda: engine.get("pt", waiting).state == "dead", timeout=10, what="the waiting job timed out")
            assert calls[first] == 1 and calls[waiting] == 0
            assert "TimeoutError" in engine.get("pt", waiting).errors[-1][1]
            gate.set()
    finally:
        gate.set()
    time.sleep(0.2)
    assert calls[waiting] == 0


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_bad_prefetch_is_invalid_option(engine, bad):
    with pytest.raises(InvalidOption, match="prefetch"):
        Worker(engine, queues=["q"], prefetch=bad)
