"""Faults on real servers and real worker processes: what redispool promised to keep
survives them.

- redis-server SIGKILLed and restarted (AOF, fsync always) in the middle of a 10,000-job
  run with three worker processes: every job completes, none twice.
- Worker processes SIGKILLed every few hundred milliseconds during a 10,000-job run while
  a sweeper runs: every job ends done, none is lost.
- Redis gone for a few seconds under the scheduler and the sweeper: they log, back off,
  resume, and no cue fire time makes two jobs.
- Malformed job data sends that job to dead with a clear error; the worker carries on.

Each test prints what it measured (jobs, faults injected, jobs lost).
"""
from __future__ import annotations

import collections
import logging
import random
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

import redispool
from redispool import Worker
from redispool.scheduler import Scheduler
from redispool.sweeper import Sweeper

from support.processes import Workers
from support.servers import REDIS_DOWN, RedisServer, need
from support.waiting import running, wait_for

pytestmark = pytest.mark.slow
QUEUE = "chaos"
JOBS = 10_000
AOF_ALWAYS = ("--appendonly", "yes", "--appendfsync", "always")


@pytest.fixture
def aof_server(tmp_path: Path) -> Iterator[RedisServer]:
    need("redis-server")
    server = RedisServer(*AOF_ALWAYS, dir=tmp_path).start()
    yield server
    server.stop()


def enqueue_all(engine: redispool.Engine, jobs: int = JOBS, **options) -> list[str]:
    ids: list[str] = []
    for start in range(0, jobs, 1000):
        ids += engine.enqueue_many(QUEUE, [{"n": n} for n in range(start, min(jobs, start + 1000))], **options)
    return ids


def settled(engine: redispool.Engine, jobs: int, workers: Workers) -> dict:
    """The queue's stats once every job is done."""
    try:
        wait_for(lambda: engine.stats(QUEUE)["done"] >= jobs, 90, f"all {jobs} jobs to be done", every=0.2,
                 tolerate=REDIS_DOWN)
    except AssertionError:
        logs = "\n".join(workers.log(p)[-2000:] for p in workers.procs[-3:])
        raise AssertionError(f"not all jobs done: {engine.stats(QUEUE)}\n{logs}") from None
    return engine.stats(QUEUE)


def test_a_redis_restart_mid_run_loses_and_repeats_no_completion(aof_server, tmp_path):
    engine = redispool.connect(aof_server.url, prefix="c", done_max=JOBS)
    workers = Workers(aof_server.url, "c", tmp_path, queues=QUEUE, concurrency=8, sleep=0.001, lease=3)
    try:
        ids = enqueue_all(engine, max_attempts=10)
        procs = [workers.start() for _ in range(3)]
        # A claim whose reply the kill cut off leaves jobs leased to a worker that never
        # got them: the sweeper hands them out again when their 3 s lease ends.
        with running(Sweeper(engine, interval=0.5)):
            wait_for(lambda: engine.stats(QUEUE)["done"] >= JOBS // 3, 60, "a third of the jobs to be done",
                     tolerate=REDIS_DOWN)
            done_before = engine.stats(QUEUE)["done"]
            down_at = time.monotonic()
            aof_server.kill()
            time.sleep(1.0)
            aof_server.start()  # same port and directory: the AOF is loaded back
            restored = engine.stats(QUEUE)["done"]
            assert restored >= done_before, "every completion Redis acknowledged was on disk"
            stats = settled(engine, JOBS, workers)
            recovered_s = time.monotonic() - down_at

        assert [stats[s] for s in ("scheduled", "ready", "leased", "dead")] == [0, 0, 0, 0]
        assert stats["done"] == JOBS and stats["totals"]["completed"] == JOBS, "no job completed twice"
        assert stats["totals"]["enqueued"] == JOBS
        done = collections.Counter(job_id for _, job_id in workers.lines("done"))
        assert max(done.values()) == 1 and set(done) <= set(ids), \
            "no job's completion was acknowledged to a worker twice"
        cut = JOBS - len(done)  # completions stored whose reply the kill cut off
        for proc in procs:
            log = workers.log(proc)
            assert "redis unavailable" in log and "redis reachable again" in log, log
            assert workers.stop(proc) == 0, workers.log(proc)
        reruns = len(workers.lines("ran")) - JOBS
        print(f"\nredis restart: {JOBS} jobs, 3 workers, 1 SIGKILL + restart of redis-server (AOF always) "
              f"with {done_before} done; all done {recovered_s:.1f}s after the kill; {stats['totals']['failed']} "
              f"leases swept, {cut} acks whose reply was cut, {reruns} handler re-runs, 0 completions repeated, "
              f"0 jobs lost")
    finally:
        workers.close()
        engine.close()


