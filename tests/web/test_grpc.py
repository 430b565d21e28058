"""The native gRPC service `redispool.v1.Jobs` over a real `redispool serve --grpc-port`
process: enqueue, the Work stream's credits, pushes, batched fenced acks, leases kept alive
by the open stream and released when it ends, auth, health, reflection, the registry,
SIGTERM."""
from __future__ import annotations

import signal
import time
import uuid

import pytest

import redispool

from support.cli import invoke
from support.rpc import TOKENS, GrpcServed, Worker, auth, grpc, pb, self_signed, tokens_file, wait_until

QUEUE = "g"


@pytest.fixture(scope="module")
def served(redis_server, tmp_path_factory):
    prefix = f"grpc{uuid.uuid4().hex[:6]}"
    s = GrpcServed(redis_server.url, prefix, tokens=tokens_file(tmp_path_factory.mktemp("grpc")),
                   ).wait_ready()
    s.prefix = prefix
    yield s
    assert s.stop() == 0, s.output


@pytest.fixture
def queue():
    return f"{QUEUE}{uuid.uuid4().hex[:6]}"


@pytest.fixture
def stub(served):
    with served.channel() as channel:
        yield served.stub(channel)


@pytest.fixture
def engine(served, redis_server):
    e = redispool.connect(redis_server.url, prefix=served.prefix)
    yield e
    e.close()


def enqueue(stub, queue, n, **options):
    reply = stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=queue, jobs=[
        pb.EnqueueRequest(payload=f'{{"n": {i}}}', **options) for i in range(n)]), metadata=auth())
    return list(reply.ids)


def test_enqueue_returns_id_and_created_and_stores_the_payload(stub, engine, queue):
    r = stub.Enqueue(pb.EnqueueRequest(queue=queue, payload='{"a": [1, 2]}', priority=5, unique_key="u1"),
                     metadata=auth())
    assert r.created and r.id
    again = stub.Enqueue(pb.EnqueueRequest(queue=queue, payload='{"a": 3}', unique_key="u1"), metadata=auth())
    assert (again.id, again.created) == (r.id, False)
    info = engine.get(queue, r.id)
    assert (info.payload, info.priority, info.state) == ({"a": [1, 2]}, 5, "ready")
    assert stub.Enqueue(pb.EnqueueRequest(queue=queue), metadata=auth()).created  # empty payload = null
    ids = enqueue(stub, queue, 3)
    assert len(set(ids)) == 3 and engine.stats(queue)["ready"] == 5


@pytest.mark.parametrize("request_, code", [
    (pb.EnqueueRequest(queue="bad queue", payload="1"), "INVALID_ARGUMENT"),
    (pb.EnqueueRequest(queue="q", payload="{not json"), "INVALID_ARGUMENT"),
    (pb.EnqueueRequest(queue="q", payload="NaN"), "INVALID_ARGUMENT"),
    (pb.EnqueueRequest(queue="q", payload="1", lease=-1), "INVALID_ARGUMENT"),
])
def test_bad_enqueue_is_invalid_argument(stub, request_, code):
    with pytest.raises(grpc.RpcError) as err:
        stub.Enqueue(request_, metadata=auth())
    assert err.value.code().name == code


@pytest.mark.parametrize("jobs", [[], [pb.EnqueueRequest(payload="1"), pb.EnqueueRequest(payload="{not json")]],
                         ids=["empty", "one-bad-item"])
def test_bad_enqueue_batch_is_invalid_argument_and_writes_nothing(stub, engine, queue, jobs):
    with pytest.raises(grpc.RpcError) as err:
        stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=queue, jobs=jobs), metadata=auth())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    if jobs:
        assert "jobs[1]" in err.value.details()
    assert engine.stats(queue)["ready"] == 0   # all or nothing: the good item is not enqueued either


