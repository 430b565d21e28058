"""Fixtures every tier uses: a private redis-server and a 3-master Redis Cluster per test
session, and an engine per backend.

Every engine test runs on ``memory://`` (fakeredis + lupa), on the session's redis-server
and on its cluster, both started on free ports and stopped by PID (``support.servers``).
Tests never flush a server; each one gets its own key prefix (or its own memory server),
so they cannot see each other's keys. Each tier folder's conftest.py adds the fixtures
only that tier uses.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

import redispool

from support.servers import Cluster, RedisServer, started


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with started(RedisServer()) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A 3-master Redis Cluster for the session. Tests must leave its topology as they found
    it (a test that moves slots or adds nodes starts a cluster of its own)."""
    with started(Cluster(tmp_path_factory.mktemp("cluster"))) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def cluster_url(cluster: Cluster) -> str:
    return cluster.url


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
