"""A transition step that several Lua scripts take is one lib.lua helper, so it runs the
same way whichever script takes it. These tests pin that on every backend of ``engine``
(memory://, a real redis-server, a real cluster) with damaged job hashes, where copies of
a step used to drift apart: a damaged field must send a job the same way through each
script, and never leave it in no state set (where neither a claim nor the sweeper finds it).

- lease step (``lease_job``): ``claim`` and ``claim_id`` (the cueapi "claim this
  execution" route);
- requeue step (``requeue``): ``release`` and ``sweep`` (an expired lease, or the leases
  of a worker whose registration expired).
"""
from __future__ import annotations

import time

import pytest

from redispool.compat.cueapi import claim_by_id
from redispool.keys import STATES

# (field, stored value) pairs the lease step must refuse; None deletes the field.
LEASE_DAMAGE = [("p", None), ("m", None), ("m", "three"), ("m", "nan"), ("l", "soon"), ("l", "0"),
                ("l", "-5"), ("l", "inf"), ("a", "many"), ("a", "1.5"), ("a", "-1"), ("a", " 1"),
                ("a", "99999999999999999999"), ("bb", "fast"), ("bc", "nan")]
# Attempt counts a job hash can hold after its claim was damaged; the last is too large
# for HINCRBY, None deletes the field.
ATTEMPTS_DAMAGE = [None, "many", "1.5", "-1", "99999999999999999999"]


def where(engine, queue: str, job_id: str) -> list[str]:
    """The state sets holding ``job_id`` (exactly one for every job that exists)."""
    k = engine.keys(queue)
    return [s for s in STATES if engine.client.zscore(k.state(s), job_id) is not None]


def damage(engine, queue: str, job_id: str, field: str, value: str | None) -> None:
    key = engine.keys(queue).job(job_id)
    if value is None:
        engine.client.hdel(key, field)
    else:
        engine.client.hset(key, field, value)


def outcome(engine, queue: str, job_id: str) -> tuple:
    """Where the job is and what it says about itself."""
    info = engine.get(queue, job_id)
    return where(engine, queue, job_id), info.state, info.error, info.attempts


@pytest.mark.parametrize("field,value", LEASE_DAMAGE, ids=[f"{f}={v!r}" for f, v in LEASE_DAMAGE])
def test_a_damaged_job_goes_the_same_way_through_claim_and_claim_id(engine, field, value):
    seen = {}
    for via in ("claim", "claim_id"):
        queue = f"via-{via}"
        job_id = engine.enqueue(queue, "x", lease=30)
        damage(engine, queue, job_id, field, value)
        if via == "claim":
            assert engine.claim(queue, "w") == []
        else:
            assert claim_by_id(engine, queue, job_id, "w", 30) is None
        seen[via] = outcome(engine, queue, job_id)
    assert seen["claim_id"] == seen["claim"]
    places, state, error, _ = seen["claim"]
    assert places == ["dead"] and state == "dead" and error.startswith("malformed job: ")


def test_claim_and_claim_id_lease_with_the_jobs_own_lease(engine):
    ids = engine.enqueue_many("q", ["a", "b"], lease=7)
    by_claim = engine.claim("q", "w", limit=1, lease=60)[0]
    by_id = claim_by_id(engine, "q", ids[1], "w", 60)
    for job in (by_claim, by_id):
        assert job.lease_expires_at - time.time() == pytest.approx(7, abs=2)
        assert (job.attempt, where(engine, "q", job.id)) == (1, ["leased"])


@pytest.mark.parametrize("value", ATTEMPTS_DAMAGE, ids=repr)
@pytest.mark.parametrize("via", ["release", "sweep expired", "sweep worker"])
def test_a_damaged_attempt_count_never_loses_a_job_given_back(engine, via, value):
    """The job goes back to ready, and its next claim judges the damage as a claim of a
    job that was never leased does."""
    job_id = engine.enqueue("q", "x", max_attempts=5)
    [job] = engine.claim("q", "w", lease=0.05 if via == "sweep expired" else 30)
    damage(engine, "q", job_id, "a", value)
    if via == "release":
        engine.release(job)
    elif via == "sweep expired":
        time.sleep(0.1)
        assert engine.sweep("q") == 1
    else:
        assert engine.sweep("q", worker_id="w") == 1
    assert where(engine, "q", job_id) == ["ready"]
    assert engine.stats("q")["ready"] == 1

    fresh = engine.enqueue("fresh", "x", max_attempts=5)
    damage(engine, "fresh", fresh, "a", value)
    claimed = {queue: [j.attempt for j in engine.claim(queue, "w2")] for queue in ("q", "fresh")}
    assert claimed["q"] == claimed["fresh"]
    assert outcome(engine, "q", job_id)[:2] == outcome(engine, "fresh", fresh)[:2]
    if value is not None:
        assert outcome(engine, "q", job_id)[:2] == (["dead"], "dead")
        assert engine.get("q", job_id).error.startswith("malformed job: attempts")
