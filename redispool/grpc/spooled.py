"""The hosted job service's ``spooled.v1.QueueService`` and ``WorkerService`` on the Engine.

So its official ``SpooledGrpcClient`` (``spooled[grpc]``) runs unchanged against
``redispool serve --grpc-port``. The mapping is the REST compat layer's
(compat/spooled.py): job ids are ``<queue>~<id>``, ``lease_id`` is the fencing token,
ready = PENDING, scheduled = SCHEDULED (FAILED while it waits for a retry), leased =
PROCESSING, done = COMPLETED, dead = DEADLETTER, cancelled = CANCELLED; ``max_retries``
is max_attempts - 1 and ``retry_count`` the attempts made before the current one;
``timeout_seconds`` is the job's timeout. Enqueue takes a job's options as the REST face
does (``spooled_jobs.job_options``): ``max_retries``/``timeout_seconds`` 0 (not given)
are the queue's job defaults (``PUT /queues/{name}/config``), else 3 and 300; ``tags``
(a map) are stored as a JSON object, shown and filtered by the REST face.

- A stale or foreign ``lease_id`` is ``FAILED_PRECONDITION "Lease expired"`` (what the
  client turns into its lease-lost error); a finished job ``FAILED_PRECONDITION "Job is
  already completed"``; an unknown one ``NOT_FOUND``. GetJob of an unknown id is OK with
  no job.
- StreamJobs pushes one job at a time: it claims the next only once the previous is
  settled (Complete/Fail/RenewLease on this server wake it; else it looks again when
  the lease runs out), blocking in the wait hub between jobs, never polling. A job it
  delivered keeps its lease when the stream ends (the client settles it by unary calls).
- ProcessJobs answers each request in order, problems in band (``NO_JOBS``,
  ``LEASE_EXPIRED``, ``NOT_FOUND``, ``INVALID_ARGUMENT``, ``INVALID_REQUEST``, ``CONFLICT``).
- Deregister gives back every lease the worker holds (attempt not counted).

Payloads are ``Struct``s: JSON objects. A stored payload that is not an object (from
another producer) is sent as ``{"value": ...}``; whole numbers come back as integers.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from .. import validate
from ..aio import GIVE_UP, AsyncEngine
from ..errors import LeaseLost
from ..keys import check_queue
from ..models import Job, JobInfo, Lease
from ..spooled_jobs import job_options, timeout_seconds
from .auth import require
from .borrowed import check_depth, jsonable, rendered
from .native import job_args, peer_host
from .status import expected_status, mapped, status_of
from .stubs import spooled_pb2 as pb
from .stubs import spooled_pb2_grpc as rpc

SEP = "~"
SERVICES = ("spooled.v1.QueueService", "spooled.v1.WorkerService")
S = pb.JobStatus
STATUS = {"waiting": S.JOB_STATUS_PENDING,
          "scheduled": S.JOB_STATUS_SCHEDULED, "ready": S.JOB_STATUS_PENDING, "leased": S.JOB_STATUS_PROCESSING,
          "done": S.JOB_STATUS_COMPLETED, "dead": S.JOB_STATUS_DEADLETTER, "cancelled": S.JOB_STATUS_CANCELLED}
LEASE_S, LEASE_RANGE_S = 30, (5, 3600)
HEARTBEAT_S = 10
MAX_DEQUEUE = 100
BLOCK_S = 30.0
LOST = "Lease expired"

def public_id(queue: str, job_id: str) -> str:
    return f"{queue}{SEP}{job_id}"


def split_id(public: str) -> tuple[str, str] | None:
    queue, sep, job_id = public.partition(SEP)
    try:
        check_queue(queue)
    except ValueError:
        return None
    return (queue, job_id) if sep and job_id else None


def _clamp(value: int, default: int, low: int, high: int) -> int:
    return default if value <= 0 else min(max(value, low), high)


def _ts(seconds: float | None) -> Any:
    t = timestamp_pb2.Timestamp()
    if seconds:
        t.FromNanoseconds(int(seconds * 1e9))
    return t


def _whole(value: Any) -> Any:
    """Struct numbers are doubles: 3.0 back to 3, recursively."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


def _struct(value: Any) -> Any:
    s = struct_pb2.Struct()
    if value is None:
        return s
    value = jsonable(value)
    s.update(value if isinstance(value, dict) else {"value": value})
    return s


def _plain(struct: Any) -> Any:
    return _whole(json_format.MessageToDict(struct))


