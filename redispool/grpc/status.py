"""Engine errors as gRPC statuses, one table for every service.

Bad input (a queue name, an option out of range, a payload that is not JSON) is
``INVALID_ARGUMENT``; a Redis at maxmemory is ``RESOURCE_EXHAUSTED``; Redis unreachable,
or this server out of pooled connections, is ``UNAVAILABLE`` (clients retry those; the
details do not say where Redis is, the log does); a stale fencing token is
``FAILED_PRECONDITION``. Anything else is left to grpc
(``UNKNOWN``) and logged with its traceback.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import redis

from ..errors import REDIS_TROUBLE, ConnectionFailed, JobNotFound, LeaseLost, RedisFull
from .borrowed import BadInput

log = logging.getLogger("redispool.grpc")
S = TypeVar("S")   # a servicer


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """(code, details) for an error the services expect, None for anything else."""
    if isinstance(exc, LeaseLost):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    if isinstance(exc, JobNotFound):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, (RedisFull, redis.exceptions.OutOfMemoryError)):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, "Redis is full (maxmemory): nothing was written"
    if isinstance(exc, (ConnectionFailed, ConnectionError, TimeoutError, *REDIS_TROUBLE)):
        return grpc.StatusCode.UNAVAILABLE, "Redis is unavailable; try again"
    if isinstance(exc, (BadInput, ValueError, TypeError, LookupError)):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    return None


def expected_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """``status_of`` an error the caller knows to be expected (bad input, Redis trouble);
    INTERNAL should it be anything else."""
    return status_of(exc) or (grpc.StatusCode.INTERNAL, "the server failed on this request")


def trouble(exc: BaseException) -> str | None:
    """The short code of Redis trouble (``redis_full``, ``unavailable``) or None: what a
    per-item ack result says when the item could not be settled for that reason."""
    found = status_of(exc)
    if found is None:
        return None
    if found[0] is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return "redis_full"
    if found[0] is grpc.StatusCode.UNAVAILABLE:
        return "unavailable"
    return None


def mapped(method: Callable[[S, Any, grpc.aio.ServicerContext], Awaitable[Any]]
           ) -> Callable[[S, Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    """A unary servicer method whose expected errors end the call with their status."""
    @functools.wraps(method)
    async def wrapper(self: S, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped below, or re-raised
            found = status_of(exc)
            if found is None:
                log.exception("%s failed", method.__name__)
                raise
            if found[0] in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                log.warning("%s: %s", method.__name__, exc)
            await context.abort(*found)
    return wrapper
