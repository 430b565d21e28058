"""The spooled job service's login tokens: ``POST /api/v1/auth/login`` and friends.

``SpooledClient(...).realtime()`` first trades its API key for a short-lived token
(``POST /auth/login`` with ``{"api_key"}``) and opens the SSE and WebSocket routes with
it; a client built with ``access_token=`` sends one as the Bearer of every REST call too.
Such a token here is a JWT (HS256) that names the key it was issued for by a
fingerprint (``kid``: the first 24 hex of the key's SHA-256) and is signed with that key
itself, so:

- nothing is stored: any server process that knows the key checks the token (several
  ``redispool serve`` behind one balancer accept each other's tokens);
- a token stops working when it expires (``exp``; 1 h, refresh tokens 7 days) or when
  its key leaves the tokens file (SIGHUP), and it carries the key's role, no more;
- only a holder of the key can make one.

``TokenAuth`` (ASGI middleware of the spooled app) turns a valid access token in
``Authorization: Bearer`` (or ``?token=``, where the WebSocket client puts it, also taken
on the SSE routes) into its key, so every route checks roles exactly as for a key.
Without a tokens file every request is admin anyway: tokens are issued (signed with an
empty key) and need not be checked.

``/auth/refresh`` trades a refresh token for a new access token; ``/auth/validate`` and
``/auth/me`` describe one. ``/auth/logout`` is not served: a stateless token cannot be
revoked before it expires (remove the key to revoke all of its tokens).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..web.auth import same, token_role
from ..web.body import REQUIRED, read_json
from ..web.endpoint import Dialect, Refusal, check_role
from .common import fields, iso

ACCESS_S = 3600            # an access token's life
REFRESH_S = 7 * 86400      # a refresh token's life
ORGANIZATION = "redispool"
_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()


def fingerprint(key: str) -> str:
    """The ``kid`` naming ``key`` in its tokens (no secret: 96 bits of its SHA-256)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, signed: str) -> str:
    return _b64(hmac.new(key.encode("utf-8", "surrogatepass"), signed.encode(), hashlib.sha256).digest())


def mint(key: str, role: str, kind: str, life_s: int, now: float | None = None) -> str:
    """A token of ``kind`` ("access" or "refresh") for ``key``, valid ``life_s`` seconds."""
    issued = int(time.time() if now is None else now)
    claims = {"kid": fingerprint(key), "role": role, "typ": kind, "iat": issued, "exp": issued + life_s,
              "org_id": ORGANIZATION}
    body = f"{_HEADER}.{_b64(json.dumps(claims, separators=(',', ':')).encode())}"
    return f"{body}.{_mac(key, body)}"


