"""Shared by the compat tests: a real HTTP server with both compat protocols on a real
redis-server, and a sweeper, each isolated by a key prefix of its own."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import Iterator

import redispool

TOKENS = {"sp_live_admin_0123456789": "admin", "sp_live_worker_0123456789": "worker",
          "sp_live_read_0123456789": "read", "cue_sk_admin_0123456789": "admin",
          "cue_sk_worker_0123456789": "worker", "cue_sk_read_0123456789": "read"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


@contextlib.contextmanager
def compat_server(redis_url: str) -> Iterator[tuple[str, redispool.Engine, str]]:
    """(base URL, engine, prefix) of a server answering /compat/spooled and /compat/cueapi."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from redispool.compat import create_cueapi_app, create_spooled_app

    prefix = f"compat{uuid.uuid4().hex[:8]}"
    engine = redispool.connect(redis_url, prefix=prefix)
    app = Starlette(routes=[Mount("/compat/spooled", create_spooled_app(engine, TOKENS)),
                            Mount("/compat/cueapi", create_cueapi_app(engine, TOKENS))])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "the server to start")
    try:
        yield f"http://127.0.0.1:{port}", engine, prefix
    finally:
        server.should_exit = True
        thread.join(10)
        engine.close()


@contextlib.contextmanager
def sweeper(redis_url: str, prefix: str, interval: float = 0.2) -> Iterator[subprocess.Popen]:
    """A ``redispool sweeper`` process on that prefix."""
    proc = subprocess.Popen([sys.executable, "-m", "redispool", "--url", redis_url, "--prefix", prefix,
                             "sweeper", "--interval", str(interval)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
