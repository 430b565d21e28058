"""Redis Sentinel failover and ``durable=True``, on real servers.

A master, a replica and three sentinels (servers.SentinelGroup): a worker process keeps
going when the master is SIGKILLed and finishes the jobs on the promoted replica. Durable
writes wait for the replica on the connection that wrote them, and say so when it does
not answer.
"""
from __future__ import annotations

import collections
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import redispool
from redispool import InvalidOption, NotDurable
from redispool.sweeper import Sweeper

from support.processes import Workers
from support.servers import REDIS_DOWN, SentinelGroup, replica_online, started
from support.waiting import running, wait_for

pytestmark = pytest.mark.slow
QUEUE = "failover"


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    with started(SentinelGroup(tmp_path)) as group:
        yield group


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def test_durable_writes_wait_for_the_replica_and_fail_loudly_without_it(group):
    engine = redispool.connect(group.url + "?durable=1&durable_timeout=0.3", prefix=prefix())
    plain = redispool.connect(group.url, prefix=engine.prefix)
    replica = group.replica.client()
    try:
        assert engine.durable and not plain.durable
        job_id = engine.enqueue(QUEUE, {"n": 1})
        assert replica.hexists(engine.keys(QUEUE).job(job_id), "p"), "on the replica when enqueue returns"
        [job] = engine.claim(QUEUE, "w1")

        group.replica.pause()  # SIGSTOP: connected, but acknowledges nothing
        try:
            started = time.monotonic()
            with pytest.raises(NotDurable, match="no replica acknowledged"):
                engine.complete(job, "r")
            assert 0.25 < time.monotonic() - started < 5
            assert plain.get(QUEUE, job.id).state == "done", "applied on the primary all the same"
            with pytest.raises(NotDurable):
                engine.enqueue_many(QUEUE, [1, 2])
            started = time.monotonic()
            plain.enqueue(QUEUE, 3)  # not durable: does not wait
            assert time.monotonic() - started < 0.25
            ready = plain.stats(QUEUE)["ready"]
            with pytest.raises(NotDurable):  # an ack that leased a batch it cannot hand out ...
                engine.ack(QUEUE, worker_id="w1", limit=10)
            stats = plain.stats(QUEUE)  # ... gives the batch back
            assert (stats["ready"], stats["leased"]) == (ready, 0)
        finally:
            group.replica.resume()

        [again] = engine.claim(QUEUE, "w1")
        assert engine.fail(again, "boom", retry=False) == "dead"
        result = engine.ack(QUEUE, worker_id="w1", limit=1)
        engine.ack(QUEUE, completed=[(result.jobs[0], None)])
        assert plain.stats(QUEUE)["totals"]["completed"] == 2
    finally:
        engine.close()
        plain.close()
        replica.close()


def test_durable_without_a_replica_raises_not_durable_and_options_are_checked(lone):
    engine = redispool.connect(lone.url, prefix=prefix(), durable=True, durable_timeout=0.05)
    try:
        with pytest.raises(NotDurable) as caught:
            engine.enqueue(QUEUE, "x", job_id="order-1")
        assert isinstance(caught.value, redispool.ConnectionFailed)
        assert engine.get(QUEUE, "order-1").state == "ready"
        with pytest.raises(NotDurable):  # an idempotent retry: same job, still not replicated
            engine.enqueue(QUEUE, "x", job_id="order-1")
        assert engine.stats(QUEUE)["ready"] == 1
        assert engine.claim(QUEUE, "w"), "claims are not durable writes: no wait, no error"
    finally:
        engine.close()
    with pytest.raises(InvalidOption):
        redispool.connect(lone.url + "?durable=maybe")
    with pytest.raises(InvalidOption):
        redispool.connect(lone.url, durable=True, durable_timeout=0)
    with pytest.raises(InvalidOption):
        redispool.connect("memory://durable", durable=True)
    plain = redispool.connect(lone.url + "?durable=0&durable_timeout=2", prefix=prefix())
    assert not plain.durable and plain.enqueue(QUEUE, 1)
    plain.close()


