"""`redispool serve` run as in production (issue 15, "Outages"), each through a real
server process: tokens reloaded on SIGHUP (§4), a keep-alive longer than a load
balancer's (§5), pooled connections retried after a Redis restart (§6), slow clients cut
off and a bounded graceful shutdown (§13), clear start-up errors (§19)."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

pytest.importorskip("starlette")

from support import ROOT
from support.served import TOKENS, Served, tokens_file
from support.servers import RedisServer, free_port
from support.waiting import wait_for

pytestmark = pytest.mark.slow


def status(base: str, token: str, path: str = "/v1/queues") -> int:
    return httpx.get(base + path, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code


# ---------------------------------------------------------------------- §4 SIGHUP
def test_sighup_reloads_the_tokens_file_and_a_bad_file_keeps_the_old_tokens(redis_url, tmp_path):
    path = tokens_file(tmp_path)
    server = Served(redis_url, f"hup{uuid.uuid4().hex[:6]}", tokens_file=path, log=tmp_path / "serve.log").wait_ready()
    polled: dict[str, object] = {}

    def long_poll() -> None:  # in flight across both reloads
        r = httpx.post(server.base + "/v1/queues/hup/claim", json={"worker_id": "w", "wait": 4},
                       headers={"Authorization": f"Bearer {TOKENS['worker']}"}, timeout=30)
        polled["reply"] = (r.status_code, r.json())

    watcher = redis.Redis.from_url(redis_url)
    try:
        poll = threading.Thread(target=long_poll)
        poll.start()
        wait_for(lambda: watcher.info("clients")["blocked_clients"] >= 1, 10, "the long-poll to wait")
        assert status(server.base, TOKENS["admin"]) == 200
        path.write_text(f"admin rotated-admin-token-42\nread rotated-read-token-42\nworker {TOKENS['worker']}\n")
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: status(server.base, "rotated-admin-token-42") == 200, 10, "the new token")
        assert status(server.base, TOKENS["admin"]) == 401, "the old token is gone"
        assert status(server.base, "rotated-read-token-42") == 200
        login = httpx.post(server.base + "/login", data={"token": "rotated-admin-token-42"}, timeout=10)
        assert login.status_code in (200, 303) and "rp_token" in login.cookies, "the dashboard knows it too"

        path.write_text("admin short\n")   # bad: keeps what is in use, says why
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "not reloaded" in server.log_text(), 10, "the log line")
        assert status(server.base, "rotated-admin-token-42") == 200
        assert server.proc.poll() is None, "SIGHUP must not kill the server"
        poll.join(30)
        assert polled["reply"] == (200, {"jobs": []})
    finally:
        watcher.close()
        code = server.stop()
    assert code == 0, server.output[-2000:]
    assert "SIGHUP: tokens reloaded from" in server.output and "(1 admin, 1 worker, 1 read)" in server.output
    assert "tokens in use stay" in server.output
    assert not any(t in server.output for t in (*TOKENS.values(), "rotated-admin-token-42")), "a token was logged"


# ---------------------------------------------------------------------- §5 keep-alive
def get_on(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"}"):
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    return data


def test_keep_alive_outlasts_a_load_balancers_idle_timeout_and_can_be_set(redis_url, tmp_path):
    default = Served(redis_url, "ka", log=tmp_path / "a.log").wait_ready()
    short = Served(redis_url, "ka", "--keep-alive", "1", log=tmp_path / "b.log").wait_ready()
    try:
        kept = socket.create_connection(("127.0.0.1", default.port), timeout=10)
        cut = socket.create_connection(("127.0.0.1", short.port), timeout=10)
        assert b" 200 " in get_on(kept) and b" 200 " in get_on(cut)
        time.sleep(6)   # idle past uvicorn's old fixed 5 s
        assert b" 200 " in get_on(kept), "the default keep-alive (75 s) keeps a 6 s idle connection"
        assert cut.recv(100) == b"", "--keep-alive 1 closed the idle connection"
        kept.close()
        cut.close()
    finally:
        assert default.stop() == 0 and short.stop() == 0


# ---------------------------------------------------------------------- §6 Redis restart
def test_after_a_redis_restart_pooled_connections_are_retried(tmp_path):
    redis_server = RedisServer().start()
    server = Served(redis_server.url, "restart", log=tmp_path / "serve.log").wait_ready()

    def burst(n: int) -> Counter:
        with ThreadPoolExecutor(n) as pool:
            return Counter(pool.map(lambda i: httpx.post(server.base + "/v1/queues/r/jobs", json={"payload": i},
                                                         timeout=30).status_code, range(n)))
    try:
        for _ in range(2):
            assert burst(40) == {201: 40}   # the pool now holds many connections
        redis_server.stop()
        redis_server.start()                # same port, fresh server: every pooled connection is stale
        assert httpx.get(server.base + "/healthz", timeout=10).status_code == 200, "Redis answers: healthy"
        assert burst(40) == {201: 40}, "each stale connection is retried once on a new one"
    finally:
        server.stop()
        redis_server.stop()


# ---------------------------------------------------------------------- §13 slow clients
def test_slow_clients_are_cut_off_at_the_read_timeout(redis_url, tmp_path):
    server = Served(redis_url, "slow", "--read-timeout", "2", log=tmp_path / "serve.log").wait_ready()
    socks: list[socket.socket] = []
    try:
        for i in range(60):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=20)
            if i % 3 == 0:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")    # a head that never ends
            elif i % 3 == 1:
                s.sendall(b"POST /v1/queues/s/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 100\r\n\r\n{\"pay")
            socks.append(s)                                            # (and some send nothing at all)
        started = time.monotonic()
        for s in socks:
            trickled = 0
            while True:   # trickling more bytes does not extend the deadline
                try:
                    if s.recv(4096) == b"":
                        break
                except TimeoutError:
                    raise AssertionError("a slow connection was left open") from None
                trickled += 1
        took = time.monotonic() - started
        assert took < 15, took
        assert httpx.get(server.base + "/healthz", timeout=10).status_code == 200
        assert "did not arrive within 2s" in server.log_text()
    finally:
        for s in socks:
            s.close()
        assert server.stop() == 0, server.output[-2000:]


def test_sigterm_with_a_stalled_upload_exits_within_the_graceful_timeout(redis_url, tmp_path):
    server = Served(redis_url, "stall", "--graceful-timeout", "2", "--read-timeout", "120",
                    log=tmp_path / "serve.log").wait_ready()
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        s.sendall(b"POST /v1/queues/s/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"payload\"")
        time.sleep(0.5)   # the request is in the app, reading its body
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(30)
        took = time.monotonic() - started
    finally:
        s.close()
        server.stop()
    assert took < 10, f"SIGTERM took {took:.1f}s with --graceful-timeout 2"


# ---------------------------------------------------------------------- §19 start-up
def run_serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "redispool", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=60)


def test_start_up_errors_are_one_line(redis_url):
    port = free_port()
    down = run_serve("--url", f"redis://127.0.0.1:{free_port()}/0", "serve", "--port", str(port))
    assert down.returncode == 1, down
    [line] = [x for x in (down.stdout + down.stderr).splitlines() if x.strip()]
    assert "cannot reach Redis" in line
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        busy = run_serve("--url", redis_url, "serve", "--port", str(port))
    assert busy.returncode == 2, busy
    [line] = [x for x in (busy.stdout + busy.stderr).splitlines() if x.strip()]
    assert f"cannot listen on 127.0.0.1:{port}" in line and "serving on" not in busy.stderr


def test_the_listening_socket_gets_tcp_nodelay_connections():
    """serve binds its socket itself (to fail before "serving on"); asyncio sets TCP_NODELAY
    only on sockets made with the TCP protocol number: without it every small reply waited
    out a delayed ACK (40 ms a request in bin/bench)."""
    from redispool.http.server import listen
    sock = listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
