"""What keeps other web pages out of ``redispool serve``: an ASGI middleware in front of
every route.

A browser is a client too. Any page it shows may send "simple" cross-origin requests (a
form POST, a ``no-cors`` fetch with a text/plain body) to a server on loopback, and a
name an attacker points at 127.0.0.1 (DNS rebinding) reaches it as the page's own
origin. With tokens neither gets in: browsers never add an ``Authorization`` header by
themselves, and the dashboard's cookie is SameSite=Strict with a CSRF token on every
action. Without tokens (everyone is admin) this middleware is what stands between them:

- **JSON bodies.** A request body on ``/v1`` must be declared ``Content-Type:
  application/json`` (else 415), in every mode; on ``/compat`` too without tokens (with
  tokens the hosted services' clients are left as they are). A browser cannot send that
  type cross-origin without a CORS preflight, which this server never grants.
- **Host** (no tokens). The ``Host`` header must name this server the way its user
  reaches it: ``localhost`` or an IP address, or a name given with ``--allow-host``; when
  the connection came in on a loopback address, with the port it came in on. Else 421:
  a rebound name never matches. ``/healthz`` is exempt (it tells nothing).
- **Origin** (no tokens). A request that carries ``Origin`` (browsers send it on every
  cross-origin request and every POST) must come from this server's own origin, else 403.

A WebSocket handshake gets the same Host and Origin checks: browsers let any page open a
WebSocket to any address (no CORS), sending its ``Origin``, so without tokens this is
what keeps them from reading the events of ``/v1/ws``. It is refused with the same
status and body (or a close with 1008 where the server cannot send an HTTP answer).

Each refusal is answered in the error shape of the face it was meant for (``renders``:
path prefix -> that face's error response; the server passes them, as this kit imports
no face), else as ``{"error", "message"}`` on the APIs and plain text elsewhere.
"""
from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import Response

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]]
Render = Callable[[int, str, str], Response]   # (status, code, message) -> a face's error response

JSON_TYPES = ("application/json",)
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
LOOPBACK_NAMES = ("localhost",)
DEFAULT_PORT = {"http": 80, "https": 443}


class Guard:
    """The checks above, before the app sees the request. ``no_tokens``: the server runs
    without tokens; ``allow_hosts``: extra names (``name`` or ``name:port``) its Host
    header may carry then; ``renders``: each face's error response by path prefix."""

    def __init__(self, app: ASGIApp, *, no_tokens: bool, allow_hosts: Iterable[str] = (),
                 renders: Mapping[str, Render] | None = None) -> None:
        self.app = app
        self.no_tokens = no_tokens
        self.allow_hosts = {h.strip().lower() for h in allow_hosts if h.strip()}
        self.renders = sorted((renders or {}).items(), key=lambda item: -len(item[0]))   # longest prefix first

    async def __call__(self, scope: Scope, receive: Callable[..., Awaitable[Any]],
                       send: Callable[..., Awaitable[Any]]) -> None:
        if scope["type"] in ("http", "websocket"):
            refused = self.refusal(scope)
            if refused is not None:
                status, code, message = refused
                path = scope.get("path", "")
                render = next((r for prefix, r in self.renders if path.startswith(prefix)), None)
                await _answer(scope, send, status, code, message, render)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        """(status, code, message) when the request must be refused, else None."""
        path, method = scope.get("path", ""), scope.get("method", "GET")
        headers = _headers(scope)
        if self.no_tokens and path != "/healthz":
            host = headers.get("host")
            if host is not None and not self.host_ok(host, scope.get("server"), _scheme(scope)):
                return 421, "wrong_host", (f"this server answers to localhost or its address, not {host!r} "
                                           "(without tokens; see --allow-host)")
            origin = headers.get("origin")
            if origin is not None and not _same_origin(origin, scope, host):
                return 403, "cross_origin", f"requests from the web page at {origin!r} are refused (no tokens)"
        json_api = path.startswith("/v1/") or (self.no_tokens and path.startswith("/compat/"))
        if json_api and method in UNSAFE and _has_body(headers):
            media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media not in JSON_TYPES:
                return 415, "unsupported_media_type", ("send the body as JSON with 'Content-Type: "
                                                       f"application/json' (got {media or 'none'!r})")
        return None

    def host_ok(self, host: str, server: tuple[str, int] | None, scheme: str = "http") -> bool:
        """Whether a Host header names this server (see the module's docstring)."""
        host = host.strip().lower()
        if host in self.allow_hosts:
            return True
        name, port = _split_host(host, DEFAULT_PORT.get(scheme, 80))
        if name is None:
            return False
        if name in self.allow_hosts:
            return True
        if name not in LOOPBACK_NAMES and not _is_ip(name):
            return False
        if server and _loopback(server[0]):  # reached on loopback: the port it was reached on
            return port == int(server[1])
        return True


def _scheme(scope: Scope) -> str:
    """The request's scheme as a page's origin names it (a WebSocket's ``ws``: ``http``)."""
    scheme = str(scope.get("scheme", "http"))
    return {"ws": "http", "wss": "https"}.get(scheme, scheme)


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name (the first of each; latin-1, as HTTP)."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        out.setdefault(raw_name.decode("latin-1").lower(), raw_value.decode("latin-1"))
    return out


def _has_body(headers: dict[str, str]) -> bool:
    length = headers.get("content-length", "").strip()
    return "transfer-encoding" in headers or (length not in ("", "0"))


def _split_host(host: str, default_port: int = 80) -> tuple[str | None, int]:
    """(name, port) of a Host header; (None, 0) when malformed."""
    try:
        parts = urlsplit("//" + host)
        port = parts.port
    except ValueError:
        return None, 0
    name = parts.hostname
    if not name or parts.username is not None or parts.path or parts.query:
        return None, 0
    return name, default_port if port is None else port


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _loopback(address: str) -> bool:
    if address in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _same_origin(origin: str, scope: Scope, host: str | None) -> bool:
    """Whether ``Origin`` is this server's own origin: the request's scheme, and the name
    and port of its Host header (default ports spelt out or not)."""
    if host is None:
        return False
    scheme = _scheme(scope)
    try:
        given = urlsplit(origin.strip().lower())
        given_port = given.port or DEFAULT_PORT.get(given.scheme)
    except ValueError:
        return False
    name, port = _split_host(host.strip().lower(), DEFAULT_PORT.get(scheme, 80))
    return name is not None and (given.scheme, given.hostname, given_port) == (scheme, name, port)


async def _answer(scope: Scope, send: Callable[..., Awaitable[Any]], status: int, code: str, message: str,
                  render: Render | None = None) -> None:
    """The face's own error (``render``), else a JSON error on the APIs, plain text
    elsewhere (the dashboard); to a WebSocket handshake as its denial response, or a
    close with 1008 where the server has none."""
    path = scope.get("path", "")
    if render is not None:
        response = render(status, code, message)
        body, media = bytes(response.body), response.headers.get("content-type", "application/json").encode()
    elif path.startswith(("/v1/", "/compat/")):
        body, media = json.dumps({"error": code, "message": message}).encode(), b"application/json"
    else:
        body, media = f"{message}\n".encode(), b"text/plain; charset=utf-8"
    prefix = "http"
    if scope["type"] == "websocket":
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008, "reason": code})
            return
        prefix = "websocket.http"
    await send({"type": f"{prefix}.response.start", "status": status,
                "headers": [(b"content-type", media), (b"content-length", str(len(body)).encode())]})
    await send({"type": f"{prefix}.response.body", "body": body})