def leased_job(j: Job) -> Any:
    """The message of a leased job (BadInput when its payload nests too deep to send)."""
    check_depth(j.payload)
    return pb.Job(id=public_id(j.queue, j.id), organization_id="redispool", queue_name=j.queue,
                  status=S.JOB_STATUS_PROCESSING, payload=_struct(j.payload), retry_count=j.attempt - 1,
                  max_retries=j.max_attempts - 1, timeout_seconds=timeout_seconds(j.timeout),
                  started_at=_ts(time.time()),
                  lease_expires_at=_ts(j.lease_expires_at), assigned_worker_id=j.worker_id, lease_id=j.token)


def job_of(i: JobInfo) -> Any:
    status = STATUS.get(i.state, S.JOB_STATUS_UNSPECIFIED)
    if i.state == "scheduled" and i.errors:
        status = S.JOB_STATUS_FAILED
    retries = max(0, i.attempts - 1) if i.state in ("leased", "done", "dead") else i.attempts
    return pb.Job(id=public_id(i.queue, i.id), organization_id="redispool", queue_name=i.queue, status=status,
                  payload=_struct(i.payload), result=_struct(i.result), retry_count=retries,
                  max_retries=i.max_attempts - 1, last_error=i.error or "", priority=i.priority,
                  timeout_seconds=timeout_seconds(i.timeout),
                  created_at=_ts(i.created_at), scheduled_at=_ts(i.run_at),
                  completed_at=_ts(i.finished_at if i.state == "done" else None),
                  lease_expires_at=_ts(i.lease_expires_at),
                  assigned_worker_id=(i.worker_id or "") if i.state == "leased" else "",
                  idempotency_key=i.unique_key or "")


