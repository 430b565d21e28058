"""The spooled job service's realtime routes on the queues' event logs:
``GET /api/v1/events[?queue=Q]``, ``GET /api/v1/events/jobs/{id}`` (Server-Sent Events)
and ``GET /api/v1/ws`` (WebSocket), what ``SpooledClient(...).realtime()``,
``SSEClient`` and ``WebSocketClient`` read.

Nothing is published twice: every route follows the event logs that the Lua scripts
write in the same call as each change (``web.feed``'s read loop, one blocked XREAD per
stream on a connection of its own, as ``/v1/events`` and ``/v1/ws``), and translates each
event into the service's (``translate``):

    enqueued, waiting         JobCreated {job_id, queue_name, priority, timestamp}
    enqueued (parents done)   JobStatusChange pending -> pending|scheduled (sent when they differ)
    claimed                   JobStatusChange pending -> processing
    completed                 JobCompleted {..., duration_ms, result}, JobStatusChange -> completed
    failed (a retry waits)    JobStatusChange processing -> scheduled
    dead                      JobFailed {..., error, retry_count}, JobStatusChange -> deadletter
    released, expired         JobStatusChange processing -> pending
    cancelled, replayed       JobStatusChange <old> -> cancelled, deadletter -> pending

(a retry that waits is ``scheduled``, not the service's ``failed``: its clients take
``failed`` for the end of a job and close the job's stream). Worker events come from the
worker registry, read at most every ``WORKER_POLL_S`` by an unfiltered stream or socket
(``/events`` without ``queue``, a socket without a subscription): a new worker is
``WorkerRegistered``, a newer heartbeat ``WorkerHeartbeat``, a gone one
``WorkerDeregistered``. Pings: ``Ping {timestamp}`` when a stream or socket opens, on a
socket every ``PING_S`` and on ``{"cmd": "ping"}``, on a stream after ``KEEPALIVE_S``
without a frame.

SSE frames are ``event: <dotted name>`` and one ``data:`` line of ``{"type":
"<PascalCase>", "data": {...}}``; a job's stream starts with its current status
(``old_status: ""``) and ends right after a terminal one (``completed``, ``deadletter``,
``cancelled``); an unknown job gets one ``error`` event and the end. WebSocket frames are
``{"type", "data"}`` objects; the client sends ``{"cmd": "subscribe"|"unsubscribe"|"ping",
"queue"?, "job_id"?}`` (``cmd`` in any case), never acknowledged; one filter per socket
(a subscribe sets the fields it names, an unsubscribe clears them, or all), no filter:
every queue. A stream or socket starts at the present (the position is taken before the
response or the handshake, so what happens once the client is connected is never
missed), and a new filter goes on from where the old one stood.

Tokens: a login token or an API key, as ``Authorization: Bearer`` or ``?token=``
(``spooled_auth.TokenAuth``), role ``read``.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import tojson
from ..errors import RedispoolError
from ..events import Cursor
from ..keys import check_queue
from ..models import Event
from ..web import sse
from ..web.access import note
from ..web.endpoint import Forbidden, Unauthorized, check_role, refuse
from ..web.feed import TROUBLE, Feed, Following, Sent, follow
from ..web.waiting import LoopEngines
from .common import iso
from .spooled import STATUS, SpooledApi, error, public_id, split_id

WORKER_POLL_S = 2.0       # how often an unfiltered stream reads the worker registry
PING_S = 30.0             # a socket's Ping
RESULT_MAX = 512 * 1024   # bytes of a JobCompleted's result (the SDK's socket takes frames of 1 MiB at most)
KEEPALIVE_S = sse.KEEPALIVE_S
TERMINAL = ("completed", "deadletter", "cancelled")
DOTTED = {"JobCreated": "job.created", "JobStatusChange": "job.status", "JobCompleted": "job.completed",
          "JobFailed": "job.failed", "WorkerHeartbeat": "worker.heartbeat", "WorkerRegistered": "worker.registered",
          "WorkerDeregistered": "worker.deregistered", "Ping": "ping", "Error": "error"}
COMMANDS = ("subscribe", "unsubscribe", "ping")

Out = dict[str, Any]       # {"type": PascalCase, "data": {...}}


def _out(kind: str, data: dict[str, Any]) -> Out:
    return {"type": kind, "data": data}


def ping() -> Out:
    return _out("Ping", {"timestamp": iso(time.time())})


def _status_change(job: str, queue: str, old: str, new: str, at: str | None) -> Out:
    return _out("JobStatusChange", {"job_id": job, "queue_name": queue, "old_status": old, "new_status": new,
                                    "timestamp": at})


def translate(event: Event) -> list[Out]:
    """The service's events for one of the log's (none for progress, pause, resume).
    JobCompleted's ``result`` is filled in by the caller (the log does not hold it)."""
    if event.job_id is None:
        return []
    job, queue, at, d = public_id(event.queue, event.job_id), event.queue, iso(event.at), event.data
    kind = event.type
    if kind == "enqueued" and d.get("previous") == "waiting":
        new = STATUS.get(d.get("state", "ready"), "pending")
        return [] if new == "pending" else [_status_change(job, queue, "pending", new, at)]
    if kind in ("enqueued", "waiting"):
        return [_out("JobCreated", {"job_id": job, "queue_name": queue, "priority": d.get("priority", 0),
                                    "timestamp": at})]
    if kind == "claimed":
        return [_status_change(job, queue, "pending", "processing", at)]
    if kind == "completed":
        return [_out("JobCompleted", {"job_id": job, "queue_name": queue, "duration_ms": 0, "timestamp": at}),
                _status_change(job, queue, "processing", "completed", at)]
    if kind == "failed":
        return [_status_change(job, queue, "processing", STATUS.get(d.get("state", "scheduled"), "scheduled"), at)]
    if kind == "dead":
        return [_out("JobFailed", {"job_id": job, "queue_name": queue, "error": d.get("error", ""),
                                   "retry_count": max(0, int(d.get("attempt", 1)) - 1), "timestamp": at}),
                _status_change(job, queue, "processing", "deadletter", at)]
    if kind == "released" or (kind == "expired" and d.get("state") == "ready"):
        return [_status_change(job, queue, "processing", "pending", at)]
    if kind == "cancelled":
        return [_status_change(job, queue, STATUS.get(d.get("previous", ""), "pending"), "cancelled", at)]
    if kind == "replayed":
        return [_status_change(job, queue, "deadletter", "pending", at)]
    return []


