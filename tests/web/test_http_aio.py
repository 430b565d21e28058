"""AsyncEngine (redispool/aio.py): the HTTP server's engine on redis.asyncio, on every
backend. It must do exactly what the sync Engine does (same scripts, same decoding), and
its blocking claim must wait in Redis, not in a loop."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

import redispool
from redispool.aio import AsyncEngine

from support.servers import RedisServer, script_calls


def run(coro):
    return asyncio.run(coro)


def spec(engine, payload=None, **options):
    o = dict(priority=0, delay=None, run_at=None, max_attempts=3, lease=None, unique_key=None, job_id=None,
             backoff_base=None, backoff_cap=None)
    o.update(options)
    return engine.job_spec(payload, **o)


def test_lifecycle_matches_the_sync_engine(engine):
    async def go():
        a = AsyncEngine(engine)
        try:
            [(job_id, created)] = await a.enqueue_specs(
                "q", [spec(engine, {"n": 1}, max_attempts=2, priority=3, job_id="j-1")])
            assert created and job_id == "j-1" and engine.get("q", job_id).priority == 3
            assert await a.enqueue_specs("q", [spec(engine, 1, job_id="j-1")]) == [("j-1", False)]
            [job] = await a.claim("q", "w1", limit=5, lease=60)
            assert (job.id, job.payload, job.attempt, job.max_attempts) == (job_id, {"n": 1}, 1, 2)
            assert engine.get("q", job_id).state == "leased"
            assert await a.heartbeat(job, 120) > time.time() + 100
            assert await a.fail(job, "E: boom", delay=0) == "scheduled"
            [job] = await a.claim("q", "w1")
            assert job.attempt == 2
            await a.release(job)
            assert engine.get("q", job_id).state == "ready"
            [job] = await a.claim("q", "w1")
            await a.complete(job, {"ok": True})
            info = await a.get("q", job_id)
            assert (info.state, info.result, info.errors[0][1]) == ("done", {"ok": True}, "E: boom")
            assert info == engine.get("q", job_id)
            assert await a.stats("q") == engine.stats("q")
            assert [i.id for i in await a.jobs("q", "done")] == [job_id]
            assert await a.queues() == engine.queues() == ["q"]
            assert await a.get("q", "nope") is None
        finally:
            await a.close()
    run(go())


def test_stale_tokens_raise_lease_lost_and_change_nothing(engine):
    async def go():
        a = AsyncEngine(engine)
        try:
            job_id = engine.enqueue("q", 1)
            [job] = await a.claim("q", "w")
            stale = redispool.Job(**{**job.__dict__, "token": "0"})
            for op in (a.complete(stale), a.fail(stale, "x"), a.heartbeat(stale), a.release(stale)):
                with pytest.raises(redispool.LeaseLost):
                    await op
            assert engine.get("q", job_id).state == "leased"
        finally:
            await a.close()
    run(go())


def test_ack_spoils_only_the_stale_item_and_claims_the_next_batch(engine):
    async def go():
        a = AsyncEngine(engine)
        try:
            engine.enqueue_many("q", range(5), max_attempts=1)
            jobs = await a.claim("q", "w", limit=3)
            stale = redispool.Job(**{**jobs[1].__dict__, "token": "0"})
            result = await a.ack("q", completed=[(jobs[0], "r"), (stale, None)], failed=[(jobs[2], "bad")],
                                 worker_id="w", limit=10)
            assert result.completed == [True, False] and result.failed == ["dead"]
            assert sorted(j.payload for j in result.jobs) == [3, 4]
            assert engine.get("q", jobs[1].id).state == "leased"
        finally:
            await a.close()
    run(go())


def test_release_many_is_one_round_trip_and_spoils_only_the_stale_item(engine):
    """release_many: each job back to ready (attempt not counted), a stale token's item is
    its LeaseLost in place, and it loads the script again after a SCRIPT FLUSH or the
    function library after a FUNCTION FLUSH."""
    async def go():
        a = AsyncEngine(engine)
        try:
            await a.enqueue_specs("q", [spec(engine, i) for i in range(3)])
            jobs = await a.claim("q", "w1", limit=3)
            stale = redispool.models.Lease(jobs[1].id, "q", "999999")
            got = await a.release_many([jobs[0], stale])
            assert got[0] is None and isinstance(got[1], redispool.LeaseLost)
            assert [engine.get("q", j.id).state for j in jobs] == ["ready", "leased", "leased"]
            if hasattr(engine.client, "script_flush"):
                engine.client.script_flush()
            engine.client.function_flush()
            assert await a.release_many(jobs[1:]) == [None, None]
            assert {(engine.get("q", j.id).state, engine.get("q", j.id).attempts) for j in jobs} == {("ready", 0)}
            assert await a.release_many([]) == []
        finally:
            await a.close()
    run(go())


def test_a_call_loads_the_function_library_again_after_function_flush(engine):
    """A lone script call on the async client (FCALL, and FCALL_RO for a read) after
    FUNCTION FLUSH, as after a restart without the data: loaded again, then run."""
    async def go():
        a = AsyncEngine(engine)
        try:
            await a.enqueue_specs("q", [spec(engine, 1)])
            engine.client.function_flush()
            [job] = await a.claim("q", "w1")
            assert job.payload == 1
            engine.client.function_flush()
            assert (await a.stats("q"))["leased"] == 1
            assert engine.scripts.functions is not None, "still called as functions"
        finally:
            await a.close()
    run(go())


def test_registry(engine):
    async def go():
        a = AsyncEngine(engine)
        try:
            assert not await a.beat_worker("http-1", jobs_in_progress=[])
            await a.register_worker("http-1", host="10.0.0.7", pid=0, queues=["q"])
            assert await a.beat_worker("http-1", jobs_in_progress=["q/1"], processed=3, failed=1)
            [w] = await a.workers()
            assert (w.id, w.host, w.queues, w.jobs_in_progress, w.processed, w.failed) == \
                ("http-1", "10.0.0.7", ["q"], ["q/1"], 3, 1)
            assert engine.workers() == [w]
        finally:
            await a.close()
    run(go())


def test_blocking_claim_wakes_on_an_enqueue_from_another_process(engine):
    async def go():
        a = AsyncEngine(engine)
        try:
            threading.Timer(0.3, engine.enqueue, ("q", "late")).start()
            start = time.monotonic()
            [job] = await a.claim("q", "w", block=10)
            took = time.monotonic() - start
            assert job.payload == "late" and 0.25 < took < 3
            start = time.monotonic()
            assert await a.claim("q", "w", block=0.3) == []
            assert time.monotonic() - start >= 0.28
            engine.enqueue("q", "delayed", delay=0.4)   # no enqueue wakes it: the due time does
            start = time.monotonic()
            [job] = await a.claim("q", "w", block=10)
            assert job.payload == "delayed" and time.monotonic() - start < 3
        finally:
            await a.close()
    run(go())


def test_a_marker_the_wait_hub_takes_for_nobody_is_put_back(engine):
    """The hub's watcher outlives a wait that ended (timeout, client gone) by up to its
    own BZPOPMIN wait; a marker it pops then, with nobody left to wake, goes back while
    jobs are ready, so other claimers of the queue (a Python worker) still wake."""
    async def go():
        a = AsyncEngine(engine)
        try:
            marker = engine.keys("q").marker
            assert await a.wait_for_jobs("q", 0.2) is False  # the watcher still waits in BZPOPMIN
            engine.enqueue("q", 1)
            deadline = time.monotonic() + 5
            while engine.client.zcard(marker) == 0 or a.hub._watchers:   # popped, then put back
                assert time.monotonic() < deadline, "the marker was not put back"
                await asyncio.sleep(0.02)
            assert engine.client.zcard(marker) == 1
        finally:
            await a.close()
    run(go())


def test_undecodable_payload_goes_dead(engine):
    async def go():
        a = AsyncEngine(engine)
        try:
            job_id = engine.enqueue("q", 1)
            engine.client.hset(engine.keys("q").job(job_id), "p", b"\xc1")
            assert await a.claim("q", "w") == []
            assert engine.get("q", job_id).state == "dead"
        finally:
            await a.close()
    run(go())


def test_blocking_claim_does_not_poll(redis_url):
    engine = redispool.connect(redis_url, prefix=f"aio{time.time_ns()}")

    async def go():
        a = AsyncEngine(engine)
        try:
            await a.claim("q", "w")  # scripts loaded
            engine.client.config_resetstat()
            await a.claim("q", "w", block=1.5)
            stats = engine.client.info("commandstats")
            assert script_calls(stats) <= 3 and stats["cmdstat_bzpopmin"]["calls"] <= 2
        finally:
            await a.close()
    run(go())
    engine.close()


def test_unreachable_redis_is_connection_failed_and_it_recovers():
    server = RedisServer().start()
    engine = redispool.connect(server.url, prefix="down")

    async def go():
        a = AsyncEngine(engine)
        try:
            assert await a.ping()
            server.stop()
            assert not await a.ping()
            with pytest.raises(redispool.ConnectionFailed, match=f"127.0.0.1:{server.port}"):
                await a.enqueue_specs("q", [spec(engine, 1)])
            with pytest.raises(redispool.ConnectionFailed):
                await a.claim("q", "w", block=1)
            server.start()
            assert await a.ping()
            assert len(await a.enqueue_specs("q", [spec(engine, 1)])) == 1
        finally:
            await a.close()
            server.stop()
    run(go())
