"""``redispool worker --processes N``: one supervising command, N worker processes.

Real worker processes on a real Redis: each child is a worker of its own (its own id,
its own jobs), signals reach every child once, a SIGKILLed supervisor takes its children
down cleanly (their jobs go back to ready, none is lost), and a child that dies takes the
command down with its status.
"""
from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import uuid

import pytest

import redispool

from support.cli import cli_process
from support.waiting import wait_for

APP = '''
import os, time, redispool

pool = redispool.connect(os.environ["REDISPOOL_URL"], prefix=os.environ["REDISPOOL_PREFIX"])
worker = redispool.Worker(pool, queues=["pq"], concurrency=2, beat_interval=0.2)

@worker.process
def handle(job):
    time.sleep(job.payload)
    return os.getpid()
'''


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children_of(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(child) for child in f.read().split()}


@pytest.fixture
def prefix() -> str:
    return f"p{uuid.uuid4().hex[:10]}"


@pytest.fixture
def engine_for(redis_url, prefix):
    engine = redispool.connect(redis_url, prefix=prefix)
    yield engine
    engine.close()


@pytest.fixture
def app(tmp_path):
    (tmp_path / "procapp.py").write_text(textwrap.dedent(APP))
    return tmp_path


def start(app, redis_url, prefix, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return cli_process("--url", redis_url, "--prefix", prefix, "worker", "procapp:worker", *extra, cwd=app,
                       env=env, stdout=subprocess.DEVNULL, stderr=open(app / "worker.log", "w"))


def test_the_default_is_one_process_per_cpu_plus_one(app, redis_url, prefix, engine_for):
    expected = len(os.sched_getaffinity(0)) + 1
    proc = start(app, redis_url, prefix, env={"REDISPOOL_PROCESSES": ""})   # (click reads "" as unset)
    try:
        wait_for(lambda: len(engine_for.workers()) == expected, timeout=30, what=f"{expected} registered workers")
        assert len(children_of(proc.pid)) == expected
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (app / "worker.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_each_process_is_a_worker_of_its_own_and_sigterm_stops_them_all(app, redis_url, prefix, engine_for):
    ids = engine_for.enqueue_many("pq", [0.01] * 200)
    proc = start(app, redis_url, prefix, "--processes", "2")
    try:
        wait_for(lambda: len(engine_for.workers()) == 2, timeout=30, what="two registered workers")
        wait_for(lambda: engine_for.stats("pq")["done"] == 200, timeout=60, what="every job done")
        pids = {engine_for.get("pq", i).result for i in ids}
        workers = engine_for.workers()
        assert {w.pid for w in workers} == pids == children_of(proc.pid), "both processes took jobs"
        assert len({w.id for w in workers}) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (app / "worker.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert engine_for.workers() == [], "each child deregistered"
    assert not any(alive(pid) for pid in pids)


def test_a_sigkilled_supervisor_takes_its_children_down_and_nothing_is_lost(app, redis_url, prefix, engine_for):
    ids = engine_for.enqueue_many("pq", [30] * 4)   # every slot busy for 30 s
    proc = start(app, redis_url, prefix, "--processes", "2", "--grace", "0.5")
    try:
        wait_for(lambda: engine_for.stats("pq")["leased"] == 4, timeout=30, what="4 jobs in progress")
        kids = children_of(proc.pid)
        assert len(kids) == 2
        proc.kill()
        proc.wait(10)
        # the kernel tells each child (PR_SET_PDEATHSIG): it releases its jobs and exits
        wait_for(lambda: not any(alive(pid) for pid in kids), timeout=20, what="the children gone")
        stats = engine_for.stats("pq")
        assert stats["leased"] == 0 and stats["ready"] == 4, stats
        assert {engine_for.get("pq", i).state for i in ids} == {"ready"}
        assert engine_for.workers() == []
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_child_that_dies_stops_the_command_with_its_status(app, redis_url, prefix, engine_for):
    engine_for.enqueue_many("pq", [30] * 4)
    proc = start(app, redis_url, prefix, "--processes", "2", "--grace", "0.5")
    try:
        wait_for(lambda: engine_for.stats("pq")["leased"] == 4, timeout=30, what="4 jobs in progress")
        victim, other = sorted(children_of(proc.pid))
        os.kill(victim, signal.SIGKILL)
        assert proc.wait(20) == 128 + signal.SIGKILL
        assert not alive(other), "the other child was stopped"
        # the survivor released its 2 jobs at once; the killed one's wait for their leases
        assert engine_for.stats("pq")["ready"] == 2
    finally:
        if proc.poll() is None:
            proc.kill()


def test_burst_waits_for_every_process_and_exits_0(app, redis_url, prefix, engine_for):
    engine_for.enqueue_many("pq", [0.01] * 100)
    proc = start(app, redis_url, prefix, "--processes", "3", "--burst")
    try:
        assert proc.wait(60) == 0, (app / "worker.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert engine_for.stats("pq")["done"] == 100


def test_a_bad_target_is_one_error_line_whatever_the_process_count(app, redis_url, prefix):
    proc = cli_process("--url", redis_url, "--prefix", prefix, "worker", "procapp:nothing", "--processes", "4",
                       cwd=app)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert len(err.strip().splitlines()) == 1 and "has no attribute 'nothing'" in err, err
