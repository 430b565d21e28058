"""An example redispool app: the worker docker-compose.yml runs.

    redispool worker examples.app:worker            # from the repository root
    redispool enqueue emails '{"to": "ada@example.com"}'
    redispool cue add reports nightly "0 3 * * *" --tz Europe/Berlin --payload '{"kind": "daily"}'

The engine connects to $REDISPOOL_URL with $REDISPOOL_PREFIX (the CLI sets both from
its --url/--prefix before importing this module).
"""
from __future__ import annotations

import asyncio
import logging
import random

import redispool

log = logging.getLogger("examples.app")
pool = redispool.connect()
worker = redispool.Worker(pool, queues=["emails", "reports"], concurrency=8, lease=30)


@worker.process("emails")
def send_email(job: redispool.Job) -> dict:
    """A sync handler (runs on the worker's thread pool). Raising fails the attempt; it is
    retried with backoff until max_attempts."""
    to = job.payload["to"]
    if random.random() < 0.05:
        raise ConnectionError(f"SMTP server refused {to}")
    log.info("sent e-mail to %s (attempt %d)", to, job.attempt)
    return {"sent_to": to}


@worker.process("reports")
async def build_report(job: redispool.Job) -> str:
    """An async handler (runs on the worker's event loop)."""
    await asyncio.sleep(0.1)
    return f"report {job.payload.get('kind', 'adhoc')} built"
