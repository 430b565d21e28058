"""``GET /v1/events``: queues' event logs as Server-Sent Events.

``?queue=Q`` (several allowed; none: every queue, a new one included within
``ALL_WAIT_S``). Each event is ``id:`` (the resume token), ``event:`` (its type) and one
``data:`` line of JSON (the Event), so clients that keep only the last ``data:`` line still get it
whole. ``Last-Event-ID`` (header, or ``?last_event_id=``) resumes after that event with
nothing skipped or repeated while it is still in the log; the order and the tokens are
``redispool.events``' cursor (for one queue the token is the bare event id). Without it
the stream starts at the present.

The stream waits in Redis (feed.py's ``follow``, which the WebSocket view shares) and
writes a comment line when it has sent nothing for ``KEEPALIVE_S``, so proxies and
clients with a read timeout keep it open. It ends when the client goes away and at
shutdown (``LoopEngines.interrupt``, which SIGTERM triggers), cleanly: the last frame
is complete.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from .. import tojson
from ..errors import InvalidOption
from ..events import Cursor, now_cursor
from ..keys import check_queue
from ..web.access import note
from ..web.body import BadInput
from .feed import Feed, follow

KEEPALIVE_S = 10.0      # a comment after this long without a frame (the SPEC's bound is 15 s)


def frame(event: Any, token: str) -> str:
    """One SSE event: ``id:``, ``event:`` and the Event as one line of JSON."""
    return f"id: {token}\nevent: {event.type}\ndata: {tojson.dumps(event.to_dict())}\n\n"


def handler(api: Any) -> Any:
    """The route handler of ``GET /v1/events`` over ``api`` (http/app.py's Api)."""

    async def events(request: Request, body: Any) -> StreamingResponse:
        named = [check_queue(q) for q in request.query_params.getlist("queue")]
        resume = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        try:
            cursor = Cursor.parse(resume) if resume else None
        except InvalidOption as exc:
            raise BadInput(f"Last-Event-ID: {exc}") from None
        if cursor is None:
            cursor = await now_cursor(api.aio)
        note(request, stream=True)   # how long it stays open is no latency (access.py)
        return StreamingResponse(stream(api, request, Feed(named, cursor)), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return events


async def stream(api: Any, request: Request, feed: Feed) -> AsyncIterator[str]:
    async with api.waits.stop_for(request.receive) as stop, \
            contextlib.aclosing(follow(api.aio, feed, stop)) as reads:
        yield ": connected\n\n"
        sent = time.monotonic()
        async for read in reads:
            if isinstance(read, BaseException):   # Redis trouble: say so; follow reads again shortly
                yield ": redis unavailable, retrying\n\n"
                continue
            for event, token in read:
                yield frame(event, token)
                sent = time.monotonic()
            if time.monotonic() - sent >= KEEPALIVE_S:
                yield ": ping\n\n"
                sent = time.monotonic()
