"""Running the app under uvicorn as a production server: the listening socket bound before
anything is announced, keep-alive and graceful-shutdown limits, and read deadlines.

uvicorn reads a request's head and body with no time limit: a client that trickles its
headers, or stalls mid-upload, holds a connection (and, at shutdown, the process) for as
long as it likes. ``GuardedH11Protocol`` gives each a deadline: a request's head must
arrive within ``read_timeout`` s of its first byte (of the connection opening, for the
first request), and then its body within ``read_timeout`` s more; past it the connection
is closed (the handler, if one runs, sees the client gone). An idle keep-alive
connection is left to the keep-alive timeout, and a request whose body was read (a
long-poll waiting for a job) is not limited here.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

from .ws import MAX_MESSAGE

log = logging.getLogger("redispool.http")

KEEP_ALIVE_S = 75.0        # above common load-balancer idle timeouts (ALB 60 s, nginx 60 s)
GRACEFUL_TIMEOUT_S = 20.0  # below Kubernetes' default 30 s before SIGKILL
READ_TIMEOUT_S = 30.0      # a request's head, then its body, must each arrive within this
WS_PING_S = 10.0           # a WebSocket is pinged this often (keeps proxies from closing an idle one) ...
WS_PONG_S = 20.0           # ... and closed (1011) when no pong comes back within this


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on reading each request's head and body."""

    read_timeout: float = READ_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: tuple[str, int] | None = None
        self._guard(("first", 0))

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._guard(self._reading())

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard(None)
        super().connection_lost(exc)

    def _reading(self) -> tuple[str, int] | None:
        """What is being read now: ("head"|"body", which request), or None."""
        # uvicorn declares ``cycle`` a RequestResponseCycle but leaves it None until the
        # first request's head is read
        current: RequestResponseCycle | None = self.cycle
        state, cycle = self.conn.their_state, id(current) if current is not None else 0
        if state is h11.SEND_BODY:
            return ("body", cycle)
        if state is h11.IDLE:
            if self.conn.trailing_data[0]:
                return ("head", cycle)     # part of the next request's head came
            if current is None:
                return ("first", 0)        # nothing read yet on a new connection
        return None

    def _guard(self, phase: tuple[str, int] | None) -> None:
        if phase == self._phase:
            return  # the same head or body: its deadline stands
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = phase
        if phase is not None:
            self._deadline = self.loop.call_later(self.read_timeout, self._too_slow, phase[0])

    def _too_slow(self, what: str) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
            log.info("closed the connection of %s: the request %s did not arrive within %gs",
                     client, "body" if what == "body" else "head", self.read_timeout)
            self.transport.close()


def protocol(read_timeout: float) -> type[GuardedH11Protocol]:
    """The protocol class with ``read_timeout``."""
    return type("GuardedH11", (GuardedH11Protocol,), {"read_timeout": read_timeout})


def listen(host: str, port: int) -> socket.socket:
    """A bound socket for ``host:port`` (OSError when it cannot be had: port taken, no
    such address), so the server says it serves only once it can. Made with the TCP
    protocol number, as asyncio's own are: asyncio sets TCP_NODELAY only on those (without
    it, small replies wait out delayed ACKs: 40 ms a request)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


class Server(uvicorn.Server):
    """uvicorn's Server leaving the signals to its caller: ``redispool serve`` installs
    its own handlers (SIGTERM/SIGINT end the long-polls first, SIGHUP reloads the tokens),
    which uvicorn's would replace."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def config(app: Any, *, host: str, port: int, keep_alive: float, graceful_timeout: float,
           read_timeout: float) -> uvicorn.Config:
    """The uvicorn Config of ``redispool serve``."""
    # uvicorn annotates both timeouts int, but uses them as seconds of any kind (call_later,
    # wait_for): --keep-alive 0.5 means half a second
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                          http=protocol(read_timeout), ws_max_size=MAX_MESSAGE, ws_ping_interval=WS_PING_S,
                          ws_ping_timeout=WS_PONG_S,
                          timeout_keep_alive=keep_alive,  # type: ignore[arg-type]  # a float: see above
                          timeout_graceful_shutdown=graceful_timeout)  # type: ignore[arg-type]  # likewise
