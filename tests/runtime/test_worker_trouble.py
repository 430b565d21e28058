"""The worker when Redis is in trouble, on real servers: at maxmemory, with durable=True
and no replica, during a cluster slot migration; its log lines for failures; ``--burst``
and scheduled jobs; where its health and metrics ports listen."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest
import redis

import redispool
from redispool import Worker
from redispool.errors import RedisFull

from support import ROOT
from support.servers import RedisServer, free_port
from support.waiting import running, wait_for

QUICK = dict(idle_wait=0.2, beat_interval=0.1)


def events(caplog, *names: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "redispool.worker" and getattr(r, "event", None) in names]


# ---------------------------------------------------------------- §5 Redis at maxmemory
def test_a_full_redis_keeps_the_jobs_flowing_and_is_logged_once(caplog):
    caplog.set_level(logging.DEBUG, logger="redispool.worker")
    server = RedisServer("--maxmemory-policy", "noeviction").start()
    engine = redispool.connect(server.url, prefix="full")
    admin = redis.Redis(port=server.port)
    try:
        engine.enqueue_many("q", [{"n": i, "pad": "x" * 1000} for i in range(300)])
        admin.config_set("maxmemory", admin.info("memory")["used_memory"] * 7 // 10)
        with pytest.raises(RedisFull):
            engine.enqueue("q", "no room")  # the server is full indeed
        worker = Worker(engine, queues=["q", "other"], concurrency=4, beat_interval=0.02, idle_wait=0.2)
        worker.process(lambda job: job.payload["n"])
        worker.run(burst=True)  # claims and acks work at maxmemory; registry beats do not
        assert engine.stats("q")["totals"]["completed"] == 300
        assert worker.processed == 300
        full = [r for r in events(caplog, "redis full") if r.levelno >= logging.WARNING]
        assert len(full) == 1, [r.getMessage() for r in full]
        assert "maxmemory" in full[0].reason and full[0].during == "registry"
        assert not events(caplog, "redis unavailable", "redis reachable again"), \
            "a refused registry beat is not an outage of the job flow"
    finally:
        admin.close()
        engine.close()
        server.stop()


# ---------------------------------------------------------------- the scripts lost by Redis
def test_a_running_worker_outlives_function_flushes_and_a_restart_without_data():
    """The function library gone under a running worker (FUNCTION FLUSH, then a restarted
    redis-server that kept no data): its next call loads it again; no job is lost or
    finished twice, and the scripts stay functions (no fall back to EVALSHA)."""
    server = RedisServer().start()
    engine = redispool.connect(server.url, prefix="lost")
    admin = redis.Redis(port=server.port)
    done: list[int] = []
    reached = {n: threading.Event() for n in (50, 100, 150)}
    flushed = {n: threading.Event() for n in reached}

    def handle(job: redispool.Job) -> None:
        if job.payload in reached:   # its completion is the worker's first call after a flush
            reached[job.payload].set()
            flushed[job.payload].wait(10)
        done.append(job.payload)

    try:
        engine.enqueue_many("q", list(range(200)))
        worker = Worker(engine, queues=["q"], concurrency=4, **QUICK)
        worker.process(handle)
        with running(worker):
            for n in reached:
                assert reached[n].wait(20), f"job {n} to run"
                admin.function_flush()
                flushed[n].set()
            wait_for(lambda: engine.stats("q")["done"] == 200, 20, "the drain")
        assert sorted(done) == list(range(200))
        assert engine.scripts.functions is not None
        admin.close()
        server.kill()
        server.start()   # no data: no library, no queue
        admin = redis.Redis(port=server.port)
        assert admin.function_list() == []
        for attempt in range(3):   # the pooled connections died with the server
            try:
                job_id = engine.enqueue("q", "after")
                break
            except redispool.ConnectionFailed:
                if attempt == 2:
                    raise
        assert engine.claim("q", "w")[0].id == job_id
        assert engine.scripts.library.name in str(admin.function_list())
    finally:
        admin.close()
        engine.close()
        server.stop()


# ---------------------------------------------------------------- §12 durable, no replica
APP = """
    import time
    import redispool

    pool = redispool.connect()
    worker = redispool.Worker(pool, queues=["d"], concurrency=4, beat_interval=0.2, idle_wait=0.3)

    @worker.process
    def handle(job):
        return job.payload