def finished(out: Out) -> bool:
    """Whether ``out`` tells a job's end (its stream closes after it)."""
    return out["type"] == "JobStatusChange" and out["data"]["new_status"] in TERMINAL


def sse_frame(out: Out) -> str:
    return f"event: {DOTTED[out['type']]}\ndata: {tojson.dumps(out)}\n\n"


class Watch:
    """What one stream or socket follows -- a queue or every queue, or one job -- and
    where it stands (``feed``); ``workers`` polls the registry when nothing is filtered."""

    def __init__(self, aio: Any, cursor: Cursor | None, queue: str | None = None, job: str | None = None) -> None:
        self.aio = aio
        self.queue, self.job = queue, job
        self.cursor = cursor
        self.feed = self._feed()
        self._workers: dict[str, float] | None = None   # id -> last heartbeat, as last read
        self._polled = -float("inf")

    @property
    def unfiltered(self) -> bool:
        return self.queue is None and self.job is None

    def _feed(self) -> Feed:
        if self.job is not None:
            queue, job_id = split_id(self.job)
            return Feed([queue], self.cursor, job_id)
        return Feed([self.queue] if self.queue else [], self.cursor)

    def refilter(self, queue: str | None, job: str | None) -> None:
        """Follow another filter from where this one stands."""
        self.cursor = self.feed.cursor or self.cursor
        self.queue, self.job = queue, job
        self.feed = self._feed()
        self._workers = None

    def wanted(self, out: Out) -> bool:
        return self.queue is None or out["data"].get("queue_name") == self.queue

    async def translate(self, read: list[Sent]) -> list[Out]:
        outs: list[Out] = []
        for event, _ in read:
            for out in translate(event):
                if not self.wanted(out):
                    continue
                if out["type"] == "JobCompleted" and event.job_id is not None:
                    with contextlib.suppress(*TROUBLE):
                        info = await self.aio.get(event.queue, event.job_id)
                        result = tojson.jsonable(info.result) if info is not None else None
                        if len(tojson.dumps(result)) <= RESULT_MAX:   # else left out: see RESULT_MAX
                            out["data"]["result"] = result
                outs.append(out)
        return outs

    async def workers(self) -> list[Out]:
        """Worker events since the last poll (none on the first, none when filtered)."""
        if not self.unfiltered or time.monotonic() - self._polled < WORKER_POLL_S:
            return []
        self._polled = time.monotonic()
        try:
            now = {w.id: w for w in await self.aio.workers()}
        except TROUBLE:
            return []
        seen, self._workers = self._workers, {i: w.last_heartbeat for i, w in now.items()}
        if seen is None:
            return []
        at = iso(time.time())
        outs = [_out("WorkerDeregistered", {"worker_id": i, "timestamp": at}) for i in seen if i not in now]
        for i, w in now.items():
            if i not in seen:
                outs.append(_out("WorkerRegistered", {"worker_id": i, "queue_name": w.queues[0] if w.queues else "",
                                                      "timestamp": at}))
            elif w.last_heartbeat > seen[i]:
                data = {"worker_id": i, "status": "healthy", "timestamp": iso(w.last_heartbeat)}
                if w.jobs_in_progress:   # an HTTP worker's are public ids already, a Python worker's not
                    current = w.jobs_in_progress[0]
                    data["current_job_id"] = current if "~" in current or not w.queues else public_id(w.queues[0],
                                                                                                      current)
                outs.append(_out("WorkerHeartbeat", data))
        return outs


