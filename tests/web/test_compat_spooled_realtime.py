"""The spooled SDK's login token and realtime client (``SpooledClient(...).realtime()``,
over SSE and over WebSocket) against ``redispool serve`` on a real redis-server: the
events of jobs enqueued, claimed, completed and failed, worker events and pings, in the
service's frames, with the official client unchanged."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

pytest.importorskip("spooled")
pytest.importorskip("sseclient")
pytest.importorskip("websockets")
from spooled import AsyncSpooledClient, SpooledClient  # noqa: E402
from spooled.errors import AuthenticationError, AuthorizationError  # noqa: E402
from spooled.realtime.sse import AsyncSSEClient  # noqa: E402
from spooled.realtime.unified import ConnectionState, SubscriptionFilter  # noqa: E402
from spooled.realtime.websocket import (  # noqa: E402
    AsyncWebSocketClient,
    WebSocketClient,
    WebSocketConnectionOptions,
)
from spooled.realtime.websocket import SubscriptionFilter as WsFilter  # noqa: E402
from spooled.utils.jwt import decode_jwt_exp  # noqa: E402
from websockets.exceptions import InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from support.compat import SPOOLED_KEYS  # noqa: E402
from support.waiting import wait_for  # noqa: E402

ADMIN, WORKER, READ = SPOOLED_KEYS


def sdk(server, **kw) -> SpooledClient:
    base, _, _ = server
    return SpooledClient(base_url=base + "/compat/spooled", **({"api_key": ADMIN} | kw))


@pytest.fixture
def client(server):
    c = sdk(server)
    yield c
    c.close()


@pytest.fixture
def queue(request):
    return "rt-" + request.node.name.replace("_", "-").replace("[", "-").replace("]", "")[:50]


class Seen:
    """Every event a realtime client delivered, as (type, data)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def __call__(self, event) -> None:
        with self.lock:
            self.events.append((event.type, event.data))

    def of(self, kind: str, **match) -> list[dict]:
        with self.lock:
            return [d for t, d in self.events if t == kind and all(d.get(k) == v for k, v in match.items())]

    def wait(self, kind: str, **match) -> dict:
        wait_for(lambda: self.of(kind, **match), 15, f"{kind} {match}")
        return self.of(kind, **match)[0]


def realtime(client: SpooledClient, kind: str, subscribe: SubscriptionFilter | None = None) -> Iterator:
    rt = client.realtime(type=kind, auto_reconnect=False)
    seen = Seen()
    rt.on_event(seen)
    if subscribe is not None:
        rt.subscribe(subscribe)
    return rt, seen


def lifecycle(client: SpooledClient, queue: str, seen: Seen) -> None:
    """One job enqueued, claimed and completed, one failed for good: their events."""
    done = client.jobs.create({"queue_name": queue, "payload": {"n": 1}, "priority": 5}).id
    created = seen.wait("job.created", job_id=done)
    assert created["queue_name"] == queue and created["priority"] == 5 and created["timestamp"]
    [job] = client.jobs.claim({"queue_name": queue, "worker_id": "w1"}).jobs
    seen.wait("job.status_changed", job_id=done, new_status="processing")
    client.jobs.complete(done, {"worker_id": "w1", "lease_id": job.lease_id, "result": {"sent": True}})
    completed = seen.wait("job.completed", job_id=done)
    assert completed["result"] == {"sent": True} and completed["queue_name"] == queue
    seen.wait("job.status_changed", job_id=done, old_status="processing", new_status="completed")

    failed = client.jobs.create({"queue_name": queue, "payload": {"n": 2}, "max_retries": 0}).id
    [job] = client.jobs.claim({"queue_name": queue, "worker_id": "w1"}).jobs
    client.jobs.fail(failed, {"worker_id": "w1", "lease_id": job.lease_id, "error": "SMTP 451"})
    got = seen.wait("job.failed", job_id=failed)
    assert got["error"] == "SMTP 451" and got["retry_count"] == 0
    seen.wait("job.status_changed", job_id=failed, new_status="deadletter")


