"""redispool: a Redis-backed distributed job queue.

    pool = redispool.connect("redis://localhost:6379/0")
    job_id = pool.enqueue("emails", {"to": "a@example.com"})
"""
from __future__ import annotations

import os
from typing import Any

import redis

from . import defaults
from .engine import AckResult, Engine
from .errors import (ConnectionFailed, CueNotFound, InvalidCron, InvalidOption, InvalidQueueName, JobNotFound, LeaseLost,
                     NotDurable, PayloadError, RedisFull, RedispoolError)
from .models import CueInfo, Job, JobInfo, State, WorkerInfo
from .connection import make_client
from .scheduler import Scheduler
from .sweeper import Sweeper
from .worker import Worker

__all__ = [
    "connect", "Engine", "Worker", "Scheduler", "Sweeper", "AckResult", "Job", "JobInfo", "CueInfo", "WorkerInfo", "State",
    "RedispoolError", "LeaseLost", "JobNotFound", "CueNotFound", "InvalidQueueName", "PayloadError",
    "InvalidCron", "InvalidOption", "ConnectionFailed", "NotDurable", "RedisFull",
]
__version__ = "0.1.0"


def connect(url: str | None = None, *, prefix: str | None = None, **options: Any) -> Engine:
    """Connect to Redis and load the scripts; returns an Engine.

    ``url`` defaults to ``$REDISPOOL_URL``, else ``redis://localhost:6379/0``; ``prefix``
    to ``$REDISPOOL_PREFIX``, else ``rp`` (so an app started by ``redispool worker
    --url ... --prefix ...`` connects where the command says). ``options``
    are Engine keyword options (lease, backoff_base, backoff_cap, done_ttl, done_max,
    dead_ttl, dead_max, durable, durable_timeout); an unknown one is a TypeError.
    """
    url = url or os.environ.get(defaults.URL_ENV) or defaults.URL
    prefix = prefix or os.environ.get(defaults.PREFIX_ENV) or defaults.PREFIX
    client = make_client(url)
    engine = Engine(client, url=url, prefix=prefix, **options)
    try:
        engine.load_scripts()
    except ConnectionFailed:
        client.close()
        raise
    except redis.RedisError as exc:
        client.close()
        raise ConnectionFailed(url, exc) from exc
    return engine
