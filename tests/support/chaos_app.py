"""A real worker process for the fault tests: ``python tests/support/chaos_app.py``.

Configured by the environment: REDISPOOL_URL (any scheme, sentinel and cluster too),
REDISPOOL_PREFIX, APP_QUEUES (comma-separated), APP_CONCURRENCY, APP_LEASE, APP_BEAT,
APP_SLEEP (seconds each job takes), APP_DURABLE (1: durable=True), APP_NOTES (a directory).

It keeps nothing about its jobs in Redis (Redis is what the tests break): it appends one
line per event to ``<APP_NOTES>/<pid>.ran`` (``<queue> <id> <attempt>`` as a handler
starts) and ``<APP_NOTES>/<pid>.done`` (``<queue> <id>`` once Redis accepted the job's
completion: the worker's "done" event), with unbuffered writes, so a SIGKILL loses no line
that was written. Log lines go to stderr.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository

import redispool  # noqa: E402

NOTES = Path(os.environ["APP_NOTES"])
SLEEP_S = float(os.environ.get("APP_SLEEP", "0"))


class _Lines:
    """Appends lines to a file with one unbuffered write each."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, line: str) -> None:
        os.write(self.fd, (line + "\n").encode())


ran = _Lines(NOTES / f"{os.getpid()}.ran")
done = _Lines(NOTES / f"{os.getpid()}.done")


class DoneEvents(logging.Handler):
    """Records the worker's "done" events (the completion was stored)."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == "done":
            done.write(f"{record.queue} {record.job_id}")


pool = redispool.connect(os.environ["REDISPOOL_URL"], prefix=os.environ["REDISPOOL_PREFIX"],
                         durable=os.environ.get("APP_DURABLE") == "1", done_max=1_000_000)
worker = redispool.Worker(
    pool, queues=os.environ.get("APP_QUEUES", "chaos").split(","),
    concurrency=int(os.environ.get("APP_CONCURRENCY", "8")),
    lease=float(os.environ.get("APP_LEASE", "30")), grace=5.0,
    beat_interval=float(os.environ.get("APP_BEAT", "0.2")), idle_wait=0.5)


@worker.process
def handle(job: redispool.Job) -> None:
    ran.write(f"{job.queue} {job.id} {job.attempt}")
    if SLEEP_S:
        time.sleep(SLEEP_S)


def not_per_job(record: logging.LogRecord) -> bool:
    """stderr gets warnings and the worker's own events, not a line per claimed/done job."""
    return record.levelno >= logging.WARNING or getattr(record, "event", None) not in ("claimed", "done")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger().handlers[0].addFilter(not_per_job)
    events = logging.getLogger("redispool.worker")
    events.setLevel(logging.INFO)
    events.addHandler(DoneEvents())
    worker.run()
