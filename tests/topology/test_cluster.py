"""redispool on a real Redis Cluster: the session's three masters (``support.servers.Cluster``),
and for the tests that add a replica, pause it or move slots, a cluster of this module's own
(with one replica of the first master, for durable writes).

The engine behaviour suite runs on a cluster too (the "cluster" backend of conftest's
``backend_url``); this file covers what only a cluster has: queues on different masters
served by one worker without polling, the daemons across slots, durable writes per slot,
and a queue's slot moving to another master under load.
"""
from __future__ import annotations

import collections
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.crc import key_slot

import redispool
from redispool import NotDurable, Worker
from redispool.keys import workers_index_key
from redispool.scheduler import Scheduler
from redispool.sweeper import Sweeper

from support import ROOT
from support.servers import REDIS_DOWN, Cluster, RedisServer, started
from support.waiting import running, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster for the tests that change its topology (a replica added and paused, slots
    moved), which the session's cluster must not see."""
    with started(Cluster(tmp_path_factory.mktemp("own-cluster"))) as cluster:
        cluster.add_replica(cluster.masters[0])
        yield cluster


def connected(cluster: Cluster) -> Iterator[redispool.Engine]:
    engine = redispool.connect(cluster.url, prefix=f"t{uuid.uuid4().hex[:8]}")
    yield engine
    engine.close()


@pytest.fixture
def engine(cluster: Cluster) -> Iterator[redispool.Engine]:
    """An engine on the session's cluster (conftest's ``cluster``)."""
    yield from connected(cluster)


@pytest.fixture
def own_engine(own_cluster: Cluster) -> Iterator[redispool.Engine]:
    yield from connected(own_cluster)


def queue_on(cluster: Cluster, master: RedisServer, avoid: set[int] = frozenset(), base: str = "q") -> str:
    """A queue name whose hash slot the given master serves."""
    for n in range(100_000):
        name = f"{base}{n}"
        slot = key_slot(name.encode())
        if slot not in avoid and cluster.owner(slot) is master:
            return name
    raise LookupError("no queue name found")


def spread(cluster: Cluster, base: str = "q") -> list[str]:
    """One queue per master."""
    return [queue_on(cluster, m, base=base) for m in cluster.masters]


def commands_processed(cluster: Cluster) -> int:
    return sum(int(m.client().info("stats")["total_commands_processed"]) for m in cluster.masters)


def test_the_function_library_is_on_every_master_and_loaded_again_on_one_without_it(cluster, engine):
    """connect() loads the library on every master; a master without it (a new primary, a
    FUNCTION FLUSH) gets it again at its first call, the others keep theirs. FCALL is
    routed by its keys without COMMAND GETKEYS (redis-py asked a node twice per call)."""
    name = engine.scripts.library.name
    for master in cluster.masters:
        assert name in str(master.client().function_list()), master.port
    queues = spread(cluster, base="fn")
    getkeys = sum(m.client().info("commandstats").get("cmdstat_command|getkeys", {}).get("calls", 0)
                  for m in cluster.masters)
    for q in queues:
        engine.enqueue(q, q)
    lost = cluster.masters[1]
    lost.client().function_flush()
    for q in queues:
        [job] = engine.claim(q, "w")
        engine.complete(job)
        assert engine.stats(q)["done"] == 1
    assert all(name in str(m.client().function_list()) for m in cluster.masters)
    assert engine.scripts.functions is not None
    assert sum(m.client().info("commandstats").get("cmdstat_command|getkeys", {}).get("calls", 0)
               for m in cluster.masters) == getkeys


def test_the_daemons_and_the_registry_work_across_slots(cluster, engine):
    queues = spread(cluster, "d")
    assert len({key_slot(q.encode()) for q in queues}) == 3
    cue_q, delayed_q, swept_q = queues
    engine.add_cue(cue_q, "tick", "* * * * * *")
    delayed = engine.enqueue(delayed_q, "later", delay=0.3)
    engine.register_worker("gone", host="h", pid=1, queues=[swept_q])
    engine.enqueue(swept_q, "held")
    [held] = engine.claim(swept_q, "gone", lease=600)
    assert sorted(engine.queues()) == sorted(queues)
    assert [c.name for c in engine.cues()] == ["tick"]

    ran: list[tuple[str, str]] = []
    worker = Worker(engine, queues=queues, concurrency=4, idle_wait=0.5, beat_interval=0.1)
    worker.process(lambda job: ran.append((job.queue, job.id)))
    with running(worker), running(Scheduler(engine, interval=0.1)), \
            running(Sweeper(engine, interval=0.1, worker_timeout=0.5)):
        wait_for(lambda: {q for q, _ in ran} == set(queues) and (delayed_q, delayed) in ran, 15,
                 "a cue job, the delayed job and the swept job to run", tolerate=REDIS_DOWN)
        wait_for(lambda: worker.id in [w.id for w in engine.workers()], 5, "the worker's registration",
                 tolerate=REDIS_DOWN)
    assert (swept_q, held.id) in ran
    assert engine.get(swept_q, held.id).errors[0][1] == "worker gone stopped heartbeating"
    assert "gone" not in [w.id for w in engine.workers()]
    fired = [job_id for q, job_id in ran if q == cue_q]
    assert fired and all(j.startswith("cue:tick:") for j in fired)
    assert len(fired) == len(set(fired)), "each fire time once"


