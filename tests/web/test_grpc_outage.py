"""Redis restarted under a running gRPC server: an open Work stream keeps going (its claims
retry, acks that cannot be settled say `unavailable` per item and may be sent again),
health says NOT_SERVING while Redis is away, unary calls are UNAVAILABLE, and after the
restart every job is done, none lost (a job whose claim reply the outage cut off comes
back when its lease runs out)."""
from __future__ import annotations

import time
import uuid

import pytest

import redispool

from support.rpc import GrpcServed, Worker, auth, grpc, pb, tokens_file, wait_until
from support.servers import RedisServer

pytestmark = pytest.mark.slow
JOBS = 200


def test_redis_restarted_under_an_open_work_stream(tmp_path):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    redis_server = RedisServer("--appendonly", "yes", "--appendfsync", "always", dir=tmp_path).start()
    prefix, queue = f"go{uuid.uuid4().hex[:6]}", "outage"
    served = GrpcServed(redis_server.url, prefix, tokens=tokens_file(tmp_path))
    engine = redispool.connect(redis_server.url, prefix=prefix)
    try:
        with served.channel() as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            stub, health = served.stub(channel), health_pb2_grpc.HealthStub(channel)
            stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=queue, jobs=[
                pb.EnqueueRequest(payload=str(i)) for i in range(JOBS // 2)]), metadata=auth())
            # a short lease: a claim whose reply the outage cut off leaves a job leased to
            # nobody; serve's sweeper takes it back once that lease runs out
            w = Worker(stub, [queue], "w-outage", credit=10, lease=2.0)
            settled: set[str] = set()

            def work() -> None:
                """Ack what arrived and is not settled yet (again, if an ack said unavailable)."""
                for results in w.results[len(seen):]:
                    seen.append(results)
                    settled.update(r.id for r in results.results if r.ok or r.error == "lease_lost")
                todo = [j for j in w.jobs if j.id not in settled and j.id not in asked]
                if todo:
                    asked.update(j.id for j in todo)
                    w.ack(completed=todo)
                    w.credit(len(todo))
            seen: list = []
            asked: set[str] = set()
            wait_until(lambda: (work(), len(settled) >= 20)[1], timeout=20, what="work before the outage")
            redis_server.kill()
            wait_until(lambda: health.Check(health_pb2.HealthCheckRequest()).status ==
                       health_pb2.HealthCheckResponse.NOT_SERVING, timeout=10, what="NOT_SERVING")
            with pytest.raises(grpc.RpcError) as err:
                stub.Enqueue(pb.EnqueueRequest(queue=queue, payload="1"), metadata=auth(), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            time.sleep(0.5)
            redis_server.start()
            wait_until(lambda: health.Check(health_pb2.HealthCheckRequest()).status ==
                       health_pb2.HealthCheckResponse.SERVING, timeout=10, what="SERVING again")
            stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=queue, jobs=[
                pb.EnqueueRequest(payload=str(i)) for i in range(JOBS // 2, JOBS)]), metadata=auth())

            def all_done() -> bool:
                work()
                unavailable = {r.id for res in seen for r in res.results if r.error == "unavailable"}
                asked.difference_update(unavailable - settled)   # ask again for those
                return engine.stats(queue)["done"] == JOBS
            wait_until(all_done, timeout=60, what="every job done after the restart")
            assert w.error is None and not w.ended.is_set()      # the stream survived the outage
            w.close()
            assert w.ended.wait(10)
        s = engine.stats(queue)
        assert (s["done"], s["ready"], s["leased"], s["dead"]) == (JOBS, 0, 0, 0)
    finally:
        engine.close()
        code = served.stop()
        redis_server.stop()
    assert code == 0, served.output