def claims_of(token: str) -> dict[str, Any] | None:
    """A token's claims, unverified (None: not one of ours in shape)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(_unb64(parts[1]))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(claims, dict) or not isinstance(claims.get("kid"), str) \
            or not isinstance(claims.get("exp"), int) or isinstance(claims.get("exp"), bool):
        return None
    return claims


def verify(token: str, tokens: dict[str, str] | None, kind: str = "access",
           now: float | None = None) -> tuple[str, dict[str, Any]] | None:
    """(the key, the claims) of a valid, unexpired token of ``kind``; None otherwise.
    Without tokens (no auth) the key is ""."""
    claims = claims_of(token)
    if claims is None or claims.get("typ") != kind or claims["exp"] <= (time.time() if now is None else now):
        return None
    body, _, mac = token.rpartition(".")
    candidates = [""] if tokens is None else [k for k in list(tokens) if fingerprint(k) == claims["kid"]]
    for key in candidates:
        if same(mac, _mac(key, body)):
            return key, claims
    return None


class TokenAuth:
    """ASGI middleware: a valid access token (Bearer, or ``?token=`` when no Authorization
    header came) is replaced by its key for the routes below (see the module docstring)."""

    def __init__(self, app: ASGIApp, tokens: dict[str, str] | None) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = self._rewritten(scope)
        await self.app(scope, receive, send)

    def _rewritten(self, scope: Scope) -> Scope:
        headers = [(k, v) for k, v in scope.get("headers", []) if k != b"authorization"]
        given = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"authorization"), None)
        if given is None:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            if not query.get("token"):
                return scope
            given = "Bearer " + query["token"]
        extra: dict[str, Any] = {}
        if given[:7].lower() == "bearer ":
            found = verify(given[7:].strip(), self.tokens)
            if found is not None:
                extra["redispool.token"] = given[7:].strip()
                if self.tokens is not None:
                    given = "Bearer " + found[0]
        return {**scope, **extra, "headers": [*headers, (b"authorization", given.encode("latin-1", "replace"))]}


class AuthRoutes:
    """``/auth/login``, ``/auth/refresh``, ``/auth/validate``, ``/auth/me``."""

    def __init__(self, dialect: Dialect, tokens: dict[str, str] | None) -> None:
        self.dialect = dialect
        self.tokens = tokens

    def routes(self, v1: str) -> list[Route]:
        return [self._route(v1 + "/auth/login", self.login), self._route(v1 + "/auth/refresh", self.refresh),
                self._route(v1 + "/auth/validate", self.validate), self._route(v1 + "/auth/me", self.me, "GET")]

    def _route(self, path: str, handler: Any, method: str = "POST") -> Route:
        dialect = self.dialect

        async def endpoint(request: Request) -> Response:
            try:
                body = await read_json(request, max_depth=dialect.max_depth) if method == "POST" else None
                return JSONResponse(await handler(request, body))
            except Exception as exc:  # noqa: BLE001 - answered in the service's shape
                return dialect.answer(exc, request)
        return Route(path, endpoint, methods=[method], name=f"{method} {path}")

    def _role(self, key: str) -> str | None:
        return "admin" if self.tokens is None else token_role(key, self.tokens)

    async def login(self, request: Request, body: Any) -> dict[str, Any]:
        """An API key (the body's ``api_key``) for an access and a refresh token."""
        key = fields(body, {"api_key": (str, REQUIRED)})["api_key"]
        role = self._role(key)
        if role is None:
            raise Refusal(401, "UNAUTHORIZED", "invalid API key")
        signing = "" if self.tokens is None else key
        return {"access_token": mint(signing, role, "access", ACCESS_S),
                "refresh_token": mint(signing, role, "refresh", REFRESH_S), "token_type": "Bearer",
                "expires_in": ACCESS_S, "refresh_expires_in": REFRESH_S}

    async def refresh(self, request: Request, body: Any) -> dict[str, Any]:
        token = fields(body, {"refresh_token": (str, REQUIRED)})["refresh_token"]
        found = verify(token, self.tokens, "refresh")
        role = self._role(found[0]) if found is not None else None
        if found is None or role is None:
            raise Refusal(401, "UNAUTHORIZED", "invalid or expired refresh token")
        return {"access_token": mint(found[0], role, "access", ACCESS_S), "token_type": "Bearer",
                "expires_in": ACCESS_S}

    async def validate(self, request: Request, body: Any) -> dict[str, Any]:
        check_role(request, self.tokens, "read")
        token = fields(body, {"token": (str, REQUIRED)})["token"]
        found = verify(token, self.tokens)
        if found is None:
            return {"valid": False, "error": "invalid or expired token"}
        claims = found[1]
        return {"valid": True, "claims": {"org_id": ORGANIZATION, "api_key_id": claims["kid"], "queues": [],
                                          "exp": claims["exp"]}}

    async def me(self, request: Request, body: Any) -> dict[str, Any]:
        """Who the Bearer is: a key (no expiry: a far one is given) or a token (the
        middleware already made it its key; the raw token's claims are read again)."""
        check_role(request, self.tokens, "read")
        header = request.headers.get("authorization", "")[7:].strip()
        now = time.time()
        issued, expires = now, now + 10 * 365 * 86400
        claims = claims_of(request.scope.get("redispool.token", "") or "")
        if claims is not None:
            issued, expires = claims.get("iat", now), claims["exp"]
        return {"organization_id": ORGANIZATION, "api_key_id": fingerprint(header), "queues": [],
                "issued_at": iso(issued), "expires_at": iso(expires)}
