"""A worker with several queues, on a real redis-server: free slots are shared among the
queues with ready jobs (a backlog in one never holds up another), and an idle worker
blocks on every queue's marker and wakes when a scheduled job falls due, without polling.
"""
from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis

import redispool
from redispool import Worker

from support.servers import calls
from support.waiting import running, wait_for


# ---------------------------------------------------------------- sharing the slots
def test_two_backlogged_queues_share_the_slots(redis_engine):
    engine = redis_engine
    for queue in ("A", "B"):
        engine.enqueue_many(queue, range(300))
    order: list[str] = []
    lock = threading.Lock()
    worker = Worker(engine, queues=["A", "B"], concurrency=4, idle_wait=0.2, beat_interval=0.5)

    @worker.process
    def handle(job):
        time.sleep(0.002)
        with lock:
            order.append(job.queue)

    worker.run(burst=True)
    assert sorted(order) == ["A"] * 300 + ["B"] * 300
    first_b = order.index("B")
    assert first_b < 2 * worker.concurrency, f"B's first job finished only after {first_b} of A's"
    half = order[:300]
    assert half.count("B") >= 100, f"of the first 300 jobs finished, only {half.count('B')} were B's"


@pytest.mark.parametrize("queues", [["hot", "cold"], ["cold", "hot"]])
def test_a_job_on_a_quiet_queue_runs_while_another_has_a_backlog(redis_engine, queues):
    engine = redis_engine
    concurrency = 4
    engine.enqueue_many("hot", range(400))
    hot_done: list[int] = []
    cold_ran: list[tuple[int, int]] = []   # (hot jobs finished, hot jobs still ready) then
    worker = Worker(engine, queues=queues, concurrency=concurrency, idle_wait=2.0, beat_interval=0.5)

    @worker.process
    def handle(job):
        if job.queue == "cold":
            cold_ran.append((len(hot_done), engine.stats("hot")["ready"]))
            return
        time.sleep(0.02)
        hot_done.append(job.payload)

    with running(worker):
        wait_for(lambda: len(hot_done) >= 20, what="the hot backlog to be worked on")
        finished_before = len(hot_done)
        engine.enqueue("cold", "now", priority=1000)
        wait_for(lambda: cold_ran, what="the cold job")
    [(finished_then, hot_ready_then)] = cold_ran
    assert hot_ready_then > 100, "the cold job waited for the hot backlog"
    # it started at one of the next free slots, not after the backlog
    assert finished_then - finished_before <= 4 * concurrency, (finished_before, finished_then)


def test_a_queue_alone_gets_every_slot_and_acks_carry_the_next_claims(private_server):
    engine = redispool.connect(private_server.url, prefix="solo")
    client = redis.Redis(port=private_server.port)
    try:
        engine.enqueue_many("solo", range(400))
        worker = Worker(engine, queues=["solo", "idle1", "idle2"], concurrency=8, idle_wait=0.5,
                        beat_interval=60)
        peak = [0]
        active = [0]
        lock = threading.Lock()

        @worker.process
        def handle(job):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.005)
            with lock:
                active[0] -= 1

        before = calls(client, "scripts")
        worker.run(burst=True)
        scripts = calls(client, "scripts") - before
        assert engine.stats("solo")["totals"]["completed"] == 400
        assert peak[0] == 8, "a queue with no competition uses every slot"
        # finish-and-fetch-next: an ack carries the next claim, so about one call per job
        # (fewer when jobs finish together and share an ack; a loaded machine finishes them
        # one by one). Without the carry each job would cost an ack and a claim: ~800.
        assert scripts <= 400 * 1.25, scripts
    finally:
        engine.close()
        client.close()


