"""Flow control per queue: a rate limit and a concurrency cap, enforced inside Redis.

``set_limits(queue, rate=50, per=1.0, concurrency=4)`` stores the limits in the queue's
``rp:{q}:config`` hash (``rate``, ``per_ms``, ``concurrency``). Every script that leases
jobs (claim, claim_id, ack's next batch -- and so the Python worker, the HTTP and gRPC
faces, the compat layers) reads them there and hands out fewer jobs, or none, so no
worker can get around them:

- rate: at most ``rate`` claims in any window of ``per`` seconds. A sliding log
  (``rp:{q}:ratelog``: the server time of each claim of the last window, newest first,
  at most ``rate`` entries) is exact where a token bucket or GCRA would let up to twice
  the rate through a window that straddles a full bucket. A claim the window holds back
  answers with the ms until the window allows one: the claimer's ``wait_ms``, on which
  ``claim(block=)``, the worker's waiter and the wait hub already sleep (no polling).
- concurrency: at most ``concurrency`` jobs ``leased`` at once across every worker
  (ZCARD of the leased set; an expired lease counts until the sweeper takes it back).
  A claim at the cap gets nothing and the queue's wake-up marker is removed; the script
  that frees a slot (complete, fail, ack, release, cancel, sweep) sets it again, which
  wakes one blocked claimer.
"""
from __future__ import annotations

from typing import Any

from . import ops, validate
from .base import EngineBase
from .errors import InvalidOption
from .keys import check_queue

RATE_MAX = 1_000_000          # claims a window may hold (the sliding log keeps one entry each)
CONCURRENCY_MAX = 1_000_000_000


def _whole(value: Any, name: str, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidOption(f"{name} must be a whole number in [1, {maximum:,}] or None, got {value!r}")
    return value


def check_limits(rate: int | None, per: float, concurrency: int | None) -> tuple[str, str, str]:
    """The limits as set_limits.lua stores them: rate, per_ms, concurrency ('' = none).
    InvalidOption (a ValueError) for a value that is not a positive number in range."""
    per_ms = validate.seconds_to_ms(per, "per", allow_zero=False)
    return ("" if rate is None else str(_whole(rate, "rate", RATE_MAX)),
            "" if rate is None else str(per_ms),
            "" if concurrency is None else str(_whole(concurrency, "concurrency", CONCURRENCY_MAX)))


class LimitsMixin(EngineBase):
    """Flow-control methods of ``Engine``."""

    def set_limits(self, queue: str, *, rate: int | None = None, per: float = 1.0,
                   concurrency: int | None = None) -> dict[str, Any]:
        """Limit how fast and how many jobs of ``queue`` are handed out, for every worker:
        at most ``rate`` claims in any window of ``per`` seconds, at most ``concurrency``
        jobs leased at once. Each call replaces both; None removes that limit. A claim over
        a limit leases fewer jobs (or none) and raises nothing; a blocked claimer is woken
        when capacity frees. Bad values raise InvalidOption (a ValueError) and change
        nothing. Returns ``limits(queue)``."""
        check_queue(queue)
        op = ops.set_limits(self, queue, *check_limits(rate, per, concurrency))
        self._register_queue(queue)
        self.run(op)
        return self.limits(queue)

    def limits(self, queue: str) -> dict[str, Any]:
        """``queue``'s limits: ``{"rate", "per", "concurrency"}`` (None: not limited;
        ``per`` in seconds, None without a rate)."""
        check_queue(queue)
        return ops.limits_of(self.scripts.command("HGETALL", self.keys(queue).config))
