"""The registry entries of HTTP workers: beat or register, and what each holds.

A worker that speaks HTTP has no process of its own in the registry: the server keeps
its registration for it, from its requests. Behind a load balancer each request may
reach another server replica, so nothing of it is kept in a server's memory: the jobs
it holds live in its registration in Redis, changed by each request -- ``taken`` (job
-> lease expiry, for a claim or a lease extended) and ``settled`` (jobs finished or
given back) -- and a lease past its expiry drops out by itself (beat_worker.lua). Each
face names the jobs its own way (``queue/id``, the spooled protocol's public ids, an
execution id); the registry lists them as given.

The writes are best effort where a request's outcome already stands (the job was leased
or finished): a full or unreachable Redis then costs the registry entry, not the job.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from starlette.requests import Request

from ..aio import GIVE_UP
from ..engine import Engine
from .endpoint import call

log = logging.getLogger("redispool.http")


def host_of(request: Request) -> str:
    """The address an HTTP worker's requests come from (its registry "host")."""
    return request.client.host if request.client else "?"


class Registry(Protocol):
    """The registry calls ``HttpWorkers`` makes, as the AsyncEngine has them."""

    async def beat_worker(self, worker_id: str, *, processed: int = 0, failed: int = 0, queue: str | None = None,
                          taken: Mapping[str, float] | None = None, settled: Sequence[str] | None = None) -> bool: ...

    async def register_worker(self, worker_id: str, *, host: str, pid: int, queues: Sequence[str]) -> float: ...


class OnThreads:
    """The sync Engine's registry calls as coroutines on Starlette's thread pool, for
    the faces that run the sync Engine (the async one has them natively)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def beat_worker(self, worker_id: str, *, processed: int = 0, failed: int = 0, queue: str | None = None,
                          taken: Mapping[str, float] | None = None, settled: Sequence[str] | None = None) -> bool:
        return bool(await call(lambda: self.engine.beat_worker(worker_id, processed=processed, failed=failed,
                                                               queue=queue, taken=taken, settled=settled)))

    async def register_worker(self, worker_id: str, *, host: str, pid: int, queues: Sequence[str]) -> float:
        return float(await call(lambda: self.engine.register_worker(worker_id, host=host, pid=pid, queues=queues)))


class HttpWorkers:
    """Beat-or-register of HTTP workers, with the changes to what they hold.
    ``registry()`` gives an object with the AsyncEngine's ``beat_worker`` and
    ``register_worker`` (an AsyncEngine, or ``OnThreads(engine)``)."""

    def __init__(self, registry: Callable[[], Registry]) -> None:
        self.registry = registry

    async def seen(self, request: Request, worker_id: str, queue: str | None, *, processed: int = 0,
                   failed: int = 0, taken: Mapping[str, float] | None = None, settled: Sequence[str] = (),
                   register: bool = True) -> bool:
        """Refresh ``worker_id``'s registration with these changes, adding ``queue`` to its
        queues (the sweeper takes back its leases there). If it is not registered: register
        it (host = the client's address, ``queue`` its queue) when ``register``, else False."""
        registry = self.registry()
        changes: dict[str, Any] = {"processed": processed, "failed": failed, "taken": taken or None,
                                   "settled": list(settled) or None}
        if await registry.beat_worker(worker_id, queue=queue, **changes):
            return True
        if not register or queue is None:
            return False
        await registry.register_worker(worker_id, host=host_of(request), pid=0, queues=[queue])
        if processed or failed or taken or settled:
            await registry.beat_worker(worker_id, **changes)
        return True

    async def took(self, request: Request, worker_id: str, queue: str, taken: Mapping[str, float], *,
                   processed: int = 0, failed: int = 0, settled: Sequence[str] = (), register: bool = True) -> None:
        """Jobs just leased (or extended) by ``worker_id``: best effort, as they are its
        whatever the registry write does."""
        try:
            await self.seen(request, worker_id, queue, processed=processed, failed=failed, taken=taken,
                            settled=settled, register=register)
        except GIVE_UP as exc:
            log.warning("worker %s not registered/refreshed (its %d jobs are delivered): %s",
                        worker_id, len(taken), exc)

    async def settled(self, request: Request, worker_id: str | None, queue: str, job: str, failed: bool | None,
                      register: bool = True) -> None:
        """``job`` finished (``failed`` True/False: counted in processed, and failed) or
        was given back (None) by ``worker_id``: it no longer holds it. Best effort."""
        if not worker_id:
            return
        try:
            await self.seen(request, worker_id, queue, processed=0 if failed is None else 1,
                            failed=1 if failed else 0, settled=[job], register=register)
        except GIVE_UP as exc:
            log.warning("worker %s: its processed/failed not counted: %s", worker_id, exc)
