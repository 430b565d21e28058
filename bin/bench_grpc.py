"""`bin/bench --grpc`: the gRPC API of `redispool serve --grpc-port` against its HTTP API, in one run.

One Python client process (this one), no-op handler, loopback:
- native Work stream drain: jobs/s with credit ``CREDIT``, every pushed batch acked in one
  Ack (and its credit given back) at once;
- native Work stream pickup: an idle open stream, one job enqueued at a time, the time
  from the enqueue call to the job's arrival (p50, p99). The enqueue runs on the event
  loop's own thread (it blocks the loop for one round trip, before which the job cannot
  arrive anyway): from a pool thread, the hop to it and back was measured too;
- native Work stream break: a stream holding ``HELD`` jobs is cancelled (to the server,
  a stream that broke), and the time from the cancel until all of them are ready again
  (Redis read every millisecond);
- spooled.v1 StreamJobs pickup (one job at a time, each settled by a unary Complete) and
  ProcessJobs round trips (dequeue, then complete, on one stream), through our copy of
  that service's stubs (descriptor-identical to its client's).
The HTTP figures come from bin/bench's own ``http_api`` on the same server and Redis.
"""
from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

CREDIT = 1000
PICKUPS = 200
HELD = 100


async def _work_drain(address: str, engine: Any, queue: str, jobs: int) -> dict[str, float]:
    import grpc

    from redispool.grpc.stubs import jobs_pb2 as pb
    from redispool.grpc.stubs import jobs_pb2_grpc as rpc
    for i in range(0, jobs, 1000):
        engine.enqueue_many(queue, [{"n": k} for k in range(i, min(jobs, i + 1000))])
    async with grpc.aio.insecure_channel(address) as channel:
        requests: asyncio.Queue[Any] = asyncio.Queue()

        async def send() -> Any:
            while (item := await requests.get()) is not None:
                yield item
        await requests.put(pb.WorkRequest(open=pb.Open(queues=[queue], worker_id="bench-grpc", credit=CREDIT)))
        call = rpc.JobsStub(channel).Work(send())
        done = 0
        start = time.perf_counter()
        async for reply in call:
            if reply.WhichOneof("kind") == "jobs":
                batch = reply.jobs.jobs   # done: room for as many more (credit first, so the
                await requests.put(pb.WorkRequest(credit=len(batch)))   # next batch is claimed as this one is acked)
                await requests.put(pb.WorkRequest(ack=pb.Ack(completed=[
                    pb.Completed(job=pb.JobRef(queue=j.queue, id=j.id, token=j.token)) for j in batch])))
            else:
                done += sum(r.ok for r in reply.results.results)
                if done >= jobs:
                    break
        elapsed = time.perf_counter() - start
        await requests.put(None)
        call.cancel()
    return {"grpc_work_drain_jobs_s": done / elapsed, "grpc_work_drain_jobs": done}


async def _work_pickup(address: str, engine: Any, queue: str) -> dict[str, float]:
    import grpc

    from redispool.grpc.stubs import jobs_pb2 as pb
    from redispool.grpc.stubs import jobs_pb2_grpc as rpc
    async with grpc.aio.insecure_channel(address) as channel:
        requests: asyncio.Queue[Any] = asyncio.Queue()

        async def send() -> Any:
            while (item := await requests.get()) is not None:
                yield item
        await requests.put(pb.WorkRequest(open=pb.Open(queues=[queue], worker_id="bench-pickup", credit=1)))
        call = rpc.JobsStub(channel).Work(send())
        replies = call.__aiter__()
        pickups = []
        for k in range(PICKUPS):
            await asyncio.sleep(0.005)
            sent = time.perf_counter()
            engine.enqueue(queue, {"k": k})
            while True:
                reply = await replies.__anext__()
                if reply.WhichOneof("kind") == "jobs":
                    break
            pickups.append(time.perf_counter() - sent)
            [j] = reply.jobs.jobs
            await requests.put(pb.WorkRequest(ack=pb.Ack(completed=[
                pb.Completed(job=pb.JobRef(queue=j.queue, id=j.id, token=j.token))])))
            await requests.put(pb.WorkRequest(credit=1))
        await requests.put(None)
        call.cancel()
    pickups.sort()
    return {"grpc_work_pickup_p50_ms": statistics.median(pickups) * 1000,
            "grpc_work_pickup_p99_ms": pickups[int(len(pickups) * 0.99)] * 1000}


