"""One route wrapper for every JSON face, configured by the face's ``Dialect``.

A request goes: bearer role (401/403) -> body (read within the size limit, JSON) ->
handler -> answer. What a handler raises is answered by the dialect's table of exception
classes, looked up along the exception's class hierarchy (the nearest class listed
wins), so a protocol is a table, not an ``except`` ladder:

- ``Refusal``: the status and code the handler chose;
- Redis trouble (unreachable, full, no free connection): the dialect's status and code
  for that kind, with a fixed message and ``Retry-After`` (outage.py: the client is
  never told where Redis is; the log is);
- a listed class: its (status, code[, message]);
- anything else, a ``ValueError`` or ``KeyError`` from a bug included: a logged 500.
  Only ``RedispoolError`` subclasses may be listed with a 4xx, so a bug never looks like
  the client's fault.

Every response (these, 404s, the guard's refusals) is logged and counted once, by the
server's ``access.Access`` middleware; routes tell it the caller's role with ``note``.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import redis
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.websockets import WebSocket

from ..errors import REDIS_TROUBLE, ConnectionFailed, RedisFull, RedispoolError
from . import outage
from .access import clean, note
from .auth import allows, role_of
from .body import EMPTY, read_json

log = logging.getLogger("redispool.http")

Handler = Callable[[Request, Any], Awaitable[Any]]
Answer = tuple[Any, ...]   # (status, code) or (status, code, message); message may name {role}, {needed}
TROUBLE: tuple[type[BaseException], ...] = (ConnectionFailed, RedisFull, *REDIS_TROUBLE, redis.RedisError)
BODY_METHODS = ("POST", "PUT", "PATCH")
P = ParamSpec("P")
T = TypeVar("T")


class Refusal(RedispoolError):
    """An answer other than success that a handler chose: HTTP status, the protocol's
    code and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Unauthorized(RedispoolError):
    """No token, or an unknown one."""


class Forbidden(RedispoolError):
    """The token's role may not use this route."""

    def __init__(self, role: str, needed: str) -> None:
        super().__init__(f"the {role} role may not do this (needs {needed})")
        self.role, self.needed = role, needed


@dataclass(frozen=True)
class Dialect:
    """How one protocol answers.

    ``render(status, code, message)`` builds its error response; ``errors`` maps exception
    classes to ``(status, code)`` or ``(status, code, message)`` (a message may name
    ``{role}`` and ``{needed}`` of a Forbidden); ``trouble`` maps each kind of Redis trouble
    (``unavailable``, ``busy``, ``redis_full``) to ``(status, code)``; ``max_depth``: a
    body nested deeper is refused as it is read."""

    render: Callable[[int, str, str], Response]
    errors: Mapping[type[BaseException], Answer]
    trouble: Mapping[str, tuple[int, str]]
    max_depth: int | None = None
    internal: tuple[str, str] = field(default=("internal", "the server failed on this request"))

    def __post_init__(self) -> None:
        for cls, (status, *_) in self.errors.items():
            if status < 500 and not issubclass(cls, RedispoolError):
                raise TypeError(f"{cls.__name__}: only RedispoolError subclasses may be answered with a 4xx")

    def lookup(self, exc: BaseException) -> Answer | None:
        """The table's answer for ``exc``: that of the nearest class in its hierarchy."""
        for cls in type(exc).__mro__:
            if cls in self.errors:
                return self.errors[cls]
        return None

    def answer(self, exc: Exception, request: Request) -> Response:
        """The response to an exception a handler raised (see the module's docstring)."""
        if isinstance(exc, Refusal):
            return self.render(exc.status, exc.code, exc.message)
        if isinstance(exc, TROUBLE):
            kind = outage.kind(exc)
            status, code = self.trouble[kind]
            message, headers = outage.public(kind, str(exc), f"{request.method} {clean(request.url.path)}")
            response = self.render(status, code, message)
            response.headers.update(headers)
            return response
        found = self.lookup(exc)
        if found is None:
            log.error("%s %s: unexpected error", request.method, clean(request.url.path), exc_info=exc)
            return self.render(500, *self.internal)
        status, code, *template = found
        return self.render(status, code, template[0].format_map(vars(exc)) if template else str(exc))


def check_role(request: HTTPConnection, tokens: dict[str, str] | None, needed: str) -> str:
    """The role of the request's (or WebSocket handshake's) bearer token; Unauthorized or
    Forbidden when it may not do what needs ``needed``. The access log is told the role."""
    role = role_of(request.headers.get("authorization"), tokens)
    note(request, role=role or "-")
    if role is None:
        raise Unauthorized("a valid 'Authorization: Bearer TOKEN' header is required")
    if not allows(role, needed):
        raise Forbidden(role, needed)
    return role


async def refuse(websocket: WebSocket, response: Response) -> None:
    """Refuse a WebSocket handshake: ``response`` as the HTTP answer where the server can
    send one (the ASGI denial response), else a close with 1008 (policy violation)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(1008, "unauthorized")


def route(dialect: Dialect, tokens: dict[str, str] | None, method: str, path: str, needed: str,
          handler: Handler, status: int = 200) -> Route:
    """The Starlette route of ``handler(request, body)``: callers with the ``needed`` role
    only; the body is JSON (``EMPTY`` when none was sent); a returned Response is sent as
    it is, None as 204, anything else as JSON with ``status``."""
    async def endpoint(request: Request) -> Response:
        try:
            check_role(request, tokens, needed)
            body = EMPTY
            if request.method in BODY_METHODS:
                body = await read_json(request, max_depth=dialect.max_depth)
            result = await handler(request, body)
        except Exception as exc:  # noqa: BLE001 - every exception is answered by the dialect
            return dialect.answer(exc, request)
        if isinstance(result, Response):
            return result
        if result is None:
            return Response(status_code=204)
        return JSONResponse(result, status_code=status)
    return Route(path, endpoint, methods=[method], name=f"{method} {path}")


async def call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a short sync Engine call on Starlette's thread pool."""
    return await run_in_threadpool(fn, *args, **kwargs)
