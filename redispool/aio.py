"""The Engine on ``redis.asyncio``: for servers that run on an event loop (``redispool serve``).

No second state machine. Each method asks the sync ``Engine`` for the script call it would
make (``Engine._claim_call`` and the like: the same keys, the same validated arguments),
runs it by SHA on an async client (``AsyncScripts``: the same Lua text) and decodes the
reply with the Engine's own parser. So a claim, complete or ack over HTTP is byte for byte
the call a Python worker makes, without a thread per request.

A waiting claim holds no thread and no connection of its own: it waits in the engine's
wait hub (hub.py), where every claim waiting on a queue shares one blocked ``BZPOPMIN``
on the queue's wake-up marker, then claims with an ordinary script call. Short calls
share a pool of ``POOL_CONNECTIONS`` connections and queue up to ``POOL_WAIT_S`` for one
(ServerBusy after that, never a false "cannot reach Redis"); a pooled connection that
fails (Redis restarted since it was opened) is retried once on a new one. What this class does not cover -- cues (their
compare-and-set loops use croniter), budgeted purges and replays, cancel, pause -- is rare
and administrative; callers run those sync Engine methods on a thread. With
``durable=True`` the writes go through the sync Engine on a thread too, so its replica
acknowledgement and release-on-failure rules apply unchanged.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence, TypeVar

import redis

from . import validate
from .engine import CLAIM_JOBS_AT, AckResult, Engine, JobRef, _text
from .errors import (
    REDIS_TROUBLE,
    ConnectionFailed,
    LeaseLost,
    RedispoolError,
    from_redis,
)
from .web.hub import MARKER_MEMBER, WaitHub
from .keys import check_queue, queues_key
from .models import Job, JobInfo, WorkerInfo
from .scripts import AsyncScripts, Call

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
__all__ = ["MARKER_MEMBER", "AsyncEngine", "ServerBusy", "async_client", "pool_exhausted"]
POOL_CONNECTIONS = 50   # connections of the pool short calls share ...
POOL_WAIT_S = 5.0       # ... and how long a call queues for one before ServerBusy
log = logging.getLogger("redispool.aio")


class ServerBusy(ConnectionFailed):
    """Every pooled connection stayed busy for POOL_WAIT_S: this process is saturated
    (Redis itself may be fine). A ConnectionFailed, so callers retry it alike."""

    def __init__(self, url: str, reason: object = "") -> None:
        super().__init__(url, reason)
        self.args = ((f"busy: no connection to Redis at {self.url} came free within {POOL_WAIT_S:g}s "
                      "(this server is saturated; Redis itself may be fine)"),)

    def __str__(self) -> str:
        return str(self.args[0])


# what a best-effort write after a lease swallows (and logs): Redis trouble, typed or raw
GIVE_UP: tuple[type[BaseException], ...] = (RedispoolError, *REDIS_TROUBLE)


def pool_exhausted(exc: BaseException) -> bool:
    """True for redis-py's "no connection came free in the pool's timeout"."""
    return isinstance(exc, redis.ConnectionError) and str(exc) == "No connection available."

# Connection options copied from the sync client to the async one (the rest of redis-py's
# connection kwargs are internal objects of the sync pool).
_CONNECTION_OPTIONS = ("host", "port", "path", "db", "username", "password", "client_name",
                       "credential_provider", "socket_keepalive", "socket_connect_timeout", "socket_timeout")


