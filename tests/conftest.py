"""Shared fixtures: a private redis-server per test session, and an engine per backend.

Every engine test runs on ``memory://`` (fakeredis + lupa) and on a real redis-server the
session starts on a free port and stops by PID. Tests never flush a server; each one gets
its own key prefix (or its own memory server), so they cannot see each other's keys.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

import redispool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_cluster_port() -> int:
    """A free port p <= 55535 whose cluster bus port p + 10000 is free too."""
    import random
    while True:
        port = random.randint(20_000, 45_000)
        try:
            for p in (port, port + 10_000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port


class RedisServer:
    """A redis-server subprocess on a free port."""

    def __init__(self, *extra: str, port: int | None = None, dir: str | None = None) -> None:
        self.port = port or free_port()
        self.extra = extra
        self.dir = dir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", *self.extra]
        if self.dir:
            args += ["--dir", self.dir]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.02)
        client.close()
        return self

    def stop(self, sig: str = "term") -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill() if sig == "kill" else self.proc.terminate()
            self.proc.wait(10)


class RedisClusterServers:
    """Three redis-server masters on free ports joined into a Redis Cluster."""

    def __init__(self, tmpdir: str, masters: int = 3) -> None:
        ports = [free_cluster_port() for _ in range(masters)]
        self.servers = [RedisServer("--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                                    "--cluster-config-file", f"nodes-{port}.conf", port=port, dir=tmpdir)
                        for port in ports]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers)

    def start(self) -> RedisClusterServers:
        for server in self.servers:
            server.start()
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{s.port}" for s in self.servers],
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        for server in self.servers:
            client = redis.Redis(port=server.port)
            while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the test cluster did not become ready")
                time.sleep(0.05)
            client.close()
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def need_redis_server() -> None:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is missing (CI must install it)")
        pytest.skip("redis-server is not installed")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    need_redis_server()
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A 3-master Redis Cluster for the session."""
    need_redis_server()
    cluster = RedisClusterServers(str(tmp_path_factory.mktemp("cluster"))).start()
    yield cluster.url
    cluster.stop()


@pytest.fixture(params=["memory", "redis", "cluster"])
def backend_url(request: pytest.FixtureRequest) -> str:
    """A URL per backend: a fresh memory:// server, the session's redis-server, or the
    session's 3-master Redis Cluster."""
    if request.param == "memory":
        return f"memory://test-{uuid.uuid4().hex}"
    if request.param == "cluster":
        return request.getfixturevalue("cluster_url")
    return request.getfixturevalue("redis_url")


@pytest.fixture
def make_engine(backend_url: str) -> Iterator[Callable[..., redispool.Engine]]:
    """Factory of engines on the backend, all sharing one fresh key prefix."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    engines: list[redispool.Engine] = []

    def make(**options) -> redispool.Engine:
        engine = redispool.connect(backend_url, prefix=prefix, **options)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture
def engine(make_engine) -> redispool.Engine:
    return make_engine()