# ---------------------------------------------------------------- idle waits
@pytest.mark.parametrize("n_queues", [1, 25])
def test_an_idle_worker_only_blocks(private_server, n_queues):
    engine = redispool.connect(private_server.url, prefix="idle")
    client = redis.Redis(port=private_server.port)
    queues = [f"q{i}" for i in range(n_queues)]
    worker = Worker(engine, queues=queues, idle_wait=0.3, beat_interval=3600)
    worker.process(lambda job: None)
    try:
        with running(worker):
            wait_for(lambda: calls(client, "bzpopmin") >= 1, what="the first blocking wait")
            wait_for(lambda: calls(client, "scripts") >= n_queues + 2,
                       what="registration and a first claim of every queue")
            scripts, waits = calls(client, "scripts"), calls(client, "bzpopmin")
            wait_for(lambda: calls(client, "bzpopmin") >= waits + 5, what="five more idle waits")
            assert calls(client, "scripts") - scripts <= 1, "an idle worker claims nothing between waits"
            job_id = engine.enqueue(queues[-1], "wake")  # and it still wakes at once for a job
            wait_for(lambda: engine.get(queues[-1], job_id).state == "done", timeout=5, what="pickup")
    finally:
        engine.close()
        client.close()


@pytest.mark.slow
def test_an_idle_worker_on_a_cluster_does_not_poll(cluster_url):
    engine = redispool.connect(cluster_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    queues = [f"c{i}" for i in range(5)]
    nodes = [redis.Redis(host=n.host, port=n.port) for n in engine.client.get_primaries()]

    def total(command: str) -> int:
        return sum(calls(node, command) for node in nodes)

    worker = Worker(engine, queues=queues, idle_wait=0.5, beat_interval=3600)
    worker.process(lambda job: job.queue)
    try:
        before = total("bzpopmin")   # the session cluster's count: earlier tests' waits too
        with running(worker):
            wait_for(lambda: total("bzpopmin") >= before + len(queues), what="every watcher blocking")
            scripts, waits = total("scripts"), total("bzpopmin")
            time.sleep(3.0)  # six of the waiter's 0.5 s waits
            # polling made ~50 claims in 3 s; the session cluster also serves whatever an
            # earlier test left running, so allow a few calls that are not this worker's
            assert total("scripts") - scripts <= 5, "no claims while idle"
            # each watcher's BZPOPMIN lasts several seconds, whatever the waiter's waits
            assert total("bzpopmin") - waits <= 2 * len(queues), total("bzpopmin") - waits
            job_id = engine.enqueue(queues[2], "wake")
            wait_for(lambda: engine.get(queues[2], job_id).state == "done", timeout=5, what="pickup")
    finally:
        for node in nodes:
            node.close()
        engine.close()


def test_delayed_jobs_on_many_queues_run_when_due_without_a_scheduler(redis_engine):
    engine = redis_engine
    queues = [f"d{i}" for i in range(25)]
    started: dict[str, float] = {}
    worker = Worker(engine, queues=queues, idle_wait=2.0, beat_interval=0.5)

    @worker.process
    def handle(job):
        started[job.queue] = time.time()

    delays = {"d3": 0.5, "d10": 1.0, "d20": 3.3}
    with running(worker):
        wait_for(lambda: worker.id in [w.id for w in engine.workers()], what="registration")
        time.sleep(0.1)  # the worker is now blocked in its idle wait
        due = {}
        for queue, delay in delays.items():
            engine.enqueue(queue, None, delay=delay)
            due[queue] = time.time() + delay
        wait_for(lambda: len(started) == 3, timeout=10, what="the delayed jobs")
    late = {q: round(started[q] - due[q], 3) for q in delays}
    assert all(-0.05 < s < 0.3 for s in late.values()), f"seconds late: {late}"


def test_a_retry_on_a_quiet_queue_runs_when_due(redis_engine):
    engine = redispool.connect(redis_engine.url, prefix=redis_engine.prefix, backoff_base=0.6, backoff_cap=0.6)
    job_id = engine.enqueue("r2", None, max_attempts=2)
    attempts: list[float] = []
    worker = Worker(engine, queues=["r1", "r2", "r3"], idle_wait=2.0, beat_interval=0.5)

    @worker.process
    def handle(job):
        attempts.append(time.time())
        if job.attempt == 1:
            raise RuntimeError("once")

    try:
        with running(worker):
            wait_for(lambda: engine.get("r2", job_id).state == "done", timeout=10, what="the retry")
    finally:
        engine.close()
    info = redis_engine.get("r2", job_id)
    # the retry was due 0.3-0.6 s after the failure (jittered backoff of 0.6 s)
    assert info.attempts == 2 and attempts[1] - attempts[0] < 0.6 + 0.3, attempts
