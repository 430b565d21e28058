"""The sweeper daemon on memory:// and a real redis-server."""
from __future__ import annotations

import logging
import threading
import time

import pytest

from redispool import LeaseLost
from redispool.sweeper import Sweeper


def test_expired_lease_goes_back_to_ready(engine):
    job_id = engine.enqueue("q", {"n": 1})
    engine.enqueue("q", {"n": 2})
    [job] = engine.claim("q", "w1", lease=0.05)
    [kept] = engine.claim("q", "w1", lease=60)
    time.sleep(0.1)
    assert Sweeper(engine).step() == 1
    info = engine.get("q", job_id)
    assert info.state == "ready"
    assert info.attempts == 1
    assert info.error == "lease expired"
    assert engine.get("q", kept.id).state == "leased"
    [again] = engine.claim("q", "w2")
    assert (again.id, again.attempt) == (job_id, 2)
    with pytest.raises(LeaseLost):
        engine.complete(job)  # the stale worker cannot finish it any more


def test_expired_last_attempt_goes_dead(engine):
    job_id = engine.enqueue("q", "x", max_attempts=1)
    engine.claim("q", "w1", lease=0.05)
    time.sleep(0.1)
    assert Sweeper(engine).step() == 1
    info = engine.get("q", job_id)
    assert info.state == "dead"
    assert info.error == "lease expired"
    assert engine.stats("q")["dead"] == 1


def test_every_queue_is_swept(engine):
    for q in ("a", "b", "c"):
        engine.enqueue(q, q)
        engine.claim(q, "w1", lease=0.05)
    time.sleep(0.1)
    assert Sweeper(engine).step() == 3
    assert [engine.stats(q)["ready"] for q in ("a", "b", "c")] == [1, 1, 1]


def test_expired_worker_registration_releases_its_leases(engine):
    engine.register_worker("dead-w", host="h", pid=1, queues=["a", "b"])
    engine.register_worker("live-w", host="h", pid=2, queues=["a"])
    engine.enqueue_many("a", [1, 2, 3])
    engine.enqueue("b", 4)
    dead_jobs = engine.claim("a", "dead-w", limit=2, lease=600) + engine.claim("b", "dead-w", lease=600)
    [live_job] = engine.claim("a", "live-w", lease=600)
    time.sleep(0.4)
    engine.beat_worker("live-w", jobs_in_progress=[f"a/{live_job.id}"])
    sweeper = Sweeper(engine, worker_timeout=0.3)
    assert sweeper.step() == 3
    for job in dead_jobs:
        info = engine.get(job.queue, job.id)
        assert info.state == "ready"
        assert info.error == "worker dead-w stopped heartbeating"
    assert engine.get("a", live_job.id).state == "leased"
    assert [w.id for w in engine.workers()] == ["live-w"]
    assert engine.expired_workers(0.3) == []
    assert sweeper.step() == 0


def test_unregistered_queue_list_sweeps_every_queue(engine):
    engine.register_worker("w", host="h", pid=1, queues=[])
    engine.enqueue("a", 1)
    engine.claim("a", "w", lease=600)
    time.sleep(0.3)
    assert Sweeper(engine, worker_timeout=0.2).step() == 1
    assert engine.stats("a")["ready"] == 1


def test_run_loop_logs_what_it_moved_and_stops(engine, caplog):
    caplog.set_level(logging.INFO, logger="redispool.sweeper")
    job_id = engine.enqueue("q", 1)
    engine.claim("q", "w1", lease=0.05)
    sweeper = Sweeper(engine, interval=0.02)
    thread = threading.Thread(target=sweeper.run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while engine.get("q", job_id).state != "ready" and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        sweeper.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert engine.get("q", job_id).state == "ready"
    assert any("swept queue=q moved=1" in r.getMessage() for r in caplog.records)


def test_options_are_checked(engine):
    with pytest.raises(ValueError):
        Sweeper(engine, interval=0)
    with pytest.raises(ValueError):
        Sweeper(engine, worker_timeout=0)
