"""Where a worker's handlers run: a fixed set of daemon threads for plain functions, one
event-loop thread for ``async def`` handlers.

A runner takes (job, handler) pairs and reports one ``Outcome`` per job through the
``report`` callback, from its own thread. Handlers never touch Redis state themselves:
the worker acknowledges outcomes in batches. Threads are daemons, so a job that outlives
the worker's grace period cannot keep the process from exiting.

``cancel(job)`` is how the worker stops an attempt past its timeout: the async runner
cancels the job's task (its ``finally`` blocks run; the Outcome that follows is the
worker's to discard); a thread cannot be stopped from outside, so the thread runner's
``cancel`` does nothing and its Outcome comes whenever the handler returns.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import queue
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol

from . import codec
from .defaults import ERROR_MAX_CHARS
from .models import Job

# A job's handler: a function of the Job, or an ``async def`` one (whose call returns an
# awaitable). Its result is any value msgpack can store, so it is typed as ``Any``.
Handler = Callable[[Job], Any]


class Outcome:
    """What became of one job: its result, or the error text ``"TypeName: message"``
    (``"TypeName"`` alone for an exception without a message), cut to the length Redis
    keeps (``ERROR_MAX_CHARS``), so the log shows what is stored."""

    __slots__ = ("job", "ok", "result", "error", "trace", "seconds")

    def __init__(self, job: Job, ok: bool, result: object, error: str | None, trace: str | None,
                 seconds: float) -> None:
        self.job, self.ok, self.result, self.error = job, ok, result, error
        self.trace, self.seconds = trace, seconds


class Runner(Protocol):
    """Where a worker hands a job and its handler; the Outcome comes back through the
    ``report`` callback the runner was made with."""

    def submit(self, job: Job, handler: Handler) -> None: ...

    def cancel(self, job: Job) -> None: ...

    def close(self) -> None: ...


def is_async(handler: Handler) -> bool:
    """True for ``async def`` functions and objects with an ``async def __call__``."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None))  # noqa: B004 (the method itself, not callable())


def succeeded(job: Job, result: object, started: float) -> Outcome:
    try:
        codec.encode(result, "result")  # a result that cannot be stored fails the job here
    except Exception as exc:
        return failed(job, exc, started)
    return Outcome(job, True, result, None, None, time.perf_counter() - started)


def error_text(exc: BaseException) -> str:
    """``"TypeName: message"``, or ``"TypeName"`` when the message is empty, at most
    ``ERROR_MAX_CHARS`` long."""
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 (a broken __str__ must not lose the failure)
        message = "<message cannot be shown>"
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:ERROR_MAX_CHARS]


def failed(job: Job, exc: BaseException, started: float) -> Outcome:
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return Outcome(job, False, None, error_text(exc), trace, time.perf_counter() - started)


class ThreadRunner:
    """``size`` daemon threads taking jobs from one in-process queue. A job submitted while
    every thread is busy (one the worker prefetched) waits there until a thread takes it
    or ``withdraw`` does, whichever comes first: a withdrawn job never starts."""

    def __init__(self, size: int, report: Callable[[Outcome], None], name: str = "redispool") -> None:
        self._inbox: queue.SimpleQueue[tuple[Job, Handler] | None] = queue.SimpleQueue()
        self._queued: dict[int, Job] = {}   # submitted, not started, by id(); pop() decides who has it
        self._report = report
        self._threads = [threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
                         for i in range(size)]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Job, handler: Handler) -> None:
        self._queued[id(job)] = job
        self._inbox.put((job, handler))

    def queued(self) -> int:
        """How many submitted jobs no thread has started yet."""
        return len(self._queued)

    def withdraw(self) -> list[Job]:
        """Every submitted job no thread has started: none of them ever will (no Outcome
        follows for them)."""
        taken = []
        while self._queued:
            try:
                taken.append(self._queued.popitem()[1])
            except KeyError:   # a thread took the last one meanwhile
                break
        return taken

    def cancel(self, job: Job) -> None:
        """A job no thread has started yet never starts (its Outcome comes at once, so the
        worker frees its slot); a running one cannot be stopped from outside (the worker
        keeps its slot busy until the handler returns, and discards what it returns)."""
        if self._queued.pop(id(job), None) is not None:
            self._report(Outcome(job, False, None, "TimeoutError: not started before its timeout", None, 0.0))

    def _loop(self) -> None:
        get, report, clock, encode = self._inbox.get, self._report, time.perf_counter, codec.encode
        take = self._queued.pop
        while True:
            item = get()
            if item is None:
                return
            job, handler = item
            if take(id(job), None) is None:
                continue   # withdrawn: the worker gave it back
            started = clock()
            try:   # succeeded(), inline: this runs once per job
                result = handler(job)
                encode(result, "result")  # a result that cannot be stored fails the job here
            except BaseException as exc:  # a handler's SystemExit must not kill the slot
                report(failed(job, exc, started))
                continue
            report(Outcome(job, True, result, None, None, clock() - started))

    def close(self) -> None:
        """Let every thread exit once it has finished its current job."""
        for _ in self._threads:
            self._inbox.put(None)


class AsyncRunner:
    """One thread running an asyncio event loop; each job is a task on it."""

    def __init__(self, report: Callable[[Outcome], None], name: str = "redispool-async") -> None:
        self._report = report
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}   # by (queue, token)
        self._timed_out: set[tuple[str, str]] = set()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Job, handler: Handler) -> None:
        self.loop.call_soon_threadsafe(self._start, job, handler)

    def _start(self, job: Job, handler: Handler) -> None:
        key = (job.queue, job.token)
        task = self.loop.create_task(self._run(job, handler))
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._forget(key))

    def _forget(self, key: tuple[str, str]) -> None:
        self._tasks.pop(key, None)
        self._timed_out.discard(key)

    def cancel(self, job: Job) -> None:
        """Cancel the job's task (from any thread); the worker hears an Outcome once the
        task has ended, so it knows the slot is free."""
        self.loop.call_soon_threadsafe(self._cancel, (job.queue, job.token))

    def _cancel(self, key: tuple[str, str]) -> None:
        task = self._tasks.get(key)
        if task is not None:
            self._timed_out.add(key)
            task.cancel()

    async def _run(self, job: Job, handler: Handler) -> None:
        started = time.perf_counter()
        try:
            outcome = succeeded(job, await handler(job), started)
        except asyncio.CancelledError as exc:
            key = (job.queue, job.token)
            if key not in self._timed_out:
                return  # close() cancelled it, after the worker gave the job back
            outcome = failed(job, exc, started)  # the worker failed it already: this frees the slot
        except BaseException as exc:
            outcome = failed(job, exc, started)
        self._report(outcome)

    async def _cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self, timeout: float = 5.0) -> None:
        """Cancel the tasks still running, stop the loop and its thread."""
        if not self._thread.is_alive():
            return
        # a task that ignores cancellation: the daemon thread dies with the process
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._cancel_all(), self.loop).result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()
