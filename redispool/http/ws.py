"""``GET /v1/ws``: the queues' event logs over a WebSocket, the same events as
``GET /v1/events`` (events.py) for what the client subscribes to.

The handshake needs a token as every ``/v1`` route does (``Authorization: Bearer``, role
``read`` or above); without one it is refused with 401 before the upgrade (a close with
1008 where the server cannot send a response). Then every frame either way is one JSON
object, text (a binary frame of UTF-8 JSON is read the same), whose one key says what it is.

Client to server:

- ``{"subscribe": {"queues": [...]}}`` (empty or left out: every queue) or
  ``{"subscribe": {"job": [queue, id]}}`` (that job's events only), with ``"after":
  TOKEN`` to resume right after the event that token was sent with (nothing skipped or
  repeated while the events are still in the log), else from the present. A later
  subscribe replaces the subscription.
- ``{"unsubscribe": {}}``: no more events (the socket stays open).
- ``{"ping": ANY}``: answered ``{"pong": ANY}`` (the server pings at the protocol level
  itself; this is for clients, such as browsers, that cannot see those).

Server to client:

- ``{"subscribed": {"queues": [...] | "job": [queue, id], "cursor": TOKEN}}``: the
  subscription in force from now on, and the token of where it starts (null when Redis
  could not be asked: then it starts at the present once Redis answers);
- ``{"event": EVENT, "cursor": TOKEN}`` per event, ``EVENT`` the Event as in the SSE
  ``data:`` line, ``TOKEN`` its resume token (the SSE ``id:``: the bare event id for one
  queue or one job, ``<id>@<queue>`` for several or every queue);
- ``{"unsubscribed": {}}``, ``{"pong": ANY}``;
- ``{"error": CODE, "message": TEXT}``: ``bad_input`` for a message that could not be
  used (the subscription in force stays), ``unavailable`` (or ``busy``) once when Redis
  fails: the subscription stays and its events follow from where they stopped once Redis
  answers again.

The socket ends when the client closes it, and at shutdown (``LoopEngines.interrupt``,
which SIGTERM triggers) with close code 1001 after the last complete frame.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import tojson, validate
from ..errors import RedispoolError
from ..events import Cursor, now_cursor
from ..keys import check_queue
from ..web import outage
from ..web.body import BadInput, fields, loads
from ..web.endpoint import Forbidden, Unauthorized, check_role, refuse
from ..web.feed import TROUBLE, Feed, Following

log = logging.getLogger("redispool.http")

GOING_AWAY = 1001        # close code at shutdown
INTERNAL = 1011          # ... of a server bug
MAX_MESSAGE = 64 * 1024  # bytes of one client message (uvicorn's ws_max_size: a bigger one closes with 1009)
SUBSCRIBE = {"queues": (list, None, None), "job": (list, None, None), "after": (str, None, None)}
ACTIONS = ("subscribe", "unsubscribe", "ping")

Render = Callable[[int, str, str], Response]   # (status, code, message) -> the API's error response


def handler(api: Any, render: Render) -> Callable[[WebSocket], Awaitable[None]]:
    """The endpoint of ``GET /v1/ws`` over ``api`` (http/app.py's Api); ``render`` builds
    the API's error response for a refused handshake."""

    async def ws(websocket: WebSocket) -> None:
        try:
            check_role(websocket, api.tokens, "read")
        except (Unauthorized, Forbidden) as exc:
            status, code = (401, "unauthorized") if isinstance(exc, Unauthorized) else (403, "forbidden")
            await refuse(websocket, render(status, code, str(exc)))
            return
        await websocket.accept()
        session = Session(api, websocket)
        try:
            await session.run()
        except WebSocketDisconnect:   # gone while a frame was sent
            pass
        except Exception:
            log.exception("GET /v1/ws: unexpected error")
            with contextlib.suppress(Exception):
                await websocket.close(INTERNAL, "internal error")
    return ws


class Session:
    """One accepted socket: the client's messages and its subscription's events, in one
    task, so frames never interleave."""

    def __init__(self, api: Any, websocket: WebSocket) -> None:
        self.api = api
        self.websocket = websocket
        self.following = Following()   # the subscription's reading
        self.troubled = False   # Redis trouble was told, and no read worked since

    async def run(self) -> None:
        async with self.api.waits.stop_for(None) as stop:
            incoming = asyncio.ensure_future(self.websocket.receive())
            try:
                while True:
                    await asyncio.wait({incoming, stop, *self.following.waiting()},
                                       return_when=asyncio.FIRST_COMPLETED)
                    if stop.done():
                        await self.unsubscribe()
                        await self.websocket.close(GOING_AWAY, "server shutting down")
                        return
                    if incoming.done():
                        message = incoming.result()
                        if message["type"] == "websocket.disconnect":
                            return
                        incoming = asyncio.ensure_future(self.websocket.receive())
                        await self.on_message(message, stop)
                    if self.following.ready:
                        await self.on_read()
            finally:
                incoming.cancel()
                await self.unsubscribe()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.websocket.send_text(tojson.dumps(frame))

    # ------------------------------------------------------------------ from the client
    async def on_message(self, message: Mapping[str, Any], stop: asyncio.Future[str]) -> None:
        """One client message; one that cannot be used is answered with an error frame."""
        try:
            text = message.get("text")
            if text is None:
                try:
                    text = (message.get("bytes") or b"").decode("utf-8")
                except UnicodeDecodeError:
                    raise BadInput("a message is JSON text (UTF-8)") from None
            try:
                body = loads(text)
            except BadInput as exc:
                raise BadInput(str(exc).replace("the body", "the message", 1)) from None
            if not isinstance(body, dict) or len(body) != 1 or next(iter(body)) not in ACTIONS:
                raise BadInput('a message is a JSON object with one key: "subscribe", "unsubscribe" or "ping"')
            [(action, value)] = body.items()
            if action == "subscribe":
                await self.subscribe(value, stop)
            elif action == "unsubscribe":
                fields(value, {}, "unsubscribe")
                await self.unsubscribe()
                await self.send({"unsubscribed": {}})
            else:
                await self.send({"pong": value})
        except RedispoolError as exc:
            await self.send({"error": "bad_input", "message": str(exc)})

    async def subscribe(self, value: Any, stop: asyncio.Future[str]) -> None:
        """Replace the subscription (everything is checked first: a bad one changes nothing)."""
        s = fields(value, SUBSCRIBE, "subscribe")
        if s["queues"] is not None and s["job"] is not None:
            raise BadInput("subscribe to queues or to one job, not both")
        job = None
        if s["job"] is not None:
            if len(s["job"]) != 2 or not all(isinstance(x, str) for x in s["job"]):
                raise BadInput("job must be [queue, id]")
            queues, job = [check_queue(s["job"][0])], validate.identifier(s["job"][1], "the job id")
        else:
            queues = [check_queue(q) for q in s["queues"] or []]
        cursor = None
        if s["after"] is not None:
            try:
                cursor = Cursor.parse(s["after"])
            except RedispoolError as exc:
                raise BadInput(f"after: {exc}") from None
        await self.unsubscribe()
        feed = Feed(queues, cursor, job)
        aio = self.api.aio
        if feed.cursor is None:
            try:
                feed.cursor = await now_cursor(aio)
            except TROUBLE as exc:   # the read sets it once Redis answers
                await self.trouble(exc)
        what: dict[str, Any] = {"job": [queues[0], job]} if job is not None else {"queues": feed.queues}
        await self.send({"subscribed": {**what, "cursor": feed.cursor.token if feed.cursor else None}})
        self.following.start(aio, feed, stop)

    async def unsubscribe(self) -> None:
        """End the subscription's reading (its read under way is cancelled)."""
        await self.following.stop()

    # ------------------------------------------------------------------ from Redis
    async def on_read(self) -> None:
        """Send what the read under way brought, and start the next."""
        read = self.following.take()
        if read is None:   # follow() ended: the shutdown, which run() sees
            return
        if isinstance(read, BaseException):
            await self.trouble(read)
            return
        self.troubled = False
        for event, token in read:
            await self.send({"event": event.to_dict(), "cursor": token})

    async def trouble(self, exc: BaseException) -> None:
        """Tell the client once that Redis is in trouble (the log gets the details)."""
        if self.troubled:
            return
        self.troubled = True
        code = outage.kind(exc)
        message, _ = outage.public(code, str(exc), "GET /v1/ws")
        await self.send({"error": code, "message": f"{message}; the subscription stays and resumes when it answers"})
