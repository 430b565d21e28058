"""One structured log line per worker event, as text or as a JSON object.

Text: ``done queue=emails job_id=17 attempt=1 duration_ms=0.42``. JSON: the whole
message is one JSON object (``ts``, ``level``, ``logger``, ``event``, ``worker_id``,
``queue``, ``job_id`` ...), so a handler formatting ``%(message)s`` writes JSON lines.
Either way the fields also ride on the LogRecord (``record.event``, ``record.queue``,
``record.job_id`` ...) for handlers that build their own structure.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

from .errors import InvalidOption, NotDurable, RedisFull
from .models import Job

FORMATS = ("text", "json")
# LogRecord's own attributes: an ``extra`` field with one of these names raises KeyError
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


# What a Redis error means, in words, most specific first: (error classes, event, reason).
# redis-py's own texts ("TTL exhausted.", "Error 111 connecting ...") stay in ``error=``.
_TROUBLE: list[tuple[tuple[type[BaseException], ...], str, str]] = [
    ((RedisFull, redis.exceptions.OutOfMemoryError), "redis full",
     "Redis is at maxmemory and refuses writes"),
    ((NotDurable,), "not durable", "no replica acknowledged the write in time; it was applied on the primary only"),
    ((redis.exceptions.TryAgainError, redis.exceptions.AskError, redis.exceptions.MovedError),
     "redis unavailable", "cluster is moving slots"),
    ((redis.exceptions.ClusterDownError,), "redis unavailable", "cluster is down (a primary is failing over)"),
    ((redis.exceptions.ClusterError,), "redis unavailable",
     "cluster is moving slots or electing a primary (redirects exhausted)"),
    ((redis.exceptions.ReadOnlyError,), "redis unavailable",
     "connected to a read-only replica (a failover is in progress)"),
    ((redis.exceptions.BusyLoadingError,), "redis unavailable", "Redis is loading its data"),
    ((redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError), "redis unavailable",
     "Redis refused the credentials"),
    ((redis.TimeoutError, TimeoutError), "redis unavailable", "Redis did not answer in time"),
    ((redis.exceptions.RedisClusterException,), "redis unavailable", "no cluster node answers"),
    ((redis.ConnectionError, OSError), "redis unavailable", "cannot connect to Redis (connection refused or lost)"),
]


def redis_trouble(exc: BaseException) -> tuple[str, str]:
    """(event, reason in words) for a Redis error: ``("redis full", "Redis is at
    maxmemory ...")``, ``("redis unavailable", "cluster is moving slots")`` ... The
    cause chain is searched too (the Engine wraps redis-py's errors)."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for classes, event, reason in _TROUBLE:  # the most specific match anywhere in the chain
        if any(isinstance(e, classes) for e in chain):
            return event, reason
    return "redis unavailable", type(exc).__name__


def _text_value(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in " \"=\n\t"):
        return json.dumps(text)
    return text


class EventLog:
    """Writes worker events to ``logger`` in ``fmt`` ("text" or "json")."""

    def __init__(self, logger: logging.Logger, fmt: str, worker_id: str) -> None:
        if fmt not in FORMATS:
            raise InvalidOption(f"log_format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        self.logger = logger
        self.json = fmt == "json"
        self.worker_id = worker_id

    def enabled(self, level: int) -> bool:
        return self.logger.isEnabledFor(level)

    def event(self, level: int, event: str, job: Job | None = None, *, trace: str | None = None,
              **fields: Any) -> None:
        """Log ``event`` (about ``job``, if given) with ``fields``; ``trace`` is a formatted
        traceback, appended to a text line or stored under "traceback" in JSON."""
        if not self.logger.isEnabledFor(level):
            return
        data: dict[str, Any] = {"event": event}
        if job is not None:
            data.update(queue=job.queue, job_id=job.id, attempt=job.attempt)
        data.update(fields)
        if self.json:
            obj = {"ts": round(time.time(), 6), "level": logging.getLevelName(level),
                   "logger": self.logger.name, "worker_id": self.worker_id, **data}
            if trace:
                obj["traceback"] = trace
            message = json.dumps(obj, default=str)
        else:
            message = " ".join([event] + [f"{k}={_text_value(v)}" for k, v in data.items() if k != "event"])
            if trace:
                message += "\n" + trace.rstrip()
        extra = {k: v for k, v in data.items() if k not in _RESERVED}
        extra["worker_id"] = self.worker_id
        self.logger.log(level, message, extra=extra)
