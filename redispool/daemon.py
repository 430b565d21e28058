"""The loop the scheduler and sweeper share: run a step every interval until stopped.

SIGTERM/SIGINT stop it after the current step. A lost Redis is logged and retried with
exponential backoff (capped), so a daemon outlives a Redis restart.
"""
from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from .errors import ConnectionFailed, InvalidOption

BACKOFF_MAX_S = 10.0


class Daemon:
    """Subclasses implement ``step()``; ``run()`` repeats it every ``interval`` seconds."""

    name = "daemon"

    def __init__(self, engine: Any, *, interval: float = 1.0) -> None:
        if interval <= 0:
            raise InvalidOption(f"interval must be > 0 seconds, got {interval!r}")
        self.engine = engine
        self.interval = interval
        self.log = logging.getLogger(f"redispool.{self.name}")
        self._stop = threading.Event()

    def step(self) -> Any:
        raise NotImplementedError

    def next_wait(self) -> float:
        """Seconds to sleep after a successful step (subclasses may shorten it)."""
        return self.interval

    def stop(self, *_: Any) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Run until stop() or SIGTERM/SIGINT (signals are caught in the main thread only)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        self.log.info("%s started (interval %.3gs)", self.name, self.interval)
        failures = 0
        while not self._stop.is_set():
            try:
                self.step()
                if failures:
                    self.log.info("%s reconnected to Redis", self.name)
                failures = 0
                wait = self.next_wait()
            except ConnectionFailed as exc:
                failures += 1
                wait = min(BACKOFF_MAX_S, self.interval * 2 ** min(failures, 10))
                self.log.warning("%s: %s; retrying in %.1fs", self.name, exc, wait)
            self._stop.wait(wait)
        self.log.info("%s stopped", self.name)
