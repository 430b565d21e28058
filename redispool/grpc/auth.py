"""Who is calling: the role of a call's metadata, and the status codes of a refusal.

A call carries ``x-api-key: TOKEN`` (what the hosted service's client sends) or
``authorization: Bearer TOKEN``; either is looked up in the tokens of ``redispool serve``
(the same dict the HTTP routes read, so SIGHUP's reload applies here too). Without
tokens every call is admin, as over HTTP. A missing or unknown token is
``UNAUTHENTICATED``; a role below what the method needs is ``PERMISSION_DENIED``.
"""
from __future__ import annotations

from typing import Any

import grpc

from .borrowed import allows, token_role


def role_of(metadata: Any, tokens: dict[str, str] | None) -> str | None:
    """The caller's role (None: no valid token)."""
    if tokens is None:
        return "admin"
    given = None
    for key, value in metadata or ():
        if key == "x-api-key":
            given = value.strip()
            break
        if key == "authorization" and given is None:
            scheme, _, rest = value.strip().partition(" ")
            given = rest.strip() if scheme.lower() == "bearer" else None
    if not given:
        return None
    return token_role(given, tokens)


async def require(context: grpc.aio.ServicerContext, tokens: dict[str, str] | None, needed: str) -> str:
    """The caller's role, or the call aborted with UNAUTHENTICATED / PERMISSION_DENIED."""
    role = role_of(context.invocation_metadata(), tokens)
    if role is None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                            "a valid 'x-api-key: TOKEN' or 'authorization: Bearer TOKEN' is required")
        raise AssertionError("abort raises")
    if not allows(role, needed):
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"the {role} role may not do this (needs {needed})")
    return role
