"""The long-poll of an HTTP claim: block in Redis without holding a thread.

One ``redis.asyncio`` client per server process; a waiting claim runs BZPOPMIN on its
queue's wake-up marker (the marker every enqueue, promote, retry, release and resume
sets), then claims through the Engine.
"""
from __future__ import annotations

import asyncio
from typing import Any

MIN_BLOCK_S = 0.01


def async_client(engine: Any) -> Any:
    """A redis.asyncio client to the engine's server (memory:// shares the fake server)."""
    url = engine.url
    scheme = url.split("://", 1)[0].lower()
    if scheme == "memory":
        import fakeredis
        return fakeredis.FakeAsyncRedis(server=engine.client.connection_pool.connection_kwargs["server"])
    if scheme == "redis+cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster
        nodes = [ClusterNode(n.host, n.port) for n in engine.client.get_nodes()]
        return RedisCluster(startup_nodes=nodes)
    if scheme == "redis+sentinel":
        from redis.asyncio.sentinel import Sentinel
        sync = engine.client.connection_pool
        sentinel = Sentinel([(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
                             for s in sync.sentinel_manager.sentinels])
        return sentinel.master_for(sync.service_name)
    import redis.asyncio
    return redis.asyncio.from_url(url.split("?", 1)[0])


class MarkerWait:
    """Blocking waits on queue markers; one async client per event loop (uvicorn runs one)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._client: Any = None
        self._loop: Any = None
        self.closing = False

    async def wait(self, queue: str, timeout: float) -> bool:
        """Block up to ``timeout`` s until ``queue``'s marker is set; True if it was."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client, self._loop = async_client(self.engine), loop
        marker = self.engine.keys(queue).marker
        return bool(await self._client.bzpopmin([marker], timeout=max(MIN_BLOCK_S, timeout)))

    async def interrupt(self) -> None:
        """Shutting down: end every wait now (their claims answer with no jobs)."""
        self.closing = True
        if self._client is not None:
            await self._client.connection_pool.disconnect()

    async def close(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None
