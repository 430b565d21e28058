"""Fixtures of the web tests: ``served``, one real ``redispool serve`` process; for the
compat tests ``server``, one per module (support.compat.compat_server), and ``client``,
the spooled SDK on it with the admin key (a module may define its own of either)."""
from __future__ import annotations

import uuid

import pytest

import redispool

from support.compat import SPOOLED_KEYS, compat_server
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


@pytest.fixture(scope="module")
def server(redis_url):
    with compat_server(redis_url) as s:
        yield s


@pytest.fixture
def client(server):
    spooled = pytest.importorskip("spooled")
    c = spooled.SpooledClient(api_key=SPOOLED_KEYS[0], base_url=server[0] + "/compat/spooled")
    yield c
    c.close()
