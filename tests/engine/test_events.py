"""The event log: each queue's capped stream, written by the script that makes the change,
read with ``Engine.events`` / ``AsyncEngine.events`` on every backend of ``engine``."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from redispool import InvalidOption
from redispool.aio import AsyncEngine
from redispool.events import Cursor


def story(engine, queue: str = "q") -> list[tuple[str | None, str]]:
    return [(e.job_id, e.type) for e in engine.events(queue, limit=1000)]


def test_a_job_retried_then_done(engine):
    job_id = engine.enqueue("q", {"n": 1}, priority=3, max_attempts=2, backoff_base=0.001, backoff_cap=0.001)
    [job] = engine.claim("q", "w1")
    assert engine.fail(job, ValueError("boom")) == "scheduled"
    time.sleep(0.01)
    [job] = engine.claim("q", "w2")
    engine.complete(job, "ok")
    events = engine.events("q")
    assert [e.type for e in events] == ["enqueued", "claimed", "failed", "claimed", "completed"]
    assert {e.job_id for e in events} == {job_id} and {e.queue for e in events} == {"q"}
    assert events[0].data == {"state": "ready", "priority": 3}
    assert events[1].data == {"attempt": 1, "worker_id": "w1"}
    assert events[2].data == {"attempt": 1, "error": "ValueError: boom", "state": "scheduled"}
    assert events[3].data == {"attempt": 2, "worker_id": "w2"}
    ids = [e.id for e in events]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-")))) and len(set(ids)) == 5
    assert all(abs(e.at - time.time()) < 60 for e in events), "at is the Redis clock, unix seconds"


def test_the_last_failure_is_dead_not_failed(engine):
    engine.enqueue("q", 1, max_attempts=1)
    [job] = engine.claim("q", "w")
    engine.fail(job, "fatal")
    *_, dead = engine.events("q")
    assert dead.type == "dead" and dead.data == {"attempt": 1, "error": "fatal"}
    assert story(engine) == [("1", "enqueued"), ("1", "claimed"), ("1", "dead")]


def test_a_sweep_expires_then_a_release_and_a_replay(engine):
    engine.enqueue("q", 1, max_attempts=2)
    [job] = engine.claim("q", "w", lease=0.05)
    time.sleep(0.1)
    assert engine.sweep("q") == 1
    [job] = engine.claim("q", "w", lease=0.05)
    engine.release(job)
    [job] = engine.claim("q", "w", lease=0.05)
    time.sleep(0.1)
    engine.sweep("q")
    engine.replay_dead("q")
    events = engine.events("q")
    assert [e.type for e in events] == ["enqueued", "claimed", "expired", "claimed", "released", "claimed",
                                        "expired", "dead", "replayed"]
    assert events[2].data == {"attempt": 1, "error": "lease expired", "state": "ready"}
    assert events[6].data["state"] == "dead" and events[7].data == {"attempt": 2, "error": "lease expired"}


def test_cancel_names_the_state_it_left_and_pause_resume_are_queue_events(engine):
    engine.enqueue("q", 1, delay=60, job_id="later")
    engine.enqueue("q", 2, job_id="now")
    assert engine.cancel("q", "later") is True
    assert engine.cancel("q", "later") is False
    engine.pause("q")
    engine.pause("q")   # already paused: no event
    engine.resume("q")
    engine.resume("q")
    events = engine.events("q")
    assert [(e.job_id, e.type) for e in events] == [
        ("later", "enqueued"), ("now", "enqueued"), ("later", "cancelled"), (None, "paused"), (None, "resumed")]
    assert events[0].data == {"state": "scheduled"} and events[2].data == {"previous": "scheduled"}


def test_a_duplicate_enqueue_writes_no_event(engine):
    engine.enqueue("q", 1, unique_key="k")
    engine.enqueue("q", 2, unique_key="k")
    assert story(engine) == [("1", "enqueued")]


def test_paging_with_after_and_limit(engine):
    engine.enqueue_many("q", range(7))
    first = engine.events("q", limit=3)
    rest = engine.events("q", after=first[-1].id, limit=100)
    assert [e.job_id for e in first + rest] == [str(n) for n in range(1, 8)]
    assert engine.events("q", after=rest[-1].id) == []
    assert engine.events("other") == [] and engine.events("q", after="$") == []
    # past 64 bits, or other scripts' digits, Redis refuses with an untyped error (the SSE
    # stream broke after its 200 on them): refused here as bad input, as the rest
    top = "18446744073709551615"
    for bad in ("x", "1-", 5, f"{top}6-0", "0-99999999999999999999", "\u0661-\u0661", f"{top}-{top}"):
        with pytest.raises(InvalidOption):
            engine.events("q", after=bad)
        with pytest.raises(InvalidOption):
            Cursor.parse(f"{bad}@q")
    assert engine.events("q", after=f"{top}-{int(top) - 1}") == engine.events("q", after=f"{int(top) - 1}-{top}") == []
    with pytest.raises(InvalidOption):
        engine.events("q", limit=0)


def test_events_max_0_writes_none(make_engine):
    quiet = make_engine(events_max=0)
    quiet.enqueue("q", 1)
    [job] = quiet.claim("q", "w")
    quiet.complete(job)
    quiet.pause("q")
    assert quiet.events("q") == []
    assert quiet.client.exists(quiet.keys("q").events) == 0


def test_the_log_is_capped_inside_the_scripts(make_engine):
    engine = make_engine(events_max=50)
    for _ in range(6):
        engine.enqueue_many("q", range(100))
    length = engine.client.xlen(engine.keys("q").events)
    assert 50 <= length <= 50 + 100, "MAXLEN ~ trims whole stream nodes (100 entries by default)"
    assert engine.events("q", limit=1000)[-1].job_id == "600", "the newest are kept"


def test_a_blocked_read_wakes_at_the_next_event(engine):
    engine.enqueue("q", 1)
    [last] = engine.events("q")
    threading.Timer(0.2, engine.enqueue, ("q", 2)).start()
    started = time.monotonic()
    [event] = engine.events("q", after=last.id, block=5)
    assert event.job_id == "2" and time.monotonic() - started < 3
    started = time.monotonic()
    assert engine.events("q", after=event.id, block=0.2) == []
    assert time.monotonic() - started >= 0.15


def test_async_events_read_and_wait(engine):
    async def main() -> None:
        aio = AsyncEngine(engine)
        try:
            engine.enqueue("q", 1)
            [first] = await aio.events("q")
            assert first.type == "enqueued" and first.job_id == "1"

            async def later() -> None:
                await asyncio.sleep(0.2)
                await asyncio.to_thread(engine.enqueue, "q", 2)
            task = asyncio.create_task(later())
            [second] = await aio.events("q", after=first.id, block=5)
            await task
            assert second.job_id == "2"
            assert await aio.events("q", after=second.id, block=0.1) == []
        finally:
            await aio.close()
    asyncio.run(main())


def test_remove_queue_removes_its_log(engine):
    engine.enqueue("q", 1)
    [job] = engine.claim("q", "w")
    engine.complete(job)
    assert engine.remove_queue("q") is True
    assert engine.events("q") == []


def test_several_queues_read_in_one_order_and_resume_exactly(engine):
    """events.read_queues (the SSE view and `redispool events --follow`): one total order,
    (id, queue), and a cursor that resumes with nothing skipped or repeated, also when
    several logs hold the same id and a read is cut short by its limit."""
    from redispool.aio import async_client
    from redispool.events import Cursor, read_queues

    for _ in range(3):
        engine.enqueue_many("a", range(7))
        engine.enqueue_many("b", range(5))
    expected = sorted((tuple(map(int, e.id.split("-"))), q) for q in ("a", "b") for e in engine.events(q, limit=1000))

    async def read_all(cursor: Cursor, limit: int, count: int) -> list[tuple[tuple[int, ...], str]]:
        aio = AsyncEngine(engine)
        client = async_client(engine, max_connections=None)
        seen: list[tuple[tuple[int, ...], str]] = []
        deadline = time.monotonic() + 5   # a cluster holds back the last second (clock skew)
        try:
            while True:
                events = await read_queues(aio, client, ["a", "b"], cursor, limit=limit, block=0.05)
                if not events and (len(seen) >= count or time.monotonic() > deadline):
                    await asyncio.sleep(0.1)
                    events = await read_queues(aio, client, ["a", "b"], cursor, limit=limit, block=0.05)
                    if not events:
                        return seen
                for event in events:
                    seen.append((tuple(map(int, event.id.split("-"))), event.queue))
                    cursor = Cursor.parse(Cursor(event.id, event.queue).token)
        finally:
            await client.aclose()
            await aio.close()

    assert asyncio.run(read_all(Cursor("0-0"), 4, len(expected))) == expected
    middle = expected[len(expected) // 2 - 1]
    resumed = asyncio.run(read_all(Cursor("-".join(map(str, middle[0])), middle[1]), 3,
                                   len(expected) - len(expected) // 2))
    assert resumed == expected[len(expected) // 2:]


def test_job_events_of_one_job_across_pages_and_the_oldest_kept(engine):
    from redispool import events as events_module
    first = engine.enqueue("q", 0)
    engine.enqueue_many("q", range(events_module.JOB_SCAN_PAGE + 50))   # the job's events span two pages
    [job] = engine.claim("q", "w")
    assert job.id == first
    engine.complete(job)
    mine, kept = engine.job_events("q", first, since=engine.get("q", first).created_at)
    assert [(e.type, e.job_id) for e in mine] == [("enqueued", first), ("claimed", first), ("completed", first)]
    assert kept == mine[0].at, "the log keeps everything yet"
    assert engine.job_events("q", "nope") == ([], kept)
    assert engine.job_events("empty", "1") == ([], None)


def test_job_events_leave_out_a_former_job_of_the_same_id(engine):
    engine.client.xadd(engine.keys("q").events, {"t": "completed", "j": "x"}, id="1-0")   # a former x, long ago
    engine.enqueue("q", 2, job_id="x")
    created = engine.get("q", "x").created_at
    mine, kept = engine.job_events("q", "x", since=created)
    assert [e.type for e in mine] == ["enqueued"]
    assert kept == 0.001, "the oldest entry kept is the one added at 1 ms"
    assert [e.id for e in engine.job_events("q", "x")[0]][0] == "1-0", "without since: the whole log"
