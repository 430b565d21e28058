"""Cross-queue dependencies with real processes on the 3-master Cluster: a worker SIGKILLed
between finishing the parents and handing their outcomes to the child (another slot), then
three scheduler processes racing to hand them on: the child is released exactly once."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import redispool

from support import ROOT
from support.waiting import wait_for

APP = '''
import os, signal, sys
sys.path.insert(0, {root!r})
import redispool
pool = redispool.connect(os.environ["REDISPOOL_URL"], prefix=os.environ["REDISPOOL_PREFIX"])
pool._drain_outbox = lambda queue, budget=0: os.kill(os.getpid(), signal.SIGKILL)   # dies right there
worker = redispool.Worker(pool, queues=[sys.argv[1]], concurrency=1, idle_wait=0.2)
worker.process(lambda job: "ok")
worker.run()
'''


def test_sigkilled_worker_then_racing_schedulers(cluster_url: str, tmp_path: Path) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    pool = redispool.connect(cluster_url, prefix=prefix)
    slot = pool.client.keyslot
    assert slot(pool.keys("pa").ready) != slot(pool.keys("kb").ready)   # different slots
    parent = pool.enqueue("pa", "p")
    other = pool.enqueue("kb", "o")
    child = pool.enqueue("kb", "c", depends_on=[("pa", parent), other])
    app = tmp_path / "app.py"
    app.write_text(APP.format(root=str(ROOT)))
    env = dict(os.environ, REDISPOOL_URL=cluster_url, REDISPOOL_PREFIX=prefix)
    worker = subprocess.Popen([sys.executable, str(app), "pa"], cwd=ROOT, env=env)
    assert worker.wait(60) == -9                                   # killed after the parent's script
    assert pool.get("pa", parent).state == "done"
    assert pool.get("kb", child).state == "waiting"
    assert pool.client.zcard(pool.keys("pa").outbox) == 1
    [job] = pool.claim("kb", "w")
    pool.complete(job)                                             # the same-queue parent: in its script
    assert pool.get("kb", child).state == "waiting"
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(open(tmp_path / f"s{i}.log", "w")) for i in range(3)]
        schedulers = [subprocess.Popen([sys.executable, "-m", "redispool", "--url", cluster_url, "--prefix", prefix,
                                        "scheduler", "--interval", "0.05"], cwd=ROOT, env=env, stdout=log,
                                       stderr=subprocess.STDOUT) for log in logs]
        try:
            wait_for(lambda: pool.get("kb", child).state == "ready", timeout=30, what="the child released")
            wait_for(lambda: pool.client.zcard(pool.keys("pa").outbox) == 0, what="the outbox drained")
        finally:
            for proc in schedulers:
                proc.terminate()
            for proc in schedulers:
                proc.wait(30)
    released = [e for e in pool.events("kb", limit=1000) if e.job_id == child and e.type == "enqueued"]
    assert len(released) == 1
    assert pool.client.hmget(pool.keys("kb").job(child), "dd", "df") == [b"2", None]