def test_a_worker_on_queues_of_three_masters_picks_up_at_once_and_does_not_poll(cluster, engine):
    queues = spread(cluster, "w")
    picked: dict[str, float] = {}
    worker = Worker(engine, queues=queues, concurrency=2, idle_wait=3.0, beat_interval=30)
    worker.process(lambda job: picked.setdefault(job.payload, time.monotonic()))
    with running(worker):
        time.sleep(0.5)  # the worker is idle, blocked on all three masters
        latencies = []
        for queue in queues * 2:
            key = f"{queue}-{len(latencies)}"
            sent = time.monotonic()
            engine.enqueue(queue, key)
            wait_for(lambda key=key: key in picked, 5, f"a job of {queue} to be picked up", tolerate=REDIS_DOWN)
            latencies.append(picked[key] - sent)
            time.sleep(0.3)
        assert max(latencies) < 0.5, latencies  # a time-sliced wait would take up to 3 s * 2/3

        before = commands_processed(cluster)
        time.sleep(2.0)
        idle_commands = commands_processed(cluster) - before
    # idle for 2 s: each queue's watcher re-blocks about once a second and the worker
    # looks at every queue when its 3 s wait ends; a polling loop would send thousands
    assert idle_commands < 40, idle_commands
    print(f"\ncluster pickup latency across 3 masters: max {max(latencies) * 1000:.1f} ms; "
          f"{idle_commands} commands in 2 s idle")


def test_durable_writes_wait_for_the_replica_of_the_queues_own_master(own_cluster, own_engine):
    with_replica = queue_on(own_cluster, own_cluster.masters[0], base="r")
    without = queue_on(own_cluster, own_cluster.masters[1], base="r")
    durable = redispool.connect(own_cluster.url + "?durable=true&durable_timeout=0.2", prefix=own_engine.prefix)
    replica = own_cluster.replicas[0]
    try:
        job_id = durable.enqueue(with_replica, "kept")
        on_replica = replica.client(single_connection_client=True)
        on_replica.execute_command("READONLY")  # a cluster replica serves reads only after READONLY
        assert on_replica.hexists(durable.keys(with_replica).job(job_id), "p")
        on_replica.close()
        [job] = durable.claim(with_replica, "w")
        durable.complete(job)
        with pytest.raises(NotDurable):
            durable.enqueue(without, "only on its master")
        assert own_engine.stats(without)["ready"] == 1
        replica.pause()
        try:
            with pytest.raises(NotDurable):
                durable.enqueue(with_replica, "unconfirmed")
        finally:
            replica.resume()
        wait_for(lambda: durable.enqueue(with_replica, "again") is not None, 5, "the replica to answer again",
                 tolerate=REDIS_DOWN)
    finally:
        durable.close()


