"""Per-queue retention, stored in Redis so every process honours it.

``connect(done_ttl=, done_max=, dead_ttl=, dead_max=)`` are one process's defaults. A
queue's own settings live in its ``rp:{q}:config`` hash (``set_retention``), and the
scripts that trim or finish jobs (complete, ack, fail, cancel, sweep) read them there, so
an app's "keep 50,000 done jobs" holds whatever sweeper, worker or ``serve`` runs the
trim. Besides how long and how many, a queue may drop the payload of its done jobs and
results over a size (their sizes stay on the job as ``pd`` / ``rd``).
"""
from __future__ import annotations

from typing import Any

from . import ops, validate
from .base import EngineBase
from .errors import InvalidOption
from .keys import check_queue


class RetentionMixin(EngineBase):
    """Retention methods of ``Engine``."""

    def set_retention(self, queue: str, *, done_ttl: float | None = None, done_max: int | None = None,
                      dead_ttl: float | None = None, dead_max: int | None = None,
                      keep_payload: bool | None = None, result_max: int | None = None) -> dict[str, Any]:
        """Store ``queue``'s retention in Redis, replacing what was stored: every process
        (workers, sweepers, ``serve``) then keeps its done/dead jobs by these settings.
        None leaves a setting to each engine's default (``connect(done_ttl=...)``).
        ``keep_payload=False`` deletes a job's payload when it is done; ``result_max``
        (bytes, msgpack-encoded) stores no result bigger than that: ``get()`` shows both
        as ``payload_dropped`` / ``result_dropped`` (the size not kept). Bad values raise
        InvalidOption and change nothing. Returns ``retention(queue)``."""
        op = ops.set_retention(self, queue, done_ttl=done_ttl, done_max=done_max, dead_ttl=dead_ttl,
                               dead_max=dead_max, keep_payload=keep_payload, result_max=result_max)
        self._register_queue(queue)
        self.run(op)
        self._plan_now(queue, "sweeper")   # a shorter retention may trim sooner: the sweeper replans
        return self.retention(queue)

    def retention(self, queue: str) -> dict[str, Any]:
        """``queue``'s retention as this engine applies it: ``done_ttl``/``dead_ttl``
        (seconds), ``done_max``/``dead_max``, ``keep_payload``, ``result_max`` (bytes or
        None), and ``stored``: the settings stored for the queue, which win over every
        engine's defaults (the others are this engine's defaults)."""
        check_queue(queue)
        return ops.retention_of(self, self.scripts.command("HGETALL", self.keys(queue).config))


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= validate.MAX_MS:
        raise InvalidOption(f"{name} must be an integer >= 0, got {value!r}")
    return value


def engine_defaults(*, done_ttl: float | None = None, done_max: int | None = None,
                    dead_ttl: float | None = None, dead_max: int | None = None) -> dict[str, int]:
    """The given default retention as Engine attributes (done_ttl_ms, done_max,
    dead_ttl_ms, dead_max), checked: the CLI sets these on an app's engine (worker
    --done-ttl ...). InvalidOption for a bad value."""
    out: dict[str, int] = {}
    if done_ttl is not None:
        out["done_ttl_ms"] = validate.seconds_to_ms(done_ttl, "done_ttl")
    if done_max is not None:
        out["done_max"] = _count(done_max, "done_max")
    if dead_ttl is not None:
        out["dead_ttl_ms"] = validate.seconds_to_ms(dead_ttl, "dead_ttl")
    if dead_max is not None:
        out["dead_max"] = _count(dead_max, "dead_max")
    return out
