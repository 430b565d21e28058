"""The worker's event lines: the LogRecord EventLog makes is the one logging would make
(handlers, filters and record factories see no difference), and the CLI's formatter
writes what logging's own would."""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time

import pytest

from redispool import eventlog
from redispool.cli import _Formatter
from redispool.eventlog import EventLog
from redispool.models import Job

JOB = Job(id="a b", queue="q", payload=None, attempt=2, max_attempts=3, token="7", worker_id="w",
          lease=30.0, lease_expires_at=0.0)
NOT_COMPARED = ("created", "msecs", "relativeCreated", "message", "asctime")   # the time; what formatting sets


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept():
    logger = logging.getLogger(f"eventlog{time.monotonic_ns()}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    keep = Keep()
    logger.addHandler(keep)
    return EventLog(logger, "text", "w-1"), keep


def test_the_record_is_the_one_logging_would_make(kept):
    log, keep = kept
    before = time.time()
    log.event(logging.WARNING, "lease lost", JOB, note="result not stored", msg="a field named as a record attribute")
    [record] = keep.records
    assert before <= record.created <= time.time()
    assert record.msecs == int((record.created - int(record.created)) * 1000)
    expected = log.logger.makeRecord(log.logger.name, logging.WARNING, eventlog.__file__, 0,
                                     'lease lost queue=q job_id="a b" attempt=2 note="result not stored" '
                                     'msg="a field named as a record attribute"', (), None, "event",
                                     {"event": "lease lost", "queue": "q", "job_id": "a b", "attempt": 2,
                                      "note": "result not stored", "worker_id": "w-1"})
    ours = {k: v for k, v in vars(record).items() if k not in NOT_COMPARED}
    assert ours == {k: v for k, v in vars(expected).items() if k not in NOT_COMPARED}
    started = [r.created - r.relativeCreated / 1000 for r in (record, expected)]   # when logging loaded
    assert abs(started[0] - started[1]) < 0.001


def test_each_thread_and_each_forked_child_is_named_on_its_records(kept):
    log, keep = kept
    log.event(logging.INFO, "claimed", JOB)
    thread = threading.Thread(target=log.event, args=(logging.INFO, "done", JOB), name="handler-3")
    thread.start()
    thread.join()
    assert [(r.threadName, r.thread, r.process) for r in keep.records] == [
        (threading.current_thread().name, threading.get_ident(), os.getpid()), ("handler-3", thread.ident, os.getpid())]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        log.event(logging.INFO, "claimed", JOB)
        os.write(write, str(keep.records[-1].process).encode())
        os._exit(0)
    os.close(write)
    child = int(os.read(read, 64))
    os.waitpid(pid, 0)
    assert child == pid



@pytest.mark.skipif(sys.version_info < (3, 12), reason="LogRecord.taskName is Python 3.12+")
def test_a_record_made_in_an_asyncio_task_names_the_task(kept):
    log, keep = kept

    async def main():
        log.event(logging.INFO, "claimed", JOB)

    log.event(logging.INFO, "claimed", JOB)   # outside any task
    asyncio.run(main())
    assert keep.records[0].taskName is None and keep.records[1].taskName.startswith("Task-")

def test_a_custom_record_factory_makes_every_record(kept):
    log, keep = kept
    made = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = made(*args, **kwargs)
        record.request_id = "r-1"
        return record

    logging.setLogRecordFactory(factory)
    try:
        log.event(logging.INFO, "claimed", JOB)
    finally:
        logging.setLogRecordFactory(made)
    assert keep.records[0].request_id == "r-1" and keep.records[0].job_id == "a b"


@pytest.mark.parametrize("fmt", [_Formatter.TEXT, "%(message)s", "%(levelname)s [%(threadName)s] %(message)s"])
def test_the_cli_formatter_writes_what_loggings_own_writes(fmt):
    plain = logging.LogRecord("redispool.worker", logging.INFO, __file__, 1, "done n=%d", (3,), None)
    try:
        raise ValueError("boom")
    except ValueError:
        failing = logging.LogRecord("redispool.worker", logging.ERROR, __file__, 1, "dead", (), sys.exc_info())
    for record in (plain, failing):
        assert _Formatter(fmt).format(record) == logging.Formatter(fmt).format(record)
    assert "ValueError: boom" in _Formatter(fmt).format(failing)