"""


def test_durable_without_a_replica_counts_each_job_once_and_stops_promptly(redis_url, tmp_path):
    prefix = f"d{uuid.uuid4().hex[:8]}"
    (tmp_path / "durable_app.py").write_text(textwrap.dedent(APP))
    plain = redispool.connect(redis_url, prefix=prefix)
    ids = plain.enqueue_many("d", range(20))
    log_path = tmp_path / "worker.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("REDISPOOL_URL", None)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "redispool", "--url", f"{redis_url}?durable=1&durable_timeout=0.2",
             "--prefix", prefix, "worker", "durable_app:worker", "--grace", "60", "--processes", "1"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: all(plain.get("d", i).state == "done" for i in ids), timeout=30, what="every job done")
        wait_for(lambda: log_path.read_text().count("INFO redispool.worker: done ") == 20, timeout=30,
                   what="a 'done' line per job")
        proc.send_signal(signal.SIGTERM)
        # nothing is in flight: it must not sit out the 60 s grace retrying an applied ack
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        plain.close()
    text = log_path.read_text()
    assert proc.returncode == 0, text
    assert text.count(" not durable ") == 1, text
    assert "cannot reach Redis" not in text and "redis unavailable" not in text, text
    assert "lease lost" not in text, "each completion is acknowledged once"
    assert "worker stopped processed=20 failed=0" in text, text
    assert [plain.get("d", i).result for i in ids] == list(range(20))


# ---------------------------------------------------------------- §17 log lines
def test_one_line_per_failure_with_the_stored_error(redis_engine, caplog):
    caplog.set_level(logging.INFO, logger="redispool.worker")
    engine = redispool.connect(redis_engine.url, prefix=redis_engine.prefix, backoff_base=0.05, backoff_cap=0.05)

    class Boom(Exception):
        pass

    bare = engine.enqueue("q", "bare", max_attempts=2)
    huge = engine.enqueue("q", "huge", max_attempts=1)
    worker = Worker(engine, queues=["q"], **QUICK)

    @worker.process
    def handle(job):
        raise Boom() if job.payload == "bare" else Boom("x" * 100_000)

    try:
        worker.run(burst=True)
    finally:
        engine.close()
    lines = {(r.event, r.job_id, r.attempt): r for r in events(caplog, "failed", "retried", "dead")}
    assert sorted(lines) == [("dead", bare, 2), ("dead", huge, 1), ("retried", bare, 1)], \
        "one line per failed attempt: retried or dead, no separate 'failed' line"
    assert lines[("retried", bare, 1)].error == "Boom" == redis_engine.get("q", bare).errors[-1][1]
    assert lines[("retried", bare, 1)].levelno == logging.WARNING
    stored = redis_engine.get("q", huge).error
    assert len(stored) == 4096 and lines[("dead", huge, 1)].error == stored
    assert "Traceback" in lines[("dead", huge, 1)].getMessage()


@pytest.mark.slow
def test_a_cluster_moving_slots_is_logged_in_words(cluster_url, caplog):
    caplog.set_level(logging.INFO, logger="redispool.worker")
    engine = redispool.connect(cluster_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    job_id = engine.enqueue("moving", "x")
    marker = engine.keys("moving").marker
    slot = engine.client.keyslot(marker)
    source = engine.client.get_node_from_key(marker)
    target = next(n for n in engine.client.get_primaries() if n.name != source.name)
    src, dst = redis.Redis(host=source.host, port=source.port), redis.Redis(host=target.host, port=target.port)
    src_id, dst_id = src.execute_command("CLUSTER", "MYID"), dst.execute_command("CLUSTER", "MYID")
    # a slot half migrated: the queue's keys stay on the source, so a script touching
    # some of them (and some missing ones) gets TRYAGAIN until redis-py gives up
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    worker = Worker(engine, queues=["moving"], idle_wait=0.3, beat_interval=0.2)
    worker.process(lambda job: job.payload)
    try:
        with running(worker):
            wait_for(lambda: events(caplog, "redis unavailable"), timeout=20, what="the worker to notice")
            for node in (src, dst):  # the migration is called off
                node.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
            wait_for(lambda: engine.get("moving", job_id).state == "done", timeout=30, what="the job")
    finally:
        for node in (src, dst):
            node.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
            node.close()
        engine.close()
    [line] = [r for r in events(caplog, "redis unavailable") if r.levelno >= logging.WARNING]
    assert "cluster is moving slots" in line.reason, line.getMessage()
    assert events(caplog, "redis reachable again")


# ---------------------------------------------------------------- §17 --burst
def test_burst_waits_for_a_retry_due_during_its_run(redis_engine):
    engine = redispool.connect(redis_engine.url, prefix=redis_engine.prefix, backoff_base=0.3, backoff_cap=0.3)
    job_id = engine.enqueue("q", "flaky", max_attempts=3)
    worker = Worker(engine, queues=["q", "other"], **QUICK)

    @worker.process
    def handle(job):
        if job.attempt < 3:
            raise RuntimeError(f"attempt {job.attempt}")
        return "third time"

    try:
        worker.run(burst=True)
    finally:
        engine.close()
    info = redis_engine.get("q", job_id)
    assert (info.state, info.attempts, info.result) == ("done", 3, "third time")
    assert (worker.processed, worker.failed) == (3, 2)


def test_burst_leaves_jobs_due_later_and_says_how_many(redis_engine, caplog):
    caplog.set_level(logging.INFO, logger="redispool.worker")
    engine = redis_engine
    now_id = engine.enqueue("q", "now")
    later = [engine.enqueue("q", "later", delay=3600), engine.enqueue("r", "later", delay=60)]
    worker = Worker(engine, queues=["q", "r"], **QUICK)
    worker.process(lambda job: job.payload)
    worker.run(burst=True, burst_wait=5)
    assert engine.get("q", now_id).state == "done"
    assert [engine.get(q, i).state for q, i in zip("qr", later)] == ["scheduled", "scheduled"]
    [done] = events(caplog, "burst done")
    assert done.scheduled_left == 2 and "5s" in done.note, done.getMessage()


# ---------------------------------------------------------------- §15 where ports listen
def listening(port: int) -> set[str]:
    """Addresses a TCP socket LISTENs on at ``port`` (Linux /proc/net/tcp)."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            out.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return out


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc/net/tcp")
def test_worker_health_listens_on_loopback_unless_told(redis_engine):
    worker = Worker(redis_engine, queues=["q"], health_port=0, **QUICK)
    worker.process(lambda job: None)
    with running(worker):
        wait_for(lambda: worker.health_address is not None, what="the health endpoint")
        assert listening(worker.health_address[1]) == {"127.0.0.1"}


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc/net/tcp")
@pytest.mark.parametrize("host", [None, "0.0.0.0"])
def test_cli_health_and_metrics_ports_take_a_host(redis_url, tmp_path, host):
    pytest.importorskip("prometheus_client")
    (tmp_path / "idle_app.py").write_text(textwrap.dedent(APP))
    health, metrics = free_port(), free_port()
    extra = [] if host is None else ["--health-host", host]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "redispool", "--url", redis_url, "--prefix", f"h{uuid.uuid4().hex[:8]}",
         "worker", "idle_app:worker", "--health-port", str(health), "--metrics-port", str(metrics), *extra],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: listening(health) and listening(metrics) or proc.poll() is not None,
                   timeout=20, what="both ports")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        expected = {host or "127.0.0.1"}
        assert (listening(health), listening(metrics)) == (expected, expected)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert proc.returncode == 0


def test_a_health_port_in_use_is_one_clear_error(redis_url, tmp_path):
    import socket
    (tmp_path / "idle_app.py").write_text(textwrap.dedent(APP))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "redispool", "--url", redis_url, "worker", "idle_app:worker",
             "--health-port", str(port)],
            cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"cannot serve health on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr
