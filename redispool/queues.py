"""Which queues exist, and which ones the daemons must visit when.

``rp:queues`` lists every queue in use. A writer script tells its caller when the queue
had no counter yet (enqueue: the counter started from zero; save_cue: no meta hash), and
only then does the caller SADD it, so a queue comes back after Redis lost its data
(restart without persistence, FLUSHALL) at the first enqueue that follows, without a
per-enqueue cost.

``rp:due:scheduler`` and ``rp:due:sweeper`` map a queue to the time (ms) its daemon next
has work there: the earliest scheduled job or cue fire; the earliest lease expiry or
retention trim. Each queue's meta hash holds the same planned times (``scheduler_at``,
``sweeper_at``). A writer script that creates earlier work (a delayed job or a retry that
becomes the earliest, a lease that expires earlier, a cue saved) moves the field and
returns the new time; the caller then sends ``ZADD rp:due:<daemon> LT`` (a steady drain
sends nothing). A daemon step takes the due queues, works them, stores each queue's next
time (the script sets the field, the daemon the zset), then re-reads the fields to catch a
writer that raced it. So an idle queue costs a daemon step nothing.

The global keys are written by plain commands only (on a cluster a script touches one
slot). A lost follow-up (a process that died between its script and its ZADD, Redis
losing data) is repaired by the daemons' reconciliation: every queue of rp:queues checked
in pipelined chunks, once a minute (``reconcile``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import ops
from .base import EngineBase
from .keys import due_key, queues_key
from .ops import Followup, commands

DAEMONS = ("scheduler", "sweeper")
FIELD = {"scheduler": "scheduler_at", "sweeper": "sweeper_at"}
# the keys whose presence means the daemon may have work in a queue (reconciliation)
WORK_KEYS = {"scheduler": ("scheduled", "cue_next", "outbox", "linking"),
             "sweeper": ("leased", "done", "dead", "cancelled", "expiring")}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class QueuesMixin(EngineBase):
    """Queue registry and due-set methods of ``Engine``."""

    # ------------------------------------------------------------------ removing
    def remove_queue(self, queue: str) -> bool:
        """Delete an unused queue: its finished jobs, counters, history and settings (paused,
        retention), and its name from ``queues()``. Only for a queue without scheduled,
        ready or leased jobs and without cues, else QueueNotEmpty and nothing changed.
        Returns False when there was no such queue. A job enqueued at the same moment is
        safe: it lands in a queue that is registered again."""
        removed = self.run(ops.remove_queue(self, queue))
        k = self.keys(queue)
        unregistered = self.scripts.pipeline([("SREM", queues_key(self.prefix), queue),
                                              *[("ZREM", due_key(self.prefix, d), queue) for d in DAEMONS]])[0]
        # a writer that ran after the script recreated meta: put its registrations back
        exists, fields = self.scripts.pipeline([("EXISTS", k.meta), ("HMGET", k.meta, *[FIELD[d] for d in DAEMONS])])
        if exists:
            again: list[Followup] = [("sadd", queues_key(self.prefix), queue, 0)]
            again += [("zadd_lt", due_key(self.prefix, d), queue, int(at)) for d, at in zip(DAEMONS, fields) if at]
            self.scripts.pipeline(commands(again))
        return bool(removed) or unregistered == 1

    # ------------------------------------------------------------------ the daemons' side
    def _due_queues(self, daemon: str, limit: int) -> tuple[int, int, list[str]]:
        """Server time (ms), the next planned time after now (-1: none) and up to ``limit``
        queues whose planned time has come, for ``daemon``."""
        return self.run(ops.due_queues(self, daemon, limit))

    def _store_plans(self, daemon: str, plans: dict[str, int], fields_set: bool = True) -> None:
        """Store each visited queue's next time (-1: nothing planned) in rp:due:<daemon>,
        then re-read the queues' meta fields: a writer that planned earlier work after the
        daemon's script ran may have sent its ``ZADD LT`` before this ZADD overwrote it."""
        if not plans:
            return
        key, field = due_key(self.prefix, daemon), FIELD[daemon]
        self.scripts.pipeline([("ZADD", key, at, queue) if at >= 0 else ("ZREM", key, queue)
                               for queue, at in plans.items()])
        if not fields_set:
            return
        queues = list(plans)
        planned = self.scripts.pipeline([("HGET", self.keys(queue).meta, field) for queue in queues])
        again: list[Followup] = [("zadd_lt", key, q, int(f)) for q, f in zip(queues, planned)
                                 if f is not None and (plans[q] < 0 or int(f) < plans[q])]
        if again:
            self.scripts.pipeline(commands(again))

    def _reconcile(self, daemon: str, cursor: int, count: int, *, everything: bool = False) -> tuple[int, int]:
        """Check about ``count`` queues of rp:queues from ``cursor`` (SSCAN) against
        rp:due:<daemon>; returns the next cursor (0: the pass is complete) and how many
        queues were repaired. A queue is repaired when its meta field plans earlier than
        rp:due says (a lost ``ZADD LT``), or when it has no planned time anywhere but keys
        the daemon works on (rp:due lost, or data from before rp:due existed): then it is
        due now, and the daemon's visit plans it properly. With ``everything`` (a daemon's
        first pass) every queue with such keys is due now: the daemon plans each with its
        own settings (a sweeper started with other retention options)."""
        cursor, members = self.scripts.command("SSCAN", queues_key(self.prefix), cursor, "COUNT", count)
        queues = [_text(q) for q in members]
        if not queues:
            return int(cursor), 0
        key, field = due_key(self.prefix, daemon), FIELD[daemon]
        reads: list[Sequence[Any]] = []
        for queue in queues:
            k = self.keys(queue)
            reads += [("HGET", k.meta, field), ("ZSCORE", key, queue),
                      ("EXISTS", *[getattr(k, name) for name in WORK_KEYS[daemon]])]
        replies = self.scripts.pipeline(reads)
        fixes: list[tuple[str, int]] = []
        for i, queue in enumerate(queues):
            planned, score, has_work = replies[3 * i:3 * i + 3]
            if everything and (has_work or planned is not None or score is not None):
                fixes.append((queue, 0))   # due now
            elif planned is not None and (score is None or int(planned) < score):
                fixes.append((queue, int(planned)))
            elif planned is None and score is None and has_work:
                fixes.append((queue, 0))
        if fixes:
            self.scripts.pipeline([("ZADD", key, "LT", at, queue) for queue, at in fixes])
        return int(cursor), len(fixes)
