"""Which queues exist, and which ones the daemons must visit when.

``rp:queues`` lists every queue in use. A writer script tells its caller when the queue
had no counter yet (enqueue: the counter started from zero; cue_save: no meta hash), and
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

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .errors import REDIS_TROUBLE, QueueNotEmpty, reports_unreachable
from .keys import check_queue, cueapi_key, due_key, queues_key

DAEMONS = ("scheduler", "sweeper")
FIELD = {"scheduler": "scheduler_at", "sweeper": "sweeper_at"}
# the keys whose presence means the daemon may have work in a queue (reconciliation)
WORK_KEYS = {"scheduler": ("scheduled", "cue_next"), "sweeper": ("leased", "done", "dead", "cancelled")}
UNSENT_MAX = 10_000   # follow-ups kept for a retry after Redis trouble (then left to reconciliation)
log = logging.getLogger("redispool.engine")

Followup = tuple[str, str, str, int]   # (command, key, queue, score): sadd | zadd_lt


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _send(pipe: Any, followups: Iterable[Followup]) -> None:
    for command, key, queue, score in followups:
        if command == "sadd":
            pipe.sadd(key, queue)
        else:
            pipe.zadd(key, {queue: score}, lt=True)


class QueuesMixin:
    """Queue registry and due-set methods of ``Engine`` (it provides ``client``, ``url``,
    ``prefix``, ``scripts`` and ``keys``)."""

    client: Any
    url: str
    prefix: str
    scripts: Any
    keys: Callable[[str], Any]  # QueueKeys (its key attributes are set dynamically)

    def _init_queues(self) -> None:
        self._unsent: list[Followup] = []
        self._unsent_lock = threading.Lock()

    # ------------------------------------------------------------------ writers' follow-ups
    def _followups(self, queue: str, new_queue: Any = 0, scheduler_at: Any = -1,
                   sweeper_at: Any = -1) -> list[Followup]:
        """The plain commands a writer script's reply asks for (see the module docstring)."""
        out: list[Followup] = []
        if int(new_queue) == 1:
            out.append(("sadd", queues_key(self.prefix), queue, 0))
        for daemon, at in (("scheduler", scheduler_at), ("sweeper", sweeper_at)):
            if int(at) >= 0:
                out.append(("zadd_lt", due_key(self.prefix, daemon), queue, int(at)))
        return out

    def _take_unsent(self, followups: list[Followup]) -> list[Followup]:
        if not self._unsent:
            return followups
        with self._unsent_lock:
            pending, self._unsent = self._unsent, []
        return pending + followups

    def _keep_unsent(self, followups: list[Followup], exc: BaseException) -> None:
        """Redis trouble right after a script: the write happened, so the caller is not told;
        the follow-ups go with the next write (the daemons' reconciliation repairs the rest)."""
        log.warning("queue registry update postponed (%d commands): %s", len(followups), exc)
        with self._unsent_lock:
            self._unsent = (followups + self._unsent)[:UNSENT_MAX]

    def _send_followups(self, followups: list[Followup]) -> None:
        followups = self._take_unsent(followups)
        if not followups:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            _send(pipe, followups)
            pipe.execute()
        except REDIS_TROUBLE as exc:
            self._keep_unsent(followups, exc)

    async def _send_followups_async(self, client: Any, followups: list[Followup]) -> None:
        """``_send_followups`` on an async client (aio.py)."""
        followups = self._take_unsent(followups)
        if not followups:
            return
        try:
            pipe = client.pipeline(transaction=False)
            _send(pipe, followups)
            await pipe.execute()
        except REDIS_TROUBLE as exc:
            self._keep_unsent(followups, exc)

    def _register_queue(self, queue: str) -> None:
        self.client.sadd(queues_key(self.prefix), queue)

    def _plan_now(self, queue: str, daemon: str) -> None:
        """Make ``queue`` due now for ``daemon`` (its visit plans it again), after a change
        the writer scripts do not plan, such as a shorter retention."""
        self._send_followups([("zadd_lt", due_key(self.prefix, daemon), queue, 0)])

    # ------------------------------------------------------------------ removing
    @reports_unreachable
    def remove_queue(self, queue: str) -> bool:
        """Delete an unused queue: its finished jobs, counters, history and settings (paused,
        retention), and its
        name from ``queues()``. Only for a queue without scheduled, ready or leased jobs and
        without cues, else QueueNotEmpty and nothing changed. Returns False when there was
        no such queue. A job enqueued at the same moment is safe: it lands in a queue that
        is registered again."""
        k = self.keys(check_queue(queue))
        reply = self.scripts.run("remove_queue", [
            k.scheduled, k.ready, k.leased, k.cue_next, k.cues, k.done, k.dead, k.cancelled, k.marker,
            k.meta, k.unique, k.counts, cueapi_key(self.prefix, queue), k.config, k.job_prefix], [])
        removed, scheduled, ready, leased, cues = (int(x) for x in reply)
        if removed < 0:
            found = [f"{n} {what}" for n, what in ((scheduled, "scheduled"), (ready, "ready"),
                                                   (leased, "leased")) if n]
            jobs = f"{' and '.join(found)} job{'s' if scheduled + ready + leased > 1 else ''}" if found else ""
            cue_text = f"{cues} cue{'s' if cues > 1 else ''}" if cues else ""
            raise QueueNotEmpty(f"queue {queue!r} has {' and '.join(filter(None, (jobs, cue_text)))}: "
                                "nothing removed (cancel or purge its jobs and remove its cues first)")
        pipe = self.client.pipeline(transaction=False)
        pipe.srem(queues_key(self.prefix), queue)
        for daemon in DAEMONS:
            pipe.zrem(due_key(self.prefix, daemon), queue)
        unregistered = pipe.execute()[0]
        # a writer that ran after the script recreated meta: put its registrations back
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(k.meta)
        pipe.hmget(k.meta, [FIELD[d] for d in DAEMONS])
        exists, fields = pipe.execute()
        if exists:
            again = [("sadd", queues_key(self.prefix), queue, 0)]
            again += [("zadd_lt", due_key(self.prefix, d), queue, int(at)) for d, at in zip(DAEMONS, fields) if at]
            pipe = self.client.pipeline(transaction=False)
            _send(pipe, again)
            pipe.execute()
        return removed == 1 or unregistered == 1

    # ------------------------------------------------------------------ the daemons' side
    @reports_unreachable
    def _due_queues(self, daemon: str, limit: int) -> tuple[int, int, list[str]]:
        """Server time (ms), the next planned time after now (-1: none) and up to ``limit``
        queues whose planned time has come, for ``daemon``."""
        reply = self.scripts.run("due", [due_key(self.prefix, daemon)], [limit])
        return int(reply[0]), int(reply[1]), [_text(q) for q in reply[2:]]

    @reports_unreachable
    def _store_plans(self, daemon: str, plans: dict[str, int], fields_set: bool = True) -> None:
        """Store each visited queue's next time (-1: nothing planned) in rp:due:<daemon>,
        then re-read the queues' meta fields: a writer that planned earlier work after the
        daemon's script ran may have sent its ``ZADD LT`` before this ZADD overwrote it."""
        if not plans:
            return
        key, field = due_key(self.prefix, daemon), FIELD[daemon]
        pipe = self.client.pipeline(transaction=False)
        for queue, at in plans.items():
            if at >= 0:
                pipe.zadd(key, {queue: at})
            else:
                pipe.zrem(key, queue)
        pipe.execute()
        if not fields_set:
            return
        queues = list(plans)
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            pipe.hget(self.keys(queue).meta, field)
        again = [("zadd_lt", key, q, int(f)) for q, f in zip(queues, pipe.execute())
                 if f is not None and (plans[q] < 0 or int(f) < plans[q])]
        if again:
            pipe = self.client.pipeline(transaction=False)
            _send(pipe, again)
            pipe.execute()

    @reports_unreachable
    def _reconcile(self, daemon: str, cursor: int, count: int, *, everything: bool = False) -> tuple[int, int]:
        """Check about ``count`` queues of rp:queues from ``cursor`` (SSCAN) against
        rp:due:<daemon>; returns the next cursor (0: the pass is complete) and how many
        queues were repaired. A queue is repaired when its meta field plans earlier than
        rp:due says (a lost ``ZADD LT``), or when it has no planned time anywhere but keys
        the daemon works on (rp:due lost, or data from before rp:due existed): then it is
        due now, and the daemon's visit plans it properly. With ``everything`` (a daemon's
        first pass) every queue with such keys is due now: the daemon plans each with its
        own settings (a sweeper started with other retention options)."""
        cursor, members = self.client.sscan(queues_key(self.prefix), cursor, count=count)
        queues = [_text(q) for q in members]
        if not queues:
            return int(cursor), 0
        key, field = due_key(self.prefix, daemon), FIELD[daemon]
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            k = self.keys(queue)
            pipe.hget(k.meta, field)
            pipe.zscore(key, queue)
            pipe.exists(*[getattr(k, name) for name in WORK_KEYS[daemon]])
        replies = pipe.execute()
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
            pipe = self.client.pipeline(transaction=False)
            for queue, at in fixes:
                pipe.zadd(key, {queue: at}, lt=True)
            pipe.execute()
        return int(cursor), len(fixes)