def test_workers_sigkilled_every_few_hundred_ms_lose_no_job(redis_url, tmp_path):
    prefix = f"k{uuid.uuid4().hex[:8]}"
    engine = redispool.connect(redis_url, prefix=prefix, done_max=JOBS)
    workers = Workers(redis_url, prefix, tmp_path, queues=QUEUE, concurrency=8, sleep=0.008, beat=0.2)
    rng = random.Random(5)
    kills = 0
    try:
        ids = enqueue_all(engine, max_attempts=20)
        for _ in range(3):
            workers.start()
        with running(Sweeper(engine, interval=0.2, worker_timeout=1.0)):
            started = time.monotonic()
            # a kill every 0.2-0.5 s for 6 s, each victim replaced at once
            while time.monotonic() - started < 6.0 and engine.stats(QUEUE)["done"] < JOBS * 0.9:
                time.sleep(rng.uniform(0.2, 0.5))
                victim = rng.choice(workers.live())
                victim.kill()
                victim.wait(10)
                kills += 1
                workers.start()
            done_when_calm = engine.stats(QUEUE)["done"]
            stats = settled(engine, JOBS, workers)
        assert kills >= 10
        assert done_when_calm < JOBS, "the kills happened while jobs were still running"
        assert [stats[s] for s in ("scheduled", "ready", "leased", "dead")] == [0, 0, 0, 0]
        assert stats["done"] == JOBS and stats["totals"]["completed"] == JOBS
        assert {i.id for i in engine.jobs(QUEUE, "done", limit=JOBS)} == set(ids)
        done = collections.Counter(job_id for _, job_id in workers.lines("done"))
        assert max(done.values()) == 1, "no job's completion was acknowledged twice"
        ran = collections.Counter(job_id for _, job_id, _ in workers.lines("ran"))
        assert set(ran) == set(ids)
        taken_back = stats["totals"]["failed"]  # every attempt a dead worker held is a failed one
        print(f"\nworker kills: {JOBS} jobs, {kills} SIGKILLs over {len(workers.procs)} worker processes, "
              f"{taken_back} leases taken back by the sweeper, {sum(ran.values()) - JOBS} handler re-runs, "
              f"0 jobs lost")
    finally:
        workers.close()
        engine.close()


