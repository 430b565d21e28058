"""``GET /v1/events``: queues' event logs as Server-Sent Events.

``?queue=Q`` (several allowed; none: every queue, a new one included within
``ALL_WAIT_S``). Each event is ``id:`` (the resume token), ``event:`` (its type) and one
``data:`` line of JSON (the Event), so clients that keep only the last ``data:`` line still get it
whole. ``Last-Event-ID`` (header, or ``?last_event_id=``) resumes after that event with
nothing skipped or repeated while it is still in the log; the order and the tokens are
``redispool.events``' cursor (for one queue the token is the bare event id). Without it
the stream starts at the present.

The stream waits in Redis (one blocked XREAD of every log it follows, on a connection of
its own) and writes a comment line when it has sent nothing for ``KEEPALIVE_S``, so
proxies and clients with a read timeout keep it open. It ends when the client goes away
and at shutdown (``LoopEngines.interrupt``, which SIGTERM triggers), cleanly: the last
frame is complete.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from .. import tojson
from ..aio import async_client
from ..errors import REDIS_TROUBLE, InvalidOption, RedispoolError
from ..events import Cursor, now_cursor, read_queues
from ..keys import check_queue
from ..web.body import BadInput

KEEPALIVE_S = 10.0      # a comment after this long without a frame (the SPEC's bound is 15 s)
WAIT_S = 5.0            # one blocked read of named queues
ALL_WAIT_S = 1.0        # ... of every queue: the list is read again after it, so a new queue shows within 1 s
BATCH = 100             # events per read and log
RETRY_S = 1.0           # pause after Redis trouble
TROUBLE: tuple[type[BaseException], ...] = (RedispoolError, *REDIS_TROUBLE)


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
        aio = api.aio
        if cursor is None:
            cursor = await now_cursor(aio)
        return StreamingResponse(stream(api, request, named, cursor), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return events


async def stream(api: Any, request: Request, named: list[str], cursor: Cursor) -> AsyncIterator[str]:
    aio = api.aio
    single = len(named) == 1
    client = async_client(aio.engine, max_connections=None)   # a blocked read holds its connection
    try:
        async with api.waits.stop_for(request.receive) as stop:
            yield ": connected\n\n"
            sent = time.monotonic()
            while not stop.done():
                queues = named or await aio.queues()
                read = asyncio.ensure_future(read_queues(aio, client, queues, cursor, limit=BATCH,
                                                       block=WAIT_S if named else ALL_WAIT_S))
                await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not read.done():
                    read.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await read
                    break
                try:
                    events = read.result()
                except TROUBLE:   # Redis trouble: say so (a comment) and read again shortly
                    yield ": redis unavailable, retrying\n\n"
                    await asyncio.sleep(RETRY_S)
                    continue
                for event in events:
                    cursor = Cursor(event.id, "" if single else event.queue)
                    yield frame(event, cursor.token)
                    sent = time.monotonic()
                if time.monotonic() - sent >= KEEPALIVE_S:
                    yield ": ping\n\n"
                    sent = time.monotonic()
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
