"""The ``grpc.aio`` server of ``redispool serve --grpc-port``, beside (or instead of) HTTP.

One event loop runs both: uvicorn's server (when HTTP is on) and the gRPC server, with
its own AsyncEngine (a connection pool and a wait hub), so no stream holds a thread.
It serves ``redispool.v1.Jobs``, the hosted service's ``spooled.v1`` services,
``grpc.health.v1.Health`` (SERVING while Redis answers a PING, checked every
``HEALTH_S``; no token needed) and server reflection.

SIGTERM (or SIGINT): HTTP stops as before; gRPC stops taking calls, Work streams stop
pushing and end once their worker has acked what it holds, and after ``grace`` seconds
whatever is still open is cancelled (a cancelled stream releases its jobs). Exit 0.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

import click
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from ..aio import AsyncEngine
from ..engine import Engine
from . import spooled
from .native import JobsService
from .stubs import jobs_pb2, jobs_pb2_grpc

log = logging.getLogger("redispool.grpc")
HEALTH_S = 1.0
MAX_MESSAGE = 4 << 20    # what the hosted service's client accepts by default
OPTIONS = [
    ("grpc.so_reuseport", 0),                       # a taken port is an error, not a shared one
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 20_000),             # pings keep idle streams open through proxies
    ("grpc.keepalive_timeout_ms", 10_000),          # ... and find dead peers
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


class GrpcServer:
    """The gRPC side of one serve process."""

    def __init__(self, engine: Engine, tokens: dict[str, str] | None, *, host: str, port: int,
                 cert: str | None = None, key: str | None = None, grace: float = 20.0) -> None:
        self.engine, self.tokens, self.host, self.port = engine, tokens, host, port
        self.cert, self.key, self.grace = cert, key, grace
        self.shutdown = asyncio.Event()
        self.aio: AsyncEngine | None = None
        self.server: grpc.aio.Server | None = None
        self.health = HealthServicer()
        self._health_task: asyncio.Task[None] | None = None

    def _aio(self) -> AsyncEngine:
        assert self.aio is not None
        return self.aio

    def services(self) -> list[str]:
        names = [jobs_pb2.DESCRIPTOR.services_by_name["Jobs"].full_name]
        return [*names, *spooled.SERVICES]

    async def start(self) -> int:
        """Bind and start; the bound port (click's exit 2 when it cannot be had)."""
        self.aio = AsyncEngine(self.engine)
        server = grpc.aio.server(options=OPTIONS)
        jobs_pb2_grpc.add_JobsServicer_to_server(  # type: ignore[no-untyped-call]  # generated, unannotated
            JobsService(self._aio, self.tokens, self.shutdown), server)
        spooled.add_to_server(server, self._aio, self.tokens, self.shutdown)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = [*self.services(), health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, server)
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        try:
            if self.cert and self.key:
                pair = (Path(self.key).read_bytes(), Path(self.cert).read_bytes())  # small files, once
                port = server.add_secure_port(address, grpc.ssl_server_credentials([pair]))
            else:
                port = server.add_insecure_port(address)
        except (RuntimeError, OSError) as exc:
            taken = click.ClickException(f"cannot listen for gRPC on {address}: {exc}")
            taken.exit_code = 2
            raise taken from None
        if not port:
            taken = click.ClickException(f"cannot listen for gRPC on {address}")
            taken.exit_code = 2
            raise taken
        self.port = port
        await server.start()
        self.server = server
        self._health_task = asyncio.ensure_future(self._watch_health())
        return int(port)

    async def _watch_health(self) -> None:
        serving = None
        while True:
            ok = await self._aio().ping()
            if ok is not serving:
                status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
                for name in ("", *self.services()):
                    await self.health.set(name, status)
                if serving is not None:
                    log.warning("gRPC health: %s", "SERVING (Redis answers again)" if ok else
                                "NOT_SERVING (Redis does not answer)")
                serving = ok
            await asyncio.sleep(HEALTH_S)

    async def stop(self) -> None:
        """End streams cleanly (see the module docstring), then close the engine."""
        self.shutdown.set()
        if self._health_task is not None:
            self._health_task.cancel()
        if self.server is not None:
            await self.health.enter_graceful_shutdown()
            await self.server.stop(self.grace)
        if self.aio is not None:
            with contextlib.suppress(Exception):
                await self.aio.close()


def run(engine: Engine, tokens: dict[str, str] | None, *, http: Any, sockets: list[Any], host: str,
        port: int, cert: str | None, key: str | None, grace: float) -> None:
    """Serve gRPC (and HTTP, when ``http`` is a uvicorn Server) until SIGTERM/SIGINT.

    The signal handlers already installed (serve's: they stop uvicorn and end long-polls)
    keep running; this adds the gRPC shutdown to them."""
    asyncio.run(_main(engine, tokens, http, sockets, host, port, cert, key, grace))


async def _main(engine: Engine, tokens: dict[str, str] | None, http: Any, sockets: list[Any], host: str,
                port: int, cert: str | None, key: str | None, grace: float) -> None:
    loop = asyncio.get_running_loop()
    grpc_server = GrpcServer(engine, tokens, host=host, port=port, cert=cert, key=key, grace=grace)
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        before = signal.getsignal(sig)

        def handler(signum: int, frame: Any, before: Any = before) -> None:
            if callable(before):
                before(signum, frame)
            loop.call_soon_threadsafe(stopping.set)
        signal.signal(sig, handler)
    bound = await grpc_server.start()
    log.info("serving gRPC on %s:%d (%s%s)", host, bound, "TLS" if cert else "plaintext",
             ", tokens" if tokens else ", no tokens: everyone is admin")
    http_task = asyncio.ensure_future(http.serve(sockets=sockets)) if http is not None else None
    stop_wait = asyncio.ensure_future(stopping.wait())
    waits = {stop_wait} | ({http_task} if http_task else set())
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    if http is not None:
        http.should_exit = True     # HTTP ended on its own (it failed): end gRPC too
    await grpc_server.stop()
    if http_task is not None:
        await http_task
    stop_wait.cancel()
