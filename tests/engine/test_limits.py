"""Flow control per queue (issue 19): a rate limit and a concurrency cap, enforced inside the
claim scripts (claim, claim_id, ack's next batch), with claimers held back by a limit woken
when capacity frees -- by the marker (a finishing job) or by the claim's wait_ms (the rate
window) -- never by polling.

Engine tests, on every backend (memory://, a real redis-server, a cluster). Several worker
processes and HTTP claimers at once: tests/runtime/test_limits_workers.py."""
from __future__ import annotations

import math
import threading
import time

import pytest

import redispool
from redispool import InvalidOption

from support.waiting import wait_for

NONE = {"rate": None, "per": None, "concurrency": None}


def marker_set(engine, queue: str) -> bool:
    return bool(engine.client.zrange(engine.keys(queue).marker, 0, -1))


def leased(engine, queue: str) -> int:
    return engine.client.zcard(engine.keys(queue).leased)


def claim_ms(job: redispool.Job) -> int:
    """The server time (ms) of the claim that leased ``job`` (its expiry less its lease)."""
    return round((job.lease_expires_at - job.lease) * 1000)


class Blocked:
    """``engine.claim(queue, block=...)`` in a thread, with an event set once its first
    claim came back empty (it is then waiting)."""

    def __init__(self, engine, queue: str, block: float = 10.0, limit: int = 1) -> None:
        self.waiting = threading.Event()
        self.jobs: list[redispool.Job] = []
        self.seconds = math.inf
        claim_now = engine._claim_now

        def first(op):
            claimed = claim_now(op)
            self.first = claimed.jobs
            self.waiting.set()
            engine._claim_now = claim_now  # later claims as usual
            return claimed
        engine._claim_now = first
        self.started = time.monotonic()

        def run() -> None:
            self.jobs = engine.claim(queue, "blocked", limit=limit, block=block)
            self.seconds = time.monotonic() - self.started
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert self.waiting.wait(10)
        assert self.first == [], "held back by the limit, its first claim gets nothing"

    def result(self, timeout: float = 15.0) -> list[redispool.Job]:
        self.thread.join(timeout)
        return self.jobs


def test_limits_are_stored_shown_replaced_and_removed(engine):
    assert engine.limits("lim") == NONE
    assert engine.set_limits("lim", rate=50, per=2, concurrency=4) == {"rate": 50, "per": 2.0, "concurrency": 4}
    assert engine.limits("lim") == {"rate": 50, "per": 2.0, "concurrency": 4}
    assert engine.stats("lim")["limits"] == {"rate": 50, "per": 2.0, "concurrency": 4}
    assert "lim" in engine.queues()
    assert engine.set_limits("lim", concurrency=2) == {**NONE, "concurrency": 2}, "each call replaces both"
    assert engine.set_limits("lim", rate=7) == {"rate": 7, "per": 1.0, "concurrency": None}
    assert engine.set_limits("lim") == NONE
    engine.set_retention("lim", done_max=5)
    engine.set_limits("lim", rate=3, per=0.5)
    assert engine.retention("lim")["stored"] == {"done_max": 5}, "the config hash's other settings stay"
    engine.set_retention("lim", done_max=6)
    assert engine.limits("lim") == {"rate": 3, "per": 0.5, "concurrency": None}


@pytest.mark.parametrize("bad", [
    {"rate": 0}, {"rate": -5}, {"rate": 2.5}, {"rate": "5"}, {"rate": True}, {"rate": 10**7},
    {"rate": 5, "per": 0}, {"rate": 5, "per": -1}, {"rate": 5, "per": math.nan}, {"rate": 5, "per": "1"},
    {"per": math.inf}, {"concurrency": 0}, {"concurrency": -1}, {"concurrency": 1.5}, {"concurrency": "2"},
])
def test_bad_limits_are_refused_and_change_nothing(engine, bad):
    engine.set_limits("bad", rate=9, per=3, concurrency=2)
    with pytest.raises(InvalidOption) as caught:
        engine.set_limits("bad", **bad)
    assert isinstance(caught.value, ValueError)
    assert engine.limits("bad") == {"rate": 9, "per": 3.0, "concurrency": 2}
    with pytest.raises(TypeError):
        engine.set_limits("bad", burst=3)  # an unknown option is never dropped silently


