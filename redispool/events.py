"""Reading a queue's event log: ``Engine.events`` and ``AsyncEngine.events``.

The log is the stream ``rp:{q}:events``. The scripts that change jobs append to it in
the same call (lib.lua's ``emit``), so an event exists exactly when its change happened,
and trim it with ``XADD MAXLEN ~ events_max`` (``connect(..., events_max=0)``: that
engine writes none). An entry's id (``<ms>-<n>``, Redis clock) orders the log and is
the ``after`` of the next read; its fields are one letter each, named here.

A read with ``block`` waits in Redis (``XREAD BLOCK``, sent through blocking.py so the
wait may be longer than the socket timeout), not by polling.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from . import blocking, defaults
from .base import EngineBase
from .errors import InvalidOption
from .keys import check_queue
from .models import Event

# stream field -> (Event.data key, converter); t (type) and j (job id) are Event's own
FIELDS: dict[str, tuple[str, type]] = {"a": ("attempt", int), "w": ("worker_id", str), "e": ("error", str),
                                       "s": ("state", str), "p": ("previous", str), "r": ("priority", int)}
EVENT_ID = re.compile(r"\d{1,20}-\d{1,20}")
LATEST = "$"            # ``after=LATEST``: only events appended after the read starts


def _str(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def check_after(after: str | None) -> str | None:
    """``after`` if it is an event id (or ``LATEST``) or None, else InvalidOption."""
    if after is None or after == LATEST or (isinstance(after, str) and EVENT_ID.fullmatch(after)):
        return after
    raise InvalidOption(f"after must be an event id such as '1700000000000-0', got {after!r}")


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= defaults.BATCH_MAX:
        raise InvalidOption(f"limit must be an integer in [1, {defaults.BATCH_MAX}], got {limit!r}")
    return limit


def check_block(block: float | None) -> float | None:
    """``block`` seconds (None or 0: do not wait)."""
    if block is None:
        return None
    if isinstance(block, bool) or not isinstance(block, (int, float)) or not 0 <= block <= 86_400:
        raise InvalidOption(f"block must be a number of seconds in [0, 86400], got {block!r}")
    return float(block) or None


def to_event(queue: str, entry: Sequence[Any]) -> Event:
    """One stream entry (``[id, [field, value, ...]]``, or redis-py's ``(id, {field: value})``)."""
    raw_id, raw_fields = entry
    pairs = raw_fields.items() if isinstance(raw_fields, dict) else zip(raw_fields[::2], raw_fields[1::2])
    fields = {_str(k): _str(v) for k, v in pairs}
    event_id = _str(raw_id)
    data: dict[str, Any] = {}
    for name, value in fields.items():
        if name in FIELDS:
            key, convert = FIELDS[name]
            try:
                data[key] = convert(value)
            except ValueError:
                data[key] = value
    return Event(id=event_id, queue=queue, type=fields.get("t", ""), job_id=fields.get("j") or None,
                 at=int(event_id.split("-", 1)[0]) / 1000, data=data)


def range_command(key: str, after: str | None, limit: int) -> list[Any]:
    """XRANGE of the ``limit`` events after ``after`` (None: from the oldest kept)."""
    return ["XRANGE", key, "-" if after is None else "(" + after, "+", "COUNT", limit]


def read_command(key: str, after: str | None, limit: int, block: float) -> list[Any]:
    """XREAD BLOCK of up to ``limit`` events after ``after``, waiting ``block`` s for one."""
    return ["XREAD", "COUNT", limit, "BLOCK", max(1, round(block * 1000)), "STREAMS", key,
            "0-0" if after is None else after]


def from_read(queue: str, reply: Any) -> list[Event]:
    """XREAD's raw reply (None after the wait, else ``[[key, entries]]``) as events."""
    if not reply:
        return []
    entries = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))
    return [to_event(queue, entry) for entry in entries]


class EventsMixin(EngineBase):
    """``events`` of ``Engine``."""

    def events(self, queue: str, *, after: str | None = None, limit: int = 100,
               block: float | None = None) -> list[Event]:
        """Up to ``limit`` events of ``queue``'s log after event id ``after`` (None: from
        the oldest still kept; ``"$"``: only new ones), oldest first. With ``block`` (s)
        and nothing to return yet, waits that long in Redis for the next event."""
        key = self.keys(check_queue(queue)).events
        after, limit, block = check_after(after), check_limit(limit), check_block(block)
        if block is None:
            if after == LATEST:
                return []
            return [to_event(queue, e) for e in self.scripts.command(*range_command(key, after, limit))]
        with self.scripts.boundary():
            reply = blocking.call(self.client, key, read_command(key, after, limit, block), block)
        return from_read(queue, reply)