class Realtime:
    """The routes, over the spooled API's engine and the server's ``LoopEngines``."""

    def __init__(self, api: SpooledApi, waits: LoopEngines) -> None:
        self.api = api
        self.waits = waits

    def routes(self, v1: str) -> list[BaseRoute]:
        return [self.api.route("GET", v1 + "/events", "read", self.events),
                self.api.route("GET", v1 + "/events/jobs/{id:path}", "read", self.job_events),
                WebSocketRoute(v1 + "/ws", self.ws)]

    async def _start(self) -> tuple[Any, Cursor]:
        aio = self.waits.get()
        return aio, await sse.present(aio, aio.client)

    def _streaming(self, request: Request, frames: AsyncIterator[str]) -> StreamingResponse:
        note(request, stream=True)
        return StreamingResponse(frames, media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)

    # ------------------------------------------------------------------ SSE
    async def events(self, request: Request, body: Any) -> StreamingResponse:
        queue = request.query_params.get("queue") or None
        if queue is not None:
            check_queue(queue)
        aio, cursor = await self._start()
        watch = Watch(aio, cursor, queue=queue)
        await watch.workers()   # the registry as it is now: what changes from here is told
        return self._streaming(request, self._stream(request, watch, []))

    async def job_events(self, request: Request, body: Any) -> StreamingResponse:
        public = request.path_params["id"]
        aio, cursor = await self._start()   # before the status is read: no change falls between
        try:
            queue, job_id = split_id(public)
            info = await aio.get(queue, job_id)
        except RedispoolError:
            info = None
        if info is None:
            return self._streaming(request, _once(_out("Error", {"message": "Job not found",
                                                                 "timestamp": iso(time.time())})))
        status = STATUS.get(info.state, info.state)
        first = _status_change(public, info.queue, "", status, iso(time.time()))
        return self._streaming(request, self._stream(request, Watch(aio, cursor, job=public), [first]))

    async def _stream(self, request: Request, watch: Watch, first: list[Out]) -> AsyncGenerator[str, None]:
        async with self.waits.stop_for(request.receive) as stop, \
                contextlib.aclosing(follow(watch.aio, watch.feed, stop)) as reads:
            yield ": connected\n\n"
            yield sse_frame(ping())
            for out in first:
                yield sse_frame(out)
                if watch.job is not None and finished(out):
                    return
            sent = time.monotonic()
            async for read in reads:
                if isinstance(read, BaseException):   # Redis trouble: the feed reads again shortly
                    yield ": redis unavailable, retrying\n\n"
                    continue
                for out in await watch.translate(read) + await watch.workers():
                    yield sse_frame(out)
                    sent = time.monotonic()
                    if watch.job is not None and finished(out):
                        return
                if time.monotonic() - sent >= KEEPALIVE_S:
                    yield sse_frame(ping())
                    sent = time.monotonic()

    # ------------------------------------------------------------------ WebSocket
    async def ws(self, websocket: WebSocket) -> None:
        try:
            check_role(websocket, self.api.tokens, "read")
        except (Unauthorized, Forbidden) as exc:
            status, code = (401, "UNAUTHORIZED") if isinstance(exc, Unauthorized) else (403, "ACCESS_DENIED")
            await refuse(websocket, error(status, code, str(exc)))
            return
        try:
            aio, cursor = await self._start()
        except TROUBLE:   # the feed takes the present once Redis answers
            aio, cursor = self.waits.get(), None
        watch = Watch(aio, cursor)
        await watch.workers()
        await websocket.accept()
        session = Session(self.waits, websocket, watch)
        with contextlib.suppress(WebSocketDisconnect):
            await session.run()


