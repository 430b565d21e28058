"""Per-minute throughput and deleting one job."""
from __future__ import annotations

import pytest

import redispool


def test_throughput_counts_done_and_failed_this_minute(engine):
    assert engine.throughput("q", 5) == [(t, 0, 0) for t, _, _ in engine.throughput("q", 5)]
    engine.enqueue_many("q", range(5), max_attempts=2)
    jobs = engine.claim("q", "w", limit=5)
    engine.ack("q", completed=[(j, None) for j in jobs[:3]], failed=[(j, "boom") for j in jobs[3:]])
    history = engine.throughput("q", 60)
    # the read may fall in the minute after the ack: the counts are in one of the last two
    assert len(history) == 60 and (3, 2) in [h[1:] for h in history[-2:]]
    assert all(b[0] - a[0] == 60 for a, b in zip(history, history[1:]))
    assert sum(d for _, d, _ in history) == 3
    with pytest.raises(ValueError):
        engine.throughput("q", 0)


def test_delete_job_in_any_state(engine):
    ids = engine.enqueue_many("q", range(3))
    engine.enqueue("q", "u", unique_key="k")
    [leased] = engine.claim("q", "w")
    assert engine.delete_job("q", leased.id)
    assert engine.get("q", leased.id) is None
    with pytest.raises(redispool.LeaseLost):
        engine.complete(leased)
    unique_id = engine.enqueue("q", "again", unique_key="k")
    assert engine.delete_job("q", unique_id)
    assert engine.enqueue("q", "third", unique_key="k") != unique_id, "the unique key was freed"
    assert not engine.delete_job("q", "missing")
    assert engine.stats("q")["ready"] == len(ids) - 1 + 1
