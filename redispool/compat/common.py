"""What the two compat protocols share: body reading and field checks, bearer roles,
lease lookups by job id, and times in the ISO 8601 form both services send.

Nothing here keeps job state: every route ends in an Engine call (the same Lua scripts
as the native API). The only reads outside the Engine are of a job's current lease
(token, holder, state) from its hash, for protocols whose requests name a job but not a
lease; the write that follows is still fenced by that token inside Lua.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar

import redis
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ..errors import ConnectionFailed
from ..http import outage
from ..http.access import note
from ..http.auth import allows, role_of
from ..http.wire import MAX_DEPTH, depth

F = TypeVar("F", bound=Callable[..., Any])

MAX_BODY = 1 << 20   # 1 MiB, as the native API


class ProtocolError(Exception):
    """An answer other than success: its HTTP status, the protocol's code and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Missing(ProtocolError):
    """A required field is absent or of the wrong JSON type (the services' 422)."""


@dataclass
class Lease:
    """Enough of a leased job for Engine.complete/fail/heartbeat/release."""

    id: str
    queue: str
    token: str
    lease: float | None = None


REQUIRED = object()


class _NotJson(ValueError):
    """NaN or Infinity in a body: Python's json takes them, JSON has no such numbers."""


def _not_json(constant: str) -> Any:
    raise _NotJson(f"{constant} is not JSON")


async def read_json(request: Request, *, too_large: ProtocolError, invalid: ProtocolError) -> Any:
    """The request's JSON body (None when empty), at most MAX_BODY bytes."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY:
        raise too_large
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:  # gone, or cut off at the read timeout: nobody reads the answer
        raise ProtocolError(invalid.status, invalid.code, "the client went away before its body arrived") from None
    raw = b"".join(chunks)
    if not raw.strip():
        return None
    try:
        body = json.loads(raw, parse_constant=_not_json)
    except _NotJson as exc:
        raise ProtocolError(invalid.status, invalid.code, f"{invalid.message}: {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(invalid.status, invalid.code, f"{invalid.message}: {exc}") from None
    except RecursionError:
        raise ProtocolError(invalid.status, invalid.code, f"{invalid.message}: nested too deep") from None
    if depth(body) > MAX_DEPTH + 3:   # the envelope around a payload takes a few levels
        raise ProtocolError(invalid.status, invalid.code, f"{invalid.message}: nested deeper than "
                                                          f"{MAX_DEPTH} levels (a payload cannot be handed back)")
    return body


def _is(value: Any, kind: Any) -> bool:
    if kind is Any:
        return True
    if kind is None:
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, kind)


def fields(body: Any, spec: dict[str, tuple[Any, ...]], where: str = "the body",
           code: str = "VALIDATION_ERROR") -> dict[str, Any]:
    """Pick and type-check ``spec``'s fields (name -> (allowed kinds..., default)); a
    required field has default REQUIRED. Missing or mistyped fields raise Missing (422);
    fields not in ``spec`` are left out (the services' own clients send only known ones)."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise Missing(422, code, f"{where} must be a JSON object")
    out: dict[str, Any] = {}
    for name, (*kinds, default) in spec.items():
        if name not in body or (body[name] is None and None not in kinds):
            if default is REQUIRED:
                raise Missing(422, code, f"{where} needs the field {name!r}")
            out[name] = default
            continue
        value = body[name]
        if not any(_is(value, k) for k in kinds):
            names = "/".join("null" if k is None else getattr(k, "__name__", str(k)) for k in kinds)
            raise Missing(422, code, f"{name} must be {names}, got {json.dumps(value)[:80]}")
        out[name] = value
    return out


def check_role(request: Request, tokens: dict[str, str] | None, needed: str) -> str | None:
    """None when the bearer token may do ``needed``; else 'unauthorized' or 'forbidden'."""
    role = role_of(request.headers.get("authorization"), tokens)
    note(request, role=role or "-")
    if role is None:
        return "unauthorized"
    if not allows(role, needed):
        return "forbidden"
    return None


def unavailable(error: Callable[[int, str, str], Response], code: str, exc: BaseException,
                request: Request) -> Response:
    """The protocol's 503 ``code`` for Redis trouble: what it is (unreachable or full) and
    when to retry, never where Redis is (outage.py; the log has the details)."""
    message, headers = outage.public(outage.kind(exc), f"{request.method} {request.url.path}: {exc}")
    response = error(503, code, message)
    response.headers.update(headers)
    return response


def iso(seconds: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC with milliseconds (``2024-05-01T12:00:00.123Z``)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: str, name: str, code: str) -> float:
    """ISO 8601 (a trailing Z allowed; naive = UTC) to unix seconds."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, AttributeError):
        raise ProtocolError(400, code, f"{name} must be an ISO 8601 time, got {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _text(value: bytes | str | None) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def on_engine(fn: F) -> F:
    """A helper taking the engine first: a lost Redis becomes ConnectionFailed (503)."""
    @functools.wraps(fn)
    def wrapper(engine: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(engine, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ConnectionFailed(engine.url, exc) from exc
    return wrapper  # type: ignore[return-value]


@on_engine
def current_lease(engine: Any, queue: str, job_id: str) -> tuple[str | None, str | None, str | None]:
    """(state, lease token, worker id) of a job as stored now; (None, None, None) when the
    job does not exist. The token only names the lease: a write with it is fenced in Lua."""
    state, token, worker = engine.client.hmget(engine.keys(queue).job(job_id), "s", "t", "w")
    return _text(state), _text(token), _text(worker)


@on_engine
def leases_of(engine: Any, queue: str, worker_id: str, limit: int = 1000) -> list[Lease]:
    """The live leases ``worker_id`` holds in ``queue`` (the first ``limit`` leased jobs
    by expiry are looked at), with their tokens."""
    held = [info for info in engine.jobs(queue, "leased", limit=limit) if info.worker_id == worker_id]
    if not held:
        return []
    pipe = engine.client.pipeline(transaction=False)
    for info in held:
        pipe.hget(engine.keys(queue).job(info.id), "t")
    tokens = pipe.execute()
    return [Lease(info.id, queue, _text(t)) for info, t in zip(held, tokens) if t is not None]
