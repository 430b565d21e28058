"""Job timeouts as stored and handed out, and progress reports fenced by the lease (issue
19), on memory://, a real redis-server and the Cluster. The worker enforcing timeouts is
in tests/runtime/test_worker_timeouts.py."""
from __future__ import annotations

import math

import pytest

import redispool
from redispool import InvalidOption, LeaseLost


def claim_one(engine, queue: str = "q") -> redispool.Job:
    [job] = engine.claim(queue, "w1")
    return job


def hash_field(engine, queue: str, job_id: str, field: str):
    return engine.client.hget(engine.keys(queue).job(job_id), field)


# ---------------------------------------------------------------- timeouts
def test_timeout_is_stored_and_handed_out_with_the_lease(engine):
    with_timeout = engine.enqueue("q", 1, timeout=1.5)
    without = engine.enqueue("q", 2)
    assert engine.get("q", with_timeout).timeout == 1.5
    assert engine.get("q", without).timeout is None
    assert hash_field(engine, "q", with_timeout, "to") == b"1500"
    assert hash_field(engine, "q", without, "to") is None, "no field for a job without a timeout"
    jobs = {j.id: j for j in engine.claim("q", "w1", limit=2)}
    assert (jobs[with_timeout].timeout, jobs[without].timeout) == (1.5, None)


def test_every_way_to_enqueue_takes_a_timeout(engine):
    ids = engine.enqueue_many("q", [1, 2], timeout=0.5)
    job_id, created = engine.enqueue_or_get("q", 3, timeout=2, job_id="own")
    specs = engine.enqueue_specs("q", [engine.job_spec(4, timeout=3), engine.job_spec(5)])
    assert created
    timeouts = {i: engine.get("q", i).timeout for i in [*ids, job_id, *(i for i, _ in specs)]}
    assert list(timeouts.values()) == [0.5, 0.5, 2.0, 3.0, None]
    claimed = {j.id: j.timeout for j in engine.claim("q", "w1", limit=10)}
    assert claimed == timeouts


def test_claim_id_and_ack_hand_out_the_timeout(engine):
    first, second = engine.enqueue("q", 1, timeout=0.25), engine.enqueue("q", 2, timeout=4)
    job = engine.claim_id("q", first, "w1")
    assert job is not None and job.timeout == 0.25
    reply = engine.ack("q", completed=[(job, None)], worker_id="w1", limit=1)
    assert [(j.id, j.timeout) for j in reply.jobs] == [(second, 4.0)]


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, True, "5", 8 * 86_400])
def test_bad_timeouts_are_refused_and_nothing_is_written(engine, bad):
    with pytest.raises(InvalidOption, match="timeout"):
        engine.enqueue("q", 1, timeout=bad)
    with pytest.raises(InvalidOption, match="timeout"):
        engine.enqueue_many("q", [1, 2], timeout=bad)
    with pytest.raises(InvalidOption, match="timeout"):
        engine.job_spec(1, timeout=bad)
    with pytest.raises(InvalidOption, match="timeout"):
        engine.add_cue("q", "c", "* * * * *", timeout=bad)
    assert engine.stats("q")["totals"]["enqueued"] == 0 and engine.cues("q") == []


def test_a_cue_gives_its_jobs_its_timeout(engine):
    cue = engine.add_cue("q", "every", "* * * * * *", timeout=2.5)
    assert cue.timeout == 2.5 and engine.get_cue("q", "every").timeout == 2.5
    job_id = engine.run_cue("q", "every")
    assert engine.get("q", job_id).timeout == 2.5
    assert engine.add_cue("q", "plain", "0 * * * *").timeout is None


def test_a_timed_out_attempt_is_failed_with_its_token_and_a_late_result_cannot_complete_it(engine):
    """What the worker does at a timeout: fail with the lease token. The handler's result,
    arriving later with the same token, is refused by fencing (nothing changes)."""
    job_id = engine.enqueue("q", 1, timeout=0.3, max_attempts=2)
    job = claim_one(engine)
    assert engine.fail(job, "TimeoutError: the attempt ran longer than its timeout of 0.3 s") == "scheduled"
    with pytest.raises(LeaseLost):
        engine.complete(job, "late")
    assert engine.ack("q", completed=[(job, "late")]).completed == [False]
    info = engine.get("q", job_id)
    assert (info.state, info.result, info.error.startswith("TimeoutError")) == ("scheduled", None, True)


# ---------------------------------------------------------------- progress
def test_progress_is_recorded_under_the_lease(engine):
    job_id = engine.enqueue("q", 1)
    job = claim_one(engine)
    assert engine.get("q", job_id).progress is None
    job.progress(40, "half the rows")
    first = engine.get("q", job_id).progress
    assert (first["value"], first["message"]) == (40, "half the rows")
    at = engine.progress(job, 62.5)
    assert engine.get("q", job_id).progress == {"value": 62.5, "message": None, "at": at}
    assert at >= first["at"]
    assert engine.get("q", job_id).state == "leased"
    engine.complete(job, "ok")
    assert engine.get("q", job_id).progress["value"] == 62.5, "a finished job keeps its last progress"


def test_progress_is_fenced_by_the_lease(engine):
    job_id = engine.enqueue("q", 1)
    job = claim_one(engine)
    stale = redispool.Job(**{**job.__dict__, "token": "999999"})
    with pytest.raises(LeaseLost):
        stale.progress(10)
    engine.complete(job)
    with pytest.raises(LeaseLost):
        job.progress(90, "too late")
    assert engine.get("q", job_id).progress is None
    assert [e.type for e in engine.events("q")].count("progress") == 0


def test_a_new_attempt_starts_without_progress(engine):
    job_id = engine.enqueue("q", 1, max_attempts=2)
    job = claim_one(engine)
    job.progress(80, "almost")
    engine.fail(job, "boom", delay=0)
    assert engine.get("q", job_id).progress["value"] == 80, "the failed attempt's progress stays to be seen"
    again = claim_one(engine)
    assert again.attempt == 2 and engine.get("q", job_id).progress is None


def test_progress_appends_an_event(make_engine):
    engine = make_engine()
    job_id = engine.enqueue("q", 1)
    job = claim_one(engine)
    job.progress(25, "a quarter")
    job.progress(50)
    progress = [e for e in engine.events("q") if e.type == "progress"]
    assert [(e.job_id, e.data) for e in progress] == [
        (job_id, {"value": 25, "message": "a quarter"}), (job_id, {"value": 50})]
    quiet = make_engine(events_max=0)
    quiet_id = quiet.enqueue("quiet", 1)
    [quiet_job] = quiet.claim("quiet", "w1")
    quiet_job.progress(10)
    assert quiet.get("quiet", quiet_id).progress["value"] == 10 and quiet.events("quiet") == []


@pytest.mark.parametrize("value,message", [
    (-1, None), (100.5, None), (math.nan, None), (math.inf, None), (True, None), ("50", None), (None, None),
    (50, "x" * 501), (50, 7), (50, "\ud800")])
def test_bad_progress_is_refused_and_nothing_is_written(engine, value, message):
    job_id = engine.enqueue("q", 1)
    job = claim_one(engine)
    with pytest.raises(InvalidOption, match="progress"):
        job.progress(value, message)
    assert engine.get("q", job_id).progress is None
    assert "progress" not in [e.type for e in engine.events("q")]


def test_a_job_built_by_hand_has_no_engine_to_report_through():
    job = redispool.Job("1", "q", None, 1, 1, "1", "w", 30.0, 0.0)
    with pytest.raises(RuntimeError, match="no engine"):
        job.progress(1)
    assert "engine" not in repr(job)
