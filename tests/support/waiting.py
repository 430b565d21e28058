"""Waiting in tests: for a condition (with a liveness bound only) and for a daemon run in
a thread to stop cleanly."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition",
             every: float = 0.02, tolerate: tuple[type[BaseException], ...] = ()) -> None:
    """Return once ``condition()`` is true; fail after ``timeout`` seconds.

    ``tolerate``: exceptions that count as "not yet" (for example Redis errors while a
    server restarts); any other exception fails the test at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except tolerate:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


@contextmanager
def running(daemon: Any) -> Iterator[threading.Thread]:
    """Run a Worker or Sweeper in a thread; stop it and check it ended cleanly."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            daemon.run()
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        daemon.stop()
        thread.join(20)
    assert not thread.is_alive(), "did not stop"
    assert not errors, errors
