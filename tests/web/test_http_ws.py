"""``GET /v1/ws``: the event logs over a WebSocket. The protocol's logic through
Starlette's test client on every backend (subscribe to queues or one job, resume with
``after``, replace and end a subscription, error frames, the handshake's refusals, Redis
trouble), then over a real ``redispool serve`` process with the ``websockets`` client
(the events live, resume across a reconnect, SIGTERM closing the socket cleanly)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid

import pytest

pytest.importorskip("starlette")
websockets = pytest.importorskip("websockets")
import anyio  # noqa: E402
from starlette.testclient import TestClient, WebSocketDenialResponse  # noqa: E402
from websockets.exceptions import ConnectionClosedOK, InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

import redispool  # noqa: E402
from redispool.http import create_app  # noqa: E402

from support import ROOT  # noqa: E402
from support.served import TOKENS, Served  # noqa: E402
from support.servers import RedisServer  # noqa: E402
from support.waiting import wait_for  # noqa: E402

READ = {"Authorization": f"Bearer {TOKENS['read']}"}
BY_TOKEN = {token: role for role, token in TOKENS.items()}


def receive(ws, timeout: float = 10) -> dict:
    """The next frame of a test-client socket, as JSON, waiting at most ``timeout`` s (the
    test client's own receive waits forever)."""
    async def get():
        with anyio.fail_after(timeout):
            return await ws._send_rx.receive()
    message = ws.portal.call(get)
    ws._raise_on_close(message)
    return json.loads(message["text"])


def ask(ws, message: dict, timeout: float = 10) -> dict:
    ws.send_text(json.dumps(message))
    return receive(ws, timeout)


def events(ws, n: int, timeout: float = 10) -> list[dict]:
    frames = [receive(ws, timeout) for _ in range(n)]
    assert all("event" in f for f in frames), frames
    return frames


def nothing_more(ws) -> None:
    """No frame is on its way: a ping's pong is the next one."""
    assert ask(ws, {"ping": "end"}) == {"pong": "end"}


@pytest.fixture
def client(engine):
    with TestClient(create_app(engine, tokens=dict(BY_TOKEN), dashboard=False)) as c:
        yield c


def test_a_queue_live_in_order(client, engine):
    engine.enqueue("q", "before", delay=60)   # before the subscription: not sent
    with client.websocket_connect("/v1/ws", headers=READ) as ws:
        subscribed = ask(ws, {"subscribe": {"queues": ["q"]}})["subscribed"]
        assert subscribed["queues"] == ["q"] and subscribed["cursor"]
        job_id = engine.enqueue("q", {"n": 1})
        engine.enqueue("other", 1)   # another queue: not sent
        [job] = engine.claim("q", "w", limit=1)
        engine.complete(job)
        frames = events(ws, 3)
        nothing_more(ws)
    assert [f["event"]["type"] for f in frames] == ["enqueued", "claimed", "completed"]
    assert all(f["event"]["job_id"] == job_id and f["event"]["queue"] == "q" for f in frames)
    assert [f["cursor"] for f in frames] == [f["event"]["id"] for f in frames], "one queue: the bare event id"
    assert frames[1]["event"]["data"] == {"attempt": 1, "worker_id": "w"}
    assert frames[0]["event"] == engine.events("q", after=subscribed["cursor"])[0].to_dict()


def test_one_job_only(client, engine):
    with client.websocket_connect("/v1/ws", headers=READ) as ws:
        assert ask(ws, {"subscribe": {"job": ["q", "mine"]}})["subscribed"]["job"] == ["q", "mine"]
        engine.enqueue("q", 1, job_id="theirs")
        engine.enqueue("q", 2, job_id="mine")
        jobs = engine.claim("q", "w", limit=2)
        for job in jobs:
            engine.complete(job)
        frames = events(ws, 3)
        nothing_more(ws)
    assert [(f["event"]["job_id"], f["event"]["type"]) for f in frames] == [
        ("mine", "enqueued"), ("mine", "claimed"), ("mine", "completed")]


def test_resume_after_loses_nothing_and_repeats_nothing(client, engine):
    with client.websocket_connect("/v1/ws", headers=READ) as ws:
        ask(ws, {"subscribe": {"queues": ["a", "b"]}})
        for _ in range(2):   # often the same ms in both logs: the order breaks ties by queue
            engine.enqueue_many("a", range(20))
            engine.enqueue_many("b", range(20))
        first = events(ws, 33)
    last = first[-1]["cursor"]
    assert "@" in last, "several queues: the token names the queue"
    with client.websocket_connect("/v1/ws", headers=READ) as ws:
        assert ask(ws, {"subscribe": {"queues": ["b", "a"], "after": last}})["subscribed"]["cursor"] == last
        rest = events(ws, 80 - 33)
        nothing_more(ws)
    seen = [(f["event"]["queue"], f["event"]["id"]) for f in first + rest]
    logged = [(q, e.id) for q in ("a", "b") for e in engine.events(q, limit=1000)]
    assert len(seen) == len(set(seen)) == 80 and set(seen) == set(logged)
    order = [(tuple(map(int, i.split("-"))), q) for q, i in seen]
    assert order == sorted(order), "one total order: event id, then queue"


def test_a_later_subscribe_replaces_and_unsubscribe_ends(client, engine):
    with client.websocket_connect("/v1/ws", headers=READ) as ws:
        ask(ws, {"subscribe": {"queues": ["a"]}})
        assert ask(ws, {"subscribe": {}})["subscribed"]["queues"] == [], "no queues: every queue"
        engine.enqueue("b", 1)
        assert events(ws, 1)[0]["event"]["queue"] == "b"
        assert ask(ws, {"subscribe": {"queues": ["b"]}})["subscribed"]["queues"] == ["b"]
        engine.enqueue("a", 1)   # no longer followed
        engine.enqueue("b", 2)
        assert events(ws, 1)[0]["event"]["queue"] == "b"
        assert ask(ws, {"unsubscribe": {}}) == {"unsubscribed": {}}
        engine.enqueue("b", 3)
        nothing_more(ws)


@pytest.mark.parametrize("message, says", [
    ("not json", "not valid JSON"),
    ("[1]", "one key"),
    ('{"subscribe": {}, "ping": 1}', "one key"),
    ('{"listen": {}}', "one key"),
    ('{"subscribe": []}', "must be a JSON object"),
    ('{"subscribe": {"queue": ["q"]}}', "unknown field"),
    ('{"subscribe": {"queues": ["no spaces"]}}', "queue name"),
    ('{"subscribe": {"queues": [7]}}', "queue name"),
    ('{"subscribe": {"queues": ["q"], "job": ["q", "1"]}}', "not both"),
    ('{"subscribe": {"job": ["q"]}}', "[queue, id]"),
    ('{"subscribe": {"job": ["q", "has space"]}}', "job id"),
    ('{"subscribe": {"after": "yesterday"}}', "after"),
    ('{"subscribe": {"queues": ["q"], "after": NaN}}', "NaN"),
    ('{"unsubscribe": true}', "must be a JSON object"),
])
def test_a_bad_message_gets_an_error_frame_and_changes_nothing(message, says):
    engine = redispool.connect(f"memory://ws-{uuid.uuid4().hex}", prefix="w")
    with TestClient(create_app(engine, tokens=dict(BY_TOKEN), dashboard=False)) as client, \
            client.websocket_connect("/v1/ws", headers=READ) as ws:
        ask(ws, {"subscribe": {"queues": ["q"]}})
        ws.send_text(message)
        error = receive(ws)
        assert error["error"] == "bad_input" and says in error["message"], error
        engine.enqueue("q", 1)   # the subscription in force stays
        assert events(ws, 1)[0]["event"]["type"] == "enqueued"
        ws.send_bytes(b'{"ping": 1}')   # JSON in a binary frame is read the same
        assert receive(ws) == {"pong": 1}


def test_the_handshake_needs_a_token():
    engine = redispool.connect(f"memory://ws-{uuid.uuid4().hex}", prefix="w")
    with TestClient(create_app(engine, tokens=dict(BY_TOKEN), dashboard=False)) as client:
        for headers in ({}, {"Authorization": "Bearer not-a-known-token"}, {"Authorization": TOKENS["admin"]}):
            with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect("/v1/ws", headers=headers):
                pass
            assert refused.value.status_code == 401 and refused.value.json()["error"] == "unauthorized"
        for role in ("read", "worker", "admin"):
            with client.websocket_connect("/v1/ws", headers={"Authorization": f"Bearer {TOKENS[role]}"}) as ws:
                assert ask(ws, {"ping": role}) == {"pong": role}
        plain = client.get("/v1/ws", headers=READ)   # no upgrade
        assert plain.status_code == 426 and plain.json()["error"] == "upgrade_required"
        assert plain.headers["upgrade"] == "websocket"
        assert client.post("/v1/ws", headers=READ).status_code == 405
        assert "/v1/ws" in client.get("/openapi.json").json()["paths"]
        metrics = client.get("/metrics", headers=READ).text   # each handshake counted once, as logged
        assert 'route="/v1/ws",status="401"} 3.0' in metrics and 'route="/v1/ws",status="101"} 3.0' in metrics


def test_without_tokens_other_web_pages_are_refused():
    """No tokens (everyone is admin): a page elsewhere may open a WebSocket to loopback
    (browsers apply no CORS to it): its Origin, or a rebound Host, is refused."""
    engine = redispool.connect(f"memory://ws-{uuid.uuid4().hex}", prefix="w")
    with TestClient(create_app(engine, dashboard=False), base_url="http://127.0.0.1") as client:
        url = "ws://127.0.0.1/v1/ws"
        with pytest.raises(WebSocketDenialResponse) as refused, \
                client.websocket_connect(url, headers={"Origin": "https://evil.example"}):
            pass
        assert refused.value.status_code == 403 and refused.value.json()["error"] == "cross_origin"
        with pytest.raises(WebSocketDenialResponse) as refused, \
                client.websocket_connect(url, headers={"Host": "evil.example"}):
            pass
        assert refused.value.status_code == 421
        with client.websocket_connect(url, headers={"Origin": "http://127.0.0.1"}) as ws:   # its own page
            assert ask(ws, {"ping": 1}) == {"pong": 1}


def test_redis_trouble_is_told_once_and_the_subscription_goes_on(tmp_path):
    server = RedisServer().start()
    engine = redispool.connect(server.url, prefix="w")
    try:
        with TestClient(create_app(engine, tokens=dict(BY_TOKEN), dashboard=False)) as client, \
                client.websocket_connect("/v1/ws", headers=READ) as ws:
            ask(ws, {"subscribe": {"queues": ["q"]}})
            server.kill()
            error = receive(ws)
            assert error["error"] == "unavailable" and "127.0.0.1" not in error["message"], error
            server.start()
            engine.enqueue("q", 1)
            assert events(ws, 1, timeout=20)[0]["event"]["type"] == "enqueued"
            nothing_more(ws)
    finally:
        engine.close()
        server.stop()


# ---------------------------------------------------------------------- a real server (`served`: conftest.py)
def open_socket(server: Served, role: str | None = "read"):
    headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
    return connect(f"ws://127.0.0.1:{server.port}/v1/ws", additional_headers=headers, open_timeout=10)


def said(ws, message: dict) -> dict:
    ws.send(json.dumps(message))
    return json.loads(ws.recv(timeout=10))


def test_over_a_real_server(served):
    server, engine = served
    with pytest.raises(InvalidStatus) as refused:
        open_socket(server, None)
    assert refused.value.response.status_code == 401
    with open_socket(server) as ws:
        assert said(ws, {"subscribe": {"what": 1}})["error"] == "bad_input"
        cursor = said(ws, {"subscribe": {"queues": ["q"]}})["subscribed"]["cursor"]
        job_id = engine.enqueue("q", 1)
        [job] = engine.claim("q", "w")
        engine.complete(job)
        frames = [json.loads(ws.recv(timeout=10)) for _ in range(3)]
        assert [(f["event"]["type"], f["event"]["job_id"]) for f in frames] == [
            ("enqueued", job_id), ("claimed", job_id), ("completed", job_id)]
        said(ws, {"subscribe": {"job": ["q", "two"]}})
        engine.enqueue("q", 2)
        engine.enqueue("q", 3, job_id="two")
        assert json.loads(ws.recv(timeout=10))["event"]["job_id"] == "two"
    engine.enqueue("q", 4)   # while nobody listens
    with open_socket(server) as ws:   # a reconnect from the first cursor: everything since, once
        assert said(ws, {"subscribe": {"queues": ["q"], "after": cursor}})["subscribed"]["cursor"] == cursor
        again = [json.loads(ws.recv(timeout=10))["event"] for _ in range(6)]
        assert said(ws, {"ping": 0}) == {"pong": 0}
    assert [e["id"] for e in again] == [e.id for e in engine.events("q", after=cursor)]
    assert [e["type"] for e in again] == ["enqueued", "claimed", "completed", "enqueued", "enqueued", "enqueued"]


def readme_client(server: Served, out) -> subprocess.Popen:
    """The README's WebSocket example, as written, against ``server``."""
    text = (ROOT / "README.md").read_text()
    start = text.index("```python\n", text.index("**WebSocket.**")) + len("```python\n")
    code = text[start:text.index("```", start)]
    assert "ws://127.0.0.1:8080" in code and "READ_TOKEN" in code
    code = code.replace("ws://127.0.0.1:8080", f"ws://127.0.0.1:{server.port}").replace("READ_TOKEN", TOKENS["read"])
    return subprocess.Popen([sys.executable, "-u", "-c", code], stdout=out, stderr=subprocess.STDOUT, text=True)


def test_sigterm_closes_the_socket_cleanly(served, tmp_path):
    """Our socket sees close 1001 after its last frame; the README's example client ends
    its loop and exits 0; the server exits 0."""
    server, engine = served
    printed = tmp_path / "readme.out"
    with open(printed, "w") as out:
        example = readme_client(server, out)
    try:
        wait_for(lambda: engine.enqueue("emails", 1) and "enqueued" in printed.read_text(), 20,
                 "the README's client to print an event")
        with open_socket(server) as ws:
            said(ws, {"subscribe": {"queues": ["q"]}})
            engine.enqueue("q", 1)
            assert json.loads(ws.recv(timeout=10))["event"]["type"] == "enqueued"
            server.proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosedOK) as closed:
                ws.recv(timeout=15)
            assert closed.value.rcvd.code == 1001 and closed.value.rcvd.reason == "server shutting down"
        assert server.proc.wait(15) == 0
        assert example.wait(15) == 0, printed.read_text()
    finally:
        if example.poll() is None:
            example.kill()
    assert printed.read_text().startswith("enqueued ")
