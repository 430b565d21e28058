"""What the two compat protocols share: their dialects' common part and times in the
ISO 8601 form both services send. Bodies, field checks, roles and the endpoint wrapper
are the web kit's (``redispool.web``), as for every face.

Nothing in the compat faces keeps job state: every route ends in an Engine call (the
same Lua scripts as the native API). Protocols whose requests name a job but not a lease
read its current lease with ``Engine.current_lease``; the write that follows is still
fenced by that token inside Lua.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..web import body
from ..web.body import MAX_DEPTH
from ..web.endpoint import Refusal

ENVELOPE_DEPTH = MAX_DEPTH + 3   # a body nested deeper is refused as read: a payload in it could not be handed back
FOREVER_S = 10 * 365 * 86400.0   # "every registered worker", whatever its last beat


def fields(value: Any, spec: body.Spec, where: str = "the body") -> dict[str, Any]:
    """``web.body.fields``, not strict: the services' clients send fields redispool does
    not use, and null for "not given"."""
    return body.fields(value, spec, where, strict=False)


def same_trouble(status: int, code: str) -> dict[str, tuple[int, str]]:
    """A dialect's ``trouble`` that answers every kind of Redis trouble alike (the hosted
    services have one code for it)."""
    return {kind: (status, code) for kind in ("unavailable", "busy", "redis_full")}


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
        raise Refusal(400, code, f"{name} must be an ISO 8601 time, got {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()
