"""A queue's job defaults and what else describes it to the hosted-service faces.

``set_job_defaults(queue, max_attempts=5, timeout=60)`` stores the options a job of the
queue gets when it is enqueued without its own, in the queue's ``rp:{q}:config`` hash
(fields ``max_attempts``, ``timeout_ms``, and ``defaults_created_ms`` /
``defaults_updated_ms`` when they were first and last set; beside the retention and
limits the scripts read there). The faces that take jobs without these options apply them (the spooled
compat layer: ``max_retries`` and ``timeout_seconds``); the Python API keeps its
explicit defaults, so no enqueue pays a read for them.

Also here: how long and why a queue has been paused (``paused_info``, what pause.lua
keeps in its meta hash), and how many of its jobs finished in a state since a time
(``finished_since``: a ZCOUNT of the done / dead / cancelled set, within retention).
"""
from __future__ import annotations

from typing import Any

from . import validate
from .base import EngineBase
from .errors import InvalidOption
from .keys import check_queue

DEFAULT_FIELDS = ("max_attempts", "timeout_ms")


class QueueConfigMixin(EngineBase):
    """Job defaults and descriptions of a queue, methods of ``Engine``."""

    def set_job_defaults(self, queue: str, *, max_attempts: int | None = None,
                         timeout: float | None = None) -> dict[str, Any]:
        """Store (None: remove) the defaults of ``queue``'s jobs; returns ``job_defaults``.
        InvalidOption for a bad value (nothing changed)."""
        check_queue(queue)
        values = [None if max_attempts is None else validate.max_attempts(max_attempts),
                  None if timeout is None else validate.timeout_ms(timeout)]
        k = self.keys(queue)
        seconds, micros = self.scripts.command("TIME")   # the server clock, as everywhere
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        sets = [x for name, v in zip(DEFAULT_FIELDS, values) if v is not None for x in (name, v)]
        gone = [name for name, v in zip(DEFAULT_FIELDS, values) if v is None]
        commands: list[tuple[Any, ...]] = [("HSETNX", k.config, "defaults_created_ms", now_ms),
                                           ("HSET", k.config, "defaults_updated_ms", now_ms, *sets)]
        if gone:
            commands.append(("HDEL", k.config, *gone))
        self.scripts.pipeline(commands)
        self._register_queue(queue)
        return self.job_defaults(queue)

    def job_defaults(self, queue: str) -> dict[str, Any]:
        """``{"max_attempts", "timeout", "created_at", "updated_at"}`` stored for ``queue``
        (None: not set; timeout in seconds; the times, unix seconds, of the first and the
        last ``set_job_defaults``). A damaged field reads as not set."""
        return self._defaults_reply(self.scripts.command(*self._defaults_read(queue)))

    def _defaults_read(self, queue: str) -> list[Any]:
        """The HMGET that ``job_defaults`` sends (``AsyncEngine.job_defaults`` sends it too)."""
        check_queue(queue)
        return ["HMGET", self.keys(queue).config, *DEFAULT_FIELDS, "defaults_created_ms", "defaults_updated_ms"]

    @staticmethod
    def _defaults_reply(raw: list[Any]) -> dict[str, Any]:
        numbers = []
        for value in raw:
            try:
                number = int(value) if value is not None else None
            except ValueError:
                number = None
            numbers.append(number if number is not None and number >= 1 else None)
        attempts, timeout_ms, created_ms, updated_ms = numbers
        return {"max_attempts": attempts, "timeout": None if timeout_ms is None else timeout_ms / 1000,
                "created_at": None if created_ms is None else created_ms / 1000,
                "updated_at": None if updated_ms is None else updated_ms / 1000}

    def paused_info(self, queue: str) -> tuple[bool, float | None, str | None]:
        """(paused, since when in unix seconds, the reason given) of ``queue``; the time is
        None for a pause from before it was recorded."""
        check_queue(queue)
        paused, at, reason = self.scripts.command("HMGET", self.keys(queue).meta, "paused", "paused_at",
                                                  "paused_reason")
        try:
            since = int(at) / 1000 if at is not None else None
        except ValueError:
            since = None
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else reason
        return paused is not None, since, text

    def finished_since(self, queue: str, state: str, since: float) -> int:
        """How many jobs of ``queue`` finished in ``state`` (done, dead or cancelled) at
        ``since`` (unix seconds) or later, among those its retention still keeps."""
        if state not in ("done", "dead", "cancelled"):
            raise InvalidOption(f"state must be done, dead or cancelled, got {state!r}")
        since_ms = validate.seconds_to_ms(since, "since")
        return int(self.scripts.command("ZCOUNT", self.keys(queue).state(state), since_ms, "+inf"))
