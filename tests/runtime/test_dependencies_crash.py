"""Cross-queue dependencies with real processes on the 3-master Cluster: a worker SIGKILLed
between finishing the parents and handing their outcomes to the child (another slot), then
three scheduler processes racing to hand them on: the child is released exactly once; and a
creator SIGKILLed between creating a child and linking it to its parent in another slot."""
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


CREATOR = '''
import os, signal, sys
sys.path.insert(0, {root!r})
import redispool
from redispool import ops
pool = redispool.connect(os.environ["REDISPOOL_URL"], prefix=os.environ["REDISPOOL_PREFIX"])
ops.link = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)   # dies between enqueue and link
pool.enqueue("kids", "c", job_id="orphan", depends_on=[("parents", sys.argv[1])])
'''


def test_a_creator_sigkilled_before_linking_leaves_no_child_waiting_forever(cluster_url: str,
                                                                           tmp_path: Path) -> None:
    """The child exists (waiting) but its parent, in another slot, never heard of it; the
    parent finishes; two scheduler processes link the child again LINK_GRACE_S after its
    creation, which hands it the parent's outcome: released once."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    pool = redispool.connect(cluster_url, prefix=prefix)
    assert pool.client.keyslot(pool.keys("parents").ready) != pool.client.keyslot(pool.keys("kids").ready)
    parent = pool.enqueue("parents", "p")
    app = tmp_path / "creator.py"
    app.write_text(CREATOR.format(root=str(ROOT)))
    env = dict(os.environ, REDISPOOL_URL=cluster_url, REDISPOOL_PREFIX=prefix)
    assert subprocess.run([sys.executable, str(app), parent], cwd=ROOT, env=env, timeout=60).returncode == -9
    assert pool.get("kids", "orphan").state == "waiting"
    [job] = pool.claim("parents", "w")
    pool.complete(job)                                  # its children set never listed the orphan
    assert pool.get("kids", "orphan").state == "waiting"
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(open(tmp_path / f"s{i}.log", "w")) for i in range(2)]
        schedulers = [subprocess.Popen([sys.executable, "-m", "redispool", "--url", cluster_url, "--prefix", prefix,
                                        "scheduler", "--interval", "0.2"], cwd=ROOT, env=env, stdout=log,
                                       stderr=subprocess.STDOUT) for log in logs]
        try:
            wait_for(lambda: pool.get("kids", "orphan").state == "ready", timeout=60, what="the orphan released")
            wait_for(lambda: pool.client.zcard(pool.keys("kids").linking) == 0, what="the linking list emptied")
        finally:
            for proc in schedulers:
                proc.terminate()
            for proc in schedulers:
                proc.wait(30)
    released = [e for e in pool.events("kids", limit=1000) if e.job_id == "orphan" and e.type == "enqueued"]
    assert len(released) == 1
    pool.close()
