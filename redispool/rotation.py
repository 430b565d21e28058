"""Which of a worker's queues get its free slots: a fair share, in turn.

The queues that may have ready jobs are "in the rotation", in line. Free slots are
shared among them: while ``n`` queues want slots, each may hold ``ceil(concurrency / n)``
of them (a queue alone holds every slot), and the slots go to the front of the line
first; a queue that was just served goes to the back. So a backlog in one queue never
holds up another: a queue that joins the rotation gets one of the next slots to free up.

A queue leaves the rotation only when a claim of it comes back empty: that claim also
says when its earliest scheduled job falls due, and the queue is then watched (its
wake-up marker, and that due time) until it joins again.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence


class Rotation:
    """The rotation of one worker: ``queues``, ``concurrency`` slots (the worker's, more
    while it prefetches), at most ``batch`` jobs leased per call. Used by the worker's
    bookkeeping thread only."""

    def __init__(self, queues: Sequence[str], concurrency: int, batch: int) -> None:
        self.queues = list(queues)
        self.concurrency = concurrency
        self.batch = batch
        self.line: dict[str, None] = dict.fromkeys(self.queues)  # in the rotation, in turn
        self.due: dict[str, float] = {}   # queue -> time.monotonic() its scheduled job is due
        self.load: dict[str, int] = {}    # jobs in progress per queue

    def __bool__(self) -> bool:
        return bool(self.line)

    def __contains__(self, queue: str) -> bool:
        return queue in self.line

    def join(self, queue: str) -> None:
        """``queue`` may have ready jobs: into the line (where it is, if it is already)."""
        self.line.setdefault(queue, None)

    def watched(self) -> list[str]:
        """The queues out of the rotation, to watch."""
        return [q for q in self.queues if q not in self.line]

    def started(self, queue: str, n: int = 1) -> None:
        self.load[queue] = self.load.get(queue, 0) + n

    def finished(self, queue: str) -> None:
        self.load[queue] -= 1

    def plan(self, free: int) -> tuple[dict[str, int], int]:
        """Share ``free`` slots: queue -> jobs to lease now, and the slots left over (no
        queue in the rotation can take more now)."""
        plan: dict[str, int] = {}
        if free > 0 and self.line:
            share = -(-self.concurrency // len(self.line))
            for queue in self.line:
                n = min(self.batch, share - self.load.get(queue, 0), free)
                if n > 0:
                    plan[queue] = n
                    free -= n
                    if not free:
                        break
        return plan, max(free, 0)

    def served(self, queue: str, got: int, wait: float | None) -> None:
        """A claim of ``queue`` leased ``got`` jobs: to the back of the line while it has
        jobs; out of the rotation once a claim comes back empty, due again in ``wait``
        seconds (None: nothing scheduled)."""
        self.line.pop(queue, None)
        if got:
            self.line[queue] = None
        elif wait is None:
            self.due.pop(queue, None)
        else:
            self.due[queue] = time.monotonic() + wait

    def due_now(self) -> None:
        """Queues whose earliest scheduled job fell due join the rotation."""
        now = time.monotonic()
        for queue, at in list(self.due.items()):
            if at <= now:
                del self.due[queue]
                self.join(queue)

    def next_due(self) -> float:
        """When the earliest known scheduled job falls due (``time.monotonic()``), or inf."""
        return min(self.due.values(), default=math.inf)
