"""``redispool serve``, assembled: the faces mounted side by side over one Engine.

- ``/v1``: the native HTTP API (``redispool.http``; ``/v1/ws`` a WebSocket), with
  ``/healthz``, ``/metrics`` and ``/openapi.json``;
- ``/compat/spooled`` and ``/compat/cueapi``: the hosted services' protocols
  (``redispool.compat``);
- ``/``: the web dashboard (``redispool.dashboard``).

The faces never import each other; they share the web kit below them (``redispool.web``)
and are put together only here. Around every route: ``web.access.Access`` (one log line
and one count per response, whatever answered it) outside ``web.guard.Guard`` (what
keeps other web pages out when no tokens are set).
"""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route

from . import defaults
from .compat import create_cueapi_app, create_spooled_app
from .compat.cueapi import error as cueapi_error
from .compat.spooled import error as spooled_error
from .dashboard import create_dashboard
from .engine import Engine
from .http.app import Api, error, openapi, routes_of, unavailable, websocket_routes
from .web.access import Access
from .web.auth import role_of
from .web.guard import Guard


def create_app(engine: Engine, *, tokens: dict[str, str] | None = None,
               worker_timeout: float = defaults.WORKER_TIMEOUT_S, dashboard: bool = True,
               public_metrics: bool = False, secure_cookies: bool = False,
               allow_hosts: Sequence[str] = ()) -> Starlette:
    """The whole server: API, /healthz, /metrics, /openapi.json and the dashboard at /.
    With ``tokens``, /metrics needs one (any role) unless ``public_metrics``; without,
    guard.py keeps other web pages out (``allow_hosts``: extra names for the Host header).
    ``secure_cookies``: the dashboard's cookies are Secure (also set per request behind
    TLS, ``X-Forwarded-Proto: https``)."""
    api = Api(engine, tokens, worker_timeout)
    api_routes: list[BaseRoute] = [api.route(m, p, role, h, status) for m, p, role, h, status, _ in routes_of(api)]
    api_routes += websocket_routes(api)
    doc = openapi(api)

    async def healthz(request: Request) -> Response:
        return await _plain(api.health, request)

    def metrics_at(path: str, refuse: Callable[[int, str, str], Response], code: str) -> Route:
        async def metrics(request: Request) -> Response:
            if not public_metrics and role_of(request.headers.get("authorization"), tokens) is None:
                return refuse(401, code, "a valid 'Authorization: Bearer TOKEN' header is required "
                                         "(any role; or serve with --public-metrics)")
            return await _plain(api.metrics_text, request)
        return Route(path, metrics, methods=["GET"])

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(doc)

    async def no_route(request: Request) -> Response:
        allowed = sorted({m for r in api_routes if r.matches(request.scope)[0] is Match.PARTIAL
                          for m in (getattr(r, "methods", None) or ()) if m != "HEAD"})
        if allowed:
            return error(405, "method_not_allowed",
                         f"{request.method} is not allowed here (allowed: {', '.join(allowed)})",
                         headers={"Allow": ", ".join(allowed)})
        return error(404, "not_found", f"no route {request.method} {request.url.path}")

    routes: list[Any] = [
        *api_routes,
        Route("/healthz", healthz, methods=["GET"]), metrics_at("/metrics", error, "unauthorized"),
        metrics_at("/compat/spooled/metrics", spooled_error, "UNAUTHORIZED"),   # the spooled SDK's metrics.get()
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/v1/{rest:path}", no_route, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        Mount("/compat/spooled", create_spooled_app(engine, tokens, waits=api.waits)),   # hosted services' clients
        Mount("/compat/cueapi", create_cueapi_app(engine, tokens)),
    ]
    if dashboard:
        routes.append(Mount("/", create_dashboard(engine, tokens=tokens, worker_timeout=worker_timeout,
                                                  secure_cookies=secure_cookies, waits=api.waits)))

    async def not_found(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/v1/"):
            return error(404, "not_found", f"no route {request.method} {request.url.path}")
        return PlainTextResponse("not found", status_code=404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        allowed = getattr(exc, "headers", None) or {}
        if request.url.path.startswith("/v1/"):
            return error(405, "method_not_allowed", f"{request.method} is not allowed here", headers=allowed)
        return PlainTextResponse("method not allowed", status_code=405, headers=allowed)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await api.waits.close()

    guard = Middleware(Guard, no_tokens=tokens is None, allow_hosts=allow_hosts,   # refusals in each face's shape
                       renders={"/v1/": error, "/compat/spooled/": spooled_error, "/compat/cueapi/": cueapi_error})
    access = Middleware(Access, metrics=api.metrics)   # outside the guard: its refusals are logged too
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed}, lifespan=lifespan,
                    middleware=[access, guard])
    app.state.api = api
    return app


async def _plain(handler: Callable[..., Awaitable[Any]], request: Request) -> Response:
    """/healthz and /metrics: they must answer, never raise."""
    try:
        result = await handler(request, None)
    except Exception as exc:  # noqa: BLE001 - Redis trouble or not, the answer is 503
        return unavailable("unavailable", str(exc))
    return result if isinstance(result, Response) else JSONResponse(result)
