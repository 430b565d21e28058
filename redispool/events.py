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

import asyncio
import re
from collections.abc import Callable, Sequence
from typing import Any

from . import blocking, defaults
from .base import EngineBase
from .errors import InvalidOption
from .keys import check_queue
from .models import Event


def number(text: str) -> int | float:
    """A progress value as sent: an int when it was one, else a float."""
    try:
        return int(text)
    except ValueError:
        return float(text)


# stream field -> (Event.data key, converter); t (type) and j (job id) are Event's own
FIELDS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "a": ("attempt", int), "w": ("worker_id", str), "e": ("error", str), "s": ("state", str),
    "p": ("previous", str), "r": ("priority", int), "v": ("value", number), "m": ("message", str)}
EVENT_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")   # ASCII: \d takes other scripts' digits too
LATEST = "$"            # ``after=LATEST``: only events appended after the read starts
JOB_SCAN_PAGE = 2000    # job_events reads the log this many entries at a time
SINCE_MARGIN_MS = 100   # ... from this long before the job's creation


def _str(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def is_event_id(text: str) -> bool:
    """Whether ``text`` is an id Redis takes to read after: two numbers of 64 bits, not
    both the largest (no id follows it: an exclusive XRANGE start is refused)."""
    if not EVENT_ID.fullmatch(text):
        return False
    ms, seq = (int(part) for part in text.split("-"))
    return ms <= MAX_SEQ and seq <= MAX_SEQ and (ms, seq) != (MAX_SEQ, MAX_SEQ)


def check_after(after: str | None) -> str | None:
    """``after`` if it is an event id (or ``LATEST``) or None, else InvalidOption."""
    if after is None or after == LATEST or (isinstance(after, str) and is_event_id(after)):
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


def _job_field(raw: Any) -> Any:
    """The ``j`` field of a raw entry's fields (a dict, or a flat list), unparsed."""
    if isinstance(raw, dict):
        return raw.get(b"j", raw.get("j"))
    for name, value in zip(raw[::2], raw[1::2]):
        if name in (b"j", "j"):
            return value
    return None


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

    def job_events(self, queue: str, job_id: str, *, since: float | None = None) -> tuple[list[Event], float | None]:
        """The events of job ``job_id`` that ``queue``'s log still holds, oldest first, and
        the time (unix seconds) of the oldest event the log keeps (None: it keeps none):
        what happened before that was trimmed (or written by an engine with
        ``events_max=0``). ``since``: the job's creation; the scan starts SINCE_MARGIN_MS
        earlier (the script's TIME and the stream's clock may differ by that little within
        one call), which leaves out the events of a former job of the same id. A scan of the log, so at most about
        ``events_max`` entries, read ``JOB_SCAN_PAGE`` at a time."""
        key = self.keys(check_queue(queue)).events
        oldest = self.scripts.command("XRANGE", key, "-", "+", "COUNT", 1)
        kept = to_event(queue, oldest[0]).at if oldest else None
        start = "-" if since is None else f"{max(0, round(since * 1000) - SINCE_MARGIN_MS)}-0"
        found: list[Event] = []
        wanted = {job_id, job_id.encode()}   # the field as the client returns it, bytes or text
        while True:
            entries = self.scripts.command("XRANGE", key, start, "+", "COUNT", JOB_SCAN_PAGE)
            found.extend(to_event(queue, e) for e in entries if _job_field(e[1]) in wanted)
            if len(entries) < JOB_SCAN_PAGE:
                return found, kept
            start = "(" + _str(entries[-1][0])

    def latest_events(self, queue: str, limit: int = 100) -> list[Event]:
        """The ``limit`` newest events of ``queue``'s log, oldest first (a tail to follow on
        from: pass the last one's id as ``after``)."""
        key = self.keys(check_queue(queue)).events
        entries = self.scripts.command("XREVRANGE", key, "+", "-", "COUNT", check_limit(limit))
        return [to_event(queue, e) for e in reversed(entries)]


# ---------------------------------------------------------------------- several queues
# A read of several queues' logs (the SSE view, ``redispool events --follow``) delivers
# their events in one total order, (event id, queue name), and resumes from a cursor: the
# last (id, queue) delivered. Every event at or before the cursor was delivered, none
# after it, so a resumed stream skips and repeats nothing: a queue named after the
# cursor's queue starts at the cursor's id itself (its events of that very id come after
# in the order), the others just after it. On one Redis server one XREAD reads every log
# at the same instant, and a merge of what it returned is complete up to the last id of
# any log it cut short -- and up to the millisecond before the read: an event written
# later in that same millisecond gets an id of that millisecond in its own log, possibly
# lower than one already read from another log, so the events of the read's millisecond
# wait for the next read (TIME is read first: what is written after it gets an id of
# that millisecond or later). On a cluster the logs' nodes have clocks of their own: a
# read of several queues there holds back the last CLUSTER_SKEW_MS as well.
MAX_SEQ = 18446744073709551615
CLUSTER_PAUSE_S = 0.25   # several queues on a cluster: the pause of a read that found nothing
CLUSTER_SKEW_MS = 1000   # ... and how far the nodes' clocks may disagree
SETTLE_S = 0.002         # a read that held back every event it found reads again this soon


class Cursor:
    """Where a several-queue read stands: after event ``id`` of ``queue`` ("" : after
    ``id`` in every queue). ``token`` is its text form (the SSE ``id:``): ``<id>@<queue>``,
    or the bare event id, which ``parse`` also takes."""

    __slots__ = ("id", "queue")

    def __init__(self, event_id: str, queue: str = "") -> None:
        self.id = event_id
        self.queue = queue

    @classmethod
    def parse(cls, token: str) -> Cursor:
        event_id, _, queue = token.strip().partition("@")
        if not is_event_id(event_id) or (queue and not check_queue_name(queue)):
            raise InvalidOption(f"not an event id: {token!r}")
        return cls(event_id, queue)

    @property
    def token(self) -> str:
        return f"{self.id}@{self.queue}" if self.queue else self.id

    def start(self, queue: str) -> str:
        """The id to read ``queue``'s log after."""
        if not self.queue or queue <= self.queue:
            return self.id
        ms, seq = (int(x) for x in self.id.split("-"))
        if seq:
            return f"{ms}-{seq - 1}"
        return f"{ms - 1}-{MAX_SEQ}" if ms else "0-0"


def check_queue_name(queue: str) -> bool:
    try:
        check_queue(queue)
    except InvalidOption:
        return False
    return True


def merge(batches: dict[str, list[Event]], limit: int) -> list[Event]:
    """The events of one read of several logs, in (id, queue) order, up to the last of a
    log the read cut short (it returned ``limit``): what comes after may still be unread."""
    def order(event: Event) -> tuple[int, int, str]:
        ms, seq = event.id.split("-")
        return int(ms), int(seq), event.queue
    cut = [order(events[-1]) for events in batches.values() if len(events) >= limit]
    upto = min(cut) if cut else None
    merged = sorted((e for events in batches.values() for e in events), key=order)
    return [e for e in merged if upto is None or order(e) <= upto]


async def now_cursor(aio: Any) -> Cursor:
    """A cursor at the Redis clock's present: what is read after it is new."""
    seconds, micros = await aio.scripts.command("TIME")
    return Cursor(f"{int(seconds) * 1000 + int(micros) // 1000 - 1}-{MAX_SEQ}")


async def read_queues(aio: Any, client: Any, queues: Sequence[str], cursor: Cursor, *, limit: int = 100,
                      block: float = 5.0) -> list[Event]:
    """The events of ``queues`` after ``cursor``, in order (``merge``), waiting up to
    ``block`` s in Redis when there are none yet. ``client`` is an async client whose
    connection may be held that long (not the AsyncEngine's pool). On a Redis Cluster the
    logs of several queues live in different slots: each is read without waiting, and
    with nothing new the read sleeps ``CLUSTER_PAUSE_S`` (one blocked XREAD cannot span
    slots); one queue's log is still waited on in Redis."""
    keys = {aio.engine.keys(q).events: q for q in queues}
    if not keys:
        await asyncio.sleep(block)
        return []
    if len(keys) == 1:   # one log: its ids only grow, nothing to hold back
        return await _read(aio, client, keys, cursor, limit, block)
    cluster = blocking.is_cluster(client)
    seconds, micros = await aio.scripts.command("TIME")
    settled_ms = int(seconds) * 1000 + int(micros) // 1000 - (CLUSTER_SKEW_MS if cluster else 0)
    found = await _read(aio, client, keys, cursor, limit, block)
    events = [e for e in found if int(e.id.split("-", 1)[0]) < settled_ms]
    if found and not events:
        await asyncio.sleep(CLUSTER_PAUSE_S if cluster else SETTLE_S)
    return events


async def _read(aio: Any, client: Any, keys: dict[str, str], cursor: Cursor, limit: int, block: float
                ) -> list[Event]:
    """One read of the logs ``keys`` (key -> queue) after ``cursor``, merged."""
    if len(keys) > 1 and blocking.is_cluster(client):
        batches = {}
        for key, queue in keys.items():
            entries = await aio.scripts.command(*range_command(key, cursor.start(queue), limit))
            batches[queue] = [to_event(queue, e) for e in entries]
        events = merge(batches, limit)
        if not events:
            await asyncio.sleep(min(block, CLUSTER_PAUSE_S))
        return events
    command = ["XREAD", "COUNT", limit, "BLOCK", max(1, round(block * 1000)), "STREAMS", *keys,
               *(cursor.start(q) for q in keys.values())]
    reply = await blocking.call_async(client, next(iter(keys)), command, block)
    batches = {}
    for key, entries in (reply.items() if isinstance(reply, dict) else reply or []):   # RESP3 or RESP2
        queue = keys[_str(key)]
        batches[queue] = [to_event(queue, e) for e in entries]
    return merge(batches, limit)

