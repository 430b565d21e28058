"""Cron expressions in a time zone: the fire times of a cue, DST-correct.

Five fields (minute hour day month weekday) or six with seconds first
(``*/5 * * * * *`` = every 5 seconds, as BullMQ and Quartz write it). Fire times are
wall-clock times in the cue's zone, and each wall-clock time fires once:
- a time that does not exist (the spring-forward gap) fires at the same offset after
  the jump: a daily 02:30 fires at 03:30 on that day;
- a time that happens twice (the fall-back fold) fires on its first occurrence only.
Fire times are returned as unix milliseconds, strictly increasing.
"""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError

from .errors import InvalidCron

_MAX_SKIPS = 1000   # wall times that map to an instant already past (DST gaps)


class Schedule:
    """A parsed cron expression and zone; ``next_after`` / ``prev_before`` walk its fire times."""

    __slots__ = ("cron", "tz", "zone", "seconds")

    def __init__(self, cron: str, tz: str = "UTC") -> None:
        if not isinstance(cron, str) or not cron.strip():
            raise InvalidCron(f"cron must be a non-empty string, got {cron!r}")
        if not isinstance(tz, str) or not tz:
            raise InvalidCron(f"tz must be a time zone name, got {tz!r}")
        try:
            self.zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidCron(f"unknown time zone {tz!r}") from exc
        self.cron = " ".join(cron.split())
        self.tz = tz
        fields = len(self.cron.split(" "))
        if fields not in (5, 6):
            raise InvalidCron(f"cron {cron!r} must have 5 fields (min hour day month weekday) "
                              "or 6 with seconds first")
        self.seconds = fields == 6
        try:
            # Parsing only: the start time is irrelevant; get_next proves it can fire at all.
            self._iter(datetime(2000, 1, 1)).get_next(datetime)
        except (CroniterError, ValueError, KeyError, TypeError) as exc:
            raise InvalidCron(f"invalid cron {cron!r}: {exc}") from None

    def _iter(self, start: datetime, is_prev: bool = False) -> croniter:
        return croniter(self.cron, start, second_at_beginning=self.seconds, is_prev=is_prev)

    def _wall(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, timezone.utc).astimezone(self.zone).replace(tzinfo=None)

    def _instant_ms(self, wall: datetime) -> int:
        return round(wall.replace(tzinfo=self.zone, fold=0).timestamp() * 1000)

    def next_after(self, ms: int) -> int:
        """The first fire time strictly after unix ms ``ms``."""
        it = self._iter(self._wall(ms))
        for _ in range(_MAX_SKIPS):
            fire = self._instant_ms(it.get_next(datetime))
            if fire > ms:
                return fire
        raise InvalidCron(f"cron {self.cron!r} has no fire time after {ms} ms")

    def prev_at_or_before(self, ms: int) -> int | None:
        """The last fire time at or before unix ms ``ms`` (None if none is found)."""
        it = self._iter(self._wall(ms + 1000), is_prev=True)
        for _ in range(_MAX_SKIPS):
            fire = self._instant_ms(it.get_prev(datetime))
            if fire <= ms:
                return fire
        return None

    def between(self, start_ms: int, end_ms: int, limit: int) -> list[int]:
        """Fire times in [start_ms, end_ms], at most the ``limit`` latest, ascending.

        Walking back finds where the latest ``limit`` begin (cheap after a long outage of
        a every-second cue); walking forward from there gives the exact times."""
        low, ms = start_ms, end_ms
        for _ in range(limit):
            fire = self.prev_at_or_before(ms)
            if fire is None or fire < start_ms:
                break
            low, ms = fire, fire - 1
        out: list[int] = []
        fire = self.next_after(max(start_ms, low) - 1)
        while fire <= end_ms:
            out.append(fire)
            fire = self.next_after(fire)
        return out[-limit:] if limit else []