def test_login_token_is_a_jwt_the_rest_routes_and_realtime_take(server, client, queue):
    login = client.auth.login({"api_key": WORKER})
    assert login.token_type == "Bearer" and login.expires_in == 3600 and login.refresh_expires_in > 3600
    assert decode_jwt_exp(login.access_token) == pytest.approx(time.time() + 3600, abs=120)
    by_token = sdk(server, api_key=None, access_token=login.access_token)
    try:
        made = by_token.jobs.create({"queue_name": queue, "payload": {}})   # the key's role: worker
        assert by_token.jobs.get(made.id).queue_name == queue
        with pytest.raises(AuthorizationError):   # ... no more: the worker role may not purge
            by_token.jobs.dlq.purge({"confirm": True})
    finally:
        by_token.close()
    refreshed = client.auth.refresh({"refresh_token": login.refresh_token})
    assert refreshed.expires_in == 3600 and client.auth.validate({"token": refreshed.access_token}).valid
    assert not client.auth.validate({"token": login.refresh_token}).valid   # a refresh token is no bearer
    with pytest.raises(AuthenticationError):
        client.auth.login({"api_key": "sp_live_unknown_0123456789"})
    # a token signed with another key, or altered, is nobody's
    head, claims, mac = login.access_token.split(".")
    forged = f"{head}.{claims}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BB'}"
    base, _, _ = server
    r = httpx.get(base + f"/compat/spooled/api/v1/jobs/{made.id}", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
    me = client.auth.me()
    assert me.organization_id == "redispool"


@pytest.mark.parametrize("kind", ["sse", "websocket"])
def test_realtime_gets_the_job_events(server, client, queue, kind):
    rt, seen = realtime(client, kind)
    rt.connect()
    try:
        seen.wait("ping")
        lifecycle(client, queue, seen)
    finally:
        rt.disconnect()


def test_realtime_sse_filtered_by_queue(server, client, queue):
    rt, seen = realtime(client, "sse", SubscriptionFilter(queue=queue))
    rt.connect()
    try:
        seen.wait("ping")
        client.jobs.create({"queue_name": queue + "-other", "payload": {}})
        lifecycle(client, queue, seen)
        assert not [d for t, d in seen.events if t.startswith("job.") and d["queue_name"] != queue]
    finally:
        rt.disconnect()


def websocket_client(server, client: SpooledClient, subscribe: SubscriptionFilter) -> tuple[WebSocketClient, Seen]:
    """The SDK's standalone WebSocket client on a login token, subscribed (its ping is
    answered after the subscribe: a barrier, as the service sends no acks)."""
    base, _, _ = server
    token = client.get_jwt_token()
    ws = WebSocketClient(WebSocketConnectionOptions(ws_url=base.replace("http", "ws") + "/compat/spooled",
                                                    token=token, auto_reconnect=False))
    seen = Seen()
    ws.on_event(seen)
    ws.connect()
    seen.wait("ping")
    ws.subscribe(WsFilter(queue=subscribe.queue, job_id=subscribe.job_id))
    ws.ping()
    wait_for(lambda: len(seen.of("ping")) >= 2, 15, "the answer to ping")
    return ws, seen


def test_websocket_filtered_by_queue(server, client, queue):
    ws, seen = websocket_client(server, client, SubscriptionFilter(queue=queue))
    try:
        client.jobs.create({"queue_name": queue + "-other", "payload": {}})
        lifecycle(client, queue, seen)
        assert not [d for t, d in seen.events if t.startswith("job.") and d["queue_name"] != queue]
    finally:
        ws.disconnect()


def test_sse_job_stream_starts_with_the_status_and_ends_with_the_job(server, client, queue):
    job_id = client.jobs.create({"queue_name": queue, "payload": {}}).id
    rt, seen = realtime(client, "sse", SubscriptionFilter(job_id=job_id))
    other = client.jobs.create({"queue_name": queue, "payload": {}}).id
    rt.connect()
    try:
        first = seen.wait("job.status_changed", job_id=job_id, old_status="")
        assert first["new_status"] == "pending"
        [job] = client.jobs.claim({"queue_name": queue, "worker_id": "w1", "limit": 1}).jobs
        assert job.id == job_id
        client.jobs.complete(job_id, {"worker_id": "w1", "lease_id": job.lease_id, "result": 7})
        assert seen.wait("job.completed", job_id=job_id)["result"] == 7
        wait_for(lambda: rt.state == ConnectionState.DISCONNECTED, 15, "the job's stream to end")
        assert not [d for t, d in seen.events if t.startswith("job.") and d["job_id"] == other]
    finally:
        rt.disconnect()


def test_sse_unknown_job_is_an_error_event_and_the_end(server, client, queue):
    rt, seen = realtime(client, "sse", SubscriptionFilter(job_id=f"{queue}~nope"))
    rt.connect()
    try:
        assert seen.wait("error")["message"] == "Job not found"
        wait_for(lambda: rt.state == ConnectionState.DISCONNECTED, 15, "the stream to end")
    finally:
        rt.disconnect()


def test_websocket_job_filter_and_unsubscribe(server, client, queue):
    job_id = client.jobs.create({"queue_name": queue, "payload": {}}).id
    ws, seen = websocket_client(server, client, SubscriptionFilter(job_id=job_id))
    try:
        other = client.jobs.create({"queue_name": queue, "payload": {}}).id
        [job] = client.jobs.claim({"queue_name": queue, "worker_id": "w1"}).jobs
        assert job.id == job_id
        seen.wait("job.status_changed", job_id=job_id, new_status="processing")
        assert not [d for t, d in seen.events if t.startswith("job.") and d["job_id"] == other]
        ws.unsubscribe(WsFilter(job_id=job_id))   # no filter left: every queue
        ws.ping()
        wait_for(lambda: len(seen.of("ping")) >= 3, 15, "the answer to ping")
        client.jobs.cancel(other)
        seen.wait("job.status_changed", job_id=other, old_status="pending", new_status="cancelled")
    finally:
        ws.disconnect()


def test_websocket_commands_in_any_case_and_bad_ones_get_an_error_event(server, client):
    base, _, _ = server
    with connect(base.replace("http", "ws") + f"/compat/spooled/api/v1/ws?token={READ}") as sock:
        assert json.loads(sock.recv(timeout=10))["type"] == "Ping"
        sock.send('{"cmd": "PING"}')
        assert json.loads(sock.recv(timeout=10))["type"] == "Ping"
        sock.send('{"cmd": "subscribe", "job_id": "no-tilde"}')
        got = json.loads(sock.recv(timeout=10))
        assert got["type"] == "Error" and got["data"]["message"]
        sock.send("not json")
        assert json.loads(sock.recv(timeout=10))["type"] == "Error"


@pytest.mark.parametrize("kind", ["sse", "websocket"])
def test_worker_events(server, client, queue, kind):
    rt, seen = realtime(client, kind)
    rt.connect()
    try:
        seen.wait("ping")
        worker = client.workers.register({"queue_name": queue, "hostname": "h1", "worker_id": f"wk-{kind}"})
        got = seen.wait("worker.registered", worker_id=worker.id)
        assert got["queue_name"] == queue
        client.workers.heartbeat(worker.id, {"current_jobs": 0})
        seen.wait("worker.heartbeat", worker_id=worker.id)
        client.workers.deregister(worker.id)
        seen.wait("worker.deregistered", worker_id=worker.id)
    finally:
        rt.disconnect()


def test_realtime_refuses_a_bad_token(server):
    base, _, _ = server
    r = httpx.get(base + "/compat/spooled/api/v1/events", headers={"Authorization": "Bearer nope-nope-nope"})
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
    with pytest.raises(InvalidStatus) as refused:
        connect(base.replace("http", "ws") + "/compat/spooled/api/v1/ws?token=nope-nope-nope")
    assert refused.value.response.status_code == 401
    # a raw API key works as the token too (the SDK's own scripts pass one)
    with connect(base.replace("http", "ws") + f"/compat/spooled/api/v1/ws?token={READ}") as ws:
        assert '"Ping"' in ws.recv(timeout=10)


def test_async_sse_client_reads_a_jobs_stream_to_its_end(server, client, queue):
    """AsyncSSEClient keeps only the last ``data:`` line of an event: each is one line."""
    base, _, _ = server
    job_id = client.jobs.create({"queue_name": queue, "payload": {}}).id
    token = client.get_jwt_token()

    def finish() -> None:
        [job] = client.jobs.claim({"queue_name": queue, "worker_id": "w1"}).jobs
        client.jobs.fail(job.id, {"worker_id": "w1", "lease_id": job.lease_id, "error": "once"})   # a retry waits
        client.jobs.cancel(job.id)

    async def read() -> list[tuple[str, dict]]:
        sse = AsyncSSEClient(base + "/compat/spooled", token, job_id=job_id, auto_reconnect=False)
        got = []
        async for event in sse.events():   # ends when the server closes the finished job's stream
            if event.type == "ping":   # the first frame of every stream
                continue
            got.append((event.type, event.data))
            if len(got) == 1:
                await asyncio.to_thread(finish)
        return got

    got = asyncio.run(asyncio.wait_for(read(), 30))
    assert [(t, d.get("old_status"), d.get("new_status")) for t, d in got] == [
        ("job.status_changed", "", "pending"), ("job.status_changed", "pending", "processing"),
        ("job.status_changed", "processing", "scheduled"), ("job.status_changed", "scheduled", "cancelled")]


def test_async_websocket_client_and_the_async_clients_login(server, queue):
    """AsyncSpooledClient logs in; AsyncWebSocketClient subscribes to a queue and reads."""
    base, _, _ = server

    async def run() -> list[tuple[str, dict]]:
        async with AsyncSpooledClient(api_key=ADMIN, base_url=base + "/compat/spooled") as client:
            token = await client.get_jwt_token()
            ws = AsyncWebSocketClient(WebSocketConnectionOptions(
                ws_url=base.replace("http", "ws") + "/compat/spooled", token=token, auto_reconnect=False))
            await ws.connect()
            await ws.subscribe(WsFilter(queue=queue))
            await ws.ping()   # answered after the subscribe
            got: list[tuple[str, dict]] = []
            async for event in ws.events():
                got.append((event.type, event.data))
                if [t for t, _ in got].count("ping") == 2 and len(got) == 2:
                    await client.jobs.create({"queue_name": queue + "-other", "payload": {}})
                    await client.jobs.create({"queue_name": queue, "payload": {"n": 1}})
                if event.type == "job.created":
                    break
            await ws.disconnect()
            return got

    got = asyncio.run(asyncio.wait_for(run(), 30))
    assert [t for t, _ in got] == ["ping", "ping", "job.created"] and got[2][1]["queue_name"] == queue
