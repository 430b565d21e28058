"""Queues' event logs as Server-Sent Events: the framing and the read loop under both
``GET /v1/events`` (http/events.py) and the dashboard's live feed (dashboard/live.py).

Each event is ``id:`` (the resume token: ``redispool.events``' cursor; for one queue the
bare event id), optionally ``event:`` (its type), and one ``data:`` line of JSON (the
Event), so clients that keep only the last ``data:`` line still get it whole.

A stream waits in Redis (feed.py's ``follow``, which the WebSocket view shares: one
blocked XREAD of every log it follows, on a connection of its own; its other reads share
the engine's pool) and writes a comment line when it has sent nothing for ``KEEPALIVE_S``, so proxies and
clients with a read timeout keep it open. It ends when the client goes away and at
shutdown (``LoopEngines.interrupt``, which SIGTERM triggers), cleanly: the last frame is
complete.

A stream that only tells a page to look again (the dashboard's) need not carry every
event of a busy queue: with ``pace_s`` it reads at most once per ``pace_s`` while events
keep coming, and with ``skip`` a read that came back full (more are waiting) jumps to the
present and says so in a ``behind`` frame, so it never lags behind the log; what it
skipped, the page reads anyway when it looks again.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.requests import Request

from .. import blocking, tojson
from ..events import CLUSTER_SKEW_MS, MAX_SEQ, Cursor, now_cursor
from ..models import Event
from .feed import ALL_WAIT_S, Feed
from .feed import follow as feed_follow
from .waiting import LoopEngines

KEEPALIVE_S = 10.0      # a comment after this long without a frame (the SPEC's bound is 15 s)
BEHIND = "behind"       # the type of the frame a skip sends
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MEDIA_TYPE = "text/event-stream"
__all__ = ["ALL_WAIT_S", "follow", "frame", "present", "resume_token"]


def frame(event: Event, token: str, *, named: bool = True) -> str:
    """One SSE event: ``id:``, ``event:`` (with ``named``; without, every frame reaches an
    EventSource's ``onmessage``) and the Event as one line of JSON."""
    kind = f"event: {event.type}\n" if named else ""
    return f"id: {token}\n{kind}data: {tojson.dumps(event.to_dict())}\n\n"


def resume_token(request: Request) -> str | None:
    """Where the client asks to resume: ``Last-Event-ID`` (what an EventSource sends when
    it reconnects), else ``?last_event_id=``."""
    return request.headers.get("last-event-id") or request.query_params.get("last_event_id") or None


async def present(aio: Any, client: Any) -> Cursor:
    """A cursor at the present (on a cluster, ``CLUSTER_SKEW_MS`` earlier: the logs' nodes
    have clocks of their own, and an event written later must not fall before it)."""
    cursor = await now_cursor(aio)
    if not blocking.is_cluster(client):
        return cursor
    ms = max(0, int(cursor.id.split("-", 1)[0]) - CLUSTER_SKEW_MS)
    return Cursor(f"{ms}-{MAX_SEQ}")


async def follow(waits: LoopEngines, request: Request, queues: Sequence[str], cursor: Cursor, *,
                 job: str | None = None, named: bool = True, pace_s: float = 0.0,
                 skip: bool = False) -> AsyncIterator[str]:
    """The frames of ``queues``' events after ``cursor`` (no queues: every queue, a new one
    included within ``ALL_WAIT_S``), until the client goes or the server shuts down.
    ``job``: only that job's events (the others advance the cursor unseen); ``named``,
    ``pace_s``, ``skip``: see ``frame`` and the module's docstring."""
    aio = waits.get()
    feed = Feed(queues, cursor, job)
    async with waits.stop_for(request.receive) as stop, contextlib.aclosing(feed_follow(aio, feed, stop)) as reads:
        yield ": connected\n\n"
        sent = read_at = time.monotonic()
        async for read in reads:
            if isinstance(read, BaseException):   # Redis trouble: say so; the feed reads again shortly
                yield ": redis unavailable, retrying\n\n"
                continue
            for event, token in read:
                yield frame(event, token, named=named)
                sent = time.monotonic()
            if skip and feed.full:   # more are waiting: the page looks again instead
                feed.cursor = await present(aio, aio.client)
                yield _behind(feed.cursor, named)
                sent = time.monotonic()
            if time.monotonic() - sent >= KEEPALIVE_S:
                yield ": ping\n\n"
                sent = time.monotonic()
            if read and pace_s > 0:
                await asyncio.wait({stop}, timeout=max(0.0, read_at + pace_s - time.monotonic()))
            read_at = time.monotonic()


def _behind(cursor: Cursor, named: bool) -> str:
    """The frame of a skip to ``cursor``: what came before it was not sent."""
    kind = f"event: {BEHIND}\n" if named else ""
    return f"id: {cursor.token}\n{kind}data: {json.dumps({'type': BEHIND, 'id': cursor.id})}\n\n"
