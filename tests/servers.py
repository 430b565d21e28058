"""Real Redis topologies for the scale-out and fault tests: a restartable redis-server, a
3-master Redis Cluster (optionally with one replica), and a master + replica watched by
three Sentinels. Everything runs on free ports under a temporary directory and is stopped
by PID; nothing here touches a server it did not start.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

BOOT_TIMEOUT_S = 15.0
# a replica's first sync starts at once (Redis 7.0 waits 5 s for more replicas by default)
SYNC_NOW = ("--repl-diskless-sync-delay", "0")
CLUSTER_OPTIONS = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                   "--cluster-node-timeout", "2000", *SYNC_NOW)


def need(*programs: str) -> None:
    """Skip (fail under CI) when a Redis program is missing."""
    for program in programs:
        if shutil.which(program) is None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"{program} is missing (CI must install redis-server and redis-tools)")
            pytest.skip(f"{program} is not installed")


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


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def replica_online(master: Server, key: str = "servers:replication-check") -> bool:
    """True once a write on ``master`` reaches a replica: after a diskless sync the master
    streams nothing to the replica until its first REPLCONF ACK (up to a second later), and
    until then WAIT counts no replica. On a cluster ``key`` must be in one of its slots."""
    client = master.client()
    client.incr(key)
    return client.wait(1, 50) >= 1


class Server:
    """One redis-server (or sentinel) process; ``kill()`` + ``start()`` restarts it with the
    same port, directory and options (so an AOF is loaded back)."""

    def __init__(self, dir: Path, *options: str, port: int | None = None, cluster: bool = False,
                 sentinel_conf: str | None = None) -> None:
        self.port = port or free_port(cluster)
        self.dir = Path(dir) / str(self.port)
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
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--appendonly", "no", *self.options]

    def start(self) -> Server:
        with open(self.dir / "server.log", "ab") as log:
            self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT)
        client = self.client(socket_timeout=1)
        try:
            wait_for(lambda: self.proc.poll() is None and client.ping(), BOOT_TIMEOUT_S,
                     f"redis-server on port {self.port} to answer")
            wait_for(lambda: client.info("persistence").get("loading", 0) == 0, BOOT_TIMEOUT_S,
                     f"redis-server on port {self.port} to load its data")
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
        self.masters = [Server(dir, *CLUSTER_OPTIONS, cluster=True) for _ in range(masters)]
        self.replicas: list[Server] = []
        self.dir = dir

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(m.addr for m in self.masters)

    def start(self) -> Cluster:
        for node in self.masters:
            node.start()
        subprocess.run(["redis-cli", "--cluster", "create", *[m.addr for m in self.masters],
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        self.wait_ok(self.masters)
        return self

    def add_replica(self, of: Server) -> Server:
        replica = Server(self.dir, *CLUSTER_OPTIONS, cluster=True).start()
        subprocess.run(["redis-cli", "--cluster", "add-node", replica.addr, of.addr, "--cluster-slave",
                        "--cluster-master-id", self.node_id(of)],
                       check=True, capture_output=True, timeout=60)
        self.replicas.append(replica)
        key = next(f"servers:check{n}" for n in range(100_000)
                   if self.owner(key_slot(f"servers:check{n}".encode())) is of)
        wait_for(lambda: replica_online(of, key), 30, "the cluster replica to sync")
        self.wait_ok(self.masters + self.replicas)
        return replica

    def wait_ok(self, nodes: list[Server]) -> None:
        def ok() -> bool:
            return all(b"cluster_state:ok" in n.client().execute_command("CLUSTER", "INFO") for n in nodes)
        wait_for(ok, 30, "the cluster to be ready", every=0.05)

    def node_id(self, node: Server) -> str:
        return node.client().execute_command("CLUSTER", "MYID").decode()

    def slot(self, key: str) -> int:
        return int(self.masters[0].client().execute_command("CLUSTER", "KEYSLOT", key))

    def owner(self, slot: int) -> Server:
        for start, end, primary, *_ in self.masters[0].client().execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return next(m for m in self.masters if m.port == int(primary[1]))
        raise LookupError(f"slot {slot} is not served")

    def migrate_slot(self, slot: int, target: Server, *, batch: int = 10, pause_s: float = 0.0) -> int:
        """Move ``slot`` to ``target`` the way redis-cli reshard does (IMPORTING/MIGRATING,
        MIGRATE batches of keys, SETSLOT NODE everywhere), pausing between batches so the
        migration overlaps a running workload. Returns how many keys moved."""
        source = self.owner(slot)
        src, dst = source.client(), target.client()
        src_id, dst_id = self.node_id(source), self.node_id(target)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        moved = 0
        while True:
            keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch)
            if not keys:
                break
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
            if pause_s:
                time.sleep(pause_s)
        for node in (target, source, *[m for m in self.masters if m not in (source, target)]):
            node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        wait_for(lambda: self.owner(slot) is target, 10, f"slot {slot} to be served by its new master")
        return moved

    def stop(self) -> None:
        for node in self.replicas + self.masters:
            node.stop()


class SentinelGroup:
    """A master, one replica, and three sentinels (quorum 2) watching service ``name``."""

    def __init__(self, dir: Path, name: str = "rp-test", down_after_ms: int = 600) -> None:
        self.name = name
        self.master = Server(dir, *SYNC_NOW)
        self.replica = Server(dir, *SYNC_NOW, "--replicaof", "127.0.0.1", str(self.master.port))
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
            Server(dir, port=port, sentinel_conf=conf + f"sentinel myid {ids[i]}\n" + "".join(
                f"sentinel known-sentinel {name} 127.0.0.1 {ports[j]} {ids[j]}\n" for j in range(3) if j != i))
            for i, port in enumerate(ports)]

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(s.addr for s in self.sentinels) + f"/{self.name}"

    def start(self) -> SentinelGroup:
        self.master.start()
        self.replica.start()
        wait_for(lambda: replica_online(self.master), 30, "the replica to sync")
        for sentinel in self.sentinels:
            sentinel.start()

        def settled() -> bool:
            for sentinel in self.sentinels:
                state = sentinel.client(decode_responses=True).sentinel_master(self.name)
                if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                    return False
            return True
        wait_for(settled, 30, "the sentinels to find each other and the replica", every=0.1)
        return self

    def master_port(self) -> int:
        """The master's port as the first sentinel reports it."""
        host, port = self.sentinels[0].client().execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return int(port)

    def stop(self) -> None:
        for node in self.sentinels + [self.replica, self.master]:
            node.stop()


