"""The scheduler and sweeper daemons: they outlive Redis trouble (restarts, a full Redis,
a damaged queue), queues come back after Redis loses its data, a step costs nothing per
idle queue (rp:due, see redispool/queues.py) while due work is still done on time, and
``remove_queue`` removes an unused queue without ever unregistering one in use.

The cluster slot migration case is in test_cluster.py (it needs that file's cluster).
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

import redispool
from redispool import Engine, QueueNotEmpty, Scheduler, Sweeper
from redispool.cli import cli
from redispool.keys import due_key, queues_key

from support import ROOT
from support.servers import REDIS_DOWN, RedisServer, need
from support.waiting import wait_for


# ---------------------------------------------------------------------- helpers
@contextmanager
def daemons(*running: Any) -> Iterator[list[threading.Thread]]:
    """Run daemons in threads; stop and join them afterwards."""
    threads = [threading.Thread(target=d.run, daemon=True) for d in running]
    for t in threads:
        t.start()
    try:
        yield threads
    finally:
        for d in running:
            d.stop()
        for t in threads:
            t.join(30)


def daemon_process(url: str, prefix: str, log: Path, *args: str) -> subprocess.Popen:
    """A ``redispool`` daemon process logging to the file ``log`` (a pipe nobody reads
    would fill up and block it)."""
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "redispool", "--url", url, "--prefix", prefix, *args],
                                cwd=ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT)


def stop_process(proc: subprocess.Popen, log: Path) -> str:
    """SIGTERM; returns its log once it exited with 0 and printed no traceback."""
    assert proc.poll() is None, f"the daemon died: {log.read_text()[-3000:]}"
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    return text


class TwoDaemons:
    """A scheduler and a sweeper stepping every 5 ms: threads (``mode`` "thread", logging
    into ``caplog``) or ``redispool`` processes (``mode`` "cli", logging to
    ``<dir>/scheduler.log`` and ``<dir>/sweeper.log``)."""

    def __init__(self, mode: str, engine: Engine, url: str, prefix: str, dir: Path, caplog: Any) -> None:
        self.mode, self.url, self.prefix, self.dir, self.caplog = mode, url, prefix, dir, caplog
        self.daemons = (Scheduler(engine, interval=0.005), Sweeper(engine, interval=0.005))
        self.procs: list[subprocess.Popen] = []
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        if self.mode == "cli":
            self.procs = [daemon_process(self.url, self.prefix, self.dir / f"{name}.log", name, "--interval", "0.005")
                          for name in ("scheduler", "sweeper")]
        else:
            self.threads = [threading.Thread(target=d.run, daemon=True) for d in self.daemons]
            for t in self.threads:
                t.start()

    def log(self) -> str:
        """What they logged so far."""
        if self.mode == "thread":
            return "\n".join(r.getMessage() for r in self.caplog.records)
        return (self.dir / "scheduler.log").read_text() + (self.dir / "sweeper.log").read_text()

    def finish(self) -> str:
        """Their whole log, once each is checked: a thread still runs, a process stops on
        SIGTERM with exit code 0 and no traceback."""
        if self.mode == "thread":
            assert all(t.is_alive() for t in self.threads)
            return self.log()
        return (stop_process(self.procs[0], self.dir / "scheduler.log")
                + stop_process(self.procs[1], self.dir / "sweeper.log"))

    def close(self) -> None:
        for d in self.daemons:
            d.stop()
        for t in self.threads:
            t.join(30)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


def retrying(fn: Any, timeout: float = 30) -> Any:
    """Call ``fn`` until Redis answers it (right after a restart a pooled connection is dead)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (redispool.ConnectionFailed, redispool.RedisFull, redis.RedisError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def fired_since(engine: redispool.Engine, queue: str, since_ms: int) -> bool:
    info = engine.get_cue(queue, "tick")
    return info is not None and info.last_fire_at is not None and info.last_fire_at * 1000 >= since_ms


def server_ms(engine: redispool.Engine) -> int:
    seconds, micros = engine.client.time()
    return seconds * 1000 + micros // 1000


def lease_swept(engine: redispool.Engine, queue: str, job_id: str) -> bool:
    info = engine.get(queue, job_id)
    return info is not None and info.state == "ready" and info.error == "lease expired"


def trouble_lines(text: str, daemon: str) -> tuple[int, int]:
    """(warnings that trouble began, lines that Redis works again) of one daemon's log."""
    lines = [line for line in text.splitlines() if f"{daemon}:" in line]
    return (sum("retrying with backoff" in line for line in lines),
            sum("Redis works again" in line for line in lines))


# ---------------------------------------------------------------------- §2 Redis trouble
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["thread", "cli"])
def test_daemons_outlive_redis_restarts_mid_run_with_hundreds_of_cues(tmp_path, caplog, mode):
    """Redis is killed and restarted (AOF keeps the data) twice while the daemons fire
    200 every-second cues; they log each outage once and carry on."""
    need("redis-server")
    caplog.set_level(logging.INFO, logger="redispool")
    server = RedisServer("--appendonly", "yes", "--appendfsync", "always", dir=tmp_path).start()
    prefix = f"r{uuid.uuid4().hex[:6]}"
    engine = redispool.connect(server.url, prefix=prefix)
    queues = [f"tenant-{n:03d}" for n in range(200)]
    daemons = TwoDaemons(mode, engine, server.url, prefix, tmp_path, caplog)
    try:
        for queue in queues:
            engine.add_cue(queue, "tick", "* * * * * *")
        daemons.start()
        started = server_ms(engine)
        wait_for(lambda: fired_since(engine, queues[-1], started), 30, "the cues to fire", tolerate=REDIS_DOWN)
        for _ in range(2):
            time.sleep(0.4)   # mid-run: every step fires cues in all 200 queues
            server.kill()
            time.sleep(0.5)
            server.start()
        restarted = retrying(lambda: server_ms(engine))
        wait_for(lambda: all(fired_since(engine, q, restarted) for q in queues), 60,
                 "every queue's cue to fire after the restarts", every=0.2, tolerate=REDIS_DOWN)
        job_id = retrying(lambda: engine.enqueue("leases", 1, job_id="l1"))
        retrying(lambda: engine.claim("leases", "api-client", lease=0.2))
        wait_for(lambda: lease_swept(engine, "leases", job_id), 30, "the expired lease to be swept",
                 tolerate=REDIS_DOWN)
        log = daemons.finish()
        for daemon in ("scheduler", "sweeper"):
            began, ended = trouble_lines(log, daemon)
            assert 1 <= began <= 2 and ended == began, (daemon, log[-3000:])   # one line per state change
    finally:
        daemons.close()
        engine.close()
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["thread", "cli"])
def test_daemons_outlive_a_full_redis_and_resume(tmp_path, caplog, mode):
    """maxmemory lowered below what Redis holds (noeviction): every write fails with OOM.
    The daemons log it once, back off, and do their work once memory is there again."""
    need("redis-server")
    caplog.set_level(logging.INFO, logger="redispool")
    server = RedisServer("--maxmemory-policy", "noeviction", dir=tmp_path).start()
    prefix = f"o{uuid.uuid4().hex[:6]}"
    engine = redispool.connect(server.url, prefix=prefix)
    client = server.client()
    daemons = TwoDaemons(mode, engine, server.url, prefix, tmp_path, caplog)
    try:
        engine.enqueue_many("orders", [{"order": i, "pad": "x" * 20000} for i in range(500)])
        for n in range(20):
            engine.add_cue(f"tenant-{n}", "tick", "* * * * * *")
        job_id = engine.enqueue("leases", 1)
        engine.claim("leases", "api-client", lease=1.0)   # expires while Redis is full
        client.config_set("maxmemory", str(int(client.info("memory")["used_memory"]) // 2))
        with pytest.raises(redispool.RedisFull):
            engine.enqueue("orders", 1)
        daemons.start()
        def seen_full() -> bool:   # cues due, a lease expired: every step tries to write and is refused
            log = daemons.log()
            return all(f"{d}: Redis is full" in log for d in ("scheduler", "sweeper"))

        wait_for(seen_full, 60, "both daemons to meet the full Redis", tolerate=REDIS_DOWN)
        time.sleep(1.5)   # the lease (1 s) has expired by now, and the daemons keep retrying
        assert engine.get("leases", job_id).state == "leased"
        client.config_set("maxmemory", "0")
        freed = server_ms(engine)
        wait_for(lambda: lease_swept(engine, "leases", job_id), 30, "the expired lease to be swept",
                 tolerate=REDIS_DOWN)
        wait_for(lambda: all(fired_since(engine, f"tenant-{n}", freed) for n in range(20)), 30,
                 "the cues to fire again", tolerate=REDIS_DOWN)
        log = daemons.finish()
        for daemon in ("scheduler", "sweeper"):
            assert trouble_lines(log, daemon) == (1, 1), (daemon, log[-3000:])
            assert f"{daemon}: Redis is full (maxmemory)" in log
    finally:
        daemons.close()
        engine.close()
        server.stop()


def test_a_damaged_queue_is_logged_once_and_the_others_go_on(redis_url, caplog):
    caplog.set_level(logging.INFO, logger="redispool")
    engine = redispool.connect(redis_url, prefix=f"d{uuid.uuid4().hex[:6]}")
    engine.enqueue("broken", 1, delay=0.05)
    engine.client.delete(engine.keys("broken").scheduled)
    engine.client.set(engine.keys("broken").scheduled, "not a zset")   # WRONGTYPE on every visit
    ok = engine.enqueue("fine", 1, delay=0.3)
    scheduler = Scheduler(engine, interval=0.02)
    with daemons(scheduler) as [thread]:
        wait_for(lambda: engine.get("fine", ok).state == "ready", 10, "the other queue's job to be promoted",
                 tolerate=REDIS_DOWN)
        time.sleep(0.3)
        assert thread.is_alive()
    errors = [r.getMessage() for r in caplog.records if "cannot be worked" in r.getMessage()]
    assert len(errors) == 1 and "queue=broken" in errors[0] and "WRONGTYPE" in errors[0]


def test_a_bad_password_stops_a_daemon_with_one_clear_error(tmp_path):
    """The password changed under a running daemon: a bad configuration, not Redis trouble."""
    need("redis-server")
    server = RedisServer(dir=tmp_path).start()
    engine = redispool.connect(server.url, prefix="rp")
    admin = server.client()
    scheduler = Scheduler(engine, interval=0.01)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            scheduler.run()
        except BaseException as exc:  # noqa: BLE001 - the test checks it
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    try:
        thread.start()
        time.sleep(0.2)
        admin.config_set("requirepass", "secret")
        admin.client_kill_filter(_type="normal", skipme=True)   # the daemon reconnects: NOAUTH
        thread.join(30)
        assert not thread.is_alive()
        [error] = errors
        assert isinstance(error, redispool.ConnectionFailed) and "auth" in str(error).lower()
    finally:
        scheduler.stop()
        engine.close()
        server.stop()


# ---------------------------------------------------------------------- §3 Redis lost its data
def test_a_running_producer_registers_its_queue_again_after_redis_lost_its_data(tmp_path):
    need("redis-server")
    server = RedisServer(dir=tmp_path).start()   # no persistence: a restart loses everything
    engine = redispool.connect(server.url, prefix="rp")
    sweeper, scheduler = Sweeper(engine, interval=0.05), Scheduler(engine, interval=0.05)
    try:
        with daemons(sweeper, scheduler):
            engine.enqueue("invoices", {"n": 0})
            assert engine.queues() == ["invoices"]
            server.kill()
            server.start()
            retrying(lambda: engine.enqueue("invoices", {"n": 1}, job_id="n1"))   # the same producer
            assert engine.queues() == ["invoices"]
            [job] = engine.claim("invoices", "api-client-1", lease=0.2)   # a claimer that then dies
            wait_for(lambda: lease_swept(engine, "invoices", job.id), 10, "the running sweeper to take it back",
                     tolerate=REDIS_DOWN)

            engine.client.flushall()   # the same after an accidental FLUSHALL
            delayed = engine.enqueue("invoices", {"n": 2}, delay=0.2)
            engine.add_cue("reports", "tick", "* * * * * *")
            assert engine.queues() == ["invoices", "reports"]
            wait_for(lambda: engine.get("invoices", delayed).state == "ready", 10, "the scheduler to promote it",
                     tolerate=REDIS_DOWN)
            flushed = server_ms(engine)
            wait_for(lambda: fired_since(engine, "reports", flushed), 10, "the new cue to fire", tolerate=REDIS_DOWN)
    finally:
        engine.close()
        server.stop()


# ---------------------------------------------------------------------- §10 idle queues, rp:due
def idle_queues(engine: redispool.Engine, n: int, start: int = 0) -> None:
    """Queues used once: a job enqueued, claimed and completed (a trim planned in an hour)."""
    for i in range(start, start + n):
        engine.enqueue(f"idle-{i}", i)
        [job] = engine.claim(f"idle-{i}", "w")
        engine.complete(job)


def settle(daemon: Any) -> None:
    """Step until the daemon's reconciliation pass is complete."""
    daemon.step()
    while getattr(daemon, "reconciling", False):   # (daemons before rp:due had no pass)
        daemon.step()


def commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def test_an_idle_queue_costs_a_daemon_step_nothing(tmp_path):
    need("redis-server")
    server = RedisServer(dir=tmp_path).start()
    engine = redispool.connect(server.url, prefix="rp")
    client = server.client()
    try:
        idle_queues(engine, 10)
        steps = {name: cls(engine, interval=1) for name, cls in (("scheduler", Scheduler), ("sweeper", Sweeper))}
        cost: dict[str, list[int]] = {name: [] for name in steps}
        for more in (0, 1000):
            idle_queues(engine, more, start=10)
            for name, daemon in steps.items():
                daemon._pass_due = 0   # a new reconciliation pass sees the new queues ...
                settle(daemon)         # ... and finishes before the step measured
                before = commands(client)
                daemon.step()
                cost[name].append(commands(client) - before - 1)   # minus the INFO itself
        assert cost["scheduler"][0] == cost["scheduler"][1] <= 10, cost   # the same few commands ...
        assert cost["sweeper"][0] == cost["sweeper"][1] <= 10, cost       # ... for 10 or 1010 queues
    finally:
        engine.close()
        server.stop()


def test_due_work_among_idle_queues_is_done_on_time_and_only_there(engine):
    idle_queues(engine, 100)
    scheduler, sweeper = Scheduler(engine, interval=0.05), Sweeper(engine, interval=0.05)
    settle(scheduler)
    settle(sweeper)
    visited: set[str] = set()   # queues whose keys a daemon thread's scripts touched
    run = engine.scripts.run

    def watched_run(name: str, keys: Any, args: Any) -> Any:
        if threading.current_thread() is not threading.main_thread() and "{" in keys[0]:
            visited.add(keys[0].split("{", 1)[1].split("}", 1)[0])
        return run(name, keys, args)

    engine.scripts.run = watched_run   # type: ignore[method-assign]
    delayed = engine.enqueue("busy", "later", delay=0.3)
    leased_id = engine.enqueue("leases", "x")
    engine.claim("leases", "api-client", lease=0.3)
    engine.add_cue("cron", "tick", "* * * * * *")
    started = server_ms(engine)
    with daemons(scheduler, sweeper):
        wait_for(lambda: engine.get("busy", delayed).state == "ready", 5, "the delayed job to be promoted",
                 tolerate=REDIS_DOWN)
        wait_for(lambda: lease_swept(engine, "leases", leased_id), 5, "the expired lease to be swept",
                 tolerate=REDIS_DOWN)
        wait_for(lambda: fired_since(engine, "cron", started), 5, "the cue to fire", tolerate=REDIS_DOWN)
    assert visited - {"#workers"} <= {"busy", "leases", "cron"}, f"idle queues visited: {sorted(visited)[:5]}"


def test_writers_plan_every_kind_of_daemon_work(engine):
    def planned(daemon: str, queue: str) -> int | None:
        score = engine.client.zscore(due_key(engine.prefix, daemon), queue)
        return None if score is None else int(score)

    def ms(seconds: float | None) -> int:
        return round(seconds * 1000)

    engine.enqueue("a", 1, delay=100)
    early = engine.enqueue("a", 2, delay=50)                    # enqueue: an earlier delayed job
    assert planned("scheduler", "a") == ms(engine.get("a", early).run_at)
    engine.enqueue("a", 3, delay=70)                             # a later one changes nothing
    assert planned("scheduler", "a") == ms(engine.get("a", early).run_at)

    engine.enqueue_many("b", [1, 2, 3])
    [job] = engine.claim("b", "w", lease=100)                    # claim: a lease
    assert planned("sweeper", "b") == ms(job.lease_expires_at)
    [short] = engine.claim("b", "w", lease=10)                   # a shorter lease
    assert planned("sweeper", "b") == ms(short.lease_expires_at)
    engine.claim("b", "w", lease=300)
    assert planned("sweeper", "b") == ms(short.lease_expires_at)
    assert engine.fail(job, "boom", delay=20) == "scheduled"      # fail: a retry
    assert planned("scheduler", "b") == ms(engine.get("b", job.id).run_at)

    engine.add_cue("c", "tick", "0 0 1 1 *")                      # cue_save
    assert planned("scheduler", "c") == ms(engine.get_cue("c", "tick").next_fire_at)

    engine.enqueue("d", 1)
    result = engine.ack("d", worker_id="w", limit=1, lease=30)   # ack: a lease, then a retry
    assert planned("sweeper", "d") == ms(result.jobs[0].lease_expires_at)
    engine.ack("d", failed=[(result.jobs[0], "boom", True, 40)])
    assert planned("scheduler", "d") == ms(engine.get("d", result.jobs[0].id).run_at)
    assert planned("scheduler", "e") is None and planned("sweeper", "a") is None


def test_the_reconciliation_pass_repairs_a_lost_plan(engine):
    scheduler, sweeper = Scheduler(engine), Sweeper(engine)
    settle(scheduler)   # the start-up pass (it makes every queue with work due once)
    settle(sweeper)
    lost_zadd = engine.enqueue("a", 1, delay=0.2)   # as if the producer died before its ZADD
    engine.client.zrem(due_key(engine.prefix, "scheduler"), "a")
    old_data = engine.enqueue("b", 1, delay=0.2)   # as if written before rp:due existed
    engine.client.zrem(due_key(engine.prefix, "scheduler"), "b")
    engine.client.hdel(engine.keys("b").meta, "scheduler_at")
    job_id = engine.enqueue("c", 1)
    engine.claim("c", "w", lease=0.2)
    engine.client.delete(due_key(engine.prefix, "sweeper"))   # rp:due itself lost
    time.sleep(0.3)
    for daemon in (scheduler, sweeper):
        daemon.step()
        assert not daemon.reconciling
    assert engine.get("a", lost_zadd).state == "scheduled", "nothing repairs it before the next pass"
    for daemon in (scheduler, sweeper):
        daemon._pass_due = 0   # the next pass is due (every reconcile_every seconds)
        settle(daemon)
    assert engine.get("a", lost_zadd).state == "ready"
    assert engine.get("b", old_data).state == "ready"
    assert lease_swept(engine, "c", job_id)


def test_a_daemon_plans_every_queue_with_its_own_settings_at_start_up(engine):
    for n in range(30):
        engine.enqueue("q", n)
        engine.complete(engine.claim("q", "w")[0])
    settle(Sweeper(engine))   # plans a trim in an hour (done_ttl): nothing due now
    strict = Engine(engine.client, url=engine.url, prefix=engine.prefix, done_max=10)
    settle(Sweeper(strict))   # a sweeper started with another retention
    assert engine.stats("q")["done"] == 10


# ---------------------------------------------------------------------- §10 remove_queue
def queue_keys(engine: redispool.Engine, queue: str) -> dict[bytes, Any]:
    client = engine.client
    found = {}
    for key in client.scan_iter(match=f"{engine.prefix}:{{{queue}}}:*", count=1000):
        found[key] = client.dump(key)
    return found


def test_remove_queue_deletes_an_unused_queue(engine):
    engine.enqueue_many("old", [1, 2, 3], max_attempts=1)
    jobs = engine.claim("old", "w", limit=3)
    engine.complete(jobs[0])
    engine.fail(jobs[1], "boom")
    engine.cancel("old", jobs[2].id)
    engine.pause("old")
    engine.enqueue("kept", 1)
    assert engine.queues() == ["kept", "old"]
    assert engine.remove_queue("old") is True
    assert engine.queues() == ["kept"]
    assert queue_keys(engine, "old") == {}
    assert engine.client.zscore(due_key(engine.prefix, "sweeper"), "old") is None
    assert engine.remove_queue("old") is False
    assert engine.stats("kept")["ready"] == 1
    engine.enqueue("old", 4)   # a removed name can be used again
    assert engine.queues() == ["kept", "old"] and engine.stats("old")["ready"] == 1


@pytest.mark.parametrize("work", ["ready", "scheduled", "leased", "cue", "waiting"])
def test_remove_queue_refuses_a_queue_with_work_and_changes_nothing(engine, work):
    engine.enqueue("q", 0)
    [done] = engine.claim("q", "w")
    engine.complete(done)
    if work == "cue":
        engine.add_cue("q", "tick", "0 0 * * *")
    elif work == "waiting":   # for a parent in another queue (its keys would go, its hash stay)
        engine.enqueue("q", 1, depends_on=[("other", engine.enqueue("other", 0, delay=60))])
    else:
        engine.enqueue("q", 1, delay=60 if work == "scheduled" else None)
        if work == "leased":
            engine.claim("q", "w")
    before = queue_keys(engine, "q")
    with pytest.raises(QueueNotEmpty, match=f"queue 'q' has 1 {work}"):
        engine.remove_queue("q")
    assert queue_keys(engine, "q") == before
    assert set(engine.queues()) == {"q", "other"} if work == "waiting" else engine.queues() == ["q"]


def test_a_job_enqueued_while_its_queue_is_removed_stays_registered(make_engine):
    """The dangerous order: remove's script, then a whole enqueue (script and SADD), then
    remove's SREM/ZREM. remove_queue re-reads meta and registers the queue again."""
    engine, producer = make_engine(), make_engine()
    engine.enqueue("q", 0)
    [job] = engine.claim("q", "w")
    engine.complete(job)
    run = engine.scripts.run
    raced: list[str] = []

    def racing_run(name: str, keys: Any, args: Any) -> Any:
        reply = run(name, keys, args)
        if name == "remove_queue":
            raced.append(producer.enqueue("q", "raced", delay=0.2))
        return reply

    engine.scripts.run = racing_run   # type: ignore[method-assign]
    assert engine.remove_queue("q") is True
    engine.scripts.run = run   # type: ignore[method-assign]
    assert engine.queues() == ["q"]
    assert engine.client.zscore(due_key(engine.prefix, "scheduler"), "q") is not None
    time.sleep(0.25)
    Scheduler(engine).step()
    assert engine.get("q", raced[0]).state == "ready"


@pytest.mark.slow
def test_remove_queue_against_concurrent_producers_never_strands_a_job(redis_url):
    prefix = f"x{uuid.uuid4().hex[:6]}"
    remover, producer = (redispool.connect(redis_url, prefix=prefix) for _ in range(2))
    stop = threading.Event()
    refused = [0]

    def produce() -> None:
        while not stop.is_set():
            producer.enqueue("q", 1, delay=0.001)
            for job in producer.claim("q", "w", limit=10):
                producer.complete(job)
            producer.purge("q", "scheduled")

    def remove() -> None:
        while not stop.is_set():
            try:
                remover.remove_queue("q")
            except QueueNotEmpty:
                refused[0] += 1

    threads = [threading.Thread(target=produce), threading.Thread(target=remove)]
    for t in threads:
        t.start()
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(10)
    meta = remover.client.exists(remover.keys("q").meta)
    registered = remover.client.sismember(queues_key(prefix), "q")
    assert refused[0] > 0
    assert not meta or registered, "a queue with keys is missing from rp:queues"
    remover.close()
    producer.close()


def test_remove_queue_cli(redis_url):
    prefix = f"c{uuid.uuid4().hex[:6]}"
    engine = redispool.connect(redis_url, prefix=prefix)
    engine.enqueue("busy", 1)
    engine.enqueue("old", 1)
    engine.complete(engine.claim("old", "w")[0])
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(cli, ["--url", redis_url, "--prefix", prefix, *args], catch_exceptions=False)

    result = run("remove-queue", "old")
    assert (result.exit_code, result.stdout) == (0, "removed old\n")
    for name, message in (("busy", "queue 'busy' has 1 ready job: nothing removed"),
                          ("old", "no queue 'old': nothing removed"), ("bad name!", "invalid queue name")):
        result = run("remove-queue", name)
        assert result.exit_code == 2 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert engine.queues() == ["busy"]
    engine.close()
