"""``redispool.v1.Jobs``: Enqueue, EnqueueBatch and the Work stream (stream.py).

Payloads and results travel as JSON text, as in the HTTP API (the same depth limit, the
same tagged forms for bytes). Enqueue needs the ``worker`` role, as does Work.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from .. import defaults
from ..aio import AsyncEngine
from ..engine import Engine, JobSpec
from ..keys import check_queue
from .auth import require
from .borrowed import BadInput, check_depth, loads
from .status import expected_status, mapped
from .stream import WorkStream, opened
from .stubs import jobs_pb2 as pb
from .stubs import jobs_pb2_grpc as rpc

MAX_BATCH = 1000


def peer_host(context: grpc.aio.ServicerContext) -> str:
    """The client's address without its port (``ipv4:10.0.0.5:51234`` -> ``10.0.0.5``)."""
    peer = context.peer() or "?"
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]").removeprefix("%5B").removesuffix("%5D")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return rest or peer


def job_args(engine: Engine, payload: Any, **options: Any) -> JobSpec:
    """One job for ``enqueue_specs``, every option validated.

    ``Engine.job_spec`` is the one validator of job options (the HTTP API builds its
    specs with it too); every gRPC service calls it through here only."""
    return engine.job_spec(payload, backoff_base=None, backoff_cap=None, **options)


def job_spec(engine: Engine, r: Any, where: str = "payload") -> JobSpec:
    """The enqueue arguments of one ``EnqueueRequest``."""
    payload = check_depth(loads(r.payload, where), where) if r.payload else None
    return job_args(engine, payload, priority=r.priority, delay=r.delay or None, run_at=None,
                    max_attempts=r.max_attempts or defaults.MAX_ATTEMPTS, lease=r.lease or None,
                    unique_key=r.unique_key or None, job_id=r.job_id or None, timeout=r.timeout or None)


class JobsService(rpc.JobsServicer):
    """The servicer; ``aio()`` is the server's AsyncEngine, ``shutdown`` ends Work streams."""

    def __init__(self, aio: Callable[[], AsyncEngine], tokens: dict[str, str] | None, shutdown: asyncio.Event) -> None:
        self.aio, self.tokens, self.shutdown = aio, tokens, shutdown

    @mapped
    async def Enqueue(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802 - grpc's names
        await require(context, self.tokens, "worker")
        queue = check_queue(request.queue)
        aio = self.aio()
        [(job_id, created)] = await aio.enqueue_specs(queue, [job_spec(aio.engine, request)])
        return pb.EnqueueReply(id=job_id, created=created)

    @mapped
    async def EnqueueBatch(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        await require(context, self.tokens, "worker")
        queue = check_queue(request.queue)
        if not 1 <= len(request.jobs) <= MAX_BATCH:
            raise BadInput(f"jobs must hold 1 to {MAX_BATCH} jobs")
        aio = self.aio()
        specs = [job_spec(aio.engine, j, f"jobs[{i}].payload") for i, j in enumerate(request.jobs)]
        out = await aio.enqueue_specs(queue, specs)
        return pb.EnqueueBatchReply(ids=[job_id for job_id, _ in out])

    async def Work(self, request_iterator: AsyncIterator[Any],  # noqa: N802
                   context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await require(context, self.tokens, "worker")
        if self.shutdown.is_set():
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
        try:
            first = await anext(aiter(request_iterator), None)
            queues, worker_id, lease, credit = opened(first)
        except ValueError as exc:
            await context.abort(*expected_status(exc))
        stream = WorkStream(self.aio(), queues, worker_id, lease, credit, peer_host(context), self.shutdown)
        async for reply in stream.run(request_iterator):
            yield reply