APP = Path(__file__).with_name("chaos_app.py")


class Workers:
    """``tests/chaos_app.py`` worker processes; none outlives the test (``close()``)."""

    def __init__(self, url: str, prefix: str, dir: Path, **settings: object) -> None:
        self.url, self.prefix, self.dir = url, prefix, Path(dir)
        self.notes = self.dir / "notes"
        self.notes.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.procs: list[subprocess.Popen] = []

    def start(self, **settings: object) -> subprocess.Popen:
        env = dict(os.environ, REDISPOOL_URL=self.url, REDISPOOL_PREFIX=self.prefix, APP_NOTES=str(self.notes),
                   **{f"APP_{k.upper()}": str(v) for k, v in {**self.settings, **settings}.items()})
        with open(self.dir / f"worker{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, str(APP)], env=env, stdout=log, stderr=subprocess.STDOUT)
        proc.log_path = log.name  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def live(self) -> list[subprocess.Popen]:
        return [p for p in self.procs if p.poll() is None]

    def log(self, proc: subprocess.Popen) -> str:
        return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]

    def lines(self, kind: str) -> list[list[str]]:
        """Every process's notes of ``kind``: "ran" ([queue, id, attempt]) or "done" ([queue, id])."""
        out = []
        for path in sorted(self.notes.glob(f"*.{kind}")):
            out += [line.split() for line in path.read_text().splitlines() if line]
        return out

    def stop(self, proc: subprocess.Popen, timeout: float = 20) -> int:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
