"""Shared by the compat tests: ``redispool serve`` (both compat protocols) on a real
redis-server, and a sweeper, each isolated by a key prefix of its own."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

import redispool

from support.processes import terminate
from support.servers import free_port
from support.waiting import wait_for

SPOOLED_KEYS = ("sp_live_admin_0123456789", "sp_live_worker_0123456789", "sp_live_read_0123456789")
CUEAPI_KEYS = ("cue_sk_admin_0123456789", "cue_sk_worker_0123456789", "cue_sk_read_0123456789")
TOKENS = {key: role for keys in (SPOOLED_KEYS, CUEAPI_KEYS) for key, role in zip(keys, ("admin", "worker", "read"))}


def request(server: tuple[str, redispool.Engine, str], method: str, path: str, key: str | None, **kw: Any
            ) -> httpx.Response:
    """``method path`` on a compat_server (``path`` from the server's root) with ``key`` as
    the Bearer (None: no Authorization), ``headers=`` added to it."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    headers.update(kw.pop("headers", {}))
    return httpx.request(method, server[0] + path, headers=headers, timeout=10, **kw)


@contextlib.contextmanager
def compat_server(redis_url: str) -> Iterator[tuple[str, redispool.Engine, str]]:
    """(base URL, engine, prefix) of a ``redispool serve`` process (it answers
    /compat/spooled and /compat/cueapi) on its own key prefix, with TOKENS."""
    prefix = f"compat{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = dict(os.environ, REDISPOOL_TOKENS="\n".join(f"{role} {token}" for token, role in TOKENS.items()))
    # its log (one line per request) goes to a file: a pipe nobody reads would fill and stall it
    sink = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "redispool", "--url", redis_url, "--prefix", prefix,
                             "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=sink)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            sink.seek(0)
            raise AssertionError(f"redispool serve exited: {sink.read().decode()}")
        try:
            return httpx.get(base + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
    engine = redispool.connect(redis_url, prefix=prefix)
    try:
        wait_for(up, 20, "redispool serve to answer", every=0.05)
        yield base, engine, prefix
    finally:
        terminate(proc, 15)
        sink.close()
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
        terminate(proc, 10)


@contextlib.contextmanager
def daemon(redis_url: str, prefix: str, *args: str) -> Iterator[subprocess.Popen]:
    """A ``redispool <args>`` daemon process (``scheduler``, ``deliver`` ...) on that
    prefix; its log goes to a file (a pipe nobody reads would fill and stall it)."""
    sink = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "redispool", "--url", redis_url, "--prefix", prefix, *args],
                            stdout=subprocess.DEVNULL, stderr=sink, env=dict(os.environ))
    try:
        yield proc
    finally:
        terminate(proc, 10)
        sink.close()
