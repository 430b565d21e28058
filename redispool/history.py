"""Per-minute throughput of a queue, and deleting one job: what operators look at and do.

The finishing scripts count jobs done and failed per minute in ``rp:{q}:minutes``
(see ``flush_counts`` in lua/lib.lua): fields ``<minute>:d`` and ``<minute>:f`` with
minute = unix ms // 60000, kept about 3 hours.
"""
from __future__ import annotations

from typing import Any

from . import ops
from .base import EngineBase
from .errors import InvalidOption
from .keys import check_queue


class HistoryMixin(EngineBase):
    """Throughput and ``delete_job`` methods of ``Engine``."""

    def throughput(self, queue: str, minutes: int = 60) -> list[tuple[float, int, int]]:
        """(minute start as unix seconds, jobs done, attempts failed) for each of the last
        ``minutes`` minutes, oldest first, the current minute last (Redis clock)."""
        check_queue(queue)
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 180:
            raise InvalidOption(f"minutes must be an integer in [1, 180], got {minutes!r}")
        seconds, micros = self.scripts.command("TIME")
        key, fields, span = self._throughput_read(queue, int(seconds) * 1000 + int(micros) // 1000, minutes)
        return self._throughput_reply(span, self.scripts.command("HMGET", key, *fields))

    def _throughput_read(self, queue: str, now_ms: int, minutes: int) -> tuple[str, list[str], range]:
        """(key, fields, minutes) of the HMGET that reads ``throughput`` at ``now_ms``: the
        dashboard pipelines it for a page of queues."""
        now_minute = now_ms // 60000
        span = range(now_minute - minutes + 1, now_minute + 1)
        return self.keys(queue).minutes, [f"{m}:{kind}" for m in span for kind in ("d", "f")], span

    @staticmethod
    def _throughput_reply(span: range, values: list[Any]) -> list[tuple[float, int, int]]:
        return [(m * 60.0, int(values[2 * i] or 0), int(values[2 * i + 1] or 0)) for i, m in enumerate(span)]

    def delete_job(self, queue: str, job_id: str) -> bool:
        """Delete one job for good, whatever its state; False if there is none."""
        return self.run(ops.delete_job(self, queue, job_id))
