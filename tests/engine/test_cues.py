"""Cues: cron in a time zone (DST), the cue API, misfires, and exactly-once firing."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

import redispool
from redispool.cron import Schedule


def ms(*args: int, tz: str) -> int:
    return int(datetime(*args, tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def local(fire_ms: int, tz: str) -> str:
    return datetime.fromtimestamp(fire_ms / 1000, ZoneInfo(tz)).strftime("%m-%d %H:%M %Z")


def fires(schedule: Schedule, start_ms: int, n: int) -> list[int]:
    out, at = [], start_ms
    for _ in range(n):
        at = schedule.next_after(at)
        out.append(at)
    return out


# ---------------------------------------------------------------------- cron and DST
def test_daily_0230_fires_once_on_spring_forward_day():
    tz = "America/New_York"  # 2026-03-08 02:00 EST -> 03:00 EDT: 02:30 does not exist
    got = [local(f, tz) for f in fires(Schedule("30 2 * * *", tz), ms(2026, 3, 6, 12, tz=tz), 4)]
    assert got == ["03-07 02:30 EST", "03-08 03:30 EDT", "03-09 02:30 EDT", "03-10 02:30 EDT"]


def test_daily_0230_fires_once_on_fall_back_day():
    tz = "Europe/Berlin"  # 2026-10-25 03:00 CEST -> 02:00 CET: 02:30 happens twice
    got = [local(f, tz) for f in fires(Schedule("30 2 * * *", tz), ms(2026, 10, 23, 12, tz=tz), 4)]
    assert got == ["10-24 02:30 CEST", "10-25 02:30 CEST", "10-26 02:30 CET", "10-27 02:30 CET"]


def test_fire_times_strictly_increase_through_both_transitions():
    for tz, start in [("America/New_York", ms(2026, 3, 8, 0, tz="America/New_York")),
                      ("Europe/Berlin", ms(2026, 10, 25, 0, tz="Europe/Berlin"))]:
        times = fires(Schedule("*/10 * * * *", tz), start, 40)
        assert times == sorted(set(times))
        walls = [local(t, tz)[:11] for t in times]
        assert len(walls) == len(set(walls)), "each wall-clock time fires once"


def test_six_fields_are_seconds_first():
    s = Schedule("*/5 * * * * *")
    assert fires(s, 1_000_000, 3) == [1_005_000, 1_010_000, 1_015_000]
    assert s.between(1_000_000, 1_030_000, 100) == list(range(1_000_000, 1_030_001, 5000))
    assert s.between(1_000_000, 1_030_000, 2) == [1_025_000, 1_030_000]


@pytest.mark.parametrize("cron, tz", [("61 * * * *", "UTC"), ("* * *", "UTC"), ("a b c d e", "UTC"),
                                       ("* * * * * * *", "UTC"), ("0 0 31 2 *", "UTC"), ("", "UTC"),
                                       ("* * * * *", "Mars/Olympus"), ("* * * * *", "")])
def test_bad_cron_or_zone_is_invalid_cron(cron, tz):
    with pytest.raises(redispool.InvalidCron):
        Schedule(cron, tz)


# ---------------------------------------------------------------------- the cue API
def test_add_get_list_remove(engine):
    info = engine.add_cue("reports", "nightly", "0 3 * * *", tz="Europe/Paris", payload={"kind": "x"},
                          priority=5, max_attempts=2, lease=60)
    assert (info.queue, info.name, info.cron, info.tz, info.paused) == ("reports", "nightly", "0 3 * * *",
                                                                        "Europe/Paris", False)
    assert info.payload == {"kind": "x"} and info.priority == 5 and info.lease == 60.0
    assert datetime.fromtimestamp(info.next_fire_at, ZoneInfo("Europe/Paris")).strftime("%H:%M") == "03:00"
    assert info.next_fire_at > time.time()
    assert engine.get_cue("reports", "nightly") == info
    engine.add_cue("mail", "digest", "*/15 * * * *")
    assert [(c.queue, c.name) for c in engine.cues()] == [("mail", "digest"), ("reports", "nightly")]
    assert [c.name for c in engine.cues("mail")] == ["digest"]
    assert "reports" in engine.queues()
    engine.remove_cue("reports", "nightly")
    assert engine.get_cue("reports", "nightly") is None
    with pytest.raises(redispool.CueNotFound):
        engine.remove_cue("reports", "nightly")


def test_bad_input_writes_nothing(engine):
    bad = [dict(cron="nope"), dict(cron="* * * * *", tz="Nowhere/City"), dict(cron="* * * * *", misfire="all"),
           dict(cron="* * * * *", priority=5000), dict(cron="* * * * *", lease=0),
           dict(cron="* * * * *", payload=object()), dict(cron="* * * * *", max_attempts=0)]
    for options in bad:
        with pytest.raises((ValueError, redispool.RedispoolError)):
            engine.add_cue("q", "c", **options)
    with pytest.raises(redispool.InvalidQueueName):
        engine.add_cue("bad queue", "c", "* * * * *")
    with pytest.raises(ValueError):
        engine.add_cue("q", "bad name", "* * * * *")
    assert engine.cues() == [] and engine.queues() == []
    for method in (engine.pause_cue, engine.resume_cue, engine.run_cue):
        with pytest.raises(redispool.CueNotFound):
            method("q", "missing")


def test_pause_resume_and_run_now(engine):
    engine.add_cue("q", "tick", "* * * * * *", payload=7)
    engine.pause_cue("q", "tick")
    assert engine.get_cue("q", "tick").paused
    time.sleep(1.1)
    assert engine.fire_due_cues("q") == 0
    job_id = engine.run_cue("q", "tick")
    assert engine.get("q", job_id).payload == 7
    assert engine.get_cue("q", "tick").last_fire_at is None, "run now does not move the schedule"
    engine.resume_cue("q", "tick")
    info = engine.get_cue("q", "tick")
    assert not info.paused and info.next_fire_at > time.time() - 0.5


def test_readding_a_cue_keeps_its_schedule_and_pause(engine):
    first = engine.add_cue("q", "c", "*/5 * * * *", payload=1)
    again = engine.add_cue("q", "c", "*/5 * * * *", payload=2)
    assert again.next_fire_at == first.next_fire_at and again.payload == 2
    engine.pause_cue("q", "c")
    assert engine.add_cue("q", "c", "*/5 * * * *").paused
    changed = engine.add_cue("q", "c", "0 0 1 1 *")
    assert changed.cron == "0 0 1 1 *" and changed.paused


def _backdate(engine, queue: str, name: str, seconds: float) -> int:
    """Pretend the scheduler was down: move the cue's stored next fire time back."""
    k = engine.keys(queue)
    due = int(engine.client.zscore(k.cue_next, name)) - int(seconds * 1000)
    engine.client.zadd(k.cue_next, {name: due})
    return due