class Refused(Exception):
    """A request the service answers with ``code`` (a gRPC status, or in band in ProcessJobs)."""

    def __init__(self, status: grpc.StatusCode, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _bad(message: str) -> Refused:
    return Refused(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", message)



class Core:
    """What the unary RPCs and ProcessJobs share: each returns a reply or raises Refused."""

    def __init__(self, aio: Callable[[], AsyncEngine], shutdown: asyncio.Event) -> None:
        self.aio, self.shutdown = aio, shutdown
        self.settled: dict[tuple[str, str], asyncio.Event] = {}   # jobs StreamJobs waits on

    def _wake(self, queue: str, job_id: str) -> None:
        event = self.settled.get((queue, job_id))
        if event is not None:
            event.set()

    def lease_of(self, r: Any) -> Lease:
        if not r.job_id:
            raise _bad("job_id is required")
        if not r.worker_id:
            raise _bad("Worker ID is required")
        if not r.lease_id:
            raise _bad("lease_id is required for job settlement")
        found = split_id(r.job_id)
        if found is None:
            raise Refused(grpc.StatusCode.NOT_FOUND, "NOT_FOUND", "Job not found or not authorized")
        queue, job_id = found
        return Lease(job_id, queue, r.lease_id)

    async def lost(self, lease: Lease) -> Refused:
        info = await self.aio().get(lease.queue, lease.id)
        if info is None:
            return Refused(grpc.StatusCode.NOT_FOUND, "NOT_FOUND", "Job not found or not authorized")
        if info.state in ("done", "dead", "cancelled"):
            status = {"done": "completed", "dead": "deadletter", "cancelled": "cancelled"}[info.state]
            return Refused(grpc.StatusCode.FAILED_PRECONDITION, "CONFLICT", f"Job is already {status}")
        return Refused(grpc.StatusCode.FAILED_PRECONDITION, "LEASE_EXPIRED", LOST)

    async def dequeue(self, r: Any, host: str, limit: int | None = None) -> list[Any]:
        queue = check_queue(r.queue_name)
        if not r.worker_id:
            raise _bad("Worker ID is required")
        worker_id = validate.worker_id(r.worker_id)
        limit = limit or _clamp(r.batch_size, 1, 1, MAX_DEQUEUE)
        lease = _clamp(r.lease_duration_secs, LEASE_S, *LEASE_RANGE_S)
        jobs = await self.aio().claim(queue, worker_id, limit=limit, lease=lease)
        return await self.deliver(queue, worker_id, host, jobs)

    async def deliver(self, queue: str, worker_id: str, host: str, jobs: list[Job]) -> list[Any]:
        """Jobs as messages (one that cannot be a Struct goes to dead alone) and the
        worker's registration told (best effort: the jobs are delivered regardless)."""
        out, sent = await self.messages(jobs)
        await self.took(worker_id, host, queue, sent)
        return out

    async def messages(self, jobs: list[Job]) -> tuple[list[Any], list[Job]]:
        """Jobs as messages, with the jobs sent; one that cannot be a Struct goes to dead alone."""
        # a payload too deep, or one a Struct cannot hold (TypeError), goes to dead alone
        out, sent, broken = rendered(jobs, leased_job, (ValueError, TypeError))
        if broken:
            await self.aio().bury(broken)
        return out, sent

    async def took(self, worker_id: str, host: str, queue: str, sent: list[Job]) -> None:
        """Tell the worker's registration it holds ``sent`` (best effort)."""
        taken = {f"{queue}/{j.id}": j.lease_expires_at for j in sent}
        with contextlib.suppress(*GIVE_UP):
            await self.seen(worker_id, host, queue, taken=taken)

    async def seen(self, worker_id: str, host: str, queue: str, **changes: Any) -> None:
        aio = self.aio()
        if not await aio.beat_worker(worker_id, queue=queue, **changes):
            await aio.register_worker(worker_id, host=host, pid=0, queues=[queue])
            if any(changes.values()):
                await aio.beat_worker(worker_id, **changes)

    async def complete(self, r: Any) -> Any:
        lease = self.lease_of(r)
        result = check_depth(_plain(r.result)) if r.HasField("result") else None
        try:
            await self.aio().complete(lease, result)
        except LeaseLost:
            raise await self.lost(lease) from None
        self._wake(lease.queue, lease.id)
        await self._count(r.worker_id, lease, failed=False)
        return pb.CompleteResponse(success=True)

    async def fail(self, r: Any) -> Any:
        lease = self.lease_of(r)
        retry = r.retry if r.HasField("retry") else True
        aio = self.aio()
        try:
            state = await aio.fail(lease, r.error or "failed", retry=retry)
        except LeaseLost:
            raise await self.lost(lease) from None
        self._wake(lease.queue, lease.id)
        await self._count(r.worker_id, lease, failed=True)
        delay = 0
        if state == "scheduled":
            info = await aio.get(lease.queue, lease.id)
            if info is not None and info.run_at:
                delay = max(0, round(info.run_at - time.time()))
        return pb.FailResponse(success=True, will_retry=state == "scheduled", next_retry_delay_secs=delay)

    async def renew(self, r: Any) -> Any:
        lease = self.lease_of(r)
        seconds = _clamp(r.extension_secs, LEASE_S, *LEASE_RANGE_S)
        try:
            expires = await self.aio().heartbeat(lease, seconds)
        except LeaseLost:
            raise await self.lost(lease) from None
        self._wake(lease.queue, lease.id)
        with contextlib.suppress(*GIVE_UP, ValueError):
            await self.aio().beat_worker(validate.worker_id(r.worker_id),
                                         taken={f"{lease.queue}/{lease.id}": expires})
        return pb.RenewLeaseResponse(success=True, new_expires_at=_ts(expires))

    async def _count(self, worker_id: str, lease: Lease, failed: bool) -> None:
        with contextlib.suppress(*GIVE_UP, ValueError):
            await self.aio().beat_worker(validate.worker_id(worker_id), processed=1,
                                         failed=int(failed), settled=[f"{lease.queue}/{lease.id}"])


async def _unary(context: Any, tokens: dict[str, str] | None, needed: str, work: Any) -> Any:
    await require(context, tokens, needed)
    try:
        return await work()
    except Refused as exc:
        await context.abort(exc.status, exc.message)


class QueueService(rpc.QueueServiceServicer):
    def __init__(self, core: Core, tokens: dict[str, str] | None) -> None:
        self.core, self.tokens = core, tokens

    @mapped
    async def Enqueue(self, request: Any, context: Any) -> Any:  # noqa: N802 - grpc's names
        async def work() -> Any:
            queue = check_queue(request.queue_name)
            run_at = None
            if request.HasField("scheduled_at"):
                run_at = request.scheduled_at.ToNanoseconds() / 1e9
                run_at = run_at if run_at > time.time() else None
            payload = check_depth(_plain(request.payload))
            aio = self.core.aio()
            # 0 is "not given" on the wire: the queue's job defaults, else the service's 3 and 300
            retries = request.max_retries if request.max_retries > 0 else None
            timeout = request.timeout_seconds if request.timeout_seconds > 0 else None
            stored = await aio.job_defaults(queue) if retries is None or timeout is None else None
            retries, timeout = job_options(stored, retries, timeout)
            spec = job_args(aio.engine, payload, priority=request.priority, delay=None, run_at=run_at,
                            max_attempts=retries + 1, lease=None, unique_key=request.idempotency_key or None,
                            job_id=None, timeout=timeout, tags=dict(request.tags) or None)
            [(job_id, created)] = await aio.enqueue_specs(queue, [spec])
            return pb.EnqueueResponse(job_id=public_id(queue, job_id), created=created)
        return await _unary(context, self.tokens, "worker", work)

    @mapped
    async def Dequeue(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def work() -> Any:
            return pb.DequeueResponse(jobs=await self.core.dequeue(request, peer_host(context)))
        return await _unary(context, self.tokens, "worker", work)

    @mapped
    async def Complete(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await _unary(context, self.tokens, "worker", lambda: self.core.complete(request))

    @mapped
    async def Fail(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await _unary(context, self.tokens, "worker", lambda: self.core.fail(request))

    @mapped
    async def RenewLease(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await _unary(context, self.tokens, "worker", lambda: self.core.renew(request))

    @mapped
    async def GetJob(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def work() -> Any:
            found = split_id(request.job_id)
            info = await self.core.aio().get(*found) if found else None
            return pb.GetJobResponse(job=job_of(info)) if info is not None else pb.GetJobResponse()
        return await _unary(context, self.tokens, "read", work)

    @mapped
    async def GetQueueStats(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def work() -> Any:
            queue = check_queue(request.queue_name)
            s = await self.core.aio().stats(queue)
            waiting = [i for i in await self.core.aio().jobs(queue, "scheduled", limit=1000) if i.errors]
            counts = {"pending": s["ready"], "scheduled": s["scheduled"] - len(waiting),
                      "processing": s["leased"], "completed": s["done"], "failed": len(waiting),
                      "deadletter": s["dead"]}
            return pb.GetQueueStatsResponse(queue_name=queue, total=sum(counts.values()) + s["cancelled"],
                                            max_age_ms=int(s["latency"] * 1000) if s["ready"] else 0, **counts)
        return await _unary(context, self.tokens, "read", work)

    async def StreamJobs(self, request: Any, context: Any) -> AsyncIterator[Any]:  # noqa: N802
        await require(context, self.tokens, "worker")
        try:
            queue = check_queue(request.queue_name)
            if not request.worker_id:
                raise _bad("Worker ID is required")
            worker_id = validate.worker_id(request.worker_id)
        except Refused as exc:
            await context.abort(exc.status, exc.message)
        except ValueError as exc:
            await context.abort(*expected_status(exc))
        lease = _clamp(request.lease_duration_secs, LEASE_S, *LEASE_RANGE_S)
        host, core = peer_host(context), self.core
        stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ending = asyncio.ensure_future(core.shutdown.wait())
        ending.add_done_callback(lambda _: None if stop.done() else stop.set_result(None))
        try:
            while not stop.done():
                try:
                    jobs = await core.aio().claim(queue, worker_id, limit=1, lease=lease, block=BLOCK_S, stop=stop)
                except GIVE_UP as exc:
                    await context.abort(*expected_status(exc))
                if not jobs:
                    continue
                if stop.done():   # claimed as the server stops: give it back
                    with contextlib.suppress(*GIVE_UP):
                        await core.aio().release(jobs[0])
                    return
                out, sent = await core.messages(jobs)
                if not out:
                    continue
                # the registration is told as the job goes out, not before (a round trip
                # on every pickup); it is written long before the worker's Complete
                telling = asyncio.ensure_future(core.took(worker_id, host, queue, sent))
                key = (jobs[0].queue, jobs[0].id)
                settled = core.settled.setdefault(key, asyncio.Event())   # before its Complete can come
                try:
                    yield out[0]
                    await telling
                    await self._until_settled(jobs[0], stop, settled)
                finally:
                    core.settled.pop(key, None)
        finally:
            ending.cancel()

    async def _until_settled(self, job: Any, stop: asyncio.Future[None], event: asyncio.Event) -> None:
        """Wait until ``job`` is no longer leased to this stream's worker: woken (``event``,
        set since the job went out) by this server's Complete/Fail/RenewLease, else looked
        at when its lease runs out."""
        expires = job.lease_expires_at
        while not stop.done():
            woken: asyncio.Future[Any] = asyncio.ensure_future(event.wait())
            await asyncio.wait({woken, stop}, timeout=max(0.01, expires - time.time() + 0.05),
                               return_when=asyncio.FIRST_COMPLETED)
            woken.cancel()
            event.clear()
            info = await self.core.aio().get(job.queue, job.id)
            if info is None or info.state != "leased" or info.worker_id != job.worker_id \
                    or not info.lease_expires_at or info.lease_expires_at < time.time():
                return
            expires = info.lease_expires_at

    async def _until_shutdown(self, request_iterator: Any) -> AsyncIterator[Any]:
        """A stream's requests until the worker half-closes it or the server stops
        (SIGTERM): a worker between requests is not waited for (the request being answered
        is answered first), so an idle ProcessJobs stream does not hold the shutdown for
        the whole graceful timeout."""
        requests = aiter(request_iterator)
        ending = asyncio.ensure_future(self.core.shutdown.wait())
        try:
            while True:
                step: asyncio.Future[Any] = asyncio.ensure_future(anext(requests, None))
                await asyncio.wait({step, ending}, return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    step.cancel()
                    return
                request = step.result()
                if request is None:
                    return
                yield request
        finally:
            ending.cancel()

    async def ProcessJobs(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:  # noqa: N802
        await require(context, self.tokens, "worker")
        host = peer_host(context)
        async for request in self._until_shutdown(request_iterator):
            kind = request.WhichOneof("request")
            try:
                if kind == "dequeue":
                    jobs = await self.core.dequeue(request.dequeue, host, limit=1)
                    if not jobs:
                        yield pb.ProcessResponse(error=pb.ErrorResponse(code="NO_JOBS", message="No jobs available"))
                        continue
                    yield pb.ProcessResponse(job=jobs[0])
                elif kind == "complete":
                    yield pb.ProcessResponse(complete=await self.core.complete(request.complete))
                elif kind == "fail":
                    yield pb.ProcessResponse(fail=await self.core.fail(request.fail))
                elif kind == "renew_lease":
                    yield pb.ProcessResponse(renew_lease=await self.core.renew(request.renew_lease))
                else:
                    yield pb.ProcessResponse(error=pb.ErrorResponse(code="INVALID_REQUEST", message="Empty request"))
            except Refused as exc:
                yield pb.ProcessResponse(error=pb.ErrorResponse(code=exc.code, message=exc.message))
            except Exception as exc:  # noqa: BLE001 - in band, the stream goes on
                found = status_of(exc)
                if found is None:
                    raise
                code = {grpc.StatusCode.INVALID_ARGUMENT: "INVALID_ARGUMENT"}.get(found[0], found[0].name)
                yield pb.ProcessResponse(error=pb.ErrorResponse(code=code, message=found[1]))


class WorkerService(rpc.WorkerServiceServicer):
    def __init__(self, core: Core, tokens: dict[str, str] | None) -> None:
        self.core, self.tokens = core, tokens

    @mapped
    async def Register(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def work() -> Any:
            queue = check_queue(request.queue_name)
            worker_id = validate.worker_id(request.worker_id if request.HasField("worker_id") and request.worker_id
                                           else str(uuid.uuid4()))
            host = request.hostname or peer_host(context)
            await self.core.aio().register_worker(worker_id, host=host, pid=0, queues=[queue])
            return pb.RegisterWorkerResponse(worker_id=worker_id, lease_duration_secs=LEASE_S,
                                             heartbeat_interval_secs=HEARTBEAT_S)
        return await _unary(context, self.tokens, "worker", work)

    @mapped
    async def Heartbeat(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def work() -> Any:
            worker_id = validate.worker_id(request.worker_id)
            ok = await self.core.aio().beat_worker(worker_id)
            return pb.HeartbeatResponse(acknowledged=ok, should_drain=self.core.shutdown.is_set())
        return await _unary(context, self.tokens, "worker", work)

    @mapped
    async def Deregister(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def work() -> Any:
            worker_id = validate.worker_id(request.worker_id)
            aio = self.core.aio()
            mine = [w for w in await aio.workers(timeout=10 * 365 * 86400.0) if w.id == worker_id]
            for queue in mine[0].queues if mine else []:
                for lease in await asyncio.to_thread(aio.engine.leases_of, queue, worker_id):
                    with contextlib.suppress(LeaseLost):
                        await aio.release(lease)
                    self.core._wake(queue, lease.id)
            await asyncio.to_thread(aio.engine.deregister_worker, worker_id)
            return pb.DeregisterResponse(success=True)
        return await _unary(context, self.tokens, "worker", work)


def add_to_server(server: Any, aio: Callable[[], AsyncEngine], tokens: dict[str, str] | None,
                  shutdown: asyncio.Event) -> None:
    core = Core(aio, shutdown)
    # the registration functions grpcio-tools generates are unannotated
    rpc.add_QueueServiceServicer_to_server(QueueService(core, tokens), server)  # type: ignore[no-untyped-call]
    rpc.add_WorkerServiceServicer_to_server(WorkerService(core, tokens), server)  # type: ignore[no-untyped-call]

