"""Blocking Redis commands with a read timeout longer than their wait.

Every client redispool makes (connection.py) reads with a finite timeout,
``READ_TIMEOUT_S`` unless the URL says otherwise, so a server that stops answering is
noticed. A blocking command (``BZPOPMIN`` of a claim that waits, ``WAIT`` of a durable
write) is different: the server holds its reply back for up to the wait, and redis-py
applies the one socket timeout to every command, so a wait longer than that timeout
would fail (redis-py 8's default is 5 s). These functions send the command on a pooled
connection themselves and read its reply with ``wait + <the connection's read
timeout>`` (``Connection.read_response(timeout=...)``): a wait of any length works, and
a server that dies during it is still noticed that much later. On a cluster they go to
the primary of the first key's slot and follow MOVED.

The replies are raw (no redis-py response callback): ``BZPOPMIN`` gives
``[key, member, score]`` or None.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import AskError, MovedError, TryAgainError

from .connection import READ_TIMEOUT_S

# Redis checks a blocked command's timeout on its timer (hz 10: every 100 ms) when nothing
# else wakes it, so an idle server answers a BZPOPMIN that timed out up to this late. A
# wait that must end on time (a delayed job falls due, the rate window opens) blocks until
# this long before and sleeps the rest in the client (Engine.claim, the worker's waiter).
TIMEOUT_LAG_S = 0.1
REDIRECT_TRIES = 5          # MOVED replies followed before giving up ...
REDIRECT_PAUSE_S = 0.05     # ... and the pause after ASK/TRYAGAIN (a slot being migrated)


def read_timeout(conn: Any, wait: float) -> float:
    """The read timeout of a command the server may hold back ``wait`` seconds."""
    return wait + (getattr(conn, "socket_timeout", None) or READ_TIMEOUT_S)


def is_cluster(client: Any) -> bool:
    from redis.asyncio.cluster import RedisCluster as AsyncCluster
    from redis.cluster import RedisCluster

    return isinstance(client, (RedisCluster, AsyncCluster))


# ---------------------------------------------------------------------- sync
def bzpopmin(client: Any, keys: Sequence[str], wait: float) -> Any:
    """``BZPOPMIN keys... wait``: ``[key, member, score]``, or None after ``wait`` s.
    On a cluster every key must be in one slot. An ASK or TRYAGAIN (the slot is being
    migrated) returns None after a short pause: the caller claims, and its script call
    follows the migration."""
    return call(client, keys[0], ["BZPOPMIN", *keys, wait], wait)


def call(client: Any, key: str, command: Sequence[Any], wait: float) -> Any:
    """Run one blocking ``command`` (about ``key``) allowing ``wait`` s for its reply."""
    if not is_cluster(client):
        return _raise(pipeline(client, [command], wait)[0])
    for _ in range(REDIRECT_TRIES):
        node_client = client.get_redis_connection(client.get_node_from_key(key))
        try:
            return _raise(pipeline(node_client, [command], wait)[0])
        except MovedError:
            refresh_slots(client)
        except (AskError, TryAgainError):
            time.sleep(REDIRECT_PAUSE_S)
            return None
        except (redis.ConnectionError, redis.TimeoutError):
            refresh_slots(client)  # the primary may have failed over: ask the cluster again
            raise
    return None  # still moving: a spurious wake-up, the caller claims and waits again


def pipeline(client: Any, commands: Sequence[Sequence[Any]], wait: float) -> list[Any]:
    """Send ``commands`` on one pooled connection of a (non-cluster) client and read
    their replies, each allowed ``wait`` s more than the connection's read timeout.
    Error replies are returned in place (``raise_on_error=False`` style); a lost
    connection raises and is closed, so it never hands a late reply to another caller."""
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command(conn.pack_commands(commands))
        replies = []
        for _ in commands:
            try:
                replies.append(conn.read_response(timeout=read_timeout(conn, wait), disconnect_on_error=True))
            except redis.ResponseError as exc:
                replies.append(exc)
        return replies
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)


def _raise(reply: Any) -> Any:
    if isinstance(reply, Exception):
        raise reply
    return reply


def refresh_slots(client: Any) -> None:
    """Reload a cluster client's slot map (after MOVED or a lost primary)."""
    # no node answers now: the caller's next call tries again
    with contextlib.suppress(redis.RedisError, redis.exceptions.RedisClusterException):
        client.nodes_manager.initialize()


# ---------------------------------------------------------------------- async
async def bzpopmin_async(client: Any, keys: Sequence[str], wait: float) -> Any:
    """``bzpopmin`` on a ``redis.asyncio`` client (standalone, Sentinel or Cluster)."""
    return await call_async(client, keys[0], ["BZPOPMIN", *keys, wait], wait)


async def call_async(client: Any, key: str, command: Sequence[Any], wait: float) -> Any:
    """``call`` on a ``redis.asyncio`` client: one blocking ``command`` (about ``key``),
    its raw reply allowed ``wait`` s more than the read timeout."""
    if not is_cluster(client):
        return _raise((await pipeline_async(client, [command], wait))[0])
    await client.initialize()
    for _ in range(REDIRECT_TRIES):
        node = client.get_node_from_key(key)
        conn = node.acquire_connection()
        try:
            return await _send_read(conn, command, wait)
        except MovedError:
            await _refresh_slots_async(client)
        except (AskError, TryAgainError):
            await _pause_async()
            return None
        except (redis.ConnectionError, redis.TimeoutError):
            await _refresh_slots_async(client)
            raise
        finally:
            node.release(conn)
    return None


async def pipeline_async(client: Any, commands: Sequence[Sequence[Any]], wait: float) -> list[Any]:
    """``pipeline`` on a (non-cluster) ``redis.asyncio`` client: ``commands`` sent together
    on one pooled connection, their raw replies (errors in place)."""
    pool = client.connection_pool
    conn = await pool.get_connection()
    try:
        return await _send_read_all(conn, commands, wait)
    finally:
        await pool.release(conn)


async def _send_read(conn: Any, command: Sequence[Any], wait: float) -> Any:
    return _raise((await _send_read_all(conn, [command], wait))[0])


async def _send_read_all(conn: Any, commands: Sequence[Sequence[Any]], wait: float) -> list[Any]:
    """Send ``commands`` on ``conn`` and read their replies (error replies in place)."""
    try:
        await conn.send_packed_command(conn.pack_commands(commands))
        replies = []
        for _ in commands:
            try:
                replies.append(await conn.read_response(timeout=read_timeout(conn, wait), disconnect_on_error=True))
            except redis.ResponseError as exc:
                replies.append(exc)
        return replies
    except BaseException:  # cancelled or lost mid-wait: the replies must not reach another caller
        await conn.disconnect()
        raise


async def _refresh_slots_async(client: Any) -> None:
    with contextlib.suppress(redis.RedisError, redis.exceptions.RedisClusterException, OSError):
        await client.nodes_manager.initialize()


async def _pause_async() -> None:
    import asyncio
    await asyncio.sleep(REDIRECT_PAUSE_S)
