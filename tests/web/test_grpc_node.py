"""A worker that is not Python on the native Work stream: two Node processes
(tests/grpc_worker.js, @grpc/grpc-js + @grpc/proto-loader loading the .proto shipped in
the package) drain 1,000 jobs through `redispool serve --grpc-port`; one is SIGKILLed
mid-drain. Every job ends done, no completion is confirmed twice, and the killed
worker's jobs are ready again (or with the other worker) within 100 ms of the kill:
the stream breaking gives them back, not the 30 s lease."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

import redispool

from support.rpc import TOKENS, GrpcServed, pb, tokens_file, wait_until
from support.rpc import auth as metadata

pytestmark = pytest.mark.slow
WORKER_JS = Path(__file__).resolve().parent / "grpc_worker.js"
PROTO = Path(redispool.__file__).resolve().parent / "grpc" / "proto" / "redispool" / "v1" / "jobs.proto"
JOBS = 1000
NODE_PACKAGES = ("@grpc/grpc-js@1", "@grpc/proto-loader@0")


def node_modules() -> Path:
    """A directory with @grpc/grpc-js and @grpc/proto-loader (npm install, cached)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node/npm are missing (CI must install them)")
        pytest.skip("node is not installed")
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "redispool-tests" / "node-grpc"
    if not (home / "node_modules" / "@grpc" / "proto-loader").exists():
        home.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(home), *NODE_PACKAGES],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.skip(f"npm install failed: {done.stderr[-500:]}")
    return home / "node_modules"


def released_at(log: str, worker_id: str) -> float:
    """When the server logged that the stream of ``worker_id`` ended and its jobs were
    released (unix seconds, from the log line's local timestamp)."""
    for line in log.splitlines():
        if f"stream of worker {worker_id} ended" in line:
            stamp, millis = line[:23].split(",")
            return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000
    raise AssertionError(f"the server did not log the end of {worker_id}'s stream:\n{log[-2000:]}")


class NodeWorker:
    def __init__(self, modules: Path, address: str, queue: str, worker_id: str, credit: int, work_ms: int) -> None:
        self.id = worker_id
        self.started: dict[str, str] = {}    # id -> token
        self.done: list[str] = []
        env = {**os.environ, "NODE_PATH": str(modules)}
        self.proc = subprocess.Popen(["node", str(WORKER_JS), str(PROTO), address, TOKENS["worker"], queue,
                                      worker_id, str(credit), str(work_ms)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            kind, _, rest = line.strip().partition(" ")
            if kind == "W":
                job_id, _, token = rest.partition(" ")
                self.started[job_id] = token
            elif kind == "D":
                self.done.append(rest)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        return self.proc.stderr.read()


def test_node_workers_drain_1000_jobs_over_the_work_stream_with_one_killed(redis_server, tmp_path):
    modules = node_modules()
    prefix, queue = f"gn{uuid.uuid4().hex[:6]}", "nodejobs"
    served = GrpcServed(redis_server.url, prefix, tokens=tokens_file(tmp_path)).wait_ready()
    engine = redispool.connect(redis_server.url, prefix=prefix)
    workers: list[NodeWorker] = []
    try:
        with served.channel() as channel:
            stub = served.stub(channel)
            for start in range(0, JOBS, 500):
                stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=queue, jobs=[
                    pb.EnqueueRequest(payload=f'{{"n": {i}}}') for i in range(start, start + 500)]),
                    metadata=metadata())
        victim = NodeWorker(modules, served.address, queue, "node-victim", credit=20, work_ms=20)
        survivor = NodeWorker(modules, served.address, queue, "node-survivor", credit=20, work_ms=2)
        workers = [victim, survivor]
        wait_until(lambda: len(victim.done) >= 50 and set(victim.started) - set(victim.done), timeout=60,
                   what="the victim at work, holding jobs")
        victim.proc.send_signal(signal.SIGKILL)
        killed_at, killed_wall = time.monotonic(), time.time()
        confirmed = set(victim.done)
        in_flight = {i: t for i, t in victim.started.items() if i not in confirmed}
        assert in_flight, "the victim held no job when killed"

        def given_back() -> bool:
            for job_id in in_flight:
                info = engine.get(queue, job_id)
                if info.state == "leased" and info.worker_id == "node-victim":
                    return False
            return True
        wait_until(given_back, timeout=10, what="the victim's jobs back")
        seen_back_after = time.monotonic() - killed_at   # as this test saw it, its own reads included
        wait_until(lambda: "stream of worker node-victim ended" in served.log_text(), timeout=10,
                   what="the server to log the end of the victim's stream")
        back_after = released_at(served.log_text(), "node-victim") - killed_wall   # as the server did it
        wait_until(lambda: engine.stats(queue)["done"] == JOBS, timeout=120, what="every job done")
        survivor.proc.send_signal(signal.SIGTERM)
        all_done = victim.done + survivor.done
        assert len(all_done) == len(set(all_done)), "a completion was confirmed twice"
        assert engine.stats(queue)["done"] == JOBS and engine.stats(queue)["dead"] == 0
        assert back_after < 0.1, f"the killed worker's jobs came back after {back_after * 1000:.0f} ms"
        assert seen_back_after < 1.0, seen_back_after
        retried = [i for i in in_flight if engine.get(queue, i).attempts > 1]
        assert retried == [], "a job given back by a broken stream counted an attempt"
    finally:
        errors = [w.stop() for w in workers]
        engine.close()
        assert served.stop() == 0, served.output
    assert "stream error" not in errors[1], errors[1]
