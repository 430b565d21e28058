"""A `redispool serve --grpc-port` process and a small Work-stream client for the gRPC tests."""
from __future__ import annotations

import queue as queues
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

grpc = pytest.importorskip("grpc")
pytest.importorskip("grpc_health")
pytest.importorskip("starlette")

from redispool.grpc.stubs import jobs_pb2 as pb  # noqa: E402
from redispool.grpc.stubs import jobs_pb2_grpc as rpc  # noqa: E402

from support.served import TOKENS, Served, tokens_file  # noqa: E402
from support.servers import free_port  # noqa: E402

__all__ = ["TOKENS", "GrpcServed", "Worker", "pb", "rpc", "self_signed", "tokens_file", "wait_until"]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and its key (cert.pem, key.pem in
    ``directory``), for ``serve --grpc-cert/--grpc-key``; skips the test without openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


class GrpcServed(Served):
    """serve with HTTP and gRPC; ``grpc_port``, ``channel()`` and ``stub()``."""

    def __init__(self, url: str, prefix: str, *args: str, tokens: Path | None = None, **kwargs: Any) -> None:
        self.grpc_port = free_port()
        super().__init__(url, prefix, "--grpc-port", str(self.grpc_port), *args, tokens_file=tokens, **kwargs)

    def wait_ready(self, timeout: float = 20) -> GrpcServed:
        super().wait_ready(timeout)
        with self.channel() as channel:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def channel(self) -> Any:
        return grpc.insecure_channel(self.address)

    def stub(self, channel: Any) -> Any:
        return rpc.JobsStub(channel)


def auth(role: str | None = "worker", bearer: bool = False) -> list[tuple[str, str]]:
    if role is None:
        return []
    return [("authorization", f"Bearer {TOKENS[role]}")] if bearer else [("x-api-key", TOKENS[role])]


class Worker:
    """One Work stream on a thread: ``send`` requests, replies land in ``jobs``/``results``."""

    def __init__(self, stub: Any, queues_: list[str], worker_id: str, credit: int, lease: float = 0,
                 role: str = "worker") -> None:
        self.requests: queues.Queue[Any] = queues.Queue()
        self.jobs: list[Any] = []
        self.results: list[Any] = []
        self.error: Any = None
        self.ended = threading.Event()
        self.requests.put(pb.WorkRequest(open=pb.Open(queues=queues_, worker_id=worker_id, lease=lease,
                                                      credit=credit)))
        self.call = stub.Work(self._iter(), metadata=auth(role))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _iter(self) -> Any:
        while True:
            item = self.requests.get()
            if item is None:
                return
            yield item

    def _read(self) -> None:
        try:
            for reply in self.call:
                if reply.WhichOneof("kind") == "jobs":
                    self.jobs.extend(reply.jobs.jobs)
                else:
                    self.results.append(reply.results)
        except grpc.RpcError as exc:
            self.error = exc
        finally:
            self.ended.set()

    def credit(self, n: int) -> None:
        self.requests.put(pb.WorkRequest(credit=n))

    def ack(self, completed: list[Any] = (), failed: list[Any] = (), released: list[Any] = (),
            progress: list[tuple[Any, float, str]] = ()) -> None:
        self.requests.put(pb.WorkRequest(ack=pb.Ack(
            completed=[pb.Completed(job=ref(j), result='"ok"') for j in completed],
            failed=[pb.Failed(job=ref(j), error="boom") for j in failed],
            released=[ref(j) for j in released],
            progress=[pb.Progress(job=ref(j), value=value, message=message) for j, value, message in progress])))

    def close(self) -> None:
        self.requests.put(None)

    def cancel(self) -> None:
        self.call.cancel()


def ref(job: Any) -> Any:
    return pb.JobRef(queue=job.queue, id=job.id, token=job.token)


def wait_until(condition: Any, timeout: float = 10, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)
