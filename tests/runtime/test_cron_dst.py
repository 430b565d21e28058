"""Cron fire times across every kind of offset change, checked against a brute force.

The oracle walks every wall-clock minute (or second) of a window around each offset
change of a zone, keeps those a plain cron matcher (written here, not croniter) accepts,
and maps each to its instant: its first occurrence when it exists (once for a repeated
time), else "the same offset after the jump" (the offset in force before the change).
``Schedule.next_after``, ``prev_at_or_before`` and ``between`` must give exactly that set.
"""
from __future__ import annotations

import bisect
import itertools
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from redispool.cron import Schedule

EPOCH = datetime(1970, 1, 1)
HOUR_MS = 3_600_000


# ---------------------------------------------------------------------- the oracle
def _field(spec: str, value: int) -> bool:
    """One cron field of the forms the tests use: *, */N, N, A-B, lists of those."""
    for part in spec.split(","):
        step = 1
        if "/" in part:
            part, s = part.split("/")
            step = int(s)
        if part == "*":
            if value % step == 0:
                return True
        elif "-" in part:
            lo, hi = map(int, part.split("-"))
            if lo <= value <= hi and (value - lo) % step == 0:
                return True
        elif int(part) == value:
            return True
    return False


def matches(cron: str, wall: datetime) -> bool:
    fields = cron.split()
    second = "0"
    if len(fields) == 6:
        second, *fields = fields
    minute, hour, day, month, weekday = fields
    assert day == month == weekday == "*", "the oracle knows only daily patterns"
    return _field(second, wall.second) and _field(minute, wall.minute) and _field(hour, wall.hour)


