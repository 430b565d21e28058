"""``GET /v1/events``: queues' event logs as Server-Sent Events.

``?queue=Q`` (several allowed; none: every queue, a new one included within
``web.sse.ALL_WAIT_S``). Each event is ``id:`` (the resume token), ``event:`` (its type)
and one ``data:`` line of JSON (the Event). ``Last-Event-ID`` (header, or
``?last_event_id=``) resumes after that event with nothing skipped or repeated while it
is still in the log; the order and the tokens are ``redispool.events``' cursor (for one
queue the token is the bare event id). Without it the stream starts at the present.

The framing and the read loop (one blocked XREAD on a connection of its own, a comment
every ``KEEPALIVE_S`` of silence, the end at shutdown) are ``redispool.web.sse``'s,
shared with the dashboard's live feed.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from ..errors import InvalidOption
from ..events import Cursor, now_cursor
from ..keys import check_queue
from ..web import sse
from ..web.access import note
from ..web.body import BadInput


def handler(api: Any) -> Any:
    """The route handler of ``GET /v1/events`` over ``api`` (http/app.py's Api)."""

    async def events(request: Request, body: Any) -> StreamingResponse:
        named = [check_queue(q) for q in request.query_params.getlist("queue")]
        resume = sse.resume_token(request)
        try:
            cursor = Cursor.parse(resume) if resume else None
        except InvalidOption as exc:
            raise BadInput(f"Last-Event-ID: {exc}") from None
        if cursor is None:
            cursor = await now_cursor(api.aio)
        note(request, stream=True)   # how long it stays open is no latency (access.py)
        return StreamingResponse(sse.follow(api.waits, request, named, cursor), media_type=sse.MEDIA_TYPE,
                                 headers=sse.HEADERS)
    return events
