"""The HTTP API under faults, through a real `redispool serve` process: a worker written
in JavaScript (the machine's node) drains 1,000 jobs while one of its processes is killed
with SIGKILL; Redis killed and restarted under the running server (503, then 200)."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette")

import redispool  # noqa: E402

from support.servers import RedisServer, free_port  # noqa: E402

pytestmark = pytest.mark.slow

NODE_WORKER = r"""
// A redispool worker in JavaScript: claim with long-poll, "work", complete; forever.
const [base, id] = process.argv.slice(2);
const post = async (path, body) => {
  const r = await fetch(base + path, {method: "POST", headers: {"Content-Type": "application/json"},
                                      body: JSON.stringify(body)});
  return [r.status, await r.json()];
};
(async () => {
  for (;;) {
    try {
      const [status, body] = await post("/v1/queues/js/claim", {worker_id: id, limit: 5, lease: 2, wait: 2});
      if (status !== 200) { await new Promise(r => setTimeout(r, 100)); continue; }
      for (const job of body.jobs) {
        await new Promise(r => setTimeout(r, 2));           // the work
        await post(`/v1/queues/js/jobs/${job.id}/complete`, {token: job.token, worker_id: id, result: job.payload});
      }
    } catch (err) {                                        // a dropped connection: try again
      console.error(String(err));
      await new Promise(r => setTimeout(r, 100));
    }
  }
})();
"""


def serve(url: str, prefix: str, log_path) -> tuple[subprocess.Popen, str]:
    """`redispool serve` logging to a file (a pipe nobody reads would fill and stall it)."""
    port = free_port()
    with open(log_path, "w") as log:  # the child has its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "redispool", "--url", url, "--prefix", prefix, "serve",
                                 "--port", str(port)], stdout=subprocess.DEVNULL, stderr=log, text=True)
    proc.log_path = log_path
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(base + "/openapi.json", timeout=1)
            return proc, base
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"serve did not start: {Path(log_path).read_text()[-2000:]}") from None
            time.sleep(0.1)


def status_of(base: str, method: str, path: str, body: dict | None = None) -> int:
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_javascript_workers_drain_1000_jobs_while_one_is_killed(redis_url, tmp_path):
    prefix = f"js{time.time_ns()}"
    engine = redispool.connect(redis_url, prefix=prefix)
    ids = set(engine.enqueue_many("js", range(1000), max_attempts=5))
    sweeper = redispool.Sweeper(engine, interval=0.2, worker_timeout=3)
    sweeping = threading.Thread(target=sweeper.run, daemon=True)
    sweeping.start()
    server, base = serve(redis_url, prefix, tmp_path / "serve.log")
    (tmp_path / "worker.mjs").write_text(NODE_WORKER)
    workers = [subprocess.Popen(["node", str(tmp_path / "worker.mjs"), base, f"js-{i}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(3)]
    try:
        deadline = time.monotonic() + 30
        while engine.stats("js")["done"] < 100:
            assert time.monotonic() < deadline, "the JavaScript workers did not start draining"
            time.sleep(0.02)
        victim = workers[0]
        victim.send_signal(signal.SIGKILL)  # mid-batch: it holds leased jobs
        killed_at = engine.stats("js")["done"]
        deadline = time.monotonic() + 60
        while engine.stats("js")["done"] < 1000:
            assert time.monotonic() < deadline, engine.stats("js")
            time.sleep(0.05)
    finally:
        sweeper.stop()
        for w in workers:
            w.kill()
            w.wait(10)
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            raise AssertionError(
                f"serve did not stop on SIGTERM: {Path(server.log_path).read_text()[-3000:]}") from None
    stats = engine.stats("js")
    done = {j.id for j in engine.jobs("js", "done", limit=2000)}
    assert done == ids and stats["leased"] == stats["ready"] == stats["dead"] == 0
    assert stats["totals"]["completed"] == 1000, "each job completed once (fencing)"
    assert 100 <= killed_at < 1000
    engine.close()


def test_redis_restart_under_a_running_server(tmp_path):
    server_dir = tmp_path / "redis"
    server_dir.mkdir()
    redis_server = RedisServer("--appendonly", "yes", "--appendfsync", "always", dir=str(server_dir)).start()
    prefix = "restart"
    api, base = serve(redis_server.url, prefix, tmp_path / "serve.log")
    try:
        assert status_of(base, "POST", "/v1/queues/r/jobs", {"payload": 1}) == 201
        redis_server.stop()
        assert status_of(base, "POST", "/v1/queues/r/jobs", {"payload": 2}) == 503
        assert status_of(base, "GET", "/healthz") == 503
        redis_server.start()  # same port and directory: the AOF brings the first job back
        deadline = time.monotonic() + 20
        while status_of(base, "GET", "/healthz") != 200:
            assert time.monotonic() < deadline, "the server did not recover"
            time.sleep(0.2)
        assert status_of(base, "POST", "/v1/queues/r/jobs", {"payload": 3}) == 201
        engine = redispool.connect(redis_server.url, prefix=prefix)
        assert sorted(j.payload for j in engine.jobs("r", "ready")) == [1, 3], "nothing lost, nothing half-written"
        engine.close()
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(20)
        redis_server.stop()
