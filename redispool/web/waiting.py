"""The server's async engine (redispool/aio.py), one per event loop, and the end of waits.

One ``LoopEngines`` serves every face of ``redispool serve`` (the API's long-polls and
event stream, the dashboard's live feed), so one ``interrupt()`` at shutdown ends them all.

uvicorn runs one loop; Starlette's test client may run each request on a new one, and a
``redis.asyncio`` connection belongs to the loop that opened it, so the engine is made
again when the loop changes. ``stop_for(request)`` is what ends a long-poll early: the
client going away, or ``interrupt()`` at shutdown (then every waiting claim answers at
once with no job, while other requests finish normally). A WebSocket reads its client's
messages itself, so its ``stop_for(None)`` watches for the shutdown only.
``interrupt(settle=S)`` also waits up to S seconds for the waits to have ended, so that
``redispool serve`` closes its connections only after every stream sent its last frame
(a WebSocket its own close, 1001, not the server's 1012).
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.types import Receive

from ..aio import AsyncEngine
from ..engine import Engine

GONE, SHUTDOWN = "gone", "shutdown"


class LoopEngines:
    """The AsyncEngine of the running event loop, and the shutdown switch of its waits."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.closing = False
        self._aio: AsyncEngine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Event | None = None
        self._open: set[asyncio.Future[None]] = set()   # one per stop_for under way: done when it ends

    def get(self) -> AsyncEngine:
        loop = asyncio.get_running_loop()
        if self._aio is None or self._loop is not loop:
            self._aio, self._loop, self._shutdown = AsyncEngine(self.engine), loop, asyncio.Event()
        return self._aio

    @contextlib.asynccontextmanager
    async def stop_for(self, receive: Receive | None) -> AsyncIterator[asyncio.Future[str]]:
        """A future done with GONE when the client disconnects (``receive`` is the ASGI
        receive of a request whose body was read; None: not watched) or with SHUTDOWN at
        ``interrupt()``."""
        self.get()
        shutdown = self._shutdown
        assert shutdown is not None   # get() made it for this loop
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[str] = loop.create_future()
        if self.closing:
            stop.set_result(SHUTDOWN)

        async def watch() -> None:
            gone = asyncio.ensure_future(_disconnect(receive) if receive is not None else loop.create_future())
            shut = asyncio.ensure_future(shutdown.wait())
            try:
                done, _ = await asyncio.wait({gone, shut}, return_when=asyncio.FIRST_COMPLETED)
                if not stop.done():
                    stop.set_result(GONE if gone in done else SHUTDOWN)
            finally:
                gone.cancel()
                shut.cancel()

        watcher = asyncio.ensure_future(watch())
        ended: asyncio.Future[None] = loop.create_future()
        self._open.add(ended)
        try:
            yield stop
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            ended.set_result(None)
            self._open.discard(ended)

    async def interrupt(self, settle: float = 0.0) -> None:
        """Shutting down: end every wait now (their claims answer with no jobs), and give
        them up to ``settle`` s to have ended."""
        self.closing = True
        if self._shutdown is not None and self._loop is asyncio.get_running_loop():
            self._shutdown.set()
            open_here = {f for f in self._open if f.get_loop() is self._loop}
            if settle > 0 and open_here:
                await asyncio.wait(open_here, timeout=settle)

    async def close(self) -> None:
        if self._aio is not None and self._loop is asyncio.get_running_loop():
            await self._aio.close()
        self._aio = None


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
