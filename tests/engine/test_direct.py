"""Script calls on the pool's connections directly (direct.py), on the session's redis-server:
the connection kept between calls is given up when the server closed it (no retry pause,
the job written once), never used by a forked child, shared safely by threads; bounded
pools and other clients keep redis-py's way."""
from __future__ import annotations

import os
import threading
import uuid

import pytest
import redis
from redis.backoff import AbstractBackoff
from redis.retry import Retry

import redispool
from redispool.direct import Direct, direct_executor
from redispool.engine import Engine


class NoPause(AbstractBackoff):
    """A backoff that fails the test when a retry would pause."""

    def compute(self, failures: int) -> float:
        raise AssertionError(f"a retry pause after {failures} failure(s)")


@pytest.fixture
def direct_engine(redis_url: str):
    client = redis.Redis.from_url(redis_url, retry=Retry(NoPause(), 3))
    engine = Engine(client, url=redis_url, prefix=f"t{uuid.uuid4().hex[:10]}")
    yield engine
    engine.close()


def _direct(engine: Engine) -> Direct:
    direct = engine.scripts._execute.__self__
    assert isinstance(direct, Direct)
    return direct


def test_a_kept_connection_the_server_closed_is_replaced_at_once_and_the_job_written_once(direct_engine, redis_url):
    engine = direct_engine
    engine.enqueue("q", 1)
    direct = _direct(engine)
    [kept] = direct._kept
    host, port = kept._sock.getsockname()[:2]
    admin = redis.Redis.from_url(redis_url)
    assert admin.client_kill(f"{host}:{port}")
    assert engine.enqueue("q", 2) == "2"   # NoPause: no retry was needed
    assert engine.stats("q")["ready"] == 2
    [now] = direct._kept
    assert now._sock.getsockname()[1] != port   # a new connection
    admin.close()


def test_a_script_error_keeps_the_connection(direct_engine):
    engine = direct_engine
    engine.enqueue("q", 1)
    direct = _direct(engine)
    [kept] = direct._kept
    with pytest.raises(redispool.JobNotFound):
        engine.enqueue("q", 2, depends_on=["missing"])
    assert direct._kept == [kept]


def test_a_forked_child_never_uses_the_connection_its_parent_kept(direct_engine):
    engine = direct_engine
    engine.enqueue("q", 1)
    [kept] = _direct(engine)._kept
    parent_port = kept._sock.getsockname()[1]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            engine.enqueue("q", 2)
            [mine] = _direct(engine)._kept
            ok = mine.pid == os.getpid() and mine._sock.getsockname()[1] != parent_port
            os.write(write, b"ok" if ok else b"shared")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 16) == b"ok" and status == 0
    os.close(read)
    assert engine.enqueue("q", 3) == "3"   # the parent's connection still works
    assert _direct(engine)._kept == [kept]
    assert engine.stats("q")["ready"] == 3


def test_threads_take_the_kept_connection_in_turn(direct_engine):
    engine = direct_engine
    ids: list[str] = []

    def produce() -> None:
        ids.extend(engine.enqueue("q", i) for i in range(300))

    threads = [threading.Thread(target=produce) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1800
    assert engine.stats("q")["ready"] == 1800
    assert len(_direct(engine)._kept) == 1


def test_bounded_pools_and_other_clients_keep_no_connection(redis_url):
    small = redis.Redis.from_url(redis_url, max_connections=2)
    blocking = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(redis_url))
    assert direct_executor(small).__self__.keep is False
    assert direct_executor(blocking).__self__.keep is False
    assert direct_executor(redis.Redis.from_url(redis_url, single_connection_client=True)) is None
    engine = redispool.connect(f"memory://direct-{uuid.uuid4().hex}")
    assert not isinstance(getattr(engine.scripts._execute, "__self__", None), Direct)
    for client in (small, blocking):
        client.close()
    engine.close()
