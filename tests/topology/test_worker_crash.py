"""Real worker processes (tests/worker_app.py) on a real redis-server, killed mid-job.

SIGKILL loses nothing: the sweeper takes the dead worker's jobs back and another worker
finishes them, each exactly once. SIGTERM lets running jobs finish (or gives them back
after the grace period), exits 0 and leaves nothing leased.
"""
from __future__ import annotations

import collections
import signal
import subprocess
import uuid
from collections.abc import Iterator

import pytest

import redispool
from redispool.sweeper import Sweeper

from support.processes import WORKER_APP, Workers
from support.waiting import running, wait_for

pytestmark = pytest.mark.slow
QUEUE = "crash"


@pytest.fixture
def setup(redis_url, tmp_path) -> Iterator[tuple[redispool.Engine, Workers]]:
    prefix = f"c{uuid.uuid4().hex[:10]}"
    engine = redispool.connect(redis_url, prefix=prefix)
    apps = Workers(redis_url, prefix, tmp_path, app=WORKER_APP, queue=QUEUE)
    yield engine, apps
    apps.close()
    engine.close()


def notes(engine: redispool.Engine, kind: str) -> list[list[str]]:
    """The worker app's "started" (id, pid, attempt) or "finished" (id, pid) records."""
    return [n.decode().split(":") for n in engine.client.lrange(f"{engine.prefix}:test:{kind}", 0, -1)]


def started_by(engine: redispool.Engine, proc: subprocess.Popen) -> set[str]:
    return {job_id for job_id, pid, _ in notes(engine, "started") if pid == str(proc.pid)}


def registered(engine: redispool.Engine, proc: subprocess.Popen) -> list[redispool.WorkerInfo]:
    return [w for w in engine.workers() if w.pid == proc.pid]


def test_sigkill_mid_job_loses_nothing_and_each_job_is_done_once(setup):
    engine, apps = setup
    quick = engine.enqueue_many(QUEUE, [{"n": i} for i in range(4)])
    slow = engine.enqueue_many(QUEUE, [{"sleep": 60}, {"sleep": 60}], priority=-1)
    victim = apps.start(concurrency=2, lease=3, beat=0.2)
    wait_for(lambda: set(slow) <= started_by(engine, victim), timeout=30, what="the victim to start the slow jobs")
    [victim_info] = registered(engine, victim)
    victim.kill()
    assert victim.wait(10) == -signal.SIGKILL
    assert {engine.get(QUEUE, i).state for i in slow} == {"leased"}

    more = engine.enqueue_many(QUEUE, [{"n": i} for i in range(20)])
    every = quick + slow + more
    rescuer = apps.start(concurrency=2, lease=3, beat=0.2)
    with running(Sweeper(engine, interval=0.1, worker_timeout=1.0)):
        wait_for(lambda: engine.stats(QUEUE)["totals"]["completed"] == len(every), timeout=30,
                   what="every job to be done")
    rescuer.send_signal(signal.SIGTERM)
    assert rescuer.wait(15) == 0, apps.log(rescuer)

    finished = collections.Counter(job_id for job_id, _ in notes(engine, "finished"))
    assert finished == collections.Counter(every), "each job's handler completed exactly once"
    assert {engine.get(QUEUE, i).state for i in every} == {"done"}
    stats = engine.stats(QUEUE)
    assert (stats["leased"], stats["ready"], stats["totals"]["completed"]) == (0, 0, len(every))
    for job_id in slow:
        info = engine.get(QUEUE, job_id)
        assert info.attempts == 2
        assert info.result == rescuer.pid
        assert info.errors[0][1] == f"worker {victim_info.id} stopped heartbeating"
    assert engine.workers() == [], "the victim was deregistered by the sweeper, the rescuer by itself"


def test_sigterm_lets_running_jobs_finish_and_exits_0(setup):
    engine, apps = setup
    ids = engine.enqueue_many(QUEUE, [{"sleep": 1.0}, {"sleep": 1.0}])
    proc = apps.start(concurrency=2, grace=30)
    wait_for(lambda: set(ids) <= started_by(engine, proc), timeout=30, what="both jobs to start")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, apps.log(proc)
    assert {engine.get(QUEUE, i).state for i in ids} == {"done"}
    assert engine.stats(QUEUE)["leased"] == 0
    assert registered(engine, proc) == []
    assert "shutdown requested" in apps.log(proc)


def test_sigterm_past_the_grace_period_releases_the_jobs_and_exits_0(setup):
    engine, apps = setup
    ids = engine.enqueue_many(QUEUE, [{"sleep": 60}, {"sleep": 60}])
    proc = apps.start(concurrency=2, grace=0.3)
    wait_for(lambda: set(ids) <= started_by(engine, proc), timeout=30, what="both jobs to start")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, apps.log(proc)
    for job_id in ids:
        info = engine.get(QUEUE, job_id)
        assert (info.state, info.attempts) == ("ready", 0), "released: the attempt is not counted"
    assert engine.stats(QUEUE)["leased"] == 0
    assert registered(engine, proc) == []


def test_a_second_signal_exits_at_once_with_status_1(setup):
    engine, apps = setup
    [job_id] = engine.enqueue_many(QUEUE, [{"sleep": 60}])
    proc = apps.start(concurrency=1, grace=60)
    wait_for(lambda: job_id in started_by(engine, proc), timeout=30, what="the job to start")
    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "shutdown requested" in apps.log(proc), what="the first signal to be handled")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 1, apps.log(proc)  # not the 60 s job, not the 60 s grace
    assert "exiting now" in apps.log(proc)
    # nothing was given back: the lease (or the sweeper) returns the job later
    assert engine.get(QUEUE, job_id).state == "leased"