def test_worker_survives_a_master_sigkill_and_finishes_on_the_promoted_replica(group, tmp_path):
    jobs = 400
    engine = redispool.connect(group.url, prefix=prefix())
    durable = redispool.connect(group.url, prefix=engine.prefix, durable=True, durable_timeout=0.5)
    workers = Workers(group.url, engine.prefix, tmp_path, queues=QUEUE, concurrency=4, sleep=0.02, lease=3)
    try:
        ids = []
        for start in range(0, jobs, 100):  # durable: every job is on the replica before the kill
            ids += durable.enqueue_many(QUEUE, [{"n": n} for n in range(start, start + 100)])
        proc = workers.start()
        with running(Sweeper(engine, interval=0.5, worker_timeout=3)):
            wait_for(lambda: len(workers.lines("done")) >= jobs // 4, 30, "a quarter of the jobs to be done",
                     tolerate=REDIS_DOWN)
            killed_at = time.monotonic()
            group.master.kill()
            wait_for(lambda: group.master_port() == group.replica.port, 30, "the sentinels to promote the replica",
                     tolerate=REDIS_DOWN)
            failover_s = time.monotonic() - killed_at
            wait_for(lambda: engine.stats(QUEUE)["done"] == jobs, 60, "every job to be done", every=0.1,
                     tolerate=REDIS_DOWN)
            recovered_s = time.monotonic() - killed_at

        stats = engine.stats(QUEUE)
        assert [stats[s] for s in ("scheduled", "ready", "leased", "dead")] == [0, 0, 0, 0]
        assert {engine.get(QUEUE, i).state for i in ids} == {"done"}
        done = collections.Counter(job_id for _, job_id in workers.lines("done"))
        assert set(done) == set(ids)
        assert proc.poll() is None, "the worker kept running"
        log = workers.log(proc)
        assert "redis unavailable" in log and "redis reachable again" in log, log
        assert workers.stop(proc) == 0, workers.log(proc)
        # asynchronous replication: a completion the old master took but had not yet sent
        # to the replica is lost with it; that job runs again (at least once, never lost)
        again = sum(n - 1 for n in done.values())

        # the promoted master has no replica: durable writes fail closed ...
        with pytest.raises(NotDurable):
            durable.enqueue(QUEUE, "late", job_id="late-1")
        # ... until the new master has a replica again: the old one, back as its replica
        group.master.options += ["--replicaof", "127.0.0.1", str(group.replica.port)]
        group.master.start()
        wait_for(lambda: replica_online(group.replica), 30, "the old master to rejoin as a replica",
                 tolerate=REDIS_DOWN)
        assert durable.enqueue(QUEUE, "late", job_id="late-1") == "late-1"
        assert group.master.client().hexists(durable.keys(QUEUE).job("late-1"), "p")
        print(f"\nsentinel failover: {jobs} jobs, master SIGKILLed after {jobs // 4}+ were done, "
              f"replica promoted after {failover_s:.1f}s, all done {recovered_s:.1f}s after the kill, "
              f"{again} completions repeated, 0 jobs lost")
    finally:
        workers.close()
        engine.close()
        durable.close()


class _Server72:
    """Just enough of a redis-py client for Scripts' durable path, answering like a Redis
    7.2 primary with AOF on (this machine's Redis 7.0 has no WAITAOF): records what is sent."""

    def __init__(self, replicas: int, fsynced: int) -> None:
        self.replicas, self.fsynced = replicas, fsynced
        self.sent: list[tuple] = []
        self.pending: list[object] = []
        self.connection_pool = self

    # the connection pool and its one raw connection
    def get_connection(self, *_: object) -> _Server72:
        return self

    def release(self, _conn: object) -> None:
        pass

    def send_command(self, *args: object) -> None:
        self.sent.append(args)
        self.pending.append([[b"waitaof", 4, [], 0, 0, 0]])  # COMMAND INFO WAITAOF: known

    # a durable write: the script and WAIT/WAITAOF sent together, each reply read with a timeout
    def pack_commands(self, commands: list) -> list:
        return commands

    def send_packed_command(self, commands: list) -> None:
        self.pending += [self.reply(tuple(args)) for args in commands]

    def read_response(self, **_: object) -> object:
        return self.pending.pop(0)

    def disconnect(self) -> None:
        pass

    def info(self, section: str) -> dict:
        return {"aof_enabled": 1}

    def reply(self, args: tuple) -> object:
        self.sent.append(args)
        return {"EVALSHA": [b"1", 1], "WAIT": self.replicas, "WAITAOF": [self.fsynced, 0]}[args[0]]

    def execute_command(self, *args: object) -> object:
        return self.reply(args)



def test_where_the_server_has_waitaof_durable_writes_also_wait_for_the_primarys_fsync():
    from redispool.scripts import Scripts

    server = _Server72(replicas=1, fsynced=1)
    scripts = Scripts(server, durable_timeout_ms=250, url="redis://primary")
    assert scripts.run("enqueue", ["k"] * scripts._nkeys["enqueue"], [1]) == [b"1", 1]
    assert [args[0] for args in server.sent] == ["COMMAND", "EVALSHA", "WAIT", "WAITAOF"]
    assert server.sent[2:] == [("WAIT", 1, 250), ("WAITAOF", 1, 0, 250)]
    server.sent.clear()
    scripts.run("stats", ["k"] * scripts._nkeys["stats"], [])  # not a durable write: no WAIT
    assert [args[0] for args in server.sent] == ["EVALSHA"]

    server.fsynced = 0
    with pytest.raises(NotDurable, match="did not fsync its AOF"):
        scripts.run("complete", ["k"] * scripts._nkeys["complete"], [1])
    server.replicas, server.fsynced = 0, 1
    with pytest.raises(NotDurable, match="no replica acknowledged"):
        scripts.run("ack", ["k"] * scripts._nkeys["ack"], [1])
