"""redispool: a Redis-backed distributed job queue.

    pool = redispool.connect("redis://localhost:6379/0")
    job_id = pool.enqueue("emails", {"to": "a@example.com"})
"""
from __future__ import annotations

import logging
import os
from typing import Any

import redis

from . import defaults
from .connection import make_client
from .engine import AckResult, Engine
from .errors import (
    ConnectionFailed,
    CueNotFound,
    InvalidCron,
    InvalidOption,
    InvalidQueueName,
    JobNotFound,
    LeaseLost,
    NotDurable,
    PayloadError,
    QueueNotEmpty,
    RedisFull,
    RedispoolError,
    WebhookNotFound,
    WorkflowNotFound,
)
from .errors import mask_url as _mask_url
from .models import CueInfo, DeliveryInfo, Event, Job, JobInfo, State, WebhookInfo, WorkerInfo, Workflow
from .scheduler import Scheduler
from .sweeper import Sweeper
from .worker import Worker

__all__ = [
    "connect", "Engine", "Worker", "Scheduler", "Sweeper", "AckResult",
    "Job", "JobInfo", "CueInfo", "WorkerInfo", "State", "Event", "WebhookInfo", "DeliveryInfo", "Workflow",
    "RedispoolError", "LeaseLost", "JobNotFound", "CueNotFound", "WebhookNotFound", "WorkflowNotFound",
    "InvalidQueueName",
    "PayloadError",
    "InvalidCron", "InvalidOption", "ConnectionFailed", "NotDurable", "RedisFull", "QueueNotEmpty",
]
__version__ = "0.1.0"


def connect(url: str | None = None, *, prefix: str | None = None, **options: Any) -> Engine:
    """Connect to Redis and load the scripts; returns an Engine.

    ``url`` defaults to ``$REDISPOOL_URL``, else ``redis://localhost:6379/0``; ``prefix``
    to ``$REDISPOOL_PREFIX``, else ``rp`` (so an app started by ``redispool worker
    --url ... --prefix ...`` connects where the command says). ``options``
    are Engine keyword options (lease, backoff_base, backoff_cap, done_ttl, done_max,
    dead_ttl, dead_max, durable, durable_timeout, events_max: each queue's event log keeps
    about that many events, 0 writes none; default ``$REDISPOOL_EVENTS_MAX``, else 10,000);
    an unknown one is a TypeError.
    """
    url = url or os.environ.get(defaults.URL_ENV) or defaults.URL
    if prefix is None:  # an explicit "" is refused by the Engine, not replaced
        prefix = os.environ.get(defaults.PREFIX_ENV) or defaults.PREFIX
    if "events_max" not in options and os.environ.get(defaults.EVENTS_MAX_ENV):
        try:
            options["events_max"] = int(os.environ[defaults.EVENTS_MAX_ENV])
        except ValueError:
            raise InvalidOption(f"${defaults.EVENTS_MAX_ENV} must be an integer >= 0, "
                                f"got {os.environ[defaults.EVENTS_MAX_ENV]!r}") from None
    client = make_client(url)
    try:
        engine = Engine(client, url=url, prefix=prefix, **options)
        engine.load_scripts()
    except BaseException as exc:
        client.close()
        if isinstance(exc, redis.ResponseError) and "DB index is out of range" in str(exc):
            db = getattr(client, "connection_pool", None) and client.connection_pool.connection_kwargs.get("db")
            raise InvalidOption(f"the Redis at {_mask_url(url)} has no database {db} (DB index is out of "
                                "range; its 'databases' setting, 16 by default, is the limit)") from None
        if isinstance(exc, redis.RedisError):
            raise ConnectionFailed(url, exc) from exc
        raise
    if engine.durable:
        _warn_without_replicas(engine)
    return engine


def _warn_without_replicas(engine: Engine) -> None:
    """durable=True on a primary (or cluster primary) with no replica connected: every
    durable write would fail with NotDurable until one is; say so at once."""
    client = engine.client
    try:
        nodes = client.get_primaries() if hasattr(client, "get_primaries") else [None]
        for node in nodes:
            info = client.info("replication", target_nodes=node) if node else client.info("replication")
            if int(info.get("connected_slaves", 0)) == 0:
                where = f" ({node.host}:{node.port})" if node else ""
                logging.getLogger("redispool").warning(
                    "durable=True but the primary%s at %s has 0 connected replicas: durable writes "
                    "raise NotDurable until a replica connects", where, _mask_url(engine.url))
    except (redis.RedisError, OSError):  # e.g. INFO not allowed by an ACL: the writes will tell
        pass