def test_moving_a_queues_slot_to_another_master_under_load_loses_nothing(own_cluster, own_engine):
    source = own_cluster.masters[1]
    queue = queue_on(own_cluster, source, base="m")
    slot = key_slot(queue.encode())
    target = own_cluster.masters[2]
    total = 3000
    produced: list[str] = []
    retries = collections.Counter()

    def produce() -> None:
        for n in range(total):
            while True:
                try:  # a job id makes a retried enqueue idempotent
                    produced.append(own_engine.enqueue(queue, n, job_id=f"p{n}"))
                    break
                except (redis.RedisError, redispool.ConnectionFailed) as exc:
                    retries[type(exc).__name__] += 1
                    time.sleep(0.02)
            if n % 100 == 99:
                time.sleep(0.02)  # a steady stream, not one burst

    done_at_move: list[int] = []
    worker = Worker(own_engine, queues=[queue], concurrency=8, idle_wait=0.5, beat_interval=0.2)
    worker.process(lambda job: job.payload)
    producer = threading.Thread(target=produce, daemon=True)
    with running(worker):
        producer.start()
        wait_for(lambda: own_engine.stats(queue)["done"] >= total // 5, 30, "the run to get going", tolerate=REDIS_DOWN)
        started = time.monotonic()
        moved = own_cluster.migrate_slot(slot, target, batch=20, pause_s=0.03)
        migration_s = time.monotonic() - started
        done_at_move.append(own_engine.stats(queue)["done"])
        producer.join(60)
        assert not producer.is_alive()
        wait_for(lambda: own_engine.stats(queue)["done"] == total, 60, "every job to be done", every=0.1,
                 tolerate=REDIS_DOWN)
    assert own_cluster.owner(slot) is target
    assert source.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    stats = own_engine.stats(queue)
    assert [stats[s] for s in ("scheduled", "ready", "leased", "dead")] == [0, 0, 0, 0]
    assert stats["totals"]["completed"] == total and stats["totals"]["enqueued"] == total
    assert sorted(produced) == sorted(f"p{n}" for n in range(total))
    assert done_at_move[0] < total, "jobs were still flowing when the slot had moved"
    print(f"\nslot migration under load: {total} jobs, {moved} keys moved in {migration_s:.1f}s while "
          f"{done_at_move[0]} were done, client retries {dict(retries)}, 0 jobs lost")


def test_the_daemons_outlive_a_slot_migration_of_their_queue_and_keep_working(own_cluster, own_engine, tmp_path):
    """The queue's slot moves to another master and back (IMPORTING/MIGRATING, MIGRATE in
    batches, SETSLOT NODE, as ``redis-cli --cluster reshard``) while a scheduler and a
    sweeper of each kind (in-process threads, ``redispool`` processes) have due work there
    all the time: scripts meet ASK/TRYAGAIN and "TTL exhausted"; the daemons back off and
    carry on, and every delayed job is promoted and every expired lease swept afterwards."""
    import os
    import signal
    import subprocess
    import sys

    source, target = own_cluster.masters[1], own_cluster.masters[2]
    queue = queue_on(own_cluster, source, base="mig")
    slot = key_slot(queue.encode())
    for n in range(40):   # due work spread over the migration: delayed jobs, expiring leases
        own_engine.enqueue_many(queue, range(25), delay=1 + n * 0.2)
    own_engine.enqueue_many(queue, range(300))
    for n in range(300):
        own_engine.claim(queue, "api-client", lease=1 + (n % 40) * 0.2)
    own_engine.add_cue(queue, "tick", "* * * * * *")
    logs = {name: tmp_path / f"{name}.log" for name in ("scheduler", "sweeper")}
    procs = []
    for name, log in logs.items():
        with open(log, "w") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "redispool", "--url", own_cluster.url, "--prefix", own_engine.prefix, name,
                 "--interval", "0.005"], cwd=ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT))
    cron = queue_on(own_cluster, source, avoid={slot}, base="cron")   # a queue with a cue only
    own_engine.add_cue(cron, "tick", "* * * * * *")
    own_engine.register_worker("w-mig", host="h", pid=1, queues=[queue])   # the registry has keys to move
    registry_slot = own_cluster.slot(workers_index_key(own_engine.prefix))
    registry_target = next(m for m in own_cluster.masters if m is not own_cluster.owner(registry_slot))
    threads = [Scheduler(own_engine, interval=0.005), Sweeper(own_engine, interval=0.005)]
    k, kc = own_engine.keys(queue), own_engine.keys(cron)
    try:
        with running(threads[0]), running(threads[1]):
            # a batch boundary between two keys of one script: for longer than redis-py's
            # TRYAGAIN retries (~0.4 s) they are on different masters ("TTL exhausted")
            own_cluster.migrate_slot(key_slot(cron.encode()), target, batch=20, pause_s=1.5, first=[kc.cue_next])
            own_cluster.migrate_slot(registry_slot, registry_target, batch=20, pause_s=1.5,
                                 first=[workers_index_key(own_engine.prefix)])
            own_cluster.migrate_slot(slot, target, batch=20, pause_s=0.03, first=[k.cue_next])
            own_cluster.migrate_slot(slot, source, batch=20, pause_s=0.03, first=[k.cues, k.scheduled])
            moved_back = time.time()
            wait_for(lambda: own_engine.stats(queue)["scheduled"] == 0 and own_engine.stats(queue)["leased"] == 0, 60,
                     "every delayed job promoted and every lease swept", every=0.2, tolerate=REDIS_DOWN)
            wait_for(lambda: min(own_engine.get_cue(q, "tick").last_fire_at for q in (queue, cron)) >= moved_back,
                     10, "the cues to fire after the migration", tolerate=REDIS_DOWN)
            assert all(p.poll() is None for p in procs), [log.read_text()[-2000:] for log in logs.values()]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)
    for p, log in zip(procs, logs.values()):
        text = log.read_text()
        assert p.returncode == 0 and "Traceback" not in text, text[-3000:]
    stats = own_engine.stats(queue)
    assert stats["ready"] >= 40 * 25 + 300 and stats["dead"] == 0
