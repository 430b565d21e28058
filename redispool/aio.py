"""The Engine on ``redis.asyncio``: for servers that run on an event loop (``redispool serve``).

No second state machine. Each method runs the Op the sync ``Engine`` would run (ops.py:
the same keys, the same checked arguments, the same reply parser) by SHA on an async
client (``AsyncScripts``: the same Lua text and the same Redis boundary), so a claim,
complete or ack over HTTP is byte for byte the call a Python worker makes, without a
thread per request. Only the blocking claim loop and ack's give-back after a write that
was not durable are written twice.

A waiting claim holds no thread and no connection of its own: it waits in the engine's
wait hub (hub.py), where every claim waiting on a queue shares one blocked ``BZPOPMIN``
on the queue's wake-up marker, then claims with an ordinary script call. Short calls
share a pool of ``POOL_CONNECTIONS`` connections and queue up to ``POOL_WAIT_S`` for one
(ServerBusy after that, never a false "cannot reach Redis"); a pooled connection that
fails (Redis restarted since it was opened) is retried once on a new one. What this class
does not cover -- cues (their compare-and-set loops use croniter), budgeted purges and
replays, cancel, pause -- is rare and administrative; callers run those sync Engine
methods on a thread. With ``durable=True`` the durable scripts run through the sync
Engine on a thread, so its replica acknowledgement applies unchanged.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import redis

from . import blocking, events, ops, validate
from .engine import Engine
from .errors import REDIS_TROUBLE, LeaseLost, NotDurable, RedispoolError, ServerBusy
from .keys import check_queue, queues_key
from .models import AckResult, Event, Job, JobInfo, LeaseRef, WorkerInfo
from .ops import JobSpec, Op
from .scripts import AsyncScripts, pool_exhausted
from .web.hub import WaitHub

T = TypeVar("T")
__all__ = ["AsyncEngine", "ServerBusy", "async_client", "pool_exhausted"]
POOL_CONNECTIONS = 50   # connections of the pool short calls share ...
POOL_WAIT_S = 5.0       # ... and how long a call queues for one before ServerBusy
log = logging.getLogger("redispool.aio")

# what a best-effort write after a lease swallows (and logs): Redis trouble, typed or raw
GIVE_UP: tuple[type[BaseException], ...] = (RedispoolError, *REDIS_TROUBLE)

# Connection options copied from the sync client to the async one (the rest of redis-py's
# connection kwargs are internal objects of the sync pool).
_CONNECTION_OPTIONS = ("host", "port", "path", "db", "username", "password", "client_name",
                       "credential_provider", "socket_keepalive", "socket_connect_timeout", "socket_timeout")


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
        nodes = sync.get_nodes()  # type: ignore[no-untyped-call]
        return AsyncCluster(startup_nodes=[ClusterNode(n.host, n.port) for n in nodes],
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
        sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
        return sentinel.master_for(pool.service_name, retry=_retry_once(),
                                   **_options(pool.connection_kwargs, ("host", "port", "path")))
    import redis.asyncio as aredis
    classes = {"Connection": aredis.Connection, "SSLConnection": aredis.SSLConnection,
               "UnixDomainSocketConnection": aredis.UnixDomainSocketConnection}
    base = classes.get(pool.connection_class.__name__, aredis.Connection)
    cls = _packing(base)
    kwargs = _options(pool.connection_kwargs)
    if base is aredis.SSLConnection:
        kwargs.update({k: v for k, v in pool.connection_kwargs.items() if k.startswith("ssl_")})
    kwargs["retry"] = _retry_once()
    if max_connections is None:
        return aredis.Redis(connection_pool=aredis.ConnectionPool(connection_class=cls, **kwargs))
    return aredis.Redis(connection_pool=aredis.BlockingConnectionPool(
        connection_class=cls, max_connections=max_connections, timeout=pool_wait, **kwargs))


@functools.cache
def _packing(cls: type[Any]) -> type[Any]:
    """``cls`` (a ``redis.asyncio`` connection class) packing commands with hiredis, as
    redis-py's sync connections do: its async ones pack every argument in Python, which
    was a third of the server's time in a batched ack (3 arguments per job). Without
    hiredis, ``cls`` itself."""
    try:
        import hiredis
    except ImportError:  # pragma: no cover - redis[hiredis] is a dependency
        return cls

    def pack_command(self: Any, *args: Any) -> list[bytes]:
        # what redis-py's sync HiredisRespSerializer does: a command name given with its
        # subcommand ("CONFIG GET") is split, and other types than str, bytes, int and
        # float are refused (DataError) as its encoder refuses them
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            pass   # a bytearray or memoryview (hiredis takes bytes only), or a type no one takes
        args = tuple(bytes(a) if isinstance(a, (bytearray, memoryview)) else a for a in args)
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise redis.DataError(str(exc)) from exc
    return type(cls.__name__, (cls,), {"pack_command": pack_command, "__module__": __name__})


def _options(kwargs: dict[str, Any], leave_out: Sequence[str] = ()) -> dict[str, Any]:
    return {k: kwargs[k] for k in _CONNECTION_OPTIONS if k in kwargs and k not in leave_out}


class AsyncEngine:
    """The hot-path operations of an ``Engine`` (producing, claiming, finishing, the worker
    registry, reading a job or a queue) as coroutines on one async client; waiting claims
    share its wait hub (``hub``, made at the first wait with a client of its own)."""

    def __init__(self, engine: Engine, client: Any = None, hub: WaitHub | None = None) -> None:
        self.engine = engine
        self.client = client if client is not None else async_client(engine)
        self.scripts = AsyncScripts(self.client, engine.scripts, pool_wait=POOL_WAIT_S)
        self._hub = hub
        # durable=True (where the Engine has it): durable scripts wait for a replica in the sync Engine
        self.durable = bool(getattr(engine, "durable", False))

    @property
    def url(self) -> str:
        return self.engine.url

    @property
    def hub(self) -> WaitHub:
        if self._hub is None:
            self._hub = WaitHub(async_client(self.engine, max_connections=None), self.engine.keys, self.rewake)
        return self._hub

    async def close(self) -> None:
        if self._hub is not None:
            await self._hub.close()
        await self.client.aclose()

    async def run(self, op: Op[T]) -> T:
        """``Engine.run`` on the async client: the script, its follow-ups, the parsed reply.
        With durable writes on, a durable script runs in the sync Engine on a thread."""
        if self.durable and self.engine.scripts.durable(op.script):
            return await asyncio.to_thread(self.engine.run, op)
        return await self._settle(op, await self.scripts.call(op))

    async def _settle(self, op: Op[T], reply: Any) -> T:
        """What ``run`` does with ``op``'s raw reply: its follow-ups, then the parse."""
        if op.followups is not None:
            await self.engine.unsent.send_async(self.scripts, op.followups(reply))
        if op.drains is not None:
            for queue in op.drains(reply):
                await asyncio.to_thread(self.engine._drain_outbox, queue)
        return op.parse(reply)

    async def ping(self) -> bool:
        """True when Redis answers, False when it cannot be reached (never raises)."""
        try:
            return bool(await self.client.ping())
        except (redis.RedisError, OSError):
            return False

    # ------------------------------------------------------------------ producing
    async def enqueue_specs(self, queue: str, specs: Sequence[JobSpec]) -> list[tuple[str, bool]]:
        """``Engine.enqueue_specs``: jobs from ``Engine.job_spec``s, one round trip."""
        check_queue(queue)
        if not specs:
            return []
        if all(ops.plain_spec(spec) for spec in specs):
            return await self.run(ops.enqueue_plain(self.engine, queue, [spec.payload for spec in specs]))
        if any(spec.deps for spec in specs):   # parents in other queues take more than one call
            return await asyncio.to_thread(self.engine.enqueue_specs, queue, specs)
        return await self.run(ops.enqueue(self.engine, queue, [spec.payload for spec in specs],
                                          [spec.options for spec in specs]))

    # ------------------------------------------------------------------ consuming
    async def _claim_now(self, op: Op[ops.Claimed], reply: Any = None) -> ops.Claimed:
        claimed = await self.run(op) if reply is None else await self._settle(op, reply)
        await self.bury(claimed.broken)
        for job in claimed.jobs:
            job.engine = self.engine   # job.progress() is sync: it writes through the Engine
        return claimed

    async def claim(self, queue: str, worker_id: str, *, limit: int = 1, lease: float | None = None,
                    block: float | None = None, stop: asyncio.Future[Any] | None = None) -> list[Job]:
        """``Engine.claim``: with ``block`` seconds, wait in Redis for a job when none is ready
        (woken by the queue's marker, or when the earliest delayed job falls due). The wait
        ends early, with no job, once ``stop`` is done (the client went away, shutdown)."""
        op = ops.claim(self.engine, queue, worker_id, limit, lease)
        loop = asyncio.get_running_loop()
        deadline = None if block is None else loop.time() + validate.seconds_to_ms(block, "block") / 1000
        while True:
            claimed = await self._claim_now(op)
            if claimed.jobs or deadline is None:
                return claimed.jobs
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            if claimed.wait_ms >= 0:  # a delayed job falls due before the deadline
                remaining = min(remaining, claimed.wait_ms / 1000 + 0.001)
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

    async def wait_then_claim(self, queue: str, worker_id: str, timeout: float, *, limit: int,
                              lease: float | None = None) -> tuple[bool, list[Job], float | None]:
        """``Engine.wait_then_claim``: a wait on the queue's marker and a claim in one round
        trip, on a connection of the hub's client (not shared with other waits). Not
        cancellable without losing its claim's reply: keep ``timeout`` short."""
        op = ops.claim(self.engine, queue, worker_id, limit, lease)
        popped, reply = await self.scripts.call_after_wait(
            self.hub.client, self.engine.keys(queue).marker, max(0.001, timeout), op)
        return (popped, *(await self._claim_now(op, reply)).with_due())

    async def wait_for_jobs(self, queue: str, timeout: float, limit: int = 1) -> bool:
        """Wait up to ``timeout`` s until ``queue`` may have a ready job (True), in the wait
        hub: one blocked connection per queue, however many claims wait. Cancelling it
        passes on a wake-up it had taken, so no other claimer sleeps through a ready job."""
        return await self.hub.wait(queue, timeout, limit)

    async def rewake(self, queue: str) -> None:
        """``Engine.rewake``: set the queue's wake-up marker again."""
        await self.run(ops.rewake(self.engine, queue))

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

    async def complete(self, job: LeaseRef, result: Any = None) -> None:
        await self.run(ops.complete(self.engine, job, result))

    async def fail(self, job: LeaseRef, error: Any, *, retry: bool = True, delay: float | None = None) -> str:
        return await self.run(ops.fail(self.engine, job, error, retry, delay))

    async def heartbeat(self, job: LeaseRef, lease: float | None = None) -> float:
        [expires] = await self.run(ops.heartbeat(self.engine, job.queue, [job], lease))
        if expires is None:
            raise ops.lease_lost(job)
        return expires

    async def release(self, job: LeaseRef) -> None:
        await self.run(ops.release(self.engine, job))

    async def release_many(self, jobs: Sequence[LeaseRef]) -> list[Exception | None]:
        """Give many leased jobs back to ready in one round trip (a release script call
        each, pipelined): per job None, or its error (LeaseLost when its lease is gone).
        Redis trouble raises. With durable writes on, one ``release`` after the other."""
        if self.durable and self.engine.scripts.durable("release"):
            out: list[Exception | None] = []
            for job in jobs:
                try:
                    await self.release(job)
                    out.append(None)
                except RedispoolError as exc:
                    out.append(exc)
            return out
        calls = [(self.engine.scripts.bind(op.script, op.keys), op.args)
                 for op in (ops.release(self.engine, job) for job in jobs)]
        replies = await self.scripts.run_many("release", calls) if calls else []
        return [r if isinstance(r, Exception) else None for r in replies]

    async def progress(self, job: LeaseRef, value: float, message: str | None = None) -> float:
        """``Engine.progress``: record a leased job's progress, fenced by its lease."""
        return await self.run(ops.progress(self.engine, job, value, message))

    async def ack(self, queue: str, *, completed: Iterable[tuple[LeaseRef, Any]] = (),
                  failed: Iterable[Sequence[Any]] = (), worker_id: str | None = None, limit: int = 0,
                  lease: float | None = None) -> AckResult:
        """``Engine.ack``: finish many leases of one queue and lease the next batch."""
        op = ops.ack(self.engine, queue, completed, failed, worker_id, limit, lease)
        try:
            acked = await self.run(op)
        except NotDurable as exc:  # the caller never sees the batch it leased: give it back
            if isinstance(exc.reply, (list, tuple)):
                given_back = op.parse(exc.reply)
                for job in [*given_back.result.jobs, *(job for job, _ in given_back.broken)]:
                    await self.run(ops.release(self.engine, job))
                given_back.result.jobs = []
                exc.result = given_back.result   # what the primary applied
            raise
        await self.bury(acked.broken)
        for job in acked.result.jobs:
            job.engine = self.engine
        return acked.result

    # ------------------------------------------------------------------ the worker registry
    async def register_worker(self, worker_id: str, *, host: str, pid: int, queues: Sequence[str]) -> float:
        return await self.run(ops.register_worker(self.engine, worker_id, host, pid, queues))

    async def beat_worker(self, worker_id: str, *, jobs_in_progress: Sequence[str] | None = None,
                          processed: int = 0, failed: int = 0, queue: str | None = None,
                          taken: Mapping[str, float] | None = None, settled: Sequence[str] | None = None) -> bool:
        """Refresh a registration (see Engine.beat_worker)."""
        return await self.run(ops.beat_worker(self.engine, worker_id, jobs_in_progress, processed, failed, queue,
                                              taken, settled))

    async def workers(self, *, timeout: float = 60.0) -> list[WorkerInfo]:
        return await self.run(ops.workers(self.engine, timeout))

    # ------------------------------------------------------------------ reading
    async def get(self, queue: str, job_id: str) -> JobInfo | None:
        k = self.engine.keys(queue)
        fields = await self.scripts.command("HGETALL", k.job(job_id))
        if not fields:
            return None
        state = ops.text(fields.get(b"s"))
        score = await self.scripts.command("ZSCORE", k.state(str(state)), job_id) \
            if state in ("scheduled", "leased") else None
        return ops.job_info(queue, job_id, fields, score)

    async def jobs(self, queue: str, state: str, *, limit: int = 100, offset: int = 0) -> list[JobInfo]:
        return await self.run(ops.jobs(self.engine, queue, state, limit, offset))

    async def stats(self, queue: str) -> dict[str, Any]:
        return await self.run(ops.stats(self.engine, queue))

    async def events(self, queue: str, *, after: str | None = None, limit: int = 100,
                     block: float | None = None) -> list[Event]:
        """``Engine.events`` on the async client: a blocked read holds one connection of
        the pool (events.py) while it waits in Redis."""
        key = self.engine.keys(check_queue(queue)).events
        after, limit, block = events.check_after(after), events.check_limit(limit), events.check_block(block)
        if block is None:
            if after == events.LATEST:
                return []
            entries = await self.scripts.command(*events.range_command(key, after, limit))
            return [events.to_event(queue, e) for e in entries]
        try:
            reply = await blocking.call_async(self.client, key, events.read_command(key, after, limit, block), block)
        except RedispoolError:
            raise
        except REDIS_TROUBLE as exc:
            raise self.scripts.error(exc) from exc
        return events.from_read(queue, reply)

    async def job_defaults(self, queue: str) -> dict[str, Any]:
        """``Engine.job_defaults`` on the async client (one HMGET)."""
        return self.engine._defaults_reply(await self.scripts.command(*self.engine._defaults_read(queue)))

    async def queues(self) -> list[str]:
        members = await self.scripts.command("SMEMBERS", queues_key(self.engine.prefix))
        return sorted(str(ops.text(q)) for q in members)
