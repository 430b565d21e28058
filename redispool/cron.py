"""Cron expressions in a time zone: the fire times of a cue, DST-correct.

Five fields (minute hour day month weekday) or six with seconds first
(``*/5 * * * * *`` = every 5 seconds, as BullMQ and Quartz write it). Fire times are
wall-clock times in the cue's zone, and each wall-clock time fires once:
- a time that does not exist (the spring-forward gap) fires at the same offset after
  the jump: a daily 02:30 fires at 03:30 on that day, and every skipped time of a
  sub-hourly cron fires so, between the real times after the jump (one fire where a
  shifted time meets a real one);
- a time that happens twice (the fall-back fold) fires on its first occurrence only.
Fire times are returned as unix milliseconds, strictly increasing.
"""
from __future__ import annotations

import functools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import croniter
from croniter.croniter import CroniterError

from .errors import InvalidCron

_MAX_SKIPS = 1000   # steps of one walk at most (each crosses a gap or skips a rounding edge)
_LOOKBACK_MS = 25 * 3600 * 1000  # > the largest offset change in tz data (24 h, Samoa 2011);
                                 # changes of one zone are days apart, so one fits in it at most
_NOT_IANA = frozenset({"localtime", "posixrules", "Factory"})  # files in zoneinfo dirs, not zones


@functools.lru_cache(maxsize=1)
def _iana_zones() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_IANA


def check_zone(tz: object) -> str:
    """``tz`` if it is an IANA zone name (``Europe/Berlin``, ``UTC``), else InvalidCron.

    For new cues: ``localtime`` loads too, but it is each host's own clock setting, so
    schedulers on different hosts would fire one cue at different times."""
    if not isinstance(tz, str) or tz not in _iana_zones():
        hint = " (it follows each host's own clock setting)" if tz == "localtime" else ""
        raise InvalidCron(f"tz must be an IANA time zone name such as Europe/Berlin or UTC, got {tz!r}{hint}")
    return tz