def offset_ms(zone: ZoneInfo, ms: int) -> int:
    return int(datetime.fromtimestamp(ms // 1000, zone).utcoffset().total_seconds() * 1000)


def instant_of(zone: ZoneInfo, wall_ms: int, offsets: list[int]) -> int:
    """The instant a wall time fires at: its first occurrence, or for a time that does not
    exist, the wall time read with the offset in force before the jump."""
    real = [wall_ms - o for o in offsets if offset_ms(zone, wall_ms - o) == o]
    if real:
        return min(real)
    return wall_ms - offset_ms(zone, wall_ms - max(offsets))


def oracle(cron: str, tz: str, start_ms: int, end_ms: int) -> list[int]:
    """Every fire instant in [start_ms, end_ms], by brute force over wall times."""
    zone = ZoneInfo(tz)
    offsets = sorted({offset_ms(zone, m) for m in range(start_ms - 30 * HOUR_MS, end_ms + 30 * HOUR_MS, HOUR_MS // 4)})
    step = 1000 if len(cron.split()) == 6 else 60_000
    lo = (start_ms + offsets[0]) // step * step - step
    hi = end_ms + offsets[-1] + step
    fires = set()
    for wall_ms in range(lo, hi, step):
        if matches(cron, EPOCH + timedelta(milliseconds=wall_ms)):
            t = instant_of(zone, wall_ms, offsets)
            if start_ms <= t <= end_ms:
                fires.add(t)
    return sorted(fires)


def changes(tz: str, year: int) -> list[int]:
    """Unix ms of every offset change of ``tz`` in ``year`` (day scan, then bisection)."""
    zone = ZoneInfo(tz)
    start = int(datetime(year, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
    out = []
    for day in range(366):
        a, b = start + day * 24 * HOUR_MS, start + (day + 1) * 24 * HOUR_MS
        if offset_ms(zone, a) != offset_ms(zone, b):
            lo, hi = a // 1000, b // 1000
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if offset_ms(zone, mid * 1000) == offset_ms(zone, a) else (lo, mid)
            out.append(hi * 1000)
    return out


TRANSITIONS = [(tz, t) for tz in ("Australia/Lord_Howe", "Europe/Berlin", "America/Santiago", "Antarctica/Troll",
                                  "America/New_York", "Africa/Casablanca") for t in changes(tz, 2026)]
TRANSITIONS += [("Asia/Kathmandu", t) for t in changes("Asia/Kathmandu", 1985)]  # 1986-01-01 +05:30 -> +05:45
TRANSITIONS += [("Asia/Kathmandu", int(datetime(2026, 6, 1, tzinfo=timezone.utc).timestamp() * 1000))]  # none


def test_the_transitions_cover_gaps_and_repeats_of_every_size():
    jumps = {(tz, (offset_ms(ZoneInfo(tz), t) - offset_ms(ZoneInfo(tz), t - 1000)) // 60_000) for tz, t in TRANSITIONS}
    assert {("Australia/Lord_Howe", 30), ("Australia/Lord_Howe", -30), ("Antarctica/Troll", 120),
            ("Antarctica/Troll", -120), ("Asia/Kathmandu", 15), ("Africa/Casablanca", 60),
            ("Africa/Casablanca", -60), ("America/Santiago", 60), ("Europe/Berlin", -60)} <= jumps


def walk(schedule: Schedule, start_ms: int, end_ms: int) -> list[int]:
    out, at = [], start_ms - 1
    while True:
        at = schedule.next_after(at)
        if at > end_ms:
            return out
        out.append(at)


def check(cron: str, tz: str, start_ms: int, end_ms: int, probe_every: int = 1) -> None:
    expected = oracle(cron, tz, start_ms, end_ms)
    schedule = Schedule(cron, tz)
    zone = ZoneInfo(tz)

    def show(times: list[int]) -> list[str]:
        return [datetime.fromtimestamp(t / 1000, zone).strftime("%H:%M:%S%z") for t in times]

    got = walk(schedule, start_ms, end_ms)
    assert show(got) == show(expected)
    assert got == expected
    # prev_at_or_before: at each fire time, just before it, and halfway to the next one
    some = expected[::probe_every]
    probes = {t + d for t in some for d in (-1, 0, 1)} | {(a + b) // 2 for a, b in itertools.pairwise(some)}
    for probe in sorted(p for p in probes if expected and expected[0] <= p <= end_ms):
        want = expected[bisect.bisect_right(expected, probe) - 1]
        assert schedule.prev_at_or_before(probe) == want, (show([probe]), show([want]))
    assert schedule.between(start_ms, end_ms, len(expected) + 5) == expected
    assert schedule.between(start_ms, end_ms, 3) == expected[-3:]


@pytest.mark.parametrize("cron", ["*/7 * * * *", "0 */20 * * * *", "30 2 * * *", "0 * * * *", "*/10 * * * *",
                                  "10,25,35 * * * *", "0,30 0-3 * * *"])
@pytest.mark.parametrize("tz, change_ms", TRANSITIONS, ids=lambda v: str(v))
def test_fire_times_match_the_brute_force(tz, change_ms, cron):
    span = 5 * HOUR_MS if cron != "30 2 * * *" else 50 * HOUR_MS
    check(cron, tz, change_ms - span, change_ms + span)


@pytest.mark.slow
@pytest.mark.parametrize("tz, change_ms", TRANSITIONS, ids=lambda v: str(v))
def test_every_second_matches_the_brute_force(tz, change_ms):
    """Every wall second from 5 minutes before the change to 5 minutes after the shifted
    (or repeated) stretch; prev_at_or_before probed at every 7th fire time."""
    zone = ZoneInfo(tz)
    jump = abs(offset_ms(zone, change_ms) - offset_ms(zone, change_ms - 1000))
    check("* * * * * *", tz, change_ms - 300_000, change_ms + jump + 300_000, probe_every=7)


def test_lord_howe_every_7_minutes_keeps_the_shifted_gap_times():
    """The report's case: 02:00-02:29 do not exist on 2026-10-04; 02:07, 02:14, 02:21 and
    02:28 fire 30 minutes late, between the regular 02:35, 02:42 ... (they were lost)."""
    tz = "Australia/Lord_Howe"
    start = int(datetime(2026, 10, 4, 1, 50, tzinfo=ZoneInfo(tz)).timestamp() * 1000)
    zone = ZoneInfo(tz)
    end = start + 40 * 60_000  # 03:00 +11

    def fires(cron: str) -> list[str]:
        return [datetime.fromtimestamp(t / 1000, zone).strftime("%H:%M") for t in walk(Schedule(cron, tz), start, end)]

    assert fires("*/7 * * * *") == ["01:56", "02:30", "02:35", "02:37", "02:42", "02:44", "02:49", "02:51",
                                     "02:56", "02:58", "03:00"]
    assert fires("0 */20 * * * *") == ["02:30", "02:40", "02:50", "03:00"]
