"""Job expiry (``expires_at``: a job not leased by then is never run), tags, priority
changes in place, the pause's time and reason and a queue's job defaults (issue 20), on
memory://, a real redis-server and the Cluster."""
from __future__ import annotations

import time

import pytest

from redispool import InvalidOption, JobNotFound
from redispool.keys import due_key

EXPIRED = "expired: not claimed before its expires_at"


def hash_field(engine, queue: str, job_id: str, field: str):
    return engine.client.hget(engine.keys(queue).job(job_id), field)


# ---------------------------------------------------------------- expiry
def test_expiry_is_stored_and_only_jobs_with_one_are_indexed(engine):
    at = time.time() + 3600
    with_expiry = engine.enqueue("q", 1, expires_at=at)
    without = engine.enqueue("q", 2)
    assert engine.get("q", with_expiry).expires_at == pytest.approx(at, abs=0.001)
    assert engine.get("q", without).expires_at is None
    assert hash_field(engine, "q", without, "ex") is None, "no field, no index entry: no cost"
    assert engine.client.zrange(engine.keys("q").expiring, 0, -1) == [with_expiry.encode()]
    assert engine.client.zscore(due_key(engine.prefix, "sweeper"), "q") == pytest.approx(at * 1000, abs=1), \
        "the sweeper is due at the expiry"


def test_a_claim_cancels_expired_jobs_and_leases_the_next_ones(engine):
    past = time.time() - 1
    expired = [engine.enqueue("q", i, expires_at=past, priority=5) for i in range(3)]
    fresh = engine.enqueue("q", "fresh", expires_at=time.time() + 3600)
    plain = engine.enqueue("q", "plain")
    jobs = engine.claim("q", "w1", limit=2)
    assert [j.id for j in jobs] == [fresh, plain], "the expired ones were skipped, the limit still filled"
    for job_id in expired:
        info = engine.get("q", job_id)
        assert (info.state, info.error, info.attempts) == ("cancelled", EXPIRED, 0)
    cancelled = [e for e in engine.events("q") if e.type == "cancelled"]
    assert [e.job_id for e in cancelled] == expired and cancelled[0].data["error"] == EXPIRED
    assert engine.claim("q", "w1") == []


def test_a_job_that_expires_while_queued_is_never_leased(engine):
    soon = engine.enqueue("q", "soon", expires_at=time.time() + 0.2)
    time.sleep(0.3)
    assert engine.claim("q", "w1", limit=5) == []
    assert engine.get("q", soon).state == "cancelled"


def test_claim_id_cancels_an_expired_job(engine):
    job_id = engine.enqueue("q", 1, expires_at=time.time() - 1)
    assert engine.claim_id("q", job_id, "w1") is None
    assert (engine.get("q", job_id).state, engine.get("q", job_id).error) == ("cancelled", EXPIRED)


def test_the_sweeper_cancels_expired_jobs_in_every_unleased_state(engine):
    past = time.time() - 1
    engine.pause("q")   # no claim happens: the sweeper alone must find them
    ready = engine.enqueue("q", 1, expires_at=past)
    scheduled = engine.enqueue("q", 2, expires_at=past, delay=3600)
    parent = engine.enqueue("q", 3)
    waiting = engine.enqueue("q", 4, expires_at=past, depends_on=[parent])
    later = engine.enqueue("q", 5, expires_at=time.time() + 3600)
    engine.sweep("q")
    states = {i: engine.get("q", i).state for i in (ready, scheduled, waiting, later, parent)}
    assert states == {ready: "cancelled", scheduled: "cancelled", waiting: "cancelled", later: "ready",
                      parent: "ready"}
    assert engine.get("q", scheduled).error == EXPIRED
    assert engine.client.zrange(engine.keys("q").expiring, 0, -1) == [later.encode()]
    assert engine._sweep("q", plan=True)[1] == pytest.approx(engine.get("q", later).expires_at * 1000, abs=1)


def test_a_job_leased_before_its_expiry_runs_to_the_end(engine):
    job_id = engine.enqueue("q", 1, expires_at=time.time() + 1.0)   # (0.2 s was missed by a loaded machine)
    [job] = engine.claim("q", "w1")
    time.sleep(1.1)
    engine.sweep("q")
    assert engine.get("q", job_id).state == "leased", "the sweeper leaves a leased job alone"
    engine.complete(job, "ok")
    assert engine.get("q", job_id).state == "done"
    assert engine.client.zcard(engine.keys("q").expiring) == 0, "its index entry is dropped"