def test_the_concurrency_cap_holds_across_claim_claim_id_and_ack(engine):
    ids = engine.enqueue_many("cap", range(10))
    engine.set_limits("cap", concurrency=3)
    first = engine.claim("cap", "w1", limit=10)
    assert len(first) == 3 and leased(engine, "cap") == 3
    assert engine.claim("cap", "w2", limit=10) == []
    assert engine.claim_with_due("cap", "w2", limit=10) == ([], None), "jobs ready: the marker will say"
    assert engine.claim_id("cap", ids[-1], "w2") is None
    assert engine.stats("cap")["ready"] == 7, "a claim over the cap takes nothing out of ready"
    acked = engine.ack("cap", completed=[(first[0], None)], worker_id="w1", limit=10)
    assert len(acked.jobs) == 1, "the ack's next batch fills just the slot it freed"
    assert engine.claim_id("cap", ids[-1], "w2") is None
    engine.complete(first[1])
    job = engine.claim_id("cap", ids[-1], "w2")
    assert job is not None and leased(engine, "cap") == 3
    engine.set_limits("cap")
    assert len(engine.claim("cap", "w3", limit=10)) == 5, "no cap: the rest at once"


def test_the_rate_limit_holds_across_claim_claim_id_and_ack(engine):
    ids = engine.enqueue_many("rate", range(10))
    engine.set_limits("rate", rate=4, per=60)
    got = engine.claim("rate", "w", limit=3)
    assert len(got) == 3
    assert len(engine.claim("rate", "w", limit=3)) == 1, "a claim over the rate gets fewer jobs"
    jobs, wait = engine.claim_with_due("rate", "w", limit=3)
    assert jobs == [] and wait is not None and 55 < wait <= 60, "it says when the window allows a claim"
    assert engine.claim_id("rate", ids[-1], "w") is None
    acked = engine.ack("rate", completed=[(j, None) for j in got], worker_id="w", limit=5)
    assert acked.jobs == [] and acked.wait is not None and 55 < acked.wait <= 60
    assert engine.stats("rate")["ready"] == 6
    engine.set_limits("rate", rate=5, per=60)
    assert len(engine.claim("rate", "w", limit=5)) == 1, "a higher rate allows the difference"
    engine.set_limits("rate", concurrency=100)
    assert len(engine.claim("rate", "w", limit=10)) == 5, "no rate: the rest at once"


