"""Fixtures of the web tests: ``served``, one real ``redispool serve`` process."""
from __future__ import annotations

import uuid

import pytest

import redispool

from support.served import TOKENS, Served, tokens_file


@pytest.fixture
def served(redis_url, tmp_path):
    """A ``redispool serve`` process on a fresh prefix with the role tokens of
    ``support.served.TOKENS``, and an engine on that prefix. On the way out the server
    must exit 0 at SIGTERM and have logged no token."""
    prefix = f"srv{uuid.uuid4().hex[:8]}"
    server = Served(redis_url, prefix, tokens_file=tokens_file(tmp_path)).wait_ready()
    engine = redispool.connect(redis_url, prefix=prefix)
    yield server, engine
    code = server.stop()
    engine.close()
    assert code == 0, server.output[-3000:]
    assert not any(token in server.output for token in TOKENS.values()), "a token reached the log"