def test_auth_x_api_key_or_bearer_unauthenticated_permission_denied(stub, queue):
    r = pb.EnqueueRequest(queue=queue, payload="1")
    assert stub.Enqueue(r, metadata=auth("worker", bearer=True)).created
    assert stub.Enqueue(r, metadata=auth("admin")).created
    for metadata in ([], [("x-api-key", "wrong-token-123")], [("authorization", "Basic abc")]):
        with pytest.raises(grpc.RpcError) as err:
            stub.Enqueue(r, metadata=metadata)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:
        stub.Enqueue(r, metadata=auth("read"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    w = Worker(stub, [queue], "reader-1", credit=1, role="read")
    assert w.ended.wait(5) and w.error.code() == grpc.StatusCode.PERMISSION_DENIED


def test_work_pushes_no_more_than_the_credit_and_more_as_credit_comes(stub, queue):
    enqueue(stub, queue, 5)
    w = Worker(stub, [queue], "w-credit", credit=2)
    wait_until(lambda: len(w.jobs) == 2, what="2 jobs")
    time.sleep(0.2)
    assert len(w.jobs) == 2          # no credit left: nothing more pushed
    w.credit(2)
    wait_until(lambda: len(w.jobs) == 4, what="4 jobs")
    time.sleep(0.1)
    assert len(w.jobs) == 4
    w.ack(completed=w.jobs[:4])
    wait_until(lambda: w.results, what="ack results")
    assert [(r.id, r.ok, r.state) for r in w.results[0].results] == [(j.id, True, "done") for j in w.jobs[:4]]
    w.credit(10)
    wait_until(lambda: len(w.jobs) == 5, what="the 5th job")
    w.close()
    assert w.ended.wait(5) and w.error is None


def test_a_job_enqueued_after_the_stream_opened_is_pushed_at_once(stub, queue):
    w = Worker(stub, [queue, queue + "b"], "w-push", credit=10)
    time.sleep(0.3)    # the stream waits in Redis now
    pickups = []
    for target in (queue, queue + "b", queue):
        t0 = time.monotonic()
        stub.Enqueue(pb.EnqueueRequest(queue=target, payload='"x"'), metadata=auth())
        wanted = len(pickups) + 1
        wait_until(lambda wanted=wanted: len(w.jobs) >= wanted, what="the pushed job")
        pickups.append(time.monotonic() - t0)
    assert [j.queue for j in w.jobs] == [queue, queue + "b", queue]
    assert max(pickups) < 1.0, pickups
    w.close()
    assert w.ended.wait(5)


def test_acks_are_fenced_per_item_in_order(stub, engine, queue):
    enqueue(stub, queue, 3, max_attempts=3)
    w = Worker(stub, [queue], "w-ack", credit=3)
    wait_until(lambda: len(w.jobs) == 3)
    a, b, c = w.jobs
    stale = pb.Job(queue=queue, id=c.id, token="999999")
    w.ack(completed=[a, stale], failed=[b], released=[c])
    wait_until(lambda: w.results)
    got = [(r.id, r.ok, r.state, r.error) for r in w.results[0].results]
    assert got == [(a.id, True, "done", ""), (c.id, False, "", "lease_lost"),
                   (b.id, True, "scheduled", ""), (c.id, True, "ready", "")]
    info = engine.get(queue, c.id)
    assert info.state == "ready" and info.attempts == 0   # released: the attempt is not counted
    w.ack(completed=[a])  # a second ack of a finished job
    wait_until(lambda: len(w.results) == 2)
    assert [(r.ok, r.error) for r in w.results[1].results] == [(False, "lease_lost")]
    w.close()
    assert w.ended.wait(5)


def test_the_job_carries_its_timeout_and_progress_is_an_ack_item(stub, engine, queue):
    """A job's timeout (Enqueue's option) comes with it; progress items are fenced and
    checked per item, answered after the others, and leave the job leased."""
    timed = stub.Enqueue(pb.EnqueueRequest(queue=queue, payload='"t"', timeout=90), metadata=auth()).id
    plain = stub.Enqueue(pb.EnqueueRequest(queue=queue, payload='"p"'), metadata=auth()).id
    assert engine.get(queue, timed).timeout == 90 and engine.get(queue, plain).timeout is None
    w = Worker(stub, [queue], "w-progress", credit=2)
    wait_until(lambda: len(w.jobs) == 2)
    by_id = {j.id: j for j in w.jobs}
    a, b = by_id[timed], by_id[plain]
    assert (a.timeout, b.timeout) == (90, 0)
    stale = pb.Job(queue=queue, id=b.id, token="999999")
    w.ack(completed=[b], progress=[(a, 40, "halfway"), (stale, 10, ""), (a, 150, ""), (b, 50, "")])
    wait_until(lambda: w.results)
    got = [(r.id, r.ok, r.state, r.error.split(":")[0]) for r in w.results[0].results]
    assert got == [(b.id, True, "done", ""), (a.id, True, "leased", ""), (b.id, False, "", "lease_lost"),
                   (a.id, False, "", "bad_input"), (b.id, False, "", "lease_lost")]
    info = engine.get(queue, a.id)
    assert info.state == "leased" and (info.progress["value"], info.progress["message"]) == (40, "halfway")
    w.ack(completed=[a])
    wait_until(lambda: len(w.results) == 2)
    assert [(r.ok, r.state) for r in w.results[1].results] == [(True, "done")]
    w.close()
    assert w.ended.wait(5) and w.error is None


def test_the_open_stream_keeps_leases_alive_and_gives_them_back_when_it_ends(stub, engine, queue):
    [job_id] = enqueue(stub, queue, 1)
    w = Worker(stub, [queue], "w-lease", credit=1, lease=1.0)
    wait_until(lambda: w.jobs)
    time.sleep(2.5)    # two and a half leases: the stream extended it
    info = engine.get(queue, job_id)
    assert info.state == "leased" and info.lease_expires_at > time.time()
    w.cancel()         # the stream breaks: the job is ready again at once, attempt not counted
    t0 = time.monotonic()
    wait_until(lambda: engine.get(queue, job_id).state == "ready", timeout=2, what="the job back")
    assert time.monotonic() - t0 < 0.5
    assert engine.get(queue, job_id).attempts == 0


def test_a_job_claimed_by_the_wait_of_an_ending_stream_goes_back(stub, engine, queue):
    """A stream that got a job waits for the next one and claims it in one call (that wait
    cannot be cut short); a job it claims after the stream ended is released, not left
    leased until its lease runs out."""
    w = Worker(stub, [queue], "w-pair", credit=1)
    [first] = enqueue(stub, queue, 1)
    wait_until(lambda: w.jobs, what="the first job")
    w.ack(completed=w.jobs[:1])
    w.credit(1)                     # the stream waits and claims together now
    wait_until(lambda: w.results, what="the ack")
    w.cancel()
    [second] = enqueue(stub, queue, 1)
    wait_until(lambda: engine.get(queue, second).state == "ready", timeout=3, what="the job ready again")
    assert engine.get(queue, second).attempts == 0 and engine.get(queue, first).state == "done"


def test_half_close_releases_what_is_held_and_ends_ok(stub, engine, queue):
    ids = enqueue(stub, queue, 2)
    w = Worker(stub, [queue], "w-close", credit=2)
    wait_until(lambda: len(w.jobs) == 2)
    w.close()
    assert w.ended.wait(5) and w.error is None
    assert {engine.get(queue, i).state for i in ids} == {"ready"}


def test_the_registry_shows_the_grpc_worker_with_its_jobs(served, stub, engine, queue):
    enqueue(stub, queue, 3)
    w = Worker(stub, [queue], "w-registry", credit=2)
    wait_until(lambda: len(w.jobs) == 2)

    def listed():
        found = [x for x in engine.workers() if x.id == "w-registry"]
        return found and len(found[0].jobs_in_progress) == 2 and found[0]
    me = wait_until(listed, what="the worker with 2 jobs")
    assert me.host == "127.0.0.1" and queue in me.queues
    with served.client("read") as http:    # the HTTP API, the dashboard and /metrics show it the same
        [listed_http] = [x for x in http.get("/v1/workers").json() if x["id"] == "w-registry"]
        http.post("/login", data={"token": TOKENS["read"]})   # the dashboard signs in with a token
        page = http.get("/workers")
        metrics = http.get("/metrics").text
    assert listed_http["host"] == "127.0.0.1" and len(listed_http["jobs_in_progress"]) == 2
    assert page.status_code == 200 and "w-registry" in page.text and "127.0.0.1" in page.text
    live = [line for line in metrics.splitlines() if line.startswith("redispool_workers ")]
    assert live and float(live[0].split()[1]) >= 1, metrics
    cli = invoke(engine.url, served.prefix, "workers").output   # `redispool workers`
    [row] = [line for line in cli.splitlines() if line.startswith("w-registry")]
    assert "127.0.0.1" in row and queue in row
    w.ack(completed=w.jobs[:1], failed=w.jobs[1:])
    wait_until(lambda: w.results)
    wait_until(lambda: [x for x in engine.workers() if x.id == "w-registry" and x.processed == 2
                        and x.failed == 1 and len(x.jobs_in_progress) == 0], what="counts")
    w.close()
    assert w.ended.wait(5)


def test_health_and_reflection(served):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
    with served.channel() as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        db = ProtoReflectionDescriptorDatabase(channel)
        services = set(db.get_services())
        work = db.FindFileContainingSymbol("redispool.v1.Jobs")   # what `grpcurl describe` reads
    assert {"redispool.v1.Jobs", "grpc.health.v1.Health"} <= services
    [jobs] = [s for s in work.service if s.name == "Jobs"]
    assert {"Enqueue", "EnqueueBatch", "Work"} <= {m.name for m in jobs.method}
    assert work.package == "redispool.v1"


def test_health_watch_streams_serving(served):
    """grpc.health.v1 Watch (what load balancers and grpc-health-probe --watch use): the
    first message is the current status, SERVING while Redis answers."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    with served.channel() as channel:
        call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        first = next(call)
        call.cancel()
    assert first.status == health_pb2.HealthCheckResponse.SERVING


def test_stale_work_open_is_invalid_argument(stub):
    call = stub.Work(iter([pb.WorkRequest(credit=3)]), metadata=auth())
    with pytest.raises(grpc.RpcError) as err:
        list(call)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.slow
def test_grpc_alone_and_sigterm_ends_streams_cleanly(redis_server, tmp_path):
    prefix = f"grpc{uuid.uuid4().hex[:6]}"
    s = GrpcServed(redis_server.url, prefix, "--no-http", tokens=tokens_file(tmp_path))
    try:
        with s.channel() as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            stub = s.stub(channel)
            stub.EnqueueBatch(pb.EnqueueBatchRequest(queue="q", jobs=[pb.EnqueueRequest(payload="1")] * 2),
                              metadata=auth())
            holding = Worker(stub, ["q"], "w-holding", credit=1)
            idle = Worker(stub, ["q2"], "w-idle", credit=1)
            wait_until(lambda: holding.jobs)
            s.proc.send_signal(signal.SIGTERM)
            assert idle.ended.wait(5) and idle.error is None     # nothing held: ends at once, OK
            time.sleep(0.3)
            assert not holding.ended.is_set()                    # acks still welcome ...
            holding.ack(completed=holding.jobs)
            assert holding.ended.wait(5) and holding.error is None   # ... then it ends, OK
            assert [r.ok for r in holding.results[0].results] == [True]
            assert len(holding.jobs) == 1                        # nothing pushed after SIGTERM
        assert s.proc.wait(20) == 0
    finally:
        s.stop()
    assert "serving on http" not in s.output and "serving gRPC" in s.output


@pytest.mark.slow
def test_tls_with_grpc_cert_and_key(redis_server, tmp_path):
    cert, key = self_signed(tmp_path)
    s = GrpcServed(redis_server.url, f"gt{uuid.uuid4().hex[:6]}", "--grpc-cert", str(cert), "--grpc-key", str(key),
                   tokens=tokens_file(tmp_path))   # ready-checked over TLS below, not plaintext
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"localhost:{s.grpc_port}", creds) as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            reply = s.stub(channel).Enqueue(pb.EnqueueRequest(queue="tls", payload="1"), metadata=auth())
            assert reply.created
        with s.channel() as plain, pytest.raises(grpc.RpcError):     # plaintext is refused on a TLS port
            s.stub(plain).Enqueue(pb.EnqueueRequest(queue="tls", payload="1"), metadata=auth(), timeout=3)
    finally:
        assert s.stop() == 0, s.output


def test_grpc_port_taken_is_one_line_exit_2(redis_server):
    import os
    import socket
    import subprocess
    import sys

    from support import ROOT
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "redispool", "--url", redis_server.url, "--prefix", "gp", "serve",
                            "--no-http", "--grpc-port", str(port)], capture_output=True, text=True, timeout=60,
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert r.returncode == 2 and f"cannot listen for gRPC on 127.0.0.1:{port}" in r.stderr, r.stderr