def test_fires_once_per_fire_time(engine):
    engine.add_cue("q", "tick", "* * * * * *", payload={"n": 1})
    due = int(engine.get_cue("q", "tick").next_fire_at * 1000)
    while time.time() * 1000 < due + 50:
        time.sleep(0.05)
    assert engine.fire_due_cues("q") == 1
    assert engine.fire_due_cues("q") == 0
    [job] = engine.jobs("q", "ready")
    assert job.id == f"cue:tick:{due}" and job.payload == {"n": 1}
    info = engine.get_cue("q", "tick")
    assert info.last_fire_at == due / 1000 and info.next_fire_at * 1000 > due


def test_misfire_skip_fires_once_after_downtime(engine):
    engine.add_cue("q", "m", "* * * * *", misfire="skip")
    due = _backdate(engine, "q", "m", 600)  # ten minutes of missed fire times
    assert engine.fire_due_cues("q") == 1
    assert [j.id for j in engine.jobs("q", "ready")] == [f"cue:m:{due}"]
    assert engine.get_cue("q", "m").next_fire_at > time.time(), "moved on to a future time"
    assert engine.fire_due_cues("q") == 0


def test_misfire_catch_up_fires_every_missed_time(engine):
    engine.add_cue("q", "m", "* * * * *", misfire="catch_up")
    due = _backdate(engine, "q", "m", 600)
    assert engine.fire_due_cues("q") == 10
    assert sorted(j.id for j in engine.jobs("q", "ready")) == sorted(
        f"cue:m:{due + i * 60_000}" for i in range(10))
    assert engine.fire_due_cues("q") == 0


def test_catch_up_is_bounded(engine):
    engine.add_cue("q", "s", "* * * * * *", misfire="catch_up")
    _backdate(engine, "q", "s", 3600)
    before = time.time()
    assert engine.fire_due_cues("q") == redispool.defaults.CATCH_UP_MAX
    assert engine.get_cue("q", "s").next_fire_at > before, "moved on past now"


def test_concurrent_firing_creates_each_fire_time_once(make_engine):
    """Three threads (each its own engine) race fire_due_cues for ~2.5 s while a consumer
    completes every job at once and finished jobs are not kept (done_max=0): the job id
    of a fire time is gone by the next race, so only the compare-and-set stops a repeat."""
    engine = make_engine(done_max=0)
    engine.add_cue("q", "tick", "* * * * * *", misfire="catch_up")  # a step late under load still fires every second
    engine.add_cue("q", "late", "* * * * * *", misfire="catch_up")
    _backdate(engine, "q", "late", 5)
    engines = [make_engine(done_max=0) for _ in range(3)]
    stop = time.monotonic() + 2.5
    fired: list[int] = []
    consumed: list[str] = []

    def race(e):
        while time.monotonic() < stop:
            fired.append(e.fire_due_cues("q"))

    def consume():
        while time.monotonic() < stop + 0.3:
            for job in engine.claim("q", "consumer", limit=100, block=0.1):
                engine.complete(job)
                consumed.append(job.id)

    threads = [threading.Thread(target=race, args=(e,)) for e in engines]
    threads.append(threading.Thread(target=consume))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = consumed + [j.id for j in engine.jobs("q", "ready", limit=1000)]
    assert sum(fired) == len(ids) == engine.stats("q")["totals"]["enqueued"]
    for name in ("tick", "late"):
        times = sorted(int(i.rsplit(":", 1)[1]) for i in ids if i.startswith(f"cue:{name}:"))
        assert times == list(range(times[0], times[-1] + 1, 1000)), f"{name}: no fire time missed or repeated"
    assert len([i for i in ids if i.startswith("cue:late:")]) >= 7


