"""The CLI's log handler: lines written in batches, none lost or written twice (at exit,
across a fork), in the order they were logged."""
from __future__ import annotations

import logging
import os
import time

from redispool.cli import _BatchedStreamHandler, _Formatter

from support.waiting import wait_for


def make(stream):
    handler = _BatchedStreamHandler(stream)
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger(f"batched{time.monotonic_ns()}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger, handler


def lines(path):
    with open(path) as f:
        return f.read().splitlines()


def test_lines_come_out_soon_in_order_and_whole(tmp_path):
    path = tmp_path / "log"
    with open(path, "w") as stream:
        logger, _ = make(stream)
        for n in range(3):
            logger.info("line %d", n)
        wait_for(lambda: len(lines(path)) == 3, timeout=2, what="the batch written")
        for n in range(3, 203):
            logger.info("line %d", n)
        assert len(lines(path)) >= 3 + 192    # every 64 lines go out at once
        wait_for(lambda: len(lines(path)) == 203, timeout=2, what="the rest")
    written = lines(path)
    assert [w.rsplit(" ", 1)[1] for w in written] == [str(n) for n in range(203)]
    # the time stamp is logging's own format: "2026-11-28 07:39:00,256"
    assert time.strptime(written[0][:19], "%Y-%m-%d %H:%M:%S") and written[0][19] == "," and written[0][20:23].isdigit()


def test_a_forked_child_writes_its_own_lines_once_and_the_parents_are_not_repeated(tmp_path):
    path = tmp_path / "log"
    with open(path, "w") as stream:
        logger, handler = make(stream)
        logger.info("parent before")          # still in the buffer at the fork
        pid = os.fork()
        if pid == 0:
            logger.info("child")
            time.sleep(0.3)                   # the child's flusher writes it
            os._exit(0 if "child" in "".join(lines(path)) else 1)
        _, status = os.waitpid(pid, 0)
        logger.info("parent after")
        handler.flush()
    assert os.waitstatus_to_exitcode(status) == 0
    messages = [w.split(": ", 1)[1] for w in lines(path)]
    assert sorted(messages) == ["child", "parent after", "parent before"]
