"""Per-queue retention, stored in Redis so every process honours it.

``connect(done_ttl=, done_max=, dead_ttl=, dead_max=)`` are one process's defaults. A
queue's own settings live in its ``rp:{q}:config`` hash (``set_retention``), and the
scripts that trim or finish jobs (complete, ack, fail, cancel, sweep) read them there, so
an app's "keep 50,000 done jobs" holds whatever sweeper, worker or ``serve`` runs the
trim. Besides how long and how many, a queue may drop the payload of its done jobs and
results over a size (their sizes stay on the job as ``pd`` / ``rd``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import validate
from .errors import InvalidOption
from .errors import reports_unreachable as _redis_errors
from .keys import QueueKeys, check_queue

# The settings, as set_retention/retention() name them; in rp:{q}:config the two
# durations are stored in ms (done_ttl_ms, dead_ttl_ms) and keep_payload=False is drop_payload=1.
_SECONDS = ("done_ttl", "dead_ttl")
_COUNTS = ("done_max", "dead_max", "result_max")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= validate.MAX_MS:
        raise InvalidOption(f"{name} must be an integer >= 0, got {value!r}")
    return value


class RetentionMixin:
    """Retention methods of ``Engine`` (it provides ``client``, ``scripts``, ``keys``,
    ``_register_queue`` and its default retention)."""

    client: Any
    scripts: Any
    keys: Callable[[str], QueueKeys]
    _register_queue: Callable[[str], None]
    _plan_now: Callable[[str, str], None]
    done_ttl_ms: int
    done_max: int
    dead_ttl_ms: int
    dead_max: int

    @_redis_errors
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
        check_queue(queue)
        fields: list[Any] = []
        if done_ttl is not None:
            fields += ["done_ttl_ms", validate.seconds_to_ms(done_ttl, "done_ttl")]
        if done_max is not None:
            fields += ["done_max", _count(done_max, "done_max")]
        if dead_ttl is not None:
            fields += ["dead_ttl_ms", validate.seconds_to_ms(dead_ttl, "dead_ttl")]
        if dead_max is not None:
            fields += ["dead_max", _count(dead_max, "dead_max")]
        if keep_payload is not None and not isinstance(keep_payload, bool):
            raise InvalidOption(f"keep_payload must be True or False, got {keep_payload!r}")
        if keep_payload is False:
            fields += ["drop_payload", 1]
        if result_max is not None:
            fields += ["result_max", _count(result_max, "result_max")]
        self._register_queue(queue)
        self.scripts.run("set_retention", [self.keys(queue).config], fields)
        self._plan_now(queue, "sweeper")   # a shorter retention may trim sooner: the sweeper replans
        return self.retention(queue)

    @_redis_errors
    def retention(self, queue: str) -> dict[str, Any]:
        """``queue``'s retention as this engine applies it: ``done_ttl``/``dead_ttl``
        (seconds), ``done_max``/``dead_max``, ``keep_payload``, ``result_max`` (bytes or
        None), and ``stored``: the settings stored for the queue, which win over every
        engine's defaults (the others are this engine's defaults)."""
        check_queue(queue)
        return self._retention_reply(self.client.hgetall(self.keys(queue).config))

    def _retention_reply(self, raw: dict[Any, Any]) -> dict[str, Any]:
        fields = {_text(k): _text(v) for k, v in raw.items()}
        stored: dict[str, Any] = {}
        for name in _SECONDS + _COUNTS:
            value = fields.get(name + "_ms" if name in _SECONDS else name)
            try:
                number = int(value) if value is not None else None
            except ValueError:
                number = None  # a damaged field: the scripts ignore it too
            if number is not None:
                stored[name] = number / 1000 if name in _SECONDS else number
        if fields.get("drop_payload") == "1":
            stored["keep_payload"] = False
        out: dict[str, Any] = {"done_ttl": self.done_ttl_ms / 1000, "done_max": self.done_max,
                               "dead_ttl": self.dead_ttl_ms / 1000, "dead_max": self.dead_max,
                               "keep_payload": True, "result_max": None}
        out.update(stored)
        out["stored"] = stored
        return out


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