# ---------------------------------------------------------------------- the daemon
def test_scheduler_step_promotes_and_fires(engine):
    engine.enqueue("q", "later", delay=0.05)
    engine.add_cue("other", "tick", "* * * * * *")
    scheduler = redispool.Scheduler(engine, interval=5)
    time.sleep(0.1)
    assert scheduler.step() >= 1
    assert engine.stats("q")["ready"] == 1
    assert scheduler.next_wait() <= 1.0, "sleeps only until the next cue fire"


SCHEDULER_PROC = """
import logging, sys, redispool
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
scheduler = redispool.Scheduler(redispool.connect(sys.argv[1], prefix=sys.argv[2]), interval=1)
print("up", flush=True)
scheduler.run()
"""


@pytest.mark.slow
def test_three_scheduler_processes_fire_each_time_exactly_once(redis_url):
    prefix = f"s{os.getpid()}{int(time.time())}"
    engine = redispool.connect(redis_url, prefix=prefix)
    engine.add_cue("q", "tick", "* * * * * *", misfire="catch_up")  # a step late under load still fires every second
    procs = [subprocess.Popen([sys.executable, "-c", SCHEDULER_PROC, redis_url, prefix],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        for p in procs:   # all three running (a loaded machine may take seconds to start one)
            assert p.stdout is not None and p.stdout.readline() == "up\n"
        time.sleep(4.5)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        logs = [p.communicate(timeout=10)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], logs
    ids = [j.id for j in engine.jobs("q", "ready", limit=1000)]
    times = sorted(int(i.rsplit(":", 1)[1]) for i in ids)
    assert len(times) >= 3 and times == list(range(times[0], times[-1] + 1, 1000))
    assert engine.stats("q")["totals"]["enqueued"] == len(ids)
    # one "cue fired ... jobs=N" line per fire call; a step late under load fires 2+ at once
    logged = sum(int(n) for log in logs for n in re.findall(r"cue fired .*? jobs=(\d+)", log))
    assert logged == len(ids), "each fire logged by one scheduler"
    engine.close()


def test_the_run_log_keeps_fires_and_runs_now_newest_first_and_goes_with_the_cue(engine):
    engine.add_cue("q", "tick", "* * * * * *", payload=1)
    assert engine.cue_runs("q", "tick") == [] and engine.get_cue("q", "tick").runs == 0
    due = engine.get_cue("q", "tick").next_fire_at
    time.sleep(max(0.0, due - time.time()) + 0.05)
    assert engine.fire_due_cues("q") == 1
    manual = engine.run_cue("q", "tick")
    [(ran, ran_at), (fired, fired_at)] = engine.cue_runs("q", "tick")
    assert ran == manual and fired == f"cue:tick:{round(fired_at * 1000)}"
    assert fired_at == pytest.approx(due) and ran_at >= fired_at
    assert {engine.get("q", ran).payload, engine.get("q", fired).payload} == {1}
    assert engine.get_cue("q", "tick").runs == 2
    assert engine.add_cue("q", "tick", "* * * * * *", payload=2).runs == 2, "re-adding keeps the count"
    assert engine.cue_runs("q", "tick", limit=1) == [(ran, ran_at)]
    with pytest.raises(redispool.InvalidOption):
        engine.cue_runs("q", "tick", limit=0)
    engine.remove_cue("q", "tick")
    with pytest.raises(redispool.CueNotFound):
        engine.cue_runs("q", "tick")
    engine.add_cue("q", "tick", "* * * * * *")
    assert engine.cue_runs("q", "tick") == [] and engine.get_cue("q", "tick").runs == 0


def test_the_run_log_is_capped(engine, monkeypatch):
    monkeypatch.setattr(redispool.defaults, "CUE_RUNS_MAX", 3)
    engine.add_cue("q", "c", "0 0 1 1 *")
    ids = [engine.run_cue("q", "c") for _ in range(5)]
    assert [j for j, _ in engine.cue_runs("q", "c", limit=3)] == ids[::-1][:3]
    assert engine.get_cue("q", "c").runs == 5
