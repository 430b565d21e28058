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
from typing import Callable, Iterator

import pytest
import redis

import redispool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    def start(self) -> "RedisServer":
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
                    raise RuntimeError(f"redis-server on port {self.port} did not start")
                time.sleep(0.02)
        client.close()
        return self

    def stop(self, sig: str = "term") -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill() if sig == "kill" else self.proc.terminate()
            self.proc.wait(10)


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


@pytest.fixture(params=["memory", "redis"])
def backend_url(request: pytest.FixtureRequest) -> str:
    """A URL per backend: a fresh memory:// server, or the session's redis-server."""
    if request.param == "memory":
        return f"memory://test-{uuid.uuid4().hex}"
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
