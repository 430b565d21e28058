"""Private Redis topologies for the tests: one redis-server (restartable, optionally with
persistence, TLS or as a sentinel), a 3-master Redis Cluster (optionally with one
replica), and a master + replica watched by three Sentinels. Everything runs on free
ports and is stopped by PID; nothing here touches a server it did not start, and no test
ever flushes one.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

import pytest
import redis
from redis.crc import key_slot

from support.waiting import wait_for

BOOT_TIMEOUT_S = 15.0
# a replica's first sync starts at once (Redis 7.0 waits 5 s for more replicas by default)
SYNC_NOW = ("--repl-diskless-sync-delay", "0")
CLUSTER_OPTIONS = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                   "--cluster-node-timeout", "2000", *SYNC_NOW)
REDIS_DOWN = (redis.RedisError, OSError)
"""What a client may raise while a server is starting, restarting or failing over."""


def need(*programs: str) -> None:
    """Skip (fail under CI) when a Redis program is missing."""
    for program in programs:
        if shutil.which(program) is None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"{program} is missing (CI must install redis-server and redis-tools)")
            pytest.skip(f"{program} is not installed")


SCRIPT_CALLS = ("fcall", "fcall_ro", "evalsha")   # how redispool runs a script (scripts.py)


def calls(client: redis.Redis, command: str) -> int:
    """How many times ``command`` (lower case: "bzpopmin"; "scripts": every script call,
    ``SCRIPT_CALLS``) ran on the server of ``client`` (INFO commandstats): on a private
    server, what the test's processes sent."""
    return script_calls(client.info("commandstats"), "calls", (command,) if command != "scripts" else SCRIPT_CALLS)


def script_calls(stats: dict, field: str = "calls", commands: tuple[str, ...] = SCRIPT_CALLS) -> int:
    """``field`` ("calls", "usec") of ``commands`` (default: the script calls) summed from
    INFO commandstats ``stats``."""
    return sum(int(stats.get(f"cmdstat_{c}", {}).get(field, 0)) for c in commands)


def free_port(cluster: bool = False) -> int:
    """A free port; with ``cluster`` one whose bus port (port + 10000) is free as well."""
    while True:
        port = random.randrange(20_000, 45_000) if cluster else 0
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
                port = s.getsockname()[1]
            if cluster:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + 10_000))
        except OSError:
            continue
        return port


def replica_online(master: RedisServer, key: str = "servers:replication-check") -> bool:
    """True once a write on ``master`` reaches a replica: after a diskless sync the master
    streams nothing to the replica until its first REPLCONF ACK (up to a second later), and
    until then WAIT counts no replica. On a cluster ``key`` must be in one of its slots."""
    client = master.client()
    client.incr(key)
    return client.wait(1, 50) >= 1


class Topology(Protocol):
    def start(self) -> object: ...
    def stop(self) -> None: ...


T = TypeVar("T", bound=Topology)


@contextmanager
def started(topology: T) -> Iterator[T]:
    """``topology`` started, and stopped afterwards whatever happens: for fixtures."""
    topology.start()
    try:
        yield topology
    finally:
        topology.stop()


