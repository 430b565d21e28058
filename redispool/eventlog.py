"""One structured log line per worker event, as text or as a JSON object; Redis trouble
in words, logged once per change of state (``TroubleLog``).

Text: ``done queue=emails job_id=17 attempt=1 duration_ms=0.42``. JSON: the whole
message is one JSON object (``ts``, ``level``, ``logger``, ``event``, ``worker_id``,
``queue``, ``job_id`` ...), so a handler formatting ``%(message)s`` writes JSON lines.
Either way the fields also ride on the LogRecord (``record.event``, ``record.queue``,
``record.job_id`` ...) for handlers that build their own structure.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
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


_QUOTED = re.compile(r'[ "=\n\t]')   # a text value with one of these is written as a JSON string


def _text_value(value: Any) -> str:
    if type(value) is int:
        return str(value)
    text = str(value)
    if not text or _QUOTED.search(text):
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
        self._queues: dict[str, str] = {}   # a queue's name as a text line writes it

    def enabled(self, level: int) -> bool:
        return self.logger.isEnabledFor(level)

    def event(self, level: int, event: str, job: Job | None = None, *, trace: str | None = None,
              **fields: Any) -> None:
        """Log ``event`` (about ``job``, if given) with ``fields``; ``trace`` is a formatted
        traceback, appended to a text line or stored under "traceback" in JSON."""
        logger = self.logger
        if not logger.isEnabledFor(level):
            return
        if self.json:
            data: dict[str, Any] = {"event": event}
            if job is not None:
                data["queue"], data["job_id"], data["attempt"] = job.queue, job.id, job.attempt
            data.update(fields)
            obj = {"ts": round(time.time(), 6), "level": logging.getLevelName(level),
                   "logger": logger.name, "worker_id": self.worker_id, **data}
            if trace:
                obj["traceback"] = trace
            message = json.dumps(obj, default=str)
        else:
            parts = [event]
            if job is not None:
                queue = self._queues.get(job.queue)
                if queue is None:
                    queue = self._queues[job.queue] = _text_value(job.queue)
                parts.append(f"queue={queue} job_id={_text_value(job.id)} attempt={job.attempt}")
            parts += [f"{k}={_text_value(v)}" for k, v in fields.items()]
            message = " ".join(parts)
            if trace:
                message += "\n" + trace.rstrip()
        record = _record(logger, level, message)
        # the fields also ride on the record (those with a LogRecord attribute's name only
        # in the message)
        attrs = record.__dict__
        attrs["event"] = event
        if job is not None:
            attrs["queue"], attrs["job_id"], attrs["attempt"] = job.queue, job.id, job.attempt
        for k, v in fields.items():
            if k not in _RESERVED:
                attrs[k] = v
        attrs["worker_id"] = self.worker_id
        logger.handle(record)


# A LogRecord's attributes that are the same for every event line of this process (its
# pathname, process, processName ...), from one record logging made; _record copies them.
_template: dict[str, Any] | None = None


def _forget_template() -> None:
    global _template
    _template = None


os.register_at_fork(after_in_child=_forget_template)   # a child's pid and processName differ


def _record(logger: logging.Logger, level: int, message: str) -> logging.LogRecord:
    """The LogRecord ``logger.makeRecord`` would make for ``message`` (at this file,
    function "event") in 60% of its time: a worker writes two lines per job, and
    LogRecord.__init__ (the file name split, the process looked up) was 29% of a line's
    cost (cProfile). A custom record factory is always called."""
    global _template
    factory: object = logging.getLogRecordFactory()
    if factory is not logging.LogRecord:
        return logger.makeRecord(logger.name, level, __file__, 0, message, (), None, "event")
    if _template is None:
        _template = dict(vars(logger.makeRecord(logger.name, level, __file__, 0, "", (), None, "event")))
    template = _template
    record = logging.LogRecord.__new__(logging.LogRecord)
    attrs = record.__dict__
    attrs.update(template)
    created = time.time()
    attrs.update(name=logger.name, msg=message, levelno=level, levelname=logging.getLevelName(level),
                 created=created, msecs=int((created - int(created)) * 1000) + 0.0,
                 relativeCreated=template["relativeCreated"] + (created - template["created"]) * 1000,
                 thread=threading.get_ident(), threadName=threading.current_thread().name)
    if "taskName" in template:   # (Python 3.12+) the asyncio task logging, as LogRecord finds it
        attrs["taskName"] = _task_name()
    return record


def _task_name() -> str | None:
    asyncio = sys.modules.get("asyncio")
    if asyncio is None or not getattr(logging, "logAsyncioTasks", True):
        return None
    try:
        return asyncio.current_task().get_name()   # type: ignore[no-any-return]
    except Exception:   # no running loop, or no task
        return None


def short_error(exc: BaseException, limit: int = 300) -> str:
    """An error's text for a log line, cut to ``limit`` characters."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TroubleLog:
    """A worker's Redis trouble, per channel (what failed: "jobs" for claims and acks,
    "leases", "registry"): the backoff before that channel tries again (exponential,
    capped), and one log line per change of state -- "redis unavailable" or "redis full"
    with the reason in words, then "redis reachable again" ("redis writable again")
    once every channel works. Retries of a state already logged go to DEBUG."""

    BACKOFF_FIRST_S = 0.2
    BACKOFF_MAX_S = 10.0

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self._failures: dict[str, int] = {}              # consecutive failures per channel
        self._states: dict[str, tuple[str, str]] = {}    # channel -> (event, reason) now
        self._not_durable = False

    def __contains__(self, channel: str) -> bool:
        return channel in self._states

    def failed(self, channel: str, exc: BaseException, *, expected: bool = True) -> float:
        """Log ``exc`` (once per state); returns the seconds to wait before retrying."""
        if not expected:
            self.log.event(logging.ERROR, "unexpected error", error=f"{type(exc).__name__}: {exc}")
        n = self._failures[channel] = self._failures.get(channel, 0) + 1
        delay: float = min(self.BACKOFF_MAX_S, self.BACKOFF_FIRST_S * 2.0 ** min(n - 1, 20))
        state = redis_trouble(exc)
        known = state in self._states.values()
        self._states[channel] = state
        self.log.event(logging.DEBUG if known else logging.WARNING, state[0], reason=state[1],
                       error=short_error(exc), retry_in_s=round(delay, 3), during=channel)
        return delay

    def ok(self, channel: str) -> None:
        """``channel`` works (again)."""
        self._failures.pop(channel, None)
        state = self._states.pop(channel, None)
        if state is not None and not self._states:
            self.log.event(logging.INFO, "redis writable again" if state[0] == "redis full"
                           else "redis reachable again")

    def durability(self, exc: NotDurable | None) -> None:
        """An ack was (``exc`` None) or was not durable: log the change, once each way."""
        if exc is not None and not self._not_durable:
            self.log.event(logging.WARNING, "not durable", reason=redis_trouble(exc)[1],
                           note="acks are applied on the primary and not retried; a failover may lose them")
        elif exc is None and self._not_durable:
            self.log.event(logging.INFO, "durable again")
        self._not_durable = exc is not None