async def _work_break(address: str, engine: Any, queue: str) -> dict[str, float]:
    import grpc

    from redispool.grpc.stubs import jobs_pb2 as pb
    from redispool.grpc.stubs import jobs_pb2_grpc as rpc
    engine.enqueue_many(queue, [{"n": k} for k in range(HELD)])
    ready = engine.keys(queue).ready
    async with grpc.aio.insecure_channel(address) as channel:
        requests: asyncio.Queue[Any] = asyncio.Queue()

        async def send() -> Any:
            while (item := await requests.get()) is not None:
                yield item
        await requests.put(pb.WorkRequest(open=pb.Open(queues=[queue], worker_id="bench-break", credit=HELD)))
        call = rpc.JobsStub(channel).Work(send())
        held = 0
        async for reply in call:
            held += len(reply.jobs.jobs)
            if held >= HELD:
                break
        assert engine.client.zcard(ready) == 0
        cancelled = time.perf_counter()
        call.cancel()
        while engine.client.zcard(ready) < HELD:
            await asyncio.sleep(0.001)
        back = time.perf_counter() - cancelled
        await requests.put(None)
    return {"grpc_broken_stream_jobs_ready_ms": back * 1000, "grpc_broken_stream_jobs": held}


def _spooled(address: str, engine: Any, queue: str, rounds: int) -> dict[str, float]:
    import queue as queues
    import threading

    import grpc

    from redispool.grpc.stubs import spooled_pb2 as pb
    from redispool.grpc.stubs import spooled_pb2_grpc as rpc
    out: dict[str, float] = {}
    with grpc.insecure_channel(address) as channel:
        stub = rpc.QueueServiceStub(channel)
        arrived: queues.Queue[Any] = queues.Queue()
        stream = stub.StreamJobs(pb.StreamJobsRequest(queue_name=queue, worker_id="bench-stream"))

        def read() -> None:
            try:
                for j in stream:
                    arrived.put((time.perf_counter(), j))
            except grpc.RpcError as exc:   # the bench's own cancel ends the stream: not an error
                if exc.code() != grpc.StatusCode.CANCELLED:
                    raise
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(0.2)
        pickups = []
        for k in range(PICKUPS):
            time.sleep(0.005)
            sent = time.perf_counter()
            engine.enqueue(queue, {"k": k})
            at, job = arrived.get(timeout=30)
            pickups.append(at - sent)
            stub.Complete(pb.CompleteRequest(job_id=job.id, worker_id="bench-stream", lease_id=job.lease_id))
        stream.cancel()
        reader.join(10)
        pickups.sort()
        out["grpc_streamjobs_pickup_p50_ms"] = statistics.median(pickups) * 1000
        out["grpc_streamjobs_pickup_p99_ms"] = pickups[int(len(pickups) * 0.99)] * 1000
        engine.enqueue_many(queue + "-process", [{"n": i} for i in range(rounds)])
        requests: queues.Queue[Any] = queues.Queue()
        replies = stub.ProcessJobs(iter(requests.get, None))
        dequeue = pb.ProcessRequest(dequeue=pb.DequeueRequest(queue_name=queue + "-process", worker_id="bench-pj"))
        start = time.perf_counter()
        for _ in range(rounds):
            requests.put(dequeue)
            job = next(replies).job
            requests.put(pb.ProcessRequest(complete=pb.CompleteRequest(job_id=job.id, worker_id="bench-pj",
                                                                       lease_id=job.lease_id)))
            next(replies)
        elapsed = time.perf_counter() - start
        requests.put(None)
        out["grpc_processjobs_jobs_s"] = rounds / elapsed
        out["grpc_processjobs_round_trip_ms"] = elapsed / (2 * rounds) * 1000
    return out


def grpc_api(engine: Any, address: str, jobs: int) -> dict[str, float]:
    """The gRPC figures against a serve process listening for gRPC on ``address``."""
    out: dict[str, float] = {}
    out.update(asyncio.run(_work_drain(address, engine, "bench-grpc-drain", jobs)))
    out.update(asyncio.run(_work_pickup(address, engine, "bench-grpc-pickup")))
    out.update(asyncio.run(_work_break(address, engine, "bench-grpc-break")))
    out.update(_spooled(address, engine, "bench-grpc-spooled", min(jobs, 2000)))
    return out
