"""What a client of ``redispool serve`` is told when Redis is in trouble.

The answer says what kind of trouble and when to come back (``Retry-After``), never
where Redis is: error messages name the Redis URL (host, port, database), which is for
the operator, so the full message goes to the log (``redispool.http``, warning) and the
client gets a fixed text. A Redis at ``maxmemory`` is told apart from an unreachable one
(retrying soon will not help the first; freeing memory will).
"""
from __future__ import annotations

import logging

import redis

from ..errors import RedisFull

log = logging.getLogger("redispool.http")

# seconds a client should wait before retrying, by error code
RETRY_AFTER_S = {"unavailable": 5, "busy": 1, "redis_full": 30}
MESSAGES = {
    "unavailable": "Redis cannot be reached; retry later (the server log has the details)",
    "busy": "the server has no free Redis connection right now; retry shortly",
    "redis_full": "Redis is full (maxmemory reached): nothing was written; retry once memory is freed",
}
DEFAULT_MESSAGE = "the server cannot serve this right now; retry later (the server log has the details)"


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis refusing a write at maxmemory."""
    return isinstance(exc, (RedisFull, redis.exceptions.OutOfMemoryError))


def public(code: str, detail: str, where: str = "") -> tuple[str, dict[str, str]]:
    """(message for the client, headers) of a Redis-trouble answer with ``code``; logs
    ``detail`` (which may name the Redis address) for the operator."""
    log.warning("%s%s: %s", f"{where}: " if where else "", code, detail)
    headers = {"Retry-After": str(RETRY_AFTER_S.get(code, 5))}
    return MESSAGES.get(code, DEFAULT_MESSAGE), headers


def kind(exc: BaseException) -> str:
    """``redis_full``, ``busy`` (no pooled connection came free in time: Redis may be
    fine) or ``unavailable``: the trouble ``exc`` reports, by the native API's error code."""
    from ..aio import ServerBusy  # the async engine's; late, as only the servers need it
    if is_full(exc):
        return "redis_full"
    return "busy" if isinstance(exc, ServerBusy) else "unavailable"
