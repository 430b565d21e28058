"""Fixtures of the runtime tests (worker, daemons, CLI)."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

import redispool


@pytest.fixture
def redis_engine(redis_url) -> Iterator[redispool.Engine]:
    engine = redispool.connect(redis_url, prefix=f"t{uuid.uuid4().hex[:10]}")
    yield engine
    engine.close()
