"""What the dashboard's live pages read from Redis, at a cost bounded per page and shared
between tabs.

Every open tab refreshes every few seconds, and an overview used to read every queue
(a stats script and a throughput read each, one round trip apiece): ~15,000 Redis
commands per refresh over 1,000 queues, renders slower than the refresh. Now:

- the overview shows ``QUEUES_PER_PAGE`` queues at a time (sorted by name, filtered by a
  substring), and reads the figures of just those: the queue names, the Redis clock,
  then every stats script and per-minute counter of the page in one pipeline -- three
  round trips and about 15 commands per queue shown, whatever the number of queues;
- ``Shared`` keeps what a read returned for ``cache_s`` (1 s) for every tab of the
  process, and a tab asking for a read already running waits for it instead of starting
  its own, so ten tabs cost about what one does. Actions clear it (a page after an
  action shows its effect), and a page refreshing because of an event asks for a read
  made after that event (``fresh``): a kept one from before it would hide it.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import ops
from ..engine import Engine
from ..errors import REDIS_TROUBLE, from_redis
from ..keys import queues_key
from ..scripts import missing

QUEUES_PER_PAGE = 50
HISTORY_MINUTES = 60


@dataclass
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


class Shared:
    """Results of reads, kept ``ttl_s`` seconds and shared by every caller; concurrent
    callers of the same read wait for the one running. Errors are not kept."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._kept: dict[Hashable, tuple[float, Any]] = {}
        self._running: dict[Hashable, _Flight] = {}

    def get(self, key: Hashable, read: Callable[[], Any], fresh: Callable[[Any], bool] | None = None) -> Any:
        """What ``read`` returns, or returned to another caller within ``ttl_s``; with
        ``fresh``, only a result it accepts (a read that was running when the caller came
        may have begun too early: then the next one is taken, which began after)."""
        joined_early = False
        while True:
            with self._lock:
                now = time.monotonic()
                kept = self._kept.get(key)
                if kept is not None and kept[0] > now and (fresh is None or fresh(kept[1])):
                    return kept[1]
                flight = self._running.get(key)
                mine = flight is None
                if flight is None:
                    flight = self._running[key] = _Flight()
            if mine:
                break
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            if fresh is None or joined_early or fresh(flight.value):
                return flight.value
            joined_early = True   # any read running now began after this one ended, so after the caller came
        try:
            flight.value = read()
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._running[key]
                if flight.error is None and self.ttl_s > 0:
                    now = time.monotonic()
                    self._kept = {k: v for k, v in self._kept.items() if v[0] > now}  # drop the stale
                    self._kept[key] = (now + self.ttl_s, flight.value)
            flight.done.set()
        return flight.value

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()


@dataclass
class Overview:
    """One overview page: its queues with their stats and last hour, and where it is."""

    names: list[str]                      # this page's queues, sorted
    stats: dict[str, dict[str, Any]]
    history: dict[str, list[tuple[float, int, int]]]
    hour: list[tuple[float, int, int]]    # the page's queues added up (an empty hour without queues)
    at_ms: int                            # the Redis clock just before the figures were read
    matching: int                         # queues matching the filter, on every page
    total: int                            # queues in all
    page: int
    pages: int


def overview(engine: Engine, page: int, needle: str = "", per_page: int = QUEUES_PER_PAGE) -> Overview:
    """The figures of one overview page, read in three round trips (see the module doc)."""
    try:
        members = engine.client.smembers(queues_key(engine.prefix))
        seconds, micros = engine.client.time()  # the Redis clock (not in the pipeline: a cluster refuses)
        names = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        chosen = [n for n in names if needle.lower() in n.lower()] if needle else names
        pages = max(1, -(-len(chosen) // per_page))
        page = min(max(page, 0), pages - 1)
        shown = chosen[page * per_page:(page + 1) * per_page]
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        stats, history = _read_page(engine, shown, now_ms)
    except REDIS_TROUBLE as exc:
        raise from_redis(engine.url, exc) from exc
    _, _, span = engine._throughput_read("_", now_ms, HISTORY_MINUTES)
    hour = [(m * 60.0, sum(history[n][i][1] for n in shown), sum(history[n][i][2] for n in shown))
            for i, m in enumerate(span)]
    return Overview(shown, stats, history, hour, now_ms, len(chosen), len(names), page, pages)


def _read_page(engine: Engine, names: Sequence[str], now_ms: int
               ) -> tuple[dict[str, dict[str, Any]], dict[str, list[tuple[float, int, int]]]]:
    """Stats and last hour of ``names`` in one pipeline (the scripts loaded again and the
    pipeline repeated once when Redis had lost them, e.g. after a restart)."""
    if not names:
        return {}, {}
    scripts = engine.scripts
    for attempt in (1, 2):
        reads = []
        with engine.client.pipeline(transaction=False) as pipe:
            for name in names:
                op = ops.stats(engine, name)
                keys = scripts.bind(op.script, op.keys)
                scripts.queue(pipe, op.script, keys, op.args)
                key, fields, span = engine._throughput_read(name, now_ms, HISTORY_MINUTES)
                pipe.hmget(key, fields)
                reads.append(span)
            replies = pipe.execute(raise_on_error=False)
        if attempt == 1 and any(missing(r) for r in replies):
            scripts.restore()
            continue
        break
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    stats = {n: ops.stats(engine, n).parse(replies[2 * i]) for i, n in enumerate(names)}
    history = {n: engine._throughput_reply(reads[i], replies[2 * i + 1]) for i, n in enumerate(names)}
    return stats, history