class Schedule:
    """A parsed cron expression and zone; ``next_after`` / ``prev_at_or_before`` walk its
    fire times. One per thread: it moves one parsed croniter (parsing is the slow part)."""

    __slots__ = ("cron", "tz", "zone", "seconds", "_it", "_change")

    def __init__(self, cron: str, tz: str = "UTC") -> None:
        if not isinstance(cron, str) or not cron.strip():
            raise InvalidCron(f"cron must be a non-empty string, got {cron!r}")
        if not isinstance(tz, str) or not tz:
            raise InvalidCron(f"tz must be a time zone name, got {tz!r}")
        try:
            self.zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a directory, a name too long
            raise InvalidCron(f"unknown time zone {tz!r}") from exc
        self.cron = " ".join(cron.split())
        self.tz = tz
        fields = len(self.cron.split(" "))
        if fields not in (5, 6):
            raise InvalidCron(f"cron {cron!r} must have 5 fields (min hour day month weekday) "
                              "or 6 with seconds first")
        self.seconds = fields == 6
        self._change: tuple[int, int, int] = (0, 0, 0)  # the last offset change found
        try:
            # Parsing only: the start time is irrelevant; get_next proves it can fire at all.
            self._it = self._iter(datetime(2000, 1, 1))
            self._it.get_next(datetime)
        except (CroniterError, ValueError, KeyError, TypeError) as exc:
            raise InvalidCron(f"invalid cron {cron!r}: {exc}") from None

    def _iter(self, start: datetime) -> croniter:
        return croniter(self.cron, start, second_at_beginning=self.seconds)

    # Wall-clock times of the zone are "wall ms": ms since 1970-01-01 00:00 on that clock
    # (naive); instants are unix ms. A wall time fires at its fold=0 instant: the first
    # occurrence of a repeated time, the pre-jump offset for a skipped one. That mapping
    # rises with the wall time except across a gap: the skipped times fire in [T, T + jump)
    # as do the first ``jump`` of real times after it. So each walk below takes the
    # skipped times of a gap apart from the real ones and keeps the earliest (latest).
    def _after(self, wall: int) -> int:
        """The first wall time the cron matches strictly after ``wall``."""
        self._it.set_current(_naive(wall), force=True)  # one parsed croniter, moved (parsing is slow)
        return _wall_ms(self._it.get_next(datetime))

    def _at_or_before(self, wall: int) -> int:
        """The last wall time the cron matches at or before ``wall``."""
        self._it.set_current(_naive(wall + 1), force=True)
        return _wall_ms(self._it.get_prev(datetime))

    def _offset(self, ms: int) -> int:
        """The zone's UTC offset in ms at instant ``ms`` (offsets change on whole seconds)."""
        return _delta_ms(datetime.fromtimestamp(ms // 1000, self.zone).utcoffset())

    def _wall(self, ms: int) -> int:
        return ms + self._offset(ms)

    def _instant(self, wall: int) -> int:
        return wall - _delta_ms(_naive(wall).replace(tzinfo=self.zone, fold=0).utcoffset())

    def _change_at(self, lo_ms: int, hi_ms: int) -> tuple[int, int, int]:
        """(instant, offset before, offset after) of the one offset change in (lo_ms, hi_ms]."""
        before, after = self._offset(lo_ms), self._offset(hi_ms)
        if lo_ms < self._change[0] <= hi_ms and self._change[1:] == (before, after):
            return self._change
        lo, hi = lo_ms // 1000, hi_ms // 1000
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._offset(mid * 1000) == before:
                lo = mid
            else:
                hi = mid
        self._change = (hi * 1000, before, after)
        return self._change

    def _change_before(self, ms: int) -> tuple[int, int, int] | None:
        """The offset change in (ms - 25 h, ms], if any (tz data has at most one there)."""
        if self._offset(ms - _LOOKBACK_MS) == self._offset(ms):
            return None
        return self._change_at(ms - _LOOKBACK_MS, ms)

    def _gap(self, wall: int) -> tuple[int, int, int] | None:
        """(instant, offset before, offset after) of the jump that skips ``wall``, if it does."""
        naive = _naive(wall)
        before = _delta_ms(naive.replace(tzinfo=self.zone, fold=0).utcoffset())
        after = _delta_ms(naive.replace(tzinfo=self.zone, fold=1).utcoffset())
        if before >= after:
            return None
        return self._change_at(wall - after, wall - before)

    def next_after(self, ms: int) -> int:
        """The first fire time strictly after unix ms ``ms``."""
        found: list[int] = []
        wall = self._wall(ms)
        change = self._change_before(ms)
        if change:
            t, before, after = change
            if after > before and ms < t + after - before:
                # a jump just now: skipped times after ms + before fire shifted, after ms
                skipped = self._after(ms + before)
                if skipped < t + after:
                    found.append(skipped - before)
            elif after < before and ms < t + before - after:
                wall = t + before - 1  # the repeated hour: its times fired on their first pass
        for _ in range(_MAX_SKIPS):
            wall = self._after(wall)
            gap = self._gap(wall)
            if gap is None:
                fire = self._instant(wall)
                if fire > ms:
                    return min(found + [fire])
                continue
            t, before, after = gap  # the first skipped time of a later jump: note it, go past the gap
            found.append(wall - before)
            wall = t + after - 1
        if found:
            return min(found)
        raise InvalidCron(f"cron {self.cron!r} has no fire time after {ms} ms")

    def prev_at_or_before(self, ms: int) -> int | None:
        """The last fire time at or before unix ms ``ms`` (None if none is found)."""
        found: list[int] = []
        wall = self._wall(ms)
        change = self._change_before(ms)
        if change:
            t, before, after = change
            if after > before and ms < t + after - before:
                skipped = self._at_or_before(ms + before)  # the skipped times fired so far
                if skipped >= t + before:
                    found.append(skipped - before)
            elif after < before and ms < t + before - after:
                wall = t + before - 1  # the whole repeated hour fired on its first pass
        for _ in range(_MAX_SKIPS):
            try:
                wall = self._at_or_before(wall)
            except (CroniterError, ValueError):  # before year 1 or so
                break
            gap = self._gap(wall)
            if gap is not None:
                t, before, after = gap  # the last skipped time of an earlier jump
                if wall - before <= ms:
                    found.append(wall - before)
                wall = t + before - 1
                continue
            fire = self._instant(wall)
            if fire > ms:
                wall -= 1
                continue
            found.append(fire)
            # a jump that ended less than its size before this fire: its skipped times fire after it
            earlier = self._change_before(fire)
            if earlier and earlier[2] > earlier[1] and fire < earlier[0] + earlier[2] - earlier[1]:
                t, before, after = earlier
                skipped = self._at_or_before(min(t + after - 1, ms + before))
                if skipped >= t + before:
                    found.append(skipped - before)
            return max(found)
        return max(found) if found else None

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


_EPOCH = datetime(1970, 1, 1)


def _naive(wall: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=wall)


def _wall_ms(naive: datetime) -> int:
    return (naive - _EPOCH) // timedelta(milliseconds=1)


def _delta_ms(delta: timedelta | None) -> int:
    return 0 if delta is None else delta // timedelta(milliseconds=1)