def test_an_expired_parent_cancels_its_children(engine):
    parent = engine.enqueue("q", 1, expires_at=time.time() - 1)
    child = engine.enqueue("q", 2, depends_on=[parent])
    assert engine.claim("q", "w1") == []
    assert engine.get("q", parent).state == "cancelled"
    assert engine.get("q", child).state == "cancelled"


def test_remove_queue_deletes_the_expiry_index(engine):
    job_id = engine.enqueue("q", 1, expires_at=time.time() + 3600)
    engine.cancel("q", job_id)
    assert engine.remove_queue("q")
    assert engine.client.exists(engine.keys("q").expiring) == 0


# ---------------------------------------------------------------- tags
def test_tags_are_stored_and_handed_back(engine):
    listed = engine.enqueue("q", 1, tags=["urgent", "billing"])
    keyed = engine.enqueue_specs("q", [engine.job_spec(2, tags={"team": "ops", "n": 3})])[0][0]
    none = engine.enqueue("q", 3)
    assert engine.get("q", listed).tags == ["urgent", "billing"]
    assert engine.get("q", keyed).tags == {"team": "ops", "n": 3}
    assert engine.get("q", none).tags is None and hash_field(engine, "q", none, "tg") is None
    assert [i.tags for i in engine.jobs("q", "ready")] == [["urgent", "billing"], {"team": "ops", "n": 3}, None]
    for bad in (["a", 1], "urgent", {1: "x"}, ["x" * 9000]):
        with pytest.raises(InvalidOption):
            engine.enqueue("q", 4, tags=bad)


# ---------------------------------------------------------------- priority
def test_set_priority_moves_a_ready_job_in_place(engine):
    ids = [engine.enqueue("q", i) for i in range(4)]
    assert engine.set_priority("q", ids[3], 10) == 0
    assert engine.set_priority("q", ids[2], 10) == 0
    assert [i.id for i in engine.jobs("q", "ready")] == [ids[2], ids[3], ids[0], ids[1]], \
        "among equals the earlier job stays first"
    assert engine.get("q", ids[3]).priority == 10
    assert engine.set_priority("q", ids[3], 0) == 10
    assert [i.id for i in engine.jobs("q", "ready")] == [ids[2], ids[0], ids[1], ids[3]]
    scheduled = engine.enqueue("q", "later", delay=3600)
    assert engine.set_priority("q", scheduled, -5) == 0
    assert engine.get("q", scheduled).priority == -5 and engine.get("q", scheduled).state == "scheduled"
    [job] = engine.claim("q", "w1")
    assert engine.set_priority("q", job.id, 1) is None, "leased: nothing changed"
    with pytest.raises(JobNotFound):
        engine.set_priority("q", "nope", 1)
    with pytest.raises(InvalidOption):
        engine.set_priority("q", ids[0], 1001)


# ---------------------------------------------------------------- pause, defaults
def test_pause_keeps_its_time_and_reason_until_resumed(engine):
    assert engine.paused_info("q") == (False, None, None)
    before = time.time()
    assert engine.pause("q", "maintenance")
    paused, since, reason = engine.paused_info("q")
    assert paused and reason == "maintenance" and since == pytest.approx(before, abs=5)
    assert not engine.pause("q", "again")
    assert engine.paused_info("q")[1:] == (since, "maintenance"), "a second pause changes nothing"
    engine.resume("q")
    assert engine.paused_info("q") == (False, None, None)


def test_job_defaults_are_stored_per_queue(engine):
    assert engine.job_defaults("q") == {"max_attempts": None, "timeout": None, "created_at": None,
                                        "updated_at": None}
    out = engine.set_job_defaults("q", max_attempts=6, timeout=60)
    assert (out["max_attempts"], out["timeout"]) == (6, 60.0) and out["created_at"] <= out["updated_at"]
    assert engine.set_job_defaults("q", timeout=2.5)["max_attempts"] is None
    assert engine.job_defaults("q")["timeout"] == 2.5
    assert "q" in engine.queues()
    with pytest.raises(InvalidOption):
        engine.set_job_defaults("q", max_attempts=0)
