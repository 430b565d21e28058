"""Fixtures of the topology tests (cluster, sentinel, chaos, crash, connections)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.servers import RedisServer, started


@pytest.fixture
def lone(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, a master without replicas."""
    with started(RedisServer(dir=tmp_path)) as server:
        yield server