def _unreachable(method: F) -> F:
    """Redis trouble becomes ConnectionFailed or RedisFull naming the masked URL."""
    @functools.wraps(method)
    async def wrapper(self: "AsyncEngine", *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except REDIS_TROUBLE as exc:
            if isinstance(exc, RedispoolError):
                raise
            if pool_exhausted(exc):
                raise ServerBusy(self.engine.url) from exc
            raise from_redis(self.engine.url, exc) from exc
    return wrapper  # type: ignore[return-value]


def _retry_once() -> Any:
    """redis-py's retry, once and at once, on a lost connection only (not on a timeout: a
    command that timed out may have run, and a second wait would double the delay)."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    return Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


def async_client(engine: Engine, *, max_connections: int | None = POOL_CONNECTIONS,
                 pool_wait: float = POOL_WAIT_S) -> Any:
    """A ``redis.asyncio`` client to the same server(s) as ``engine.client``, with the same
    credentials, database, TLS settings and timeouts: a finite read timeout, which
    blocking waits extend by their wait (blocking.py). Its pool holds ``max_connections``
    (None: no limit) and a call waits up to ``pool_wait`` s for a free one; a connection
    that fails is retried once."""
    sync = engine.client
    try:
        import fakeredis
        if isinstance(sync, fakeredis.FakeRedis):  # memory://: the same in-process server
            return fakeredis.FakeAsyncRedis(server=sync.connection_pool.connection_kwargs["server"])
    except ImportError:  # pragma: no cover - fakeredis is a dependency
        pass
    from redis.cluster import RedisCluster
    if isinstance(sync, RedisCluster):
        from redis.asyncio.cluster import ClusterNode
        from redis.asyncio.cluster import RedisCluster as AsyncCluster
        kwargs = _options(sync.nodes_manager.connection_kwargs, ("host", "port", "db", "path"))
        ssl = {k: v for k, v in sync.nodes_manager.connection_kwargs.items() if k.startswith("ssl_")}
        return AsyncCluster(startup_nodes=[ClusterNode(n.host, n.port) for n in sync.get_nodes()],
                            ssl=bool(ssl) or sync.nodes_manager.connection_kwargs.get("ssl", False),
                            **ssl, **kwargs)
    pool = sync.connection_pool
    from redis.sentinel import SentinelConnectionPool
    if isinstance(pool, SentinelConnectionPool):
        from redis.asyncio.sentinel import Sentinel
        manager = pool.sentinel_manager
        sentinels = [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
                     for s in manager.sentinels]
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        # the same options, but redis-py's async Retry (a sync one cannot catch async errors)
        sentinel_kwargs = {**manager.sentinel_kwargs, "retry": Retry(NoBackoff(), 0)}
        sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)
        return sentinel.master_for(pool.service_name, retry=_retry_once(),
                                   **_options(pool.connection_kwargs, ("host", "port", "path")))
    import redis.asyncio as aredis
    classes = {"Connection": aredis.Connection, "SSLConnection": aredis.SSLConnection,
               "UnixDomainSocketConnection": aredis.UnixDomainSocketConnection}
    cls = classes.get(pool.connection_class.__name__, aredis.Connection)
    kwargs = _options(pool.connection_kwargs)
    if cls is aredis.SSLConnection:
        kwargs.update({k: v for k, v in pool.connection_kwargs.items() if k.startswith("ssl_")})
    kwargs["retry"] = _retry_once()
    if max_connections is None:
        return aredis.Redis(connection_pool=aredis.ConnectionPool(connection_class=cls, **kwargs))
    return aredis.Redis(connection_pool=aredis.BlockingConnectionPool(
        connection_class=cls, max_connections=max_connections, timeout=pool_wait, **kwargs))


def _options(kwargs: dict[str, Any], leave_out: Sequence[str] = ()) -> dict[str, Any]:
    return {k: kwargs[k] for k in _CONNECTION_OPTIONS if k in kwargs and k not in leave_out}


class AsyncEngine:
    """The hot-path operations of an ``Engine`` (producing, claiming, finishing, the worker
    registry, reading a job or a queue) as coroutines on one async client; waiting claims
    share its wait hub (``hub``, made at the first wait with a client of its own)."""

    def __init__(self, engine: Engine, client: Any = None, hub: WaitHub | None = None) -> None:
        self.engine = engine
        self.client = client if client is not None else async_client(engine)
        self.scripts = AsyncScripts(self.client, engine.scripts)
        self._hub = hub
        # durable=True (where the Engine has it): writes wait for a replica in the sync Engine
        self.durable = bool(getattr(engine, "durable", False))

    @property
    def url(self) -> str:
        return self.engine.url

    @property
    def hub(self) -> WaitHub:
        if self._hub is None:
            self._hub = WaitHub(async_client(self.engine, max_connections=None), self.engine.keys)
        return self._hub

    async def close(self) -> None:
        if self._hub is not None:
            await self._hub.close()
        await self.client.aclose()

    async def _run(self, call: Call) -> Any:
        return await self.scripts.run(*call)

    async def ping(self) -> bool:
        """True when Redis answers, False when it cannot be reached (never raises)."""
        try:
            return bool(await self.client.ping())
        except (redis.RedisError, OSError):
            return False

    # ------------------------------------------------------------------ producing
    @_unreachable
    async def enqueue_specs(self, queue: str, specs: Sequence[list[Any]]) -> list[tuple[str, bool]]:
        """``Engine.enqueue_specs``: jobs from validated ``Engine._job_args`` lists, one round trip."""
        check_queue(queue)
        if self.durable:
            return await asyncio.to_thread(self.engine.enqueue_specs, queue, specs)
        args: list[Any] = [len(specs), 0]
        for spec in specs:
            args.extend(spec)
        reply = await self._run(self.engine._enqueue_call(queue, args))
        await self._followups(self.engine._enqueue_followups(queue, reply))
        return self.engine._enqueue_reply(reply)

    async def _followups(self, followups: list[Any]) -> None:
        """The registry / due-set commands a writer script asked for (queues.py)."""
        await self.engine._send_followups_async(self.client, followups)

    # ------------------------------------------------------------------ consuming
    @_unreachable
    async def claim(self, queue: str, worker_id: str, *, limit: int = 1, lease: float | None = None,
                    block: float | None = None, stop: asyncio.Future | None = None) -> list[Job]:
        """``Engine.claim``: with ``block`` seconds, wait in Redis for a job when none is ready
        (woken by the queue's marker, or when the earliest delayed job falls due). The wait
        ends early, with no job, once ``stop`` is done (the client went away, shutdown)."""
        e = self.engine
        check_queue(queue)
        worker_id, limit = e._worker_id(worker_id), e._limit(limit)
        lease_ms = validate.lease_ms(lease) or e.lease_ms
        loop = asyncio.get_running_loop()
        deadline = None if block is None else loop.time() + validate.seconds_to_ms(block, "block") / 1000
        while True:
            reply = await self._run(e._claim_call(queue, worker_id, limit, lease_ms))
            await self._followups(e._claim_followups(queue, reply))
            jobs = await self._decode_jobs(queue, worker_id, reply, CLAIM_JOBS_AT)
            if jobs or deadline is None:
                return jobs
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            wait_ms = int(reply[0])
            if wait_ms >= 0:  # a delayed job falls due before the deadline
                remaining = min(remaining, wait_ms / 1000 + 0.001)
            if stop is None:
                await self.wait_for_jobs(queue, remaining, limit)
                continue
            if stop.done():
                return []
            waiting = asyncio.ensure_future(self.wait_for_jobs(queue, remaining, limit))
            await asyncio.wait({waiting, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not waiting.done():
                waiting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiting
                return []
            waiting.result()

    async def wait_for_jobs(self, queue: str, timeout: float, limit: int = 1) -> bool:
        """Wait up to ``timeout`` s until ``queue`` may have a ready job (True), in the wait
        hub: one blocked connection per queue, however many claims wait. Cancelling it
        passes on a wake-up it had taken, so no other claimer sleeps through a ready job."""
        return await self.hub.wait(queue, timeout, limit)

    async def _decode_jobs(self, queue: str, worker_id: str, reply: Sequence[Any], start: int) -> list[Job]:
        jobs, broken = self.engine._decode_jobs(queue, worker_id, reply, start)
        await self.bury(broken)
        return jobs

    async def bury(self, broken: Sequence[tuple[Job, str]]) -> None:
        """Send leased jobs no worker can be given to dead with their error. Best effort:
        when Redis refuses (full, unreachable) they stay leased and come back when the
        lease expires, and the batch they came with is delivered all the same."""
        for job, error in broken:
            try:
                await self.fail(job, error, retry=False)
            except LeaseLost:
                pass
            except GIVE_UP as exc:
                log.warning("job %s/%s cannot be delivered (%s) nor sent to dead now: %s",
                            job.queue, job.id, error, exc)

    @_unreachable
    async def complete(self, job: JobRef, result: Any = None) -> None:
        if self.durable:
            return await asyncio.to_thread(self.engine.complete, job, result)
        self.engine._complete_reply(job, await self._run(self.engine._complete_call(job, result)))

    @_unreachable
    async def fail(self, job: JobRef, error: Any, *, retry: bool = True, delay: float | None = None) -> str:
        if self.durable:
            return await asyncio.to_thread(functools.partial(self.engine.fail, job, error, retry=retry, delay=delay))
        reply = await self._run(self.engine._fail_call(job, error, retry, delay))
        await self._followups(self.engine._followups(job.queue, scheduler_at=reply[-1]))
        return self.engine._fail_reply(job, reply)

    @_unreachable
    async def heartbeat(self, job: JobRef, lease: float | None = None) -> float:
        reply = await self._run(self.engine._heartbeat_call(job.queue, [job], lease))
        [expires] = self.engine._heartbeat_reply(reply)
        if expires is None:
            raise self.engine._lease_lost(job)
        return expires

    @_unreachable
    async def release(self, job: JobRef) -> None:
        await self._run(self.engine._release_call(job))

    @_unreachable
    async def ack(self, queue: str, *, completed: Iterable[tuple[JobRef, Any]] = (),
                  failed: Iterable[tuple] = (), worker_id: str | None = None, limit: int = 0,
                  lease: float | None = None) -> AckResult:
        """``Engine.ack``: finish many leases of one queue and lease the next batch."""
        if self.durable:
            return await asyncio.to_thread(functools.partial(
                self.engine.ack, queue, completed=completed, failed=failed, worker_id=worker_id,
                limit=limit, lease=lease))
        call, nc, nf = self.engine._ack_call(queue, completed, failed, worker_id, limit, lease)
        reply = await self._run(call)
        await self._followups(self.engine._claim_followups(queue, reply, nc + nf))
        result = self.engine._ack_reply(reply, nc, nf)
        result.jobs = await self._decode_jobs(queue, worker_id or "", reply, nc + nf + CLAIM_JOBS_AT)
        return result

    # ------------------------------------------------------------------ the worker registry
    @_unreachable
    async def register_worker(self, worker_id: str, *, host: str, pid: int, queues: Sequence[str]) -> float:
        return int(await self._run(self.engine._register_call(worker_id, host, pid, queues))) / 1000

    @_unreachable
    async def beat_worker(self, worker_id: str, *, jobs_in_progress: Sequence[str] | None = None,
                          processed: int = 0, failed: int = 0, queue: str | None = None,
                          taken: Mapping[str, float] | None = None, settled: Sequence[str] | None = None) -> bool:
        """Refresh a registration (see Engine.beat_worker)."""
        return int(await self._run(self.engine._beat_call(worker_id, jobs_in_progress, processed, failed,
                                                          queue, taken, settled))) != 0

    @_unreachable
    async def workers(self, *, timeout: float = 60.0) -> list[WorkerInfo]:
        return self.engine._workers_reply(await self._run(self.engine._workers_call(timeout)))

    # ------------------------------------------------------------------ reading
    @_unreachable
    async def get(self, queue: str, job_id: str) -> JobInfo | None:
        k = self.engine.keys(queue)
        fields = await self.client.hgetall(k.job(job_id))
        if not fields:
            return None
        state = _text(fields.get(b"s"))
        score = await self.client.zscore(k.state(state), job_id) if state in ("scheduled", "leased") else None
        return self.engine._info(queue, job_id, fields, score)

    @_unreachable
    async def jobs(self, queue: str, state: str, *, limit: int = 100, offset: int = 0) -> list[JobInfo]:
        return self.engine._jobs_reply(queue, await self._run(self.engine._jobs_call(queue, state, limit, offset)))

    @_unreachable
    async def stats(self, queue: str) -> dict[str, Any]:
        return self.engine._stats_reply(queue, await self._run(self.engine._stats_call(queue)))

    @_unreachable
    async def queues(self) -> list[str]:
        return sorted(_text(q) for q in await self.client.smembers(queues_key(self.engine.prefix)))