def test_scheduler_and_sweeper_ride_out_a_redis_outage_without_firing_a_cue_twice(aof_server, caplog):
    caplog.set_level(logging.INFO, logger="redispool")
    engine = redispool.connect(aof_server.url, prefix="s", done_max=0)  # done jobs vanish at once:
    engine.add_cue(QUEUE, "tick", "* * * * * *")                        # only the cue's own state
    fired: list[str] = []                                                # can stop a repeat
    worker = Worker(engine, queues=[QUEUE], concurrency=2, idle_wait=0.3, beat_interval=0.2)
    worker.process(lambda job: fired.append(job.id))
    engine.register_worker("ghost", host="h", pid=1, queues=["chores"])
    [held] = [engine.enqueue("chores", "held by a worker that dies during the outage")]
    engine.claim("chores", "ghost", lease=600)
    try:
        with running(worker), running(Scheduler(engine, interval=0.2)), \
                running(Sweeper(engine, interval=0.2, worker_timeout=2.0)):
            wait_for(lambda: len(fired) >= 2, 10, "the cue to fire before the outage", tolerate=REDIS_DOWN)
            aof_server.kill()
            down_at = time.monotonic()
            time.sleep(3.0)
            aof_server.start()
            back_at = time.monotonic()
            wait_for(lambda: any(int(j.rsplit(":", 1)[1]) / 1000 > time.time() - 0.5 for j in fired[-1:]), 20,
                     "the cue to fire on time again", tolerate=REDIS_DOWN)
            wait_for(lambda: engine.get("chores", held).state == "ready", 10, "the sweeper to take back the job",
                     tolerate=REDIS_DOWN)
            time.sleep(1.5)
        outage_s = back_at - down_at

        times = [int(j.rsplit(":", 1)[1]) for j in fired]
        assert len(times) == len(set(times)), "no fire time ran twice"
        assert engine.stats(QUEUE)["totals"]["enqueued"] == len(times), "no fire time made a second job"
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert sorted(gaps)[:-1] == [1000] * (len(gaps) - 1), gaps
        # misfire "skip": the missed seconds fired once (the first missed time), then on time
        skipped = max(gaps)
        assert skipped >= 2000, gaps
        assert engine.get("chores", held).errors[0][1] == "worker ghost stopped heartbeating"

        for daemon in ("scheduler", "sweeper"):
            lines = [r.getMessage() for r in caplog.records if r.name == f"redispool.{daemon}"]
            # one line when the outage starts (however many steps fail), one when it ends
            down = [line for line in lines if "cannot reach Redis" in line and "retrying with backoff" in line]
            assert len(down) == 1 and down[0].count("redis://") == 1, (daemon, lines)
            assert any(re.search(rf"{daemon}: Redis works again after [\d.]+s \(\d+ failed steps\)", line)
                       for line in lines), lines
        print(f"\nredis outage under scheduler and sweeper: {outage_s:.1f}s down, {len(times)} cue jobs, "
              f"one catch-up fire for the missed seconds, 0 fire times repeated, swept job back in ready")
    finally:
        engine.close()


def test_malformed_job_data_goes_dead_with_a_clear_error_and_the_worker_carries_on(redis_url):
    engine = redispool.connect(redis_url, prefix=f"m{uuid.uuid4().hex[:8]}")
    try:
        good = engine.enqueue_many(QUEUE, [1, 2, 3])
        no_payload, no_max, garbage = engine.enqueue_many(QUEUE, ["x", "y", "z"])
        more = engine.enqueue_many(QUEUE, [4, 5])
        k = engine.keys(QUEUE)
        engine.client.hdel(k.job(no_payload), "p")
        engine.client.hdel(k.job(no_max), "m")
        engine.client.hset(k.job(garbage), "p", b"\xc1not msgpack")
        with pytest.raises(Exception):  # noqa: B017 (any error: the bytes only need not to be msgpack)
            msgpack.unpackb(b"\xc1not msgpack")

        ran: list[str] = []
        worker = Worker(engine, queues=[QUEUE], concurrency=2, idle_wait=0.2)
        worker.process(lambda job: ran.append(job.id))
        with running(worker):  # raises here if the worker's run() raised
            wait_for(lambda: sorted(ran) == sorted(good + more), 10, "the good jobs to run", tolerate=REDIS_DOWN)
            wait_for(lambda: engine.stats(QUEUE)["done"] == 5, 10, "their completions", tolerate=REDIS_DOWN)
        for job_id, error in ((no_payload, "malformed job: payload missing"),
                              (no_max, "malformed job: max_attempts missing or not a number")):
            info = engine.get(QUEUE, job_id)
            assert (info.state, info.error) == ("dead", error)
        info = engine.get(QUEUE, garbage)
        assert info.state == "dead"
        assert info.error.startswith(("ExtraData", "FormatError", "ValueError", "UnpackException",
                                      "PayloadError")), info.error
        assert info.payload.startswith("<undecodable payload"), "get() still shows the job"
        stats = engine.stats(QUEUE)
        assert (stats["done"], stats["dead"], stats["ready"], stats["leased"]) == (5, 3, 0, 0)
    finally:
        engine.close()