class RedisServer:
    """One redis-server (or sentinel) process; ``kill()`` + ``start()`` restarts it with the
    same port, directory and options (so an AOF is loaded back).

    ``dir``: where it keeps its files (``<dir>/<port>/``) and its log (``server.log``);
    without one it keeps no files (``--save ""``, no AOF unless ``options`` ask for one in
    the working directory) and its output is dropped. A sentinel needs a ``dir``."""

    def __init__(self, *options: str, dir: Path | str | None = None, port: int | None = None,
                 cluster: bool = False, sentinel_conf: str | None = None) -> None:
        self.port = port or free_port(cluster)
        self.dir = None if dir is None else Path(dir) / str(self.port)
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.options = list(options)
        self.sentinel_conf = sentinel_conf
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        if self.sentinel_conf is not None:
            conf = self.dir / "sentinel.conf"
            if not conf.exists():  # sentinel rewrites its file; write it once
                conf.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n{self.sentinel_conf}")
            return ["redis-server", str(conf), "--sentinel"]
        where = [] if self.dir is None else ["--dir", str(self.dir)]
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", *where,
                "--save", "", "--appendonly", "no", *self.options]

    def start(self) -> RedisServer:
        need("redis-server")
        if self.dir is None:
            self.proc = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            with open(self.dir / "server.log", "ab") as log:
                self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT)
        client = self.client(socket_timeout=1)
        try:
            wait_for(lambda: self.proc.poll() is None and client.ping(), BOOT_TIMEOUT_S,
                     f"redis-server on port {self.port} to answer", tolerate=REDIS_DOWN)
            wait_for(lambda: client.info("persistence").get("loading", 0) == 0, BOOT_TIMEOUT_S,
                     f"redis-server on port {self.port} to load its data", tolerate=REDIS_DOWN)
        finally:
            client.close()
        return self

    def client(self, **options) -> redis.Redis:
        return redis.Redis(port=self.port, **options)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown save, connections reset."""
        if self.alive:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case a test left it paused
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)


class Cluster:
    """Three masters joined with ``redis-cli --cluster create``; optionally one replica
    of the first master (``add-node --cluster-slave``)."""

    def __init__(self, dir: Path, masters: int = 3) -> None:
        self.masters = [RedisServer(*CLUSTER_OPTIONS, dir=dir, cluster=True) for _ in range(masters)]
        self.replicas: list[RedisServer] = []
        self.dir = dir

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(m.addr for m in self.masters)

    def start(self) -> Cluster:
        need("redis-server", "redis-cli")
        for node in self.masters:
            node.start()
        subprocess.run(["redis-cli", "--cluster", "create", *[m.addr for m in self.masters],
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        self.wait_ok(self.masters)
        return self

    def add_replica(self, of: RedisServer) -> RedisServer:
        replica = RedisServer(*CLUSTER_OPTIONS, dir=self.dir, cluster=True).start()
        subprocess.run(["redis-cli", "--cluster", "add-node", replica.addr, of.addr, "--cluster-slave",
                        "--cluster-master-id", self.node_id(of)],
                       check=True, capture_output=True, timeout=60)
        self.replicas.append(replica)
        key = next(f"servers:check{n}" for n in range(100_000)
                   if self.owner(key_slot(f"servers:check{n}".encode())) is of)
        wait_for(lambda: replica_online(of, key), 30, "the cluster replica to sync", tolerate=REDIS_DOWN)
        self.wait_ok(self.masters + self.replicas)
        return replica

    def wait_ok(self, nodes: list[RedisServer]) -> None:
        def ok() -> bool:
            return all(b"cluster_state:ok" in n.client().execute_command("CLUSTER", "INFO") for n in nodes)
        wait_for(ok, 30, "the cluster to be ready", every=0.05, tolerate=REDIS_DOWN)

    def node_id(self, node: RedisServer) -> str:
        return node.client().execute_command("CLUSTER", "MYID").decode()

    def slot(self, key: str) -> int:
        return int(self.masters[0].client().execute_command("CLUSTER", "KEYSLOT", key))

    def owner(self, slot: int) -> RedisServer:
        for start, end, primary, *_ in self.masters[0].client().execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return next(m for m in self.masters if m.port == int(primary[1]))
        raise LookupError(f"slot {slot} is not served")

    def migrate_slot(self, slot: int, target: RedisServer, *, batch: int = 10, pause_s: float = 0.0,
                     first: Sequence[str] = ()) -> int:
        """Move ``slot`` to ``target`` the way redis-cli reshard does (IMPORTING/MIGRATING,
        MIGRATE batches of keys, SETSLOT NODE everywhere), pausing between batches so the
        migration overlaps a running workload; the ``first`` keys move in a batch of their
        own before the others. Returns how many keys moved."""
        source = self.owner(slot)
        src, dst = source.client(), target.client()
        src_id, dst_id = self.node_id(source), self.node_id(target)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        moved = 0
        keys: list = list(first)
        while True:
            if not keys:
                keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch)
                if not keys:
                    break
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
            keys = []
            if pause_s:
                time.sleep(pause_s)
        for node in (target, source, *[m for m in self.masters if m not in (source, target)]):
            node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        wait_for(lambda: self.owner(slot) is target, 10, f"slot {slot} to be served by its new master",
                 tolerate=REDIS_DOWN)
        return moved

    def stop(self) -> None:
        for node in self.replicas + self.masters:
            node.stop()


class SentinelGroup:
    """A master, one replica, and three sentinels (quorum 2) watching service ``name``."""

    def __init__(self, dir: Path, name: str = "rp-test", down_after_ms: int = 600) -> None:
        self.name = name
        self.master = RedisServer(*SYNC_NOW, dir=dir)
        self.replica = RedisServer(*SYNC_NOW, "--replicaof", "127.0.0.1", str(self.master.port), dir=dir)
        conf = (f"sentinel monitor {name} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
                f"sentinel failover-timeout {name} 10000\n"
                f"sentinel parallel-syncs {name} 1\n"
                f"sentinel known-replica {name} 127.0.0.1 {self.replica.port}\n")
        ports = [free_port() for _ in range(3)]
        ids = [f"{i + 1:040x}" for i in range(3)]
        # each sentinel starts knowing the others (else they meet through hello messages,
        # every 2 s), so the group is ready at once
        self.sentinels = [
            RedisServer(dir=dir, port=port, sentinel_conf=conf + f"sentinel myid {ids[i]}\n" + "".join(
                f"sentinel known-sentinel {name} 127.0.0.1 {ports[j]} {ids[j]}\n" for j in range(3) if j != i))
            for i, port in enumerate(ports)]

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(s.addr for s in self.sentinels) + f"/{self.name}"

    def start(self) -> SentinelGroup:
        self.master.start()
        self.replica.start()
        wait_for(lambda: replica_online(self.master), 30, "the replica to sync", tolerate=REDIS_DOWN)
        for sentinel in self.sentinels:
            sentinel.start()

        def settled() -> bool:
            for sentinel in self.sentinels:
                state = sentinel.client(decode_responses=True).sentinel_master(self.name)
                if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                    return False
            return True
        wait_for(settled, 30, "the sentinels to find each other and the replica", every=0.1,
                 tolerate=REDIS_DOWN)
        return self

    def master_port(self) -> int:
        """The master's port as the first sentinel reports it."""
        host, port = self.sentinels[0].client().execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return int(port)

    def stop(self) -> None:
        for node in self.sentinels + [self.replica, self.master]:
            node.stop()
