"""A real `redispool serve` process for the HTTP tests: started on a free port, waited for,
stopped with SIGTERM (and killed if that fails, so no test leaves a server behind)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from support import ROOT
from support.servers import free_port

TOKENS = {"admin": "admin-token-0123", "worker": "worker-token-0123", "read": "read-token-0123"}


class Served:
    """``redispool --url URL --prefix P serve ...`` as a subprocess."""

    def __init__(self, url: str, prefix: str, *args: str, tokens_file: Path | None = None,
                 host: str = "127.0.0.1", env: dict[str, str] | None = None, log: Path | None = None,
                 port: int | None = None) -> None:
        """``log``: write the server's output to that file (a busy server would fill a pipe
        nobody reads before ``stop``)."""
        self.port = port or free_port()
        self.host = host
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "redispool", "--url", url, "--prefix", prefix, "serve",
               "--host", host, "--port", str(self.port), *args]
        if tokens_file is not None:
            cmd += ["--tokens-file", str(tokens_file)]
        self.temporary = log is None   # a log file all the same: a pipe nobody reads fills and stalls the server
        if log is None:
            fd, name = tempfile.mkstemp(prefix="redispool-serve-", suffix=".log")
            os.close(fd)
            log = Path(name)
        self.log = log
        sink = open(log, "w")  # noqa: SIM115 - closed below
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=sink or subprocess.PIPE,
                                     stderr=subprocess.STDOUT if sink else subprocess.PIPE,
                                     text=True, env={**os.environ, **(env or {})})
        if sink is not None:
            sink.close()  # the child holds its own copy
        self.output = ""

    def log_text(self) -> str:
        """What the server wrote so far (with ``log``)."""
        return self.log.read_text() if self.log is not None else ""

    def wait_ready(self, timeout: float = 20) -> Served:
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(self.base + "/healthz", timeout=1)
                return self
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redispool serve did not start: {self.output}") from None
                time.sleep(0.05)

    def client(self, role: str | None = "admin", **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=40, **kwargs)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, wait, and return the exit code (SIGKILL after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        self.output += (out or "") + (err or "") + self.log_text()
        if self.temporary and self.log is not None:
            self.log.unlink(missing_ok=True)
            self.log = None
        return self.proc.returncode


def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.touch(mode=0o600)  # redispool serve refuses a tokens file others may read
    path.write_text("# ROLE TOKEN\n" + "".join(f"{role} {token}\n" for role, token in TOKENS.items()))
    return path
