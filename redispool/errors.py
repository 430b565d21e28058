"""The redispool error tree.

Every error the library raises on purpose is a ``RedispoolError``. Errors caused by bad
input are also ``ValueError`` (or ``LookupError`` for a missing job), so callers that do
not know redispool still catch them sensibly. Lua scripts report failures as
``"CODE detail"`` error replies; ``LUA_ERRORS`` maps each code to its class.
"""
from __future__ import annotations

import re

import redis
import redis.sentinel


class RedispoolError(Exception):
    """Base class of every redispool error."""


class LeaseLost(RedispoolError):
    """The job's lease expired or another worker holds it now; nothing was changed."""


class JobNotFound(RedispoolError, LookupError):
    """No job with that id exists in that queue."""


class CueNotFound(RedispoolError, LookupError):
    """No cue with that name exists in that queue."""


class WorkflowNotFound(RedispoolError, LookupError):
    """No workflow with that id exists."""


class WebhookNotFound(RedispoolError, LookupError):
    """No webhook with that name exists."""


class QueueNotEmpty(RedispoolError):
    """``remove_queue`` of a queue that still has scheduled, ready or leased jobs or cues;
    nothing was changed."""


class InvalidQueueName(RedispoolError, ValueError):
    """A queue name is not 1-128 characters of ``A-Za-z0-9_.:-``."""


class InvalidOption(RedispoolError, ValueError):
    """An option is out of range or of the wrong type (a lease, priority, delay, state, ...)."""


class PayloadError(RedispoolError, ValueError):
    """A payload or result cannot be encoded (or a stored one cannot be decoded)."""


class InvalidCron(RedispoolError, ValueError):
    """A cron expression or timezone does not parse."""


class ConnectionFailed(RedispoolError, ConnectionError):
    """Redis cannot be reached; the message names the URL with its password masked."""

    def __init__(self, url: str, reason: object = "") -> None:
        self.url = mask_url(url)
        detail = f": {short(reason)}" if str(reason) else ""
        super().__init__(f"cannot reach Redis at {self.url}{detail}")


class ServerBusy(ConnectionFailed):
    """Every pooled connection of the async client stayed busy for ``wait_s``: this
    process is saturated (Redis itself may be fine). A ConnectionFailed, so callers retry
    it alike."""

    def __init__(self, url: str, wait_s: float = 5.0) -> None:
        super().__init__(url)
        self.args = ((f"busy: no connection to Redis at {self.url} came free within {wait_s:g}s "
                      "(this server is saturated; Redis itself may be fine)"),)

    def __str__(self) -> str:
        return str(self.args[0])


class RedisFull(RedispoolError):
    """Redis refused a write because it is at ``maxmemory`` (policy ``noeviction``).
    Redis refuses a script before it runs or at its first write (scripts.py), so nothing
    was written; retry once memory is freed (fewer retained jobs, a larger ``maxmemory``)."""

    def __init__(self, url: str, reason: object = "") -> None:
        self.url = mask_url(url)
        super().__init__(f"Redis at {self.url} is full (maxmemory reached); nothing was written: {reason}")


class NotDurable(ConnectionFailed):
    """``durable=True``: the write was applied on the primary, but no replica confirmed it
    in time, so a failover could still lose it. Retry idempotently (a ``job_id`` or
    ``unique_key`` makes a repeated enqueue return the same job). A ConnectionFailed, so
    code that retries on a lost Redis retries this too; its message says what happened."""

    reply: object = None   # the script's reply: its writes were applied
    result: object = None  # ack: the AckResult of that reply (its leased jobs given back)

    def __init__(self, url: str, reason: object = "") -> None:
        self.url = mask_url(url)
        Exception.__init__(self, f"write not durable at {self.url}: {short(reason)}")


LUA_ERRORS: dict[str, type[RedispoolError]] = {
    "LEASE_LOST": LeaseLost,
    "NOT_FOUND": JobNotFound,
}


def mask_url(url: str) -> str:
    """Hide the password of ``scheme://user:password@host`` as ``***``."""
    return re.sub(r"(//[^/@:]*:)[^@/]*@", r"\1***@", url)


MESSAGE_MAX_CHARS = 300


def short(reason: object) -> str:
    """An error's text on one line, at most ``MESSAGE_MAX_CHARS`` characters; redis-py's
    "No master found" (a repr of every sentinel client) becomes the sentinels' addresses
    and errors."""
    text = " ".join(str(reason).split())
    if isinstance(reason, redis.sentinel.MasterNotFoundError) or text.startswith("No master found for "):
        text = _no_master(text)
    return text if len(text) <= MESSAGE_MAX_CHARS else text[:MESSAGE_MAX_CHARS - 3] + "..."


def _no_master(text: str) -> str:
    head, _, errors = text.partition(" : ")
    service = head.removeprefix("No master found for ")
    if not errors:
        return f"no master {service} found: the sentinels know no healthy master by that name"
    # one "<repr of the sentinel's client, with host=H,port=P> - <error>" per sentinel down
    hosts = re.findall(r"\bhost=([^,]+),port=(\d+)", errors)
    kinds = re.findall(r" - (?:\w+:)?(\w+)(?:\(|, <|$)", errors)
    down = ", ".join(f"{h}:{p}" + (f" ({k})" if k else "") for (h, p), k in zip(hosts, kinds + [""] * len(hosts)))
    return f"no master {service} found; sentinels not answering: {down or 'all'}"


# Redis trouble that is not the caller's fault and passes: a lost or refused connection,
# a cluster moving slots or electing a primary, a server loading its data, a full server.
REDIS_TROUBLE: tuple[type[BaseException], ...] = (
    redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterError,
    redis.exceptions.RedisClusterException, redis.exceptions.TryAgainError,
    redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError, OSError)


def from_redis(url: str, exc: BaseException) -> RedispoolError:
    """The redispool error for one of ``REDIS_TROUBLE``: RedisFull for a full server,
    ConnectionFailed (naming the masked URL) for the rest."""
    if isinstance(exc, RedispoolError):
        return exc
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return RedisFull(url, str(exc).split(" script:")[0])
    return ConnectionFailed(url, exc)
