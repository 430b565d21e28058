"""One log line and one count for every response of ``redispool serve``: an ASGI
middleware outside every route, the guard, the compat mounts and the dashboard, so
nothing escapes it -- 404s, 405s, 500s (an exception a route lets out is answered 500
here, logged with its traceback, and counted), ``/healthz`` and ``/metrics`` included.

The line: ``METHOD PATH STATUS MSms client=ADDR role=ROLE rid=REQUEST_ID``. Control
characters in the path are escaped (``\\x1b``), so a request cannot write terminal escapes
into a log someone tails. The request id is the client's ``X-Request-ID`` when it is sane
(1-128 of ``A-Za-z0-9._:-``), else a new one; it is echoed in the response's
``X-Request-ID``. Routes fill in what only they know with ``note(request, role=...)``.

A WebSocket is logged and counted once too, when it ends: ``GET``, with 101 once it was
accepted (the time is how long it stayed open), else the status its handshake was
refused with (403 for a close before the upgrade, which is what the server answers).
An accepted socket's time, like a Server-Sent Events stream's (``note(request,
stream=True)``), is no request latency: it is counted, not put in a histogram.

The metrics' route label is the route's template (``/v1/queues/{queue}/jobs/{id}``),
``unmatched`` for a path no route takes: its cardinality is bounded by the route table.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("redispool.http")
audit = logging.getLogger("redispool.audit")

Scope = dict[str, Any]
NOTES = "redispool.notes"   # scope key: what routes tell the log line (role, long_poll, stream)
SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")
CONVERTER = re.compile(r"\{(\w+):\w+\}")


def clean(text: str) -> str:
    """``text`` with control characters (and backslashes) escaped, safe for one log line."""
    return CONTROL.sub(lambda m: "\\\\" if m.group() == "\\" else f"\\x{ord(m.group()):02x}", text)


def note(request: Any, **facts: Any) -> None:
    """Tell the request's log line a fact (``role``, ``long_poll``, ``stream``)."""
    notes = request.scope.get(NOTES)
    if notes is not None:
        notes.update(facts)


def client_of(scope: Scope) -> str:
    client = scope.get("client")
    return clean(str(client[0])) if client else "-"


def route_label(scope: Scope) -> str:
    """The template of the route that took the request (mount prefix included)."""
    from starlette.routing import Mount
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str) or isinstance(route, Mount):  # no route inside the mount took it
        return "unmatched"
    return CONVERTER.sub(r"{\1}", scope.get("root_path", "") + path) or "/"


class Access:
    """Logs and counts every HTTP response (see the module's docstring)."""

    def __init__(self, app: Any, *, metrics: Any) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Callable[..., Awaitable[Any]],
                       send: Callable[..., Awaitable[Any]]) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        socket = scope["type"] == "websocket"
        started = time.perf_counter()
        given = _header(scope, b"x-request-id")
        rid = given if given is not None and SANE_ID.fullmatch(given) else uuid.uuid4().hex
        notes: dict[str, Any] = {}
        scope[NOTES] = notes
        status = 0

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start", "websocket.accept"):
                status = message.get("status", 101)
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", rid.encode())]}
            elif kind == "websocket.close" and status == 0:
                status = 403   # closed before the upgrade: refused with 403
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            log.exception("%s %s: unhandled error (rid=%s)", scope.get("method"), clean(scope.get("path", "")), rid)
            if status == 0 and not socket:   # a WebSocket's server answers 500 itself
                await _answer_500(scope, sending)
            status = status or 500
        finally:
            seconds = time.perf_counter() - started
            method, route = scope.get("method", "GET" if socket else "?"), route_label(scope)
            shown = status or 499  # nothing sent: the client went away first
            self.metrics.observe(method, route, shown, seconds, long_poll=bool(notes.get("long_poll")),
                                 stream=bool(notes.get("stream")) or (socket and status == 101))
            log.info("%s %s %d %.1fms client=%s role=%s rid=%s", clean(method), clean(scope.get("path", "")),
                     shown, seconds * 1000, client_of(scope), notes.get("role", "-"), rid)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


async def _answer_500(scope: Scope, send: Callable[..., Awaitable[Any]]) -> None:
    if scope.get("path", "").startswith(("/v1/", "/compat/")):
        body, media = b'{"error": "internal", "message": "the server failed on this request"}', b"application/json"
    else:
        body, media = b"internal server error\n", b"text/plain; charset=utf-8"
    await send({"type": "http.response.start", "status": 500,
                "headers": [(b"content-type", media), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
