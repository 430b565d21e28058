"""A worker that is not Python: JavaScript processes (tests/http_worker.js, run by the
machine's node) drain 1,000 jobs through `redispool serve` while one of them is killed
with SIGKILL mid-job. The sweeper takes the dead worker's leases back once its registry
entry goes silent, and every job ends done."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import redispool

from support import ROOT
from support.served import TOKENS, Served, tokens_file

pytest.importorskip("starlette")
pytestmark = pytest.mark.slow
WORKER_JS = Path(__file__).resolve().parent / "http_worker.js"
JOBS = 1000


def node() -> str:
    found = shutil.which("node")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is missing (CI must install it)")
        pytest.skip("node is not installed")
    return found


class NodeWorker:
    def __init__(self, base: str, queue: str, worker_id: str, mode: str, work_ms: int) -> None:
        self.id = worker_id
        self.started: list[str] = []
        self.done: list[str] = []
        self.proc = subprocess.Popen([node(), str(WORKER_JS), base, TOKENS["worker"], queue, worker_id, mode,
                                      str(work_ms)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            kind, _, job_id = line.strip().partition(" ")
            (self.started if kind == "W" else self.done).append(job_id)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        return self.proc.stderr.read()


def test_javascript_workers_drain_1000_jobs_with_one_killed_mid_job(redis_url, tmp_path):
    prefix, queue = f"js{uuid.uuid4().hex[:8]}", "polyglot"
    engine = redispool.connect(redis_url, prefix=prefix)
    server = Served(redis_url, prefix, "--worker-timeout", "2", tokens_file=tokens_file(tmp_path)).wait_ready()
    sweeper = subprocess.Popen([sys.executable, "-m", "redispool", "--url", redis_url, "--prefix", prefix,
                                "sweeper", "--interval", "0.2", "--worker-timeout", "2"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    workers: list[NodeWorker] = []
    try:
        with server.client("worker") as http:
            for start in range(0, JOBS, 250):  # every 10th job fails its first attempt
                jobs = [{"payload": {"n": n, "fail": n % 10 == 0}, "max_attempts": 5}
                        for n in range(start, start + 250)]
                assert http.post(f"/v1/queues/{queue}/jobs/batch", json={"jobs": jobs}).status_code == 201
        workers = [NodeWorker(server.base, queue, f"js-{i}", mode, work_ms)
                   for i, (mode, work_ms) in enumerate([("single", 15), ("batch", 2), ("single", 2)])]
        victim = workers[0]
        deadline = time.monotonic() + 30
        while len(victim.started) < 50:  # it is working on a job now: each takes 15 ms
            assert time.monotonic() < deadline and victim.proc.poll() is None, victim.stop()
            time.sleep(0.005)
        seen = {w.id: w for w in engine.workers(timeout=10)}
        assert seen["js-0"].host == "127.0.0.1" and seen["js-0"].queues == [queue]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        lost = set(victim.started) - set(victim.done)
        assert lost, "the victim was killed between jobs"
        deadline = time.monotonic() + 90
        while engine.stats(queue)["done"] < JOBS:
            assert time.monotonic() < deadline, engine.stats(queue)
            for w in workers[1:]:
                assert w.proc.poll() is None, w.stop()
            time.sleep(0.1)
        stats = engine.stats(queue)
        assert (stats["done"], stats["ready"], stats["leased"], stats["scheduled"], stats["dead"]) == \
            (JOBS, 0, 0, 0, 0)
        for job_id in lost:  # the jobs it held were taken back and done by the others
            info = engine.get(queue, job_id)
            assert info.state == "done" and info.result["by"] != "js-0", info
        assert stats["totals"]["completed"] == JOBS and stats["totals"]["retried"] >= JOBS // 10
        time.sleep(0.3)  # the workers' last lines
        confirmed = [job_id for w in workers for job_id in w.done]
        assert len(confirmed) == len(set(confirmed)), "no job was confirmed done to two workers"
        assert len(confirmed) >= JOBS - 10  # the victim may die between its complete and its line
        assert "js-0" not in {w.id for w in engine.workers(timeout=2)}
    finally:
        errors = [w.stop() for w in workers]
        sweeper.terminate()
        sweeper.wait(10)
        assert server.stop() == 0, server.output
        engine.close()
    assert not any(errors[1:]), errors
