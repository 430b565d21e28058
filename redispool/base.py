"""What the Engine's parts build on: its settings, its scripts and ``run``.

``Engine`` (engine.py) is this base plus one mixin per area (queues.py, registry.py,
cues.py, history.py, retention.py). Each area's methods are ``self.run(ops.x(self, ...))``:
the base passes itself to ``ops`` as the ``Settings`` (prefix, default lease, retention,
backoff) and runs the Op through ``Scripts``, the one Redis boundary, then sends the
follow-up commands the reply asks for (queues.py explains them).
"""
from __future__ import annotations

import logging
import threading
from typing import Any, TypeVar

from . import ops
from .errors import ConnectionFailed, NotDurable, RedisFull
from .keys import QueueKeys, due_key, queue_keys, queues_key
from .ops import Followup, Op, Settings, commands
from .scripts import AsyncScripts, Scripts

T = TypeVar("T")
OUTBOX_BATCH = 500    # outbox entries taken per read (_drain_outbox)
UNSENT_MAX = 10_000   # follow-ups kept for a retry after Redis trouble (then left to reconciliation)
TROUBLE = (ConnectionFailed, RedisFull)   # what a follow-up swallows: the write happened
log = logging.getLogger("redispool.engine")


class Unsent:
    """Follow-ups that met Redis trouble right after their script: the write happened, so
    the caller is not told; they go with the next write (the daemons' reconciliation
    repairs the rest). Shared by an Engine and its async engine."""

    def __init__(self) -> None:
        self._followups: list[Followup] = []
        self._lock = threading.Lock()

    def take(self, followups: list[Followup]) -> list[Followup]:
        """``followups`` preceded by those waiting for a retry."""
        if not self._followups:
            return followups
        with self._lock:
            pending, self._followups = self._followups, []
        return pending + followups

    def keep(self, followups: list[Followup], exc: BaseException) -> None:
        log.warning("queue registry update postponed (%d commands): %s", len(followups), exc)
        with self._lock:
            self._followups = (followups + self._followups)[:UNSENT_MAX]

    def send(self, scripts: Scripts, followups: list[Followup]) -> None:
        followups = self.take(followups)
        if followups:
            try:
                scripts.pipeline(commands(followups))
            except TROUBLE as exc:
                self.keep(followups, exc)

    async def send_async(self, scripts: AsyncScripts, followups: list[Followup]) -> None:
        followups = self.take(followups)
        if followups:
            try:
                await scripts.pipeline(commands(followups))
            except TROUBLE as exc:
                self.keep(followups, exc)


class EngineBase(Settings):
    """Settings, scripts and ``run`` of an Engine (set by ``Engine.__init__``)."""

    client: Any
    url: str
    scripts: Scripts
    unsent: Unsent

    def keys(self, queue: str) -> QueueKeys:
        return queue_keys(self.prefix, queue)

    def run(self, op: Op[T]) -> T:
        """Run one script call (ops.py) and send the follow-ups its reply asks for, also
        when the write was applied but not durable; the parsed reply."""
        try:
            reply = self.scripts.call(op)
        except NotDurable as exc:
            if op.followups is not None and exc.reply is not None:
                self.send_followups(op.followups(exc.reply))
            raise
        if op.followups is not None:
            self.send_followups(op.followups(reply))
        if op.drains is not None:
            for queue in op.drains(reply):
                self._drain_outbox(queue)
        return op.parse(reply)

    def _drain_outbox(self, queue: str, budget: int = OUTBOX_BATCH) -> int:
        """Hand the outcomes in ``queue``'s rp:{q}:outbox to the children waiting in other
        queues (resolve.lua in each child's slot; each child and parent counts once, so any
        number of engines and schedulers may drain at once), then remove them; a child
        cancelled there may fill its own queue's outbox, drained in turn. Returns the
        outcomes applied. Run by the engine that finished the parents (at once), the
        scheduler (the entries make the queue due) and the sweeper."""
        applied = 0
        pending = [queue]
        while pending:
            source = pending.pop()
            outbox = self.keys(source).outbox
            while True:
                entries = self.scripts.command("ZRANGE", outbox, 0, budget - 1)
                if not entries:
                    break
                by_queue: dict[str, list[tuple[str, str, str]]] = {}
                for raw in entries:
                    parts = (raw.decode() if isinstance(raw, bytes) else raw).split("\n")
                    if len(parts) == 4:
                        cq, cid, pid, outcome = parts
                        by_queue.setdefault(cq, []).append((cid, f"{source}/{pid}", outcome))
                for cq, outcomes in by_queue.items():
                    op = ops.resolve(self, cq, outcomes)
                    reply = self.scripts.call(op)
                    if op.followups is not None:
                        self.send_followups(op.followups(reply))
                    applied += op.parse(reply)
                    if op.drains is not None and op.drains(reply) and cq not in pending:
                        pending.append(cq)
                self.scripts.command("ZREM", outbox, *entries)
                if len(entries) < budget:
                    break
        return applied

    def send_followups(self, followups: list[Followup]) -> None:
        """Send the plain commands a writer script's reply asked for; Redis trouble keeps
        them for the next write."""
        self.unsent.send(self.scripts, followups)

    def _register_queue(self, queue: str) -> None:
        self.scripts.command("SADD", queues_key(self.prefix), queue)

    def _plan_now(self, queue: str, daemon: str) -> None:
        """Make ``queue`` due now for ``daemon`` (its visit plans it again), after a change
        the writer scripts do not plan, such as a shorter retention."""
        self.send_followups([("zadd_lt", due_key(self.prefix, daemon), queue, 0)])
