"""Queue limits (issue 19) with real workers: worker processes and HTTP claimers at once
never hold more than the concurrency cap nor claim more than the rate in any window, and
workers held back by a limit sleep (no spinning) until capacity frees.

Each test runs its own redis-server, so INFO commandstats counts only its workers."""
from __future__ import annotations

import threading
import time

import httpx
import pytest
import redis

import redispool
from redispool import Worker

from support.cli import cli_process
from support.served import Served
from support.servers import calls
from support.waiting import running, wait_for


def windows_ok(times: list[int], rate: int, per_ms: int) -> bool:
    """At most ``rate`` of ``times`` (ms) in any window of ``per_ms``."""
    times = sorted(times)
    return all(later - earlier >= per_ms for earlier, later in zip(times, times[rate:]))


def idle_scripts(client: redis.Redis, waits: int = 5) -> int:
    """Script calls while the workers make ``waits`` more blocking waits (after as many
    to settle: the claims that found the limit come first)."""
    settled = calls(client, "bzpopmin") + waits
    wait_for(lambda: calls(client, "bzpopmin") >= settled, what="the workers blocking")
    scripts, blocked = calls(client, "scripts"), calls(client, "bzpopmin")
    wait_for(lambda: calls(client, "bzpopmin") >= blocked + waits, what=f"{waits} more waits")
    return calls(client, "scripts") - scripts


def test_workers_held_by_the_cap_sleep_and_wake_when_a_slot_frees(private_server):
    engine = redispool.connect(private_server.url, prefix="cap")
    client = redis.Redis(port=private_server.port)
    engine.set_limits("q", concurrency=1)
    gate = threading.Event()
    engine.enqueue_many("q", range(3))
    workers = [Worker(engine, queues=["q"], concurrency=2, idle_wait=0.3, beat_interval=3600) for _ in range(2)]
    for w in workers:
        w.process(lambda job: gate.wait(30))
    try:
        with running(workers[0]), running(workers[1]):
            wait_for(lambda: engine.stats("q")["leased"] == 1, what="the one job the cap allows")
            assert idle_scripts(client) <= 1, "held back by the cap, the workers only block"
            assert engine.stats("q")["leased"] == 1
            gate.set()  # each finished job frees the slot: the next is claimed at once
            wait_for(lambda: engine.stats("q")["done"] == 3, timeout=10, what="the three jobs, one at a time")
    finally:
        gate.set()
        engine.close()
        client.close()


def test_workers_held_by_the_rate_sleep_until_the_window_allows(private_server):
    engine = redispool.connect(private_server.url, prefix="rate")
    client = redis.Redis(port=private_server.port)
    engine.set_limits("q", rate=2, per=1.5)
    ids = engine.enqueue_many("q", range(4))
    started: dict[str, int] = {}
    workers = [Worker(engine, queues=["q"], concurrency=2, idle_wait=0.3, beat_interval=3600) for _ in range(2)]
    for w in workers:
        w.process(lambda job: started.setdefault(job.id, round((job.lease_expires_at - job.lease) * 1000)))
    try:
        with running(workers[0]), running(workers[1]):
            wait_for(lambda: len(started) == 2 and engine.stats("q")["done"] == 2,
                     what="the two jobs the first window allows")
            assert idle_scripts(client, waits=3) <= 1, "held back by the rate, the workers only block"
            wait_for(lambda: all(engine.get("q", i).state == "done" for i in ids), timeout=10,
                     what="the next two when the window allows (a wake-up at that time, not a poll)")
            assert windows_ok(list(started.values()), 2, 1500)
            engine.set_limits("q", rate=1, per=60)  # a window that stays closed for a minute
            engine.enqueue_many("q", range(3))
            assert idle_scripts(client) <= 2, "no claims until the window allows one"
    finally:
        engine.close()
        client.close()


LIMITS_APP = '''
import os, time, redis, redispool
pool = redispool.connect()
notes = redis.Redis.from_url(os.environ["REDISPOOL_URL"])
worker = redispool.Worker(pool, queues=["lim"], concurrency=3, lease=30, idle_wait=0.5)

@worker.process
def handle(job):
    notes.rpush("notes:claims", round((job.lease_expires_at - job.lease) * 1000))
    time.sleep(0.1)
'''


@pytest.mark.slow
def test_worker_processes_and_http_claimers_never_exceed_the_limits(private_server, tmp_path):
    rate, per_ms, cap, n = 10, 500, 4, 100
    url, prefix = private_server.url, "procs"
    engine = redispool.connect(url, prefix=prefix)
    client = redis.Redis(port=private_server.port)
    engine.set_limits("lim", rate=rate, per=per_ms / 1000, concurrency=cap)
    (tmp_path / "limitsapp.py").write_text(LIMITS_APP)
    served = Served(url, prefix).wait_ready()
    procs: list = []
    leased_max, http_claims, stop = [0], [], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            leased_max[0] = max(leased_max[0], client.zcard(engine.keys("lim").leased))

    def http_claimer(name: str) -> None:
        with httpx.Client(base_url=served.base, timeout=30) as http:
            while not stop.is_set():
                jobs = http.post("/v1/queues/lim/claim", json={"worker_id": name, "limit": 2, "wait": 1,
                                                               "lease": 30}).json()["jobs"]
                for job in jobs:
                    http_claims.append(round((job["lease_expires_at"] - 30) * 1000))
                time.sleep(0.1)
                for job in jobs:
                    http.post(f"/v1/queues/lim/jobs/{job['id']}/complete", json={"token": job["token"]})
    threads = [threading.Thread(target=sample)] + [threading.Thread(target=http_claimer, args=(f"http{i}",))
                                                   for i in range(2)]
    try:
        for t in threads:
            t.start()
        engine.enqueue_many("lim", range(n))   # 5 s of jobs at the rate: the HTTP claimers start,
        wait_for(lambda: http_claims, what="a first HTTP claim")   # the worker processes join them
        procs += [cli_process("--url", url, "--prefix", prefix, "worker", "limitsapp:worker", cwd=tmp_path,
                              stdout=None, stderr=None) for _ in range(3)]
        wait_for(lambda: engine.stats("lim")["done"] == n, timeout=60, what="every job done")
        stop.set()
        for t in threads:
            t.join(30)
        claims = [int(c) for c in client.lrange("notes:claims", 0, -1)] + http_claims
        assert len(claims) == n and http_claims and len(http_claims) < n, "workers and HTTP claimers both took jobs"
        assert leased_max[0] <= cap, f"sampled {leased_max[0]} leased at once, over the cap of {cap}"
        assert windows_ok(claims, rate, per_ms), "more claims in a window than the rate"
    finally:
        stop.set()
        served.stop()
        for proc in procs:
            proc.kill()
            proc.wait(10)
        engine.close()
        client.close()
