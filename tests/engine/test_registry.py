"""The worker registry (Engine.register_worker & co.) on memory:// and a real redis-server."""
from __future__ import annotations

import time

import pytest


def test_register_beat_and_list(engine):
    started = engine.register_worker("w1", host="box", pid=42, queues=["a", "b"])
    assert engine.beat_worker("w1", jobs_in_progress=["a/1", "b/7"], processed=5, failed=2)
    assert engine.beat_worker("w1", jobs_in_progress=["a/2"], processed=1)
    [info] = engine.workers()
    assert (info.id, info.host, info.pid, info.queues) == ("w1", "box", 42, ["a", "b"])
    assert info.started_at == started
    assert info.last_heartbeat >= started
    assert info.jobs_in_progress == ["a/2"]
    assert (info.processed, info.failed) == (6, 2)


def test_times_come_from_the_server_clock(engine):
    server_s = engine.client.time()[0]
    started = engine.register_worker("w1", host="h", pid=1, queues=["a"])
    assert abs(started - server_s) < 5


def test_deregister_removes_and_beat_reports_unregistered(engine):
    engine.register_worker("w1", host="h", pid=1, queues=["a"])
    assert engine.deregister_worker("w1") is True
    assert engine.deregister_worker("w1") is False
    assert engine.workers() == []
    assert engine.beat_worker("w1", jobs_in_progress=[]) is False
    assert engine.workers() == [], "a beat does not resurrect a deregistered worker"


def test_reregistering_resets_counters(engine):
    engine.register_worker("w1", host="h", pid=1, queues=["a"])
    engine.beat_worker("w1", jobs_in_progress=[], processed=3, failed=1)
    engine.register_worker("w1", host="h2", pid=2, queues=["b"])
    [info] = engine.workers()
    assert (info.host, info.pid, info.queues, info.processed, info.failed) == ("h2", 2, ["b"], 0, 0)


def test_timeout_separates_live_from_expired(engine):
    engine.register_worker("old", host="h", pid=1, queues=["a"])
    engine.register_worker("other", host="h", pid=3, queues=[])
    time.sleep(0.3)
    engine.register_worker("new", host="h", pid=2, queues=["b", "c"])
    engine.beat_worker("other", jobs_in_progress=[])
    assert sorted(w.id for w in engine.workers(timeout=0.2)) == ["new", "other"]
    assert sorted(w.id for w in engine.workers()) == ["new", "old", "other"]
    assert engine.expired_workers(0.2) == [("old", ["a"])]
    assert engine.expired_workers(60) == []


def test_prefixes_do_not_share_workers(make_engine, backend_url):
    import redispool

    engine = make_engine()
    other = redispool.connect(backend_url, prefix=engine.prefix + "x")
    try:
        engine.register_worker("w1", host="h", pid=1, queues=["a"])
        assert other.workers() == []
    finally:
        other.close()


@pytest.mark.parametrize("call", [
    lambda e: e.register_worker("", host="h", pid=1, queues=["a"]),
    lambda e: e.register_worker("has space", host="h", pid=1, queues=["a"]),
    lambda e: e.register_worker(None, host="h", pid=1, queues=["a"]),
    lambda e: e.register_worker("w", host="h", pid=-1, queues=["a"]),
    lambda e: e.register_worker("w", host="h", pid=1, queues=["bad name"]),
    lambda e: e.beat_worker("w", jobs_in_progress=[], processed=-1),
    lambda e: e.beat_worker("w", jobs_in_progress=[], failed=1.5),
    lambda e: e.workers(timeout=0),
    lambda e: e.expired_workers(-1),
])
def test_bad_input_is_a_value_error_and_writes_nothing(engine, call):
    with pytest.raises(ValueError):
        call(engine)
    assert engine.workers() == []
