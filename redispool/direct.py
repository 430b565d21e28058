"""Script calls on a plain redis-py client, sent on its pool's connections directly.

``redis.Redis.execute_command`` wraps each command in work a script call does not need:
argument re-checks, observability hooks, per-call closures, response-callback lookup.
On a producer sending one small script call per job that was a third of its CPU per
``enqueue``. ``direct_executor`` returns, for a client where it is safe, a callable that
does what that call does for a script -- take a connection from the client's pool (which
connects, reconnects a stale one and checks the process did not fork), pack the command,
send it, read the reply, give the connection back -- under the connection's own ``retry``
(a lost connection or a timeout: disconnect, back off, send again, as redis-py does), and
raises the same errors (``ResponseError`` and its subclasses such as ``NoScriptError``,
``ConnectionError``, ``TimeoutError``). Sentinel's pool picks the master as before.

Any other client -- a cluster, ``memory://``, one in single-connection mode or with
client-side caching, a connection class of its own -- keeps ``execute_command``.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import redis
from redis.connection import Connection, HiredisRespSerializer, SSLConnection, UnixDomainSocketConnection

_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _pack
except ImportError:  # pragma: no cover - redis[hiredis] is a dependency
    _pack = None

_PLAIN = (Connection, SSLConnection, UnixDomainSocketConnection)


def _plain_connections(pool: Any) -> bool:
    from redis.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection
    return pool.connection_class in (*_PLAIN, SentinelManagedConnection, SentinelManagedSSLConnection)


KEEP_MIN_POOL = 100   # a pool this large (redis-py 8's default size) spares the connection Direct keeps


def direct_executor(client: Any) -> Callable[..., Any] | None:
    """A callable with ``client.execute_command``'s signature for script calls (a command
    without a response callback), or None where ``client.execute_command`` must be used."""
    if type(client) is not redis.Redis or getattr(client, "connection", None) is not None:
        return None
    pool = getattr(client, "connection_pool", None)
    if pool is None or getattr(pool, "cache", None) is not None or not _plain_connections(pool):
        return None
    # Sentinel's pool checks at each release that a connection still goes to the master;
    # a bounded pool would miss the connection kept: those give every call's back
    keep = type(pool) is redis.ConnectionPool and pool.max_connections >= KEEP_MIN_POOL
    return Direct(pool, keep).execute


class Direct:
    """``execute`` sends one command on a connection of ``pool`` and returns its raw reply.

    With ``keep``, the connection of the last call stays out of the pool for the next one
    (taking one from the pool and giving it back cost a third of the rest of a call: a
    lock, observability hooks and a poll of the socket each way). That poll is how the
    pool finds a connection the server closed (a restart, an idle timeout); a kept one
    is found out by its send or read failing instead, and then the call goes the pool's
    way at once, as if the pool had found it: a fresh connection and the retries. One
    connection is kept at most (threads take it in turn; list pop and append are
    atomic), and none across a fork: the child's pool starts over and the parent's
    socket stays the parent's."""

    __slots__ = ("pool", "keep", "_kept")

    def __init__(self, pool: Any, keep: bool = False) -> None:
        self.pool = pool
        self.keep = keep
        self._kept: list[Any] = []

    def execute(self, *args: Any) -> Any:
        pool = self.pool
        if self._kept:
            try:
                conn = self._kept.pop()
            except IndexError:   # another thread took it
                pass
            else:
                if conn.pid == os.getpid():   # not kept by the parent before a fork
                    try:
                        reply = _send_read(conn, args)
                    except (redis.ConnectionError, redis.TimeoutError):
                        pool.release(conn)   # disconnected by the failed send or read
                    except BaseException:
                        self._give_back(conn)
                        raise
                    else:
                        self._give_back(conn)
                        return reply
        conn = pool.get_connection()
        try:
            reply = conn.retry.call_with_retry(lambda: _send_read(conn, args), lambda _error: conn.disconnect())
        except BaseException:
            pool.release(conn)
            raise
        self._give_back(conn)
        return reply

    def _give_back(self, conn: Any) -> None:
        """Keep ``conn`` for the next call (when keeping and none is kept), else release it."""
        if self.keep and not self._kept and conn._sock is not None and not conn.should_reconnect():
            self._kept.append(conn)
        else:
            self.pool.release(conn)


def _send_read(conn: Any, args: tuple[Any, ...]) -> Any:
    if _pack is not None and type(conn._command_packer) is HiredisRespSerializer:
        try:   # what HiredisRespSerializer.pack does for str, bytes, int and float arguments
            packed = [_pack(args)]
        except TypeError:
            packed = conn.pack_command(*args)   # its conversions, or its DataError
    else:
        packed = conn.pack_command(*args)
    conn.send_packed_command(packed)
    return conn.read_response()


def async_direct_executor(client: Any) -> Callable[..., Any] | None:
    """``direct_executor`` for a ``redis.asyncio.Redis`` (aio.py's): a coroutine function
    with its ``execute_command``'s signature for script calls, or None where that must be
    used. The connection's own ``pack_command`` packs (aio.py's packs with hiredis)."""
    import redis.asyncio as aredis
    from redis.asyncio.sentinel import SentinelManagedConnection

    if type(client) is not aredis.Redis or client.single_connection_client or client.connection is not None:
        return None
    pool = getattr(client, "connection_pool", None)
    if pool is None or getattr(pool, "cache", None) is not None or not issubclass(
            pool.connection_class, (aredis.Connection, aredis.UnixDomainSocketConnection, SentinelManagedConnection)):
        return None
    return AsyncDirect(pool).execute


class AsyncDirect:
    """``Direct`` on an async pool: ``execute`` is a coroutine."""

    __slots__ = ("pool",)

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def execute(self, *args: Any) -> Any:
        pool = self.pool
        conn = await pool.get_connection()
        try:
            return await conn.retry.call_with_retry(lambda: _send_read_async(conn, args),
                                                    lambda _error: conn.disconnect())
        finally:
            await pool.release(conn)


async def _send_read_async(conn: Any, args: tuple[Any, ...]) -> Any:
    await conn.send_packed_command(conn.pack_command(*args))
    return await conn.read_response()
