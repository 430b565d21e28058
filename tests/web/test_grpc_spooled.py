"""The hosted job service's official gRPC client (`spooled[grpc]==1.6.0`, `SpooledGrpcClient`)
unchanged against `redispool serve --grpc-port`: every RPC it calls, stale leases as its
lease-lost error, auth errors, StreamJobs pickup of a job enqueued after the stream opened
(one job at a time), ProcessJobs round trips, deregister giving the worker's jobs back."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

import redispool

from support.rpc import TOKENS, GrpcServed, grpc, self_signed, tokens_file, wait_until

sgrpc = pytest.importorskip("spooled.grpc")
errors = pytest.importorskip("spooled.errors")
from spooled.grpc import (  # noqa: E402
    GrpcCompleteRequest,
    GrpcDequeueRequest,
    GrpcFailRequest,
    GrpcRenewLeaseRequest,
    ProcessRequest,
    SpooledGrpcClient,
)


@pytest.fixture(scope="module")
def served(redis_server, tmp_path_factory):
    prefix = f"gs{uuid.uuid4().hex[:6]}"
    s = GrpcServed(redis_server.url, prefix, tokens=tokens_file(tmp_path_factory.mktemp("gs"))).wait_ready()
    s.prefix = prefix
    yield s
    assert s.stop() == 0, s.output


@pytest.fixture
def client(served):
    c = SpooledGrpcClient(served.address, TOKENS["worker"])
    yield c
    c.close()


@pytest.fixture
def engine(served, redis_server):
    e = redispool.connect(redis_server.url, prefix=served.prefix)
    yield e
    e.close()


@pytest.fixture
def queue():
    return f"sq{uuid.uuid4().hex[:6]}"


def test_enqueue_get_job_and_queue_stats(client, engine, queue):
    r = client.queue.enqueue(queue, {"a": 1, "b": [1, 2]}, priority=3, max_retries=2, idempotency_key="k1")
    assert r.created and r.job_id.startswith(f"{queue}~")
    again = client.queue.enqueue(queue, {"a": 2}, idempotency_key="k1")
    assert (again.job_id, again.created) == (r.job_id, False)
    info = engine.get(queue, r.job_id.split("~", 1)[1])
    assert (info.payload, info.priority, info.max_attempts) == ({"a": 1, "b": [1, 2]}, 3, 3)  # whole numbers stay ints
    job = client.queue.get_job(r.job_id).job
    assert (job.status, job.payload, job.priority, job.max_retries, job.idempotency_key) == \
        ("pending", {"a": 1, "b": [1, 2]}, 3, 2, "k1")
    assert job.timeout_seconds == 300 and info.timeout == 300, "the service's default timeout"
    timed = client.queue.enqueue(queue, {"t": 1}, timeout_seconds=90)
    assert client.queue.get_job(timed.job_id).job.timeout_seconds == 90
    assert engine.get(queue, timed.job_id.split("~", 1)[1]).timeout == 90
    assert client.queue.get_job(f"{queue}~nope").job is None
    assert client.queue.get_job("not-an-id").job is None
    stats = client.queue.get_queue_stats(queue)
    assert (stats.queue_name, stats.pending, stats.processing, stats.total) == (queue, 2, 0, 2)
    with pytest.raises(errors.ValidationError):
        client.queue.enqueue("bad queue!", {})


def test_dequeue_complete_fail_renew_and_stale_leases(client, engine, queue):
    for i in range(3):
        client.queue.enqueue(queue, {"n": i}, max_retries=3)
    assert client.queue.dequeue(f"{queue}-empty", "w1").jobs == []
    jobs = client.queue.dequeue(queue, "w1", batch_size=5, lease_duration_secs=30).jobs
    assert len(jobs) == 3 and all(j.status == "processing" and j.lease_id and j.assigned_worker_id == "w1"
                                  and j.timeout_seconds == 300 for j in jobs)
    a, b, c = jobs
    renewed = client.queue.renew_lease(a.id, "w1", 120, lease_id=a.lease_id)
    assert renewed.success and renewed.new_expires_at.timestamp() > time.time() + 100
    with pytest.raises(errors.ConflictError) as err:
        client.queue.complete(a.id, "w1", {"x": 1}, lease_id="999999")
    assert errors.is_lease_expired(err.value)
    with pytest.raises(errors.ConflictError) as err:
        client.queue.renew_lease(a.id, "w1", lease_id="999999")
    assert errors.is_lease_expired(err.value)
    assert client.queue.complete(a.id, "w1", {"x": 1}, lease_id=a.lease_id).success
    assert client.queue.get_job(a.id).job.result == {"x": 1}
    with pytest.raises(errors.ConflictError) as err:
        client.queue.complete(a.id, "w1", lease_id=a.lease_id)      # finished: a plain conflict
    assert not errors.is_lease_expired(err.value)
    failed = client.queue.fail(b.id, "w1", "boom", lease_id=b.lease_id)
    assert failed.success and failed.will_retry and failed.next_retry_delay_secs >= 0
    assert client.queue.get_job(b.id).job.status == "failed"
    dead = client.queue.fail(c.id, "w1", "fatal", retry=False, lease_id=c.lease_id)
    assert dead.success and not dead.will_retry
    assert client.queue.get_job(c.id).job.status == "deadletter"
    with pytest.raises(errors.NotFoundError):
        client.queue.complete(f"{queue}~404", "w1", lease_id="1")
    with pytest.raises(errors.ValidationError):
        client.queue.complete(b.id, "w1", lease_id="")
    stats = client.queue.get_queue_stats(queue)
    assert (stats.completed, stats.failed, stats.deadletter) == (1, 1, 1)


def test_auth_errors(served, queue):
    with SpooledGrpcClient(served.address, "wrong-key-0123") as bad, pytest.raises(errors.AuthenticationError):
        bad.queue.enqueue(queue, {})
    with SpooledGrpcClient(served.address, TOKENS["read"]) as reader:
        with pytest.raises(errors.AuthorizationError):
            reader.queue.enqueue(queue, {})
        assert reader.queue.get_queue_stats(queue).total == 0      # reading is allowed


def test_stream_jobs_pushes_a_job_enqueued_later_one_at_a_time(client, queue):
    stream = client.queue.stream_jobs(queue, "streamer", lease_duration_secs=30)
    got: list = []

    def read() -> None:
        with pytest.raises(errors.ServerError):   # CANCELLED by stream.cancel() below
            for job in stream:
                got.append(job)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.3)                       # the stream waits in Redis now
    t0 = time.monotonic()
    client.queue.enqueue(queue, {"n": 1})
    wait_until(lambda: got, what="the first pushed job")
    assert time.monotonic() - t0 < 1.0
    client.queue.enqueue(queue, {"n": 2})
    time.sleep(0.3)
    assert len(got) == 1                  # the next only once the first is settled
    assert client.queue.complete(got[0].id, "streamer", lease_id=got[0].lease_id).success
    wait_until(lambda: len(got) == 2, what="the second job after the first was settled")
    assert got[1].payload == {"n": 2} and got[1].lease_id
    stream.cancel()
    reader.join(5)


def test_process_jobs_round_trips_in_order(client, queue):
    client.queue.enqueue(queue, {"n": 1})
    client.queue.enqueue(queue, {"n": 2})
    stream = client.queue.process_jobs()
    dequeue = ProcessRequest(dequeue=GrpcDequeueRequest(queue_name=queue, worker_id="pw"))
    stream.send(dequeue)
    stream.send(dequeue)
    responses = stream.receive()
    first, second = next(responses).job, next(responses).job
    assert {first.payload["n"], second.payload["n"]} == {1, 2}
    stream.send(ProcessRequest(complete=GrpcCompleteRequest(job_id=first.id, worker_id="pw", lease_id=first.lease_id)))
    stream.send(ProcessRequest(renew_lease=GrpcRenewLeaseRequest(job_id=second.id, worker_id="pw",
                                                                 lease_id=second.lease_id)))
    stream.send(ProcessRequest(fail=GrpcFailRequest(job_id=second.id, worker_id="pw", error="x",
                                                    lease_id="999999")))
    stream.send(ProcessRequest(fail=GrpcFailRequest(job_id=second.id, worker_id="pw", error="x", retry=False,
                                                    lease_id=second.lease_id)))
    stream.send(dequeue)
    assert next(responses).complete.success
    assert next(responses).renew_lease.success
    lost = next(responses)
    assert lost.error_code == "LEASE_EXPIRED"
    fail = next(responses).fail
    assert fail.success and not fail.will_retry
    none = next(responses)
    assert none.error_code == "NO_JOBS"
    stream.end()
    assert list(responses) == []          # the server ends the stream once the client half-closed


def test_register_heartbeat_deregister_gives_jobs_back(client, engine, queue):
    reg = client.workers.register(queue, "host-a", worker_id="dw-1")
    assert (reg.worker_id, reg.lease_duration_secs, reg.heartbeat_interval_secs) == ("dw-1", 30, 10)
    assert client.workers.heartbeat("dw-1", current_jobs=0).acknowledged
    assert not client.workers.heartbeat("never-registered").acknowledged
    client.queue.enqueue(queue, {"n": 1})
    client.queue.enqueue(queue, {"n": 2})
    jobs = client.queue.dequeue(queue, "dw-1", batch_size=2).jobs
    assert len(jobs) == 2
    me = [w for w in engine.workers() if w.id == "dw-1"][0]
    assert me.host == "host-a" and len(me.jobs_in_progress) == 2
    assert client.workers.deregister("dw-1").success
    for j in jobs:
        info = engine.get(queue, j.id.split("~", 1)[1])
        assert info.state == "ready" and info.attempts == 0
    assert not [w for w in engine.workers() if w.id == "dw-1"]


def test_enqueue_takes_tags_and_the_queues_job_defaults(client, engine, served, queue):
    """As POST /jobs: a job naming neither max_retries nor timeout_seconds (0 on the wire)
    gets its queue's job defaults (PUT /queues/{name}/config), one naming them its own;
    tags are kept, shown and filtered by the REST face."""
    import httpx

    def rest(method: str, path: str, role: str = "admin", **kw):
        r = httpx.request(method, served.base + "/compat/spooled/api/v1" + path, timeout=10,
                          headers={"Authorization": f"Bearer {TOKENS[role]}"}, **kw)
        assert r.status_code < 300, r.text
        return r.json()

    plain = client.queue.get_job(client.queue.enqueue(queue, {"n": 0}).job_id).job
    assert (plain.max_retries, plain.timeout_seconds) == (3, 300), "no queue defaults yet: the service's"
    rest("PUT", f"/queues/{queue}/config", json={"max_retries": 7, "default_timeout": 45})
    tagged = client.queue.enqueue(queue, {"n": 1}, tags={"team": "billing", "env": "prod"})
    job = client.queue.get_job(tagged.job_id).job
    assert (job.max_retries, job.timeout_seconds) == (7, 45)
    info = engine.get(queue, tagged.job_id.split("~", 1)[1])
    assert (info.max_attempts, info.timeout, info.tags) == (8, 45, {"team": "billing", "env": "prod"})
    own = client.queue.get_job(client.queue.enqueue(queue, {"n": 2}, max_retries=1, timeout_seconds=10).job_id).job
    assert (own.max_retries, own.timeout_seconds) == (1, 10)
    half = client.queue.get_job(client.queue.enqueue(queue, {"n": 3}, timeout_seconds=20).job_id).job
    assert (half.max_retries, half.timeout_seconds) == (7, 20)
    assert rest("GET", f"/jobs/{tagged.job_id}", "read")["tags"] == {"team": "billing", "env": "prod"}
    assert [j["id"] for j in rest("GET", f"/jobs?queue_name={queue}&tag=team", "read")] == [tagged.job_id]
    with pytest.raises(errors.ValidationError):
        client.queue.enqueue(queue, {}, max_retries=101)
    with pytest.raises(errors.ValidationError):
        client.queue.enqueue(queue, {}, timeout_seconds=86401)


def test_the_rest_clients_grpc_property_reaches_the_same_server(served, queue):
    """``SpooledClient(grpc_address=...).grpc``: the REST client's own gRPC client (no TLS
    on localhost, as the SDK decides), against the same ``redispool serve``."""
    from spooled import SpooledClient

    with SpooledClient(api_key=TOKENS["worker"], base_url=served.base + "/compat/spooled",
                       grpc_address=f"localhost:{served.grpc_port}") as rest:
        r = rest.grpc.queue.enqueue(queue, {"via": "grpc"}, tags={"k": "v"})
        job = rest.jobs.get(r.job_id)
        assert (job.payload, job.tags, job.status) == ({"via": "grpc"}, {"k": "v"}, "pending")
        rest.grpc.close()


@pytest.mark.slow
def test_the_client_over_tls(redis_server, tmp_path):
    """The client's own TLS options (use_tls, root_certificates) against serve --grpc-cert:
    enqueue, dequeue, complete and a StreamJobs push; without the certificate it is refused."""
    cert, key = self_signed(tmp_path)
    prefix = f"gt{uuid.uuid4().hex[:6]}"
    s = GrpcServed(redis_server.url, prefix, "--grpc-cert", str(cert), "--grpc-key", str(key),
                   tokens=tokens_file(tmp_path))
    address = f"localhost:{s.grpc_port}"
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(address, creds) as channel:   # (plaintext readiness checks would fail)
            grpc.channel_ready_future(channel).result(timeout=20)
        client = SpooledGrpcClient(address, TOKENS["worker"], use_tls=True, root_certificates=cert.read_bytes())
        try:
            first = client.queue.enqueue("tq", {"n": 1})
            job = client.queue.dequeue("tq", "w1", lease_duration_secs=30).jobs[0]
            assert job.id == first.job_id and job.payload == {"n": 1}
            assert client.queue.complete(job.id, "w1", {"ok": True}, lease_id=job.lease_id).success
            assert client.queue.get_job(first.job_id).job.status == "completed"
            got: list = []
            stream = client.queue.stream_jobs("tq", "w1", lease_duration_secs=30)
            reader = threading.Thread(target=lambda: got.append(next(iter(stream))), daemon=True)
            reader.start()
            second = client.queue.enqueue("tq", {"n": 2})
            reader.join(20)
            assert got and got[0].id == second.job_id
            stream.cancel()
        finally:
            client.close()
        untrusted = SpooledGrpcClient(address, TOKENS["worker"], use_tls=True, timeout=5)   # the system's roots
        try:
            with pytest.raises(errors.SpooledError):
                untrusted.queue.enqueue("tq", {"n": 3})
        finally:
            untrusted.close()
        engine = redispool.connect(redis_server.url, prefix=prefix)
        assert engine.stats("tq")["totals"]["enqueued"] == 2, "the refused client wrote nothing"
        engine.close()
    finally:
        assert s.stop() == 0, s.output


@pytest.mark.slow
def test_sigterm_ends_stream_jobs_and_process_jobs_cleanly(redis_server, tmp_path):
    """SIGTERM with a StreamJobs stream waiting in Redis and another holding a job, and a
    ProcessJobs stream open: the streams end, the held job keeps its lease (the client
    settles it by unary calls, as the hosted service expects) and the server exits 0."""
    prefix = f"gt{uuid.uuid4().hex[:6]}"
    s = GrpcServed(redis_server.url, prefix, tokens=tokens_file(tmp_path)).wait_ready()
    engine = redispool.connect(redis_server.url, prefix=prefix)
    client = SpooledGrpcClient(s.address, TOKENS["worker"])
    ended: dict[str, object] = {}
    try:
        client.queue.enqueue("held", {"n": 1})

        def read(name: str, stream) -> None:
            got = []
            try:
                for job in stream:
                    got.append(job)
                ended[name] = got
            except errors.SpooledError as exc:   # the client's error for a stream the server ended
                ended[name] = (got, exc)
        idle = client.queue.stream_jobs("idle", "w-idle", lease_duration_secs=30)
        holding = client.queue.stream_jobs("held", "w-held", lease_duration_secs=30)
        process = client.queue.process_jobs()
        threads = [threading.Thread(target=read, args=(n, st), daemon=True)
                   for n, st in (("idle", idle), ("held", holding), ("process", process.receive()))]
        for t in threads:
            t.start()
        wait_until(lambda: engine.stats("held")["leased"] == 1, what="the held job pushed")
        time.sleep(0.3)   # the idle stream waits in Redis now
        assert s.stop() == 0, s.output
        for t in threads:
            t.join(10)
        assert not [t for t in threads if t.is_alive()], "a stream did not end"
        assert set(ended) == {"idle", "held", "process"}
        held = ended["held"][0] if isinstance(ended["held"], tuple) else ended["held"]
        assert len(held) == 1 and engine.stats("held")["leased"] == 1   # kept: settled by unary calls
        assert engine.stats("idle")["leased"] == 0
    finally:
        client.close()
        engine.close()
        s.stop()
