"""Engine.wait_then_claim: a blocking wait on a queue's marker and a claim sent together
(the worker's Waiter uses it while jobs keep coming), on every backend."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest


def test_a_job_enqueued_during_the_wait_is_claimed_by_it(engine):
    later = threading.Timer(0.2, lambda: engine.enqueue("q", {"n": 1}))
    later.start()
    try:
        popped, jobs, wait = engine.wait_then_claim("q", "w1", 5.0, limit=3)
    finally:
        later.join()
    assert popped and [j.payload for j in jobs] == [{"n": 1}] and wait is None
    assert engine.get("q", jobs[0].id).state == "leased" and jobs[0].engine is engine
    engine.complete(jobs[0], "ok")   # its lease is a real one
    assert engine.get("q", jobs[0].id).state == "done"


def test_ready_jobs_are_claimed_at_once_up_to_the_limit(engine):
    ids = [engine.enqueue("q", n) for n in range(5)]
    started = time.monotonic()
    popped, jobs, _ = engine.wait_then_claim("q", "w1", 10.0, limit=3)
    assert popped and time.monotonic() - started < 5
    assert [j.id for j in jobs] == ids[:3]
    # the claim set the marker again for the two left: the next wait returns at once too
    popped, jobs, _ = engine.wait_then_claim("q", "w2", 10.0, limit=3)
    assert popped and [j.id for j in jobs] == ids[3:]


def test_a_wait_that_times_out_still_claims_and_says_when_to_come_back(engine):
    engine.enqueue("q", "later", delay=30)
    popped, jobs, wait = engine.wait_then_claim("q", "w1", 0.2, limit=1)
    assert (popped, jobs) == (True, [])      # the earliest scheduled job sets the marker
    assert wait is not None and 25 < wait <= 30
    popped, jobs, wait = engine.wait_then_claim("q", "w1", 0.2, limit=1)
    assert (popped, jobs) == (False, [])
    assert wait is not None and 25 < wait <= 30


def test_an_empty_queue_times_out_with_nothing(engine):
    assert engine.wait_then_claim("q", "w1", 0.1, limit=1) == (False, [], None)


@pytest.mark.parametrize("backend_url", ["redis"], indirect=True)
def test_scripts_flushed_under_it_are_loaded_again(engine):
    engine.enqueue("q", 1)
    engine.client.script_flush()
    engine.client.execute_command("FUNCTION", "FLUSH")
    popped, jobs, _ = engine.wait_then_claim("q", "w1", 1.0, limit=1)
    assert popped and [j.payload for j in jobs] == [1]


def test_the_async_engine_waits_and_claims_the_same_way(engine):
    from redispool.aio import AsyncEngine

    async def main():
        a = AsyncEngine(engine)
        try:
            assert await a.wait_then_claim("q", "w1", 0.1, limit=2) == (False, [], None)
            later = asyncio.get_running_loop().call_later(0.2, lambda: engine.enqueue("q", "x"))
            popped, jobs, wait = await a.wait_then_claim("q", "w1", 5.0, limit=2)
            later.cancel()
            return popped, [j.payload for j in jobs], wait
        finally:
            await a.close()
    assert asyncio.run(main()) == (True, ["x"], None)
