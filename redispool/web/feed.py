"""What the live views of the event logs share: ``GET /v1/events`` and the dashboard's
feed (Server-Sent Events, sse.py) and ``GET /v1/ws`` (WebSocket, http/ws.py).

A ``Feed`` is what a view follows -- some queues, every queue (a new one included within
``ALL_WAIT_S``), or one job's events in its queue's log -- and where it stands: a
``redispool.events.Cursor``, whose token is the resume token of each event sent (the
bare event id when one queue's log is read, else ``<id>@<queue>``). ``follow`` waits in
Redis (one blocked XREAD of every log followed, on a connection of its own: a blocked
read holds it) and yields what each read brought, an empty batch when the wait ran out
(the view's moment to keep its connection alive). Redis trouble is yielded too, and the
read is tried again ``RETRY_S`` later from the same cursor, so nothing is skipped. It
ends when ``stop`` is done (``LoopEngines.stop_for``: the client gone, or shutdown), or
is closed (a WebSocket's subscription replaced), at once: a read under way is cancelled
and its connection closed, not waited for (before Python 3.12 ``asyncio.wait_for``, which
redis-py sends commands with, can lose a cancellation: a read cancelled while its
connection is being set up would otherwise hold the view for its whole wait).
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from ..aio import async_client
from ..errors import REDIS_TROUBLE, RedispoolError
from ..events import Cursor, now_cursor, read_queues
from ..models import Event

WAIT_S = 5.0            # one blocked read of named queues
ALL_WAIT_S = 1.0        # ... of every queue: the list is read again after it, so a new queue shows within 1 s
BATCH = 100             # events per read and log
RETRY_S = 1.0           # pause after Redis trouble
TROUBLE: tuple[type[BaseException], ...] = (RedispoolError, *REDIS_TROUBLE)

Sent = tuple[Event, str]   # an event and its resume token


class Feed:
    """What one view follows: ``queues`` (none: every queue), or with ``job`` that job's
    events only (``queues`` is then its one queue), after ``cursor`` (None: from the
    present, set at the first read)."""

    def __init__(self, queues: Sequence[str] = (), cursor: Cursor | None = None, job: str | None = None) -> None:
        self.queues = list(dict.fromkeys(queues))
        self.cursor = cursor
        self.job = job
        self.full = False   # the last read returned all it could (more are waiting)
        if job is not None and len(self.queues) != 1:
            raise ValueError("a job's feed reads its one queue")

    async def read(self, aio: Any, client: Any) -> list[Sent]:
        """The next events (none when the wait ran out), the cursor moved past them."""
        if self.cursor is None:
            self.cursor = await now_cursor(aio)
        queues = self.queues or await aio.queues()
        events = await read_queues(aio, client, queues, self.cursor, limit=BATCH,
                                   block=WAIT_S if self.queues else ALL_WAIT_S)
        self.full = len(events) >= BATCH
        single = len(self.queues) == 1
        out = []
        for event in events:
            self.cursor = Cursor(event.id, "" if single else event.queue)
            if self.job is None or event.job_id == self.job:
                out.append((event, self.cursor.token))
        return out


def _retrieve(read: asyncio.Future[Any]) -> None:
    """Take a read's outcome, so that asyncio never logs a dropped one's as never retrieved."""
    if not read.cancelled():
        read.exception()


async def follow(aio: Any, feed: Feed, stop: asyncio.Future[str]
                 ) -> AsyncGenerator[list[Sent] | BaseException, None]:
    """Each read's events (possibly none) or its Redis trouble, until ``stop`` is done
    (see the module's docstring)."""
    client = async_client(aio.engine, max_connections=None)   # a blocked read holds its connection
    try:
        while not stop.done():
            read = asyncio.ensure_future(feed.read(aio, client))
            read.add_done_callback(_retrieve)
            waits: set[asyncio.Future[Any]] = {read, stop}
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not read.done():   # the generator ends: closing the client below ends the read too
                    read.cancel()
            if stop.done():
                return
            trouble = read.exception()
            if trouble is None:
                yield read.result()
                continue
            if not isinstance(trouble, TROUBLE):
                raise trouble
            yield trouble
            await asyncio.wait({stop}, timeout=RETRY_S)
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


class Following:
    """A socket's ``follow()`` of one feed and the read under way (``next``), which the
    socket's loop waits on beside the client's messages (the native ``/v1/ws`` and the
    spooled ``/ws`` both hold one)."""

    def __init__(self) -> None:
        self.reads: AsyncGenerator[list[Sent] | BaseException, None] | None = None
        self.next: asyncio.Future[list[Sent] | BaseException] | None = None

    def start(self, aio: Any, feed: Feed, stop: asyncio.Future[str]) -> None:
        self.reads = follow(aio, feed, stop)
        self.next = asyncio.ensure_future(anext(self.reads))

    def waiting(self) -> list[asyncio.Future[list[Sent] | BaseException]]:
        """The read under way, to wait on (none when nothing is followed)."""
        return [self.next] if self.next is not None else []

    @property
    def ready(self) -> bool:
        return self.next is not None and self.next.done()

    def take(self) -> list[Sent] | BaseException | None:
        """What the finished read brought (None: ``follow()`` ended, at the shutdown), and
        the next read started."""
        assert self.next is not None and self.reads is not None
        try:
            read = self.next.result()
        except StopAsyncIteration:
            self.reads = self.next = None
            return None
        self.next = asyncio.ensure_future(anext(self.reads))
        return read

    async def stop(self) -> None:
        """End the reading (its read under way is cancelled)."""
        if self.next is not None and not self.next.done():
            self.next.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.next
        if self.reads is not None:
            with contextlib.suppress(Exception):
                await self.reads.aclose()
        self.reads = self.next = None
