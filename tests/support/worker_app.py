"""A real worker process for test_worker_crash.py: ``python tests/support/worker_app.py``.

Configured by the environment: REDISPOOL_URL, REDISPOOL_PREFIX, APP_QUEUE, APP_CONCURRENCY,
APP_LEASE, APP_GRACE, APP_BEAT. Each job's handler records itself in Redis lists under
``<prefix>:test:`` -- "started" (``id:pid:attempt``) when it begins and "finished"
(``id:pid``) just before it returns -- so the tests can see which process ran what.
A payload ``{"sleep": S}`` sleeps S seconds on the first attempt only.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository

import redis  # noqa: E402

import redispool  # noqa: E402

URL = os.environ["REDISPOOL_URL"]
PREFIX = os.environ["REDISPOOL_PREFIX"]
pool = redispool.connect(URL, prefix=PREFIX)
notes = redis.Redis.from_url(URL)
worker = redispool.Worker(
    pool, queues=[os.environ.get("APP_QUEUE", "crash")],
    concurrency=int(os.environ.get("APP_CONCURRENCY", "2")),
    lease=float(os.environ.get("APP_LEASE", "30")), grace=float(os.environ.get("APP_GRACE", "30")),
    beat_interval=float(os.environ.get("APP_BEAT", "0.2")), idle_wait=0.3)


@worker.process
def handle(job: redispool.Job) -> int:
    pid = os.getpid()
    notes.rpush(f"{PREFIX}:test:started", f"{job.id}:{pid}:{job.attempt}")
    if job.attempt == 1 and isinstance(job.payload, dict):
        time.sleep(job.payload.get("sleep", 0))
    notes.rpush(f"{PREFIX}:test:finished", f"{job.id}:{pid}")
    return pid


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    worker.run()