def test_claims_never_exceed_the_rate_in_any_window(engine):
    """A sliding window: in any window of `per`, at most `rate` claims (claimers woken by
    their wait_ms, not by polling)."""
    rate, per_ms = 3, 300
    engine.enqueue_many("window", range(12))
    engine.set_limits("window", rate=rate, per=per_ms / 1000)
    times: list[int] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while True:
            jobs = engine.claim("window", name, limit=2, block=3)
            if not jobs:
                return
            with lock:
                times.extend(claim_ms(j) for j in jobs)
    threads = [threading.Thread(target=claimer, args=(f"c{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    times.sort()
    assert len(times) == 12
    assert all(later - earlier >= per_ms for earlier, later in zip(times, times[rate:])), times
    assert times[-1] - times[0] >= (12 // rate - 1) * per_ms


def test_a_claimer_held_by_the_cap_is_woken_when_a_job_finishes(engine):
    engine.enqueue_many("wake", range(3))
    engine.set_limits("wake", concurrency=1)
    [job] = engine.claim("wake", "w", limit=5)
    assert not marker_set(engine, "wake"), "at the cap the marker is down: blocked claimers sleep"
    blocked = Blocked(engine, "wake")
    engine.enqueue("wake", "more")
    assert not marker_set(engine, "wake"), "an enqueue at the cap wakes nobody"
    engine.complete(job)
    got = blocked.result()
    assert len(got) == 1 and blocked.seconds < 5, "woken by the complete, not by its 10 s timeout"


@pytest.mark.parametrize("how", ["fail", "release", "cancel", "ack"])
def test_every_way_a_lease_ends_wakes_a_claimer_held_by_the_cap(engine, how):
    engine.enqueue_many("ends", range(3), max_attempts=1)
    engine.set_limits("ends", concurrency=1)
    [job] = engine.claim("ends", "w")
    blocked = Blocked(engine, "ends")
    if how == "fail":
        engine.fail(job, "boom")
    elif how == "release":
        engine.release(job)
    elif how == "cancel":
        engine.cancel("ends", job.id)
    else:
        engine.ack("ends", failed=[(job, "boom")])
    assert len(blocked.result()) == 1 and blocked.seconds < 5


def test_an_expired_lease_swept_wakes_a_claimer_held_by_the_cap(engine):
    engine.enqueue_many("swept", range(2))
    engine.set_limits("swept", concurrency=1)
    engine.claim("swept", "w", lease=0.05)
    blocked = Blocked(engine, "swept")
    wait_for(lambda: engine.sweep("swept") == 1, what="the lease to expire and be swept")
    assert len(blocked.result()) == 1 and blocked.seconds < 5


def test_raising_the_cap_wakes_a_blocked_claimer(engine):
    engine.enqueue_many("raise", range(2))
    engine.set_limits("raise", concurrency=1)
    engine.claim("raise", "w")
    blocked = Blocked(engine, "raise")
    engine.set_limits("raise", concurrency=2)
    assert len(blocked.result()) == 1 and blocked.seconds < 5


def test_a_claimer_held_by_the_rate_wakes_when_the_window_allows(engine):
    engine.enqueue_many("later", range(3))
    engine.set_limits("later", rate=1, per=1)
    [first] = engine.claim("later", "w")
    blocked = Blocked(engine, "later")
    [job] = blocked.result()
    assert claim_ms(job) - claim_ms(first) >= 1000, "not before the window allows it"
    assert blocked.seconds < 5, "woken by its wait_ms (about 1 s), not by its 10 s timeout"


def test_the_marker_and_rewake_respect_the_cap(engine):
    engine.enqueue_many("mark", range(4))
    engine.set_limits("mark", concurrency=2)
    jobs = engine.claim("mark", "w", limit=2)
    assert not marker_set(engine, "mark")
    engine.rewake("mark")
    assert not marker_set(engine, "mark"), "a put-back at the cap wakes nobody (a finishing job will)"
    engine.complete(jobs[0])
    assert marker_set(engine, "mark"), "a freed slot sets the marker"
    engine.claim("mark", "w")
    assert not marker_set(engine, "mark")
    engine.set_limits("mark", rate=1, per=60)
    assert marker_set(engine, "mark"), "new limits wake the claimers"


def test_a_rate_held_claim_leaves_the_marker_to_a_claimer_that_learns_when(engine):
    engine.enqueue_many("ratemark", range(5))
    engine.set_limits("ratemark", rate=2, per=60)
    assert len(engine.claim("ratemark", "w", limit=2)) == 2
    assert marker_set(engine, "ratemark"), "jobs are ready: a blocked claimer wakes and learns when to claim"
    engine.client.zrem(engine.keys("ratemark").marker, "m")  # as a claimer's BZPOPMIN takes it
    assert engine.claim_with_due("ratemark", "w")[1] is not None
    assert not marker_set(engine, "ratemark"), "a claim held by the rate sets no marker (no spin)"


def test_the_sliding_log_keeps_at_most_rate_claims_and_goes_with_the_rate(engine):
    engine.enqueue_many("log", range(30))
    engine.set_limits("log", rate=10, per=60)
    engine.claim("log", "w", limit=30)
    key = engine.keys("log").ratelog
    assert engine.client.llen(key) == 10
    engine.set_limits("log", rate=4, per=60)
    assert engine.client.llen(key) == 4
    engine.set_limits("log", concurrency=3)
    assert engine.client.exists(key) == 0


def test_remove_queue_removes_the_limits(engine):
    engine.enqueue("gone", 1)
    engine.set_limits("gone", rate=5, concurrency=2)
    [job] = engine.claim("gone", "w")
    engine.complete(job)
    assert engine.remove_queue("gone")
    assert engine.limits("gone") == NONE
    assert engine.client.exists(engine.keys("gone").ratelog) == 0


def test_a_limited_queue_costs_nothing_when_unlimited_again(engine):
    engine.set_limits("free", rate=1, per=60, concurrency=1)
    engine.set_limits("free")
    engine.enqueue_many("free", range(20))
    assert len(engine.claim("free", "w", limit=20)) == 20
