"""What the Engine's parts build on: its settings, its scripts and ``run``.

``Engine`` (engine.py) is this base plus one mixin per area (queues.py, registry.py,
cues.py, history.py, retention.py). Each area's methods are ``self.run(ops.x(self, ...))``:
the base passes itself to ``ops`` as the ``Settings`` (prefix, default lease, retention,
backoff) and runs the Op through ``Scripts``, the one Redis boundary, then sends the
follow-up commands the reply asks for (queues.py explains them).
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Any, TypeVar

from . import ops
from .errors import ConnectionFailed, NotDurable, RedisFull
from .keys import QueueKeys, due_key, queue_keys, queues_key
from .ops import Followup, Op, Settings, commands
from .scripts import AsyncScripts, Scripts

T = TypeVar("T")
OUTBOX_BATCH = 500    # outbox entries taken per read (_drain_outbox), rp:{q}:linking entries per _relink
LINK_GRACE_S = 5.0    # a cross-queue child is linked again by the scheduler once this old (_relink;
                      # enqueue.lua's LINK_GRACE_MS plans that visit)
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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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
        return self.settle(op, reply)

    def settle(self, op: Op[T], reply: Any) -> T:
        """What ``run`` does with ``op``'s raw reply: its follow-ups, then the parse."""
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

    def _relink(self, queue: str, budget: int = OUTBOX_BATCH) -> tuple[int, int]:
        """Link again the children of ``queue`` with parents in other queues that were
        created ``LINK_GRACE_S`` ago or more (rp:{q}:linking), then forget them: a creator
        that died between enqueue.lua and link.lua left them unknown to their parents.
        link.lua is idempotent (a parent still running lists the child once; a finished
        one hands its outcome over again, applied once per child and parent), so racing
        schedulers and a creator that did link are harmless. Returns the children linked
        and when the next one is due (server ms, -1: none). Run by the scheduler's visit."""
        k = self.keys(queue)
        rows = self.scripts.command("ZRANGE", k.linking, 0, budget - 1, "WITHSCORES")
        if not rows:
            return 0, -1
        seconds, micros = self.scripts.command("TIME")
        cutoff = int(seconds) * 1000 + int(micros) // 1000 - round(LINK_GRACE_S * 1000)
        due = [_text(member) for member, score in rows if float(score) <= cutoff]
        young = [float(score) for _, score in rows if float(score) > cutoff]
        next_ms = int(young[0]) + round(LINK_GRACE_S * 1000) if young else -1
        if not due:
            return 0, next_ms
        links: dict[str, list[tuple[str, str, str]]] = {}
        fields = self.scripts.pipeline([("HMGET", k.job(job_id), "s", "dep") for job_id in due])
        for job_id, (state, dep) in zip(due, fields):
            if state is None or _text(state) != "waiting" or dep is None:
                continue
            for pq, pid in json.loads(dep):
                if pq != queue:
                    links.setdefault(pq, []).append((pid, queue, job_id))
        for pq, triples in links.items():
            if self.run(ops.link(self, pq, triples)):
                self._drain_outbox(pq)
        self.scripts.command("ZREM", k.linking, *due)
        if len(rows) == budget and not young:
            next_ms = cutoff + round(LINK_GRACE_S * 1000)   # more than a budget: on at once
        return sum(len(t) for t in links.values()), next_ms

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
