"""One wait hub per event loop: claims waiting on a queue share one blocked connection.

A claim that finds nothing waits for its queue's wake-up marker (``rp:{q}:marker``, set
by every write that makes a job ready). One ``BZPOPMIN`` per waiting request would hold
one Redis connection each, so a thousand waiting HTTP workers would need a thousand
connections (and exhaust any pool long before). Here each queue with waiters has one
watcher task instead: ``BZPOPMIN`` on the marker on the hub's own connection (read with
wait + read timeout, blocking.py); when it pops the marker it wakes, oldest first, as
many waiters as the ready jobs can serve (their claim limits summed; with one waiter,
it wakes it without counting), and each of those
claims with an ordinary script call (under a concurrency cap, only as many as the cap has
free slots: the queue's limits, limits.py). A waiter that finds nothing waits again. The claim
script sets the marker again while jobs remain, so the watcher wakes the next ones. A
marker popped with nobody left to wake is put back, so another claimer of the queue (a
Python worker blocking on the same marker) does not sleep through a ready job.

Redis trouble in a watcher wakes every waiter of its queue: their claims then report the
trouble (or succeed, when it was one stale connection), and the watcher tries again
after a short pause.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis

from .. import blocking
from ..errors import REDIS_TROUBLE, RedispoolError

log = logging.getLogger("redispool.hub")
WATCH_S = 5.0         # one BZPOPMIN's wait: a watcher left with no waiter ends within this
RETRY_S = (0.05, 2.0)  # pause after Redis trouble: first, and at most (doubling)
_TROUBLE: tuple[type[BaseException], ...] = (*REDIS_TROUBLE, redis.RedisError, RedispoolError)


class _Waiter:
    __slots__ = ("future", "limit")

    def __init__(self, future: asyncio.Future[bool], limit: int) -> None:
        self.future, self.limit = future, limit


class WaitHub:
    """Waits for jobs on behalf of many claims, one blocked connection per queue.

    ``client`` is a ``redis.asyncio`` client of its own (its blocked connections must not
    take the places of short requests in their pool); ``keys_of(queue)`` gives the
    queue's keys. Belongs to the event loop that first uses it.
    """

    def __init__(self, client: Any, keys_of: Callable[[str], Any],
                 rewake: Callable[[str], Awaitable[None]]) -> None:
        self.client = client
        self.keys_of = keys_of
        self.rewake = rewake   # sets a queue's marker again (rewake.lua; AsyncEngine.rewake)
        self._waiters: dict[str, dict[int, _Waiter]] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._ids = itertools.count()
        self._closed = False

    def waiting(self) -> int:
        """How many claims wait now (all queues)."""
        return sum(len(w) for w in self._waiters.values())

    async def wait(self, queue: str, timeout: float, limit: int = 1) -> bool:
        """Wait up to ``timeout`` s until ``queue`` may have a ready job: True when woken
        (claim now), False on timeout. Cancelling it is safe: a wake-up it had taken is
        passed on."""
        if self._closed:
            return False
        waiter = _Waiter(asyncio.get_running_loop().create_future(), max(1, limit))
        key = next(self._ids)
        waiters = self._waiters.setdefault(queue, {})
        waiters[key] = waiter
        if queue not in self._watchers:
            self._watchers[queue] = asyncio.ensure_future(self._watch(queue))
        try:
            await asyncio.wait({waiter.future}, timeout=max(0.0, timeout))
        except asyncio.CancelledError:
            woken = waiter.future.done() and not waiter.future.cancelled() and waiter.future.result()
            if woken:  # it took a wake-up, but will not claim: pass it on
                asyncio.ensure_future(self._restore(queue))
            raise
        finally:
            waiters.pop(key, None)
            if not waiter.future.done():
                waiter.future.cancel()
        return waiter.future.done() and not waiter.future.cancelled() and bool(waiter.future.result())

    def _wake(self, queue: str, jobs: int | None) -> int:
        """Wake the oldest waiters of ``queue`` whose limits cover ``jobs`` (None: all)."""
        woken = covered = 0
        waiters = self._waiters.get(queue, {})
        for key in list(waiters):
            if jobs is not None and covered >= jobs:
                break
            waiter = waiters.pop(key)
            if waiter.future.done():
                continue
            waiter.future.set_result(True)
            woken += 1
            covered += waiter.limit
        return woken

    async def _watch(self, queue: str) -> None:
        k = self.keys_of(queue)
        pause = RETRY_S[0]
        try:
            while self._waiters.get(queue) and not self._closed:
                try:
                    popped = await blocking.bzpopmin_async(self.client, [k.marker], WATCH_S)
                    if popped is None:
                        continue
                    # one waiter (a Work stream, a lone long-poll) is woken whatever is ready:
                    # counting would add a round trip to every pickup
                    waiting = len(self._waiters.get(queue) or ())
                    ready = waiting if waiting <= 1 else await self._claimable(k)
                except asyncio.CancelledError:
                    raise
                except _TROUBLE as exc:
                    log.debug("wait hub: %s: %s", queue, exc)
                    self._wake(queue, None)  # their claims say what is wrong, or succeed
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, RETRY_S[1])
                    continue
                pause = RETRY_S[0]
                if not self._wake(queue, max(1, ready)):
                    await self._restore(queue)
        finally:
            self._watchers.pop(queue, None)
            if not self._waiters.get(queue):
                self._waiters.pop(queue, None)

    async def _claimable(self, k: Any) -> int:
        """How many jobs a claim could lease now: the ready ones, at most the free slots
        of the queue's concurrency cap (the rate is the claim script's to say)."""
        async with self.client.pipeline(transaction=False) as pipe:   # one round trip
            pipe.zcard(k.ready)
            pipe.hget(k.config, "concurrency")
            pipe.zcard(k.leased)
            ready, cap, leased = await pipe.execute()
        ready = int(ready)
        if ready and cap is not None:
            with contextlib.suppress(ValueError):
                ready = min(ready, max(0, int(cap) - int(leased)))
        return ready

    async def _restore(self, queue: str) -> None:
        """Put back a marker taken for nobody (when jobs are ready or scheduled)."""
        with contextlib.suppress(*_TROUBLE):
            await self.rewake(queue)

    async def close(self) -> None:
        """End every watcher; waiting claims return at once (not woken)."""
        self._closed = True
        for waiters in self._waiters.values():
            for waiter in waiters.values():
                if not waiter.future.done():
                    waiter.future.set_result(False)
        watchers = list(self._watchers.values())
        for task in watchers:
            task.cancel()
        for task in watchers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.aclose()