async def _once(out: Out) -> AsyncGenerator[str, None]:
    yield ": connected\n\n"
    yield sse_frame(out)


class Session:
    """One socket: the client's commands, the filter's events and the pings, in one task."""

    def __init__(self, waits: LoopEngines, websocket: WebSocket, watch: Watch) -> None:
        self.waits = waits
        self.websocket = websocket
        self.watch = watch
        self.following = Following()   # the filter's reading

    async def send(self, out: Out) -> None:
        await self.websocket.send_text(tojson.dumps(out))

    async def run(self) -> None:
        async with self.waits.stop_for(None) as stop:
            self.following.start(self.watch.aio, self.watch.feed, stop)
            incoming = asyncio.ensure_future(self.websocket.receive())
            await self.send(ping())
            pinged = time.monotonic()
            try:
                while True:
                    waits: set[asyncio.Future[Any]] = {incoming, stop, *self.following.waiting()}
                    await asyncio.wait(waits, timeout=max(0.0, pinged + PING_S - time.monotonic()),
                                       return_when=asyncio.FIRST_COMPLETED)
                    if stop.done():
                        await self.websocket.close(1001, "server shutting down")
                        return
                    if incoming.done():
                        message = incoming.result()
                        if message["type"] == "websocket.disconnect":
                            return
                        incoming = asyncio.ensure_future(self.websocket.receive())
                        await self.command(message, stop)
                    if self.following.ready:
                        await self.on_read()
                    if time.monotonic() - pinged >= PING_S:
                        await self.send(ping())
                        pinged = time.monotonic()
            finally:
                incoming.cancel()
                await self.following.stop()

    async def command(self, message: Mapping[str, Any], stop: asyncio.Future[str]) -> None:
        """One client command; one that cannot be used gets an Error event (no acks)."""
        text = message.get("text")
        if text is None:
            text = (message.get("bytes") or b"").decode("utf-8", "replace")
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        cmd = str(body.get("cmd", "")).lower() if isinstance(body, dict) else ""
        if cmd not in COMMANDS or not isinstance(body, dict):
            await self.send(_out("Error", {"message": 'a command is {"cmd": "subscribe"|"unsubscribe"|"ping", '
                                                      '"queue"?, "job_id"?}', "timestamp": iso(time.time())}))
            return
        if cmd == "ping":
            await self.send(ping())
            return
        queue, job = body.get("queue"), body.get("job_id")
        try:
            if queue is not None and not isinstance(queue, str) or job is not None and not isinstance(job, str):
                raise ValueError("queue and job_id are strings")
            if queue:
                check_queue(queue)
            if job:
                split_id(job)
        except (ValueError, RedispoolError) as exc:
            await self.send(_out("Error", {"message": str(exc), "timestamp": iso(time.time())}))
            return
        new_queue, new_job = self.watch.queue, self.watch.job
        if cmd == "subscribe":
            new_queue, new_job = queue or new_queue, job or new_job
        elif not queue and not job:
            new_queue = new_job = None
        else:
            new_queue = None if queue else new_queue
            new_job = None if job else new_job
        if (new_queue, new_job) != (self.watch.queue, self.watch.job):
            await self.following.stop()
            self.watch.refilter(new_queue, new_job)
            self.following.start(self.watch.aio, self.watch.feed, stop)

    async def on_read(self) -> None:
        read = self.following.take()
        if read is None:   # follow() ended: the shutdown, which run() sees
            return
        if isinstance(read, BaseException):
            return   # Redis trouble: the feed reads again shortly, from where it stood
        for out in await self.watch.translate(read) + await self.watch.workers():
            await self.send(out)
