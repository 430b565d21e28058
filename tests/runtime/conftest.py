"""Fixtures of the runtime tests (worker, daemons, CLI)."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

import redispool

from support.servers import RedisServer


@pytest.fixture
def redis_engine(redis_url) -> Iterator[redispool.Engine]:
    engine = redispool.connect(redis_url, prefix=f"t{uuid.uuid4().hex[:10]}")
    yield engine
    engine.close()


@pytest.fixture
def private_server() -> Iterator[RedisServer]:
    """A redis-server of this test alone, so INFO commandstats counts only its workers
    (``support.servers.calls``)."""
    server = RedisServer().start()
    yield server
    server.stop()
