"""enqueue_plain.lua, the lean path of a single job without options, leaves what enqueue.lua
leaves for that job: the same keys and values (job hash, ready score and FIFO place from the
queue's counter, wake-up marker under the pause and concurrency-cap rules, event and its
trimming, lifetime count, queue registration) and the same reply, on every backend, called
as a function (FCALL) or by EVALSHA. Each scenario runs once per path, in a queue of its own,
and the two queues' keys are compared step by step."""
from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

import redispool
from redispool import codec, ops
from redispool.aio import AsyncEngine
from redispool.keys import queues_key
from redispool.scripts import LIB, function_library, read_script, script_names, uses_run_state, with_lib

TIMED_FIELDS = {"c", "u", "paused_at", "scheduler_at", "sweeper_at"}
TIMED_SETS = {"leased"}
MS = re.compile(r"^\d{13}$")   # a server time in ms, as lib's num() writes it

Enqueue = Callable[[redispool.Engine, str, Any], tuple[str, bool]]


def by_enqueue_lua(engine: redispool.Engine, queue: str, payload: Any) -> tuple[str, bool]:
    [created] = engine.run(ops.enqueue(engine, queue, [codec.encode(payload)], [ops.DEFAULT_OPTIONS]))
    return created


def by_enqueue_plain(engine: redispool.Engine, queue: str, payload: Any) -> tuple[str, bool]:
    [created] = engine.run(ops.enqueue_plain(engine, queue, [codec.encode(payload)]))
    return created


def text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def snapshot(engine: redispool.Engine, queue: str) -> dict[str, Any]:
    """Every key of ``queue`` by its name after rp:{q}:, clock readings checked and
    normalised, stream entries without their (time) ids."""
    client, base = engine.client, engine.keys(queue).base
    out: dict[str, Any] = {}
    for raw in client.scan_iter(match=base + "*"):
        name = text(raw)[len(base):]
        kind = text(client.type(raw))
        if kind == "hash":
            fields = {text(f): text(v) for f, v in client.hgetall(raw).items()}
            for f in TIMED_FIELDS & set(fields):
                assert MS.match(fields[f]), (name, f, fields[f])
                fields[f] = "<ms>"
            out[name] = fields
        elif kind == "zset":
            members = client.zrange(raw, 0, -1, withscores=True)
            out[name] = [(text(m), None if name in TIMED_SETS else s) for m, s in members]
        elif kind == "stream":
            out[name] = [{text(f): text(v) for f, v in entry.items()} for _, entry in client.xrange(raw)]
        elif kind == "set":
            out[name] = sorted(text(m) for m in client.smembers(raw))
        else:
            out[name] = kind
    return out


def marker_scenario(engine: redispool.Engine, queue: str, enqueue: Enqueue) -> list[Any]:
    """Plain jobs enqueued between the steps that decide the wake-up marker; what each
    enqueue replied and the queue's keys after each step."""
    k, seen = engine.keys(queue), []

    def step() -> None:
        seen.append(snapshot(engine, queue))

    def enq(payload: Any) -> None:
        seen.append(enqueue(engine, queue, payload))
        step()

    enq(b"first")                 # a new queue: counter from zero, registered, marker set
    enq({"n": 2})                 # the marker is set already
    engine.claim(queue, "w", limit=1)
    step()                        # one job left: the marker stays
    engine.claim(queue, "w", limit=1)
    step()                        # none left: the marker goes
    engine.set_limits(queue, concurrency=2)
    engine.client.delete(k.marker)
    enq(3)                        # two leased, at the cap: no marker
    engine.set_limits(queue, concurrency=3)
    engine.client.delete(k.marker)
    enq(4)                        # under the cap: the marker
    engine.client.hset(k.config, "concurrency", "lots")
    engine.client.delete(k.marker)
    enq(5)                        # a damaged cap is no cap
    engine.pause(queue)
    enq(6)                        # paused: no marker
    engine.resume(queue)
    step()
    engine.client.srem(queues_key(engine.prefix), queue)
    enq(7)                        # not a new queue: not registered again
    seen.append(engine.client.sismember(queues_key(engine.prefix), queue))
    for n in (2**42 - 1, 10**15 - 1):   # the ready score wraps at the priority span; ids of 16 digits
        engine.client.hset(k.meta, "seq", n)
        enq(n)
    seen.append([job.payload for job in engine.claim(queue, "w2", limit=10)])   # the FIFO order
    step()
    return seen


@pytest.fixture(params=["fcall", "evalsha"])
def call_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def connected(make_engine: Callable[..., redispool.Engine], call_mode: str, **options: Any) -> redispool.Engine:
    engine = make_engine(**options)
    if call_mode == "evalsha":   # as on a Redis without functions
        engine.scripts.functions = None
        engine.scripts.restore()
    return engine


def test_a_plain_job_leaves_what_enqueue_lua_leaves(make_engine, call_mode):
    engine = connected(make_engine, call_mode)
    old = marker_scenario(engine, "old", by_enqueue_lua)
    new = marker_scenario(engine, "new", by_enqueue_plain)
    assert new == old
    first = old[1]
    assert old[0] == ("1", True) and first["marker"] == [("m", 0.0)] and first["job:1"]["s"] == "ready"
    markers = [snap.get("marker") for snap in new if isinstance(snap, dict)]
    assert markers[:9] == [[("m", 0.0)], [("m", 0.0)], [("m", 0.0)], None, None, [("m", 0.0)], [("m", 0.0)],
                           None, [("m", 0.0)]], "set, kept, kept, gone; at the cap, under it, damaged cap, paused"
    replies = [r for r in new if isinstance(r, tuple)]   # 3, 4: claim tokens
    assert replies == [(job_id, True) for job_id in ("1", "2", "5", "6", "7", "8", "9", "4398046511104",
                                                     "1000000000000000")]
    assert new[-2] == [2**42 - 1, 3, 4, 5, 6, 7, 10**15 - 1], "FIFO by the counter, its score wrapped at 2^42"


def test_the_job_time_is_the_server_clock(engine):
    t0 = engine.scripts.command("TIME")
    job_id = engine.enqueue("q", 1)
    t1 = engine.scripts.command("TIME")
    created = int(engine.client.hget(engine.keys("q").job(job_id), "c"))
    assert int(t0[0]) * 1000 + int(t0[1]) // 1000 <= created <= int(t1[0]) * 1000 + int(t1[1]) // 1000


def test_now_text_is_now_ms_as_text(engine):
    """now_text pads TIME's microseconds as num(now_ms()) formats the sum (fed fake TIMEs)."""
    body = ("local out = {}\nfor _, t in ipairs(cjson.decode(ARGV[1])) do\n  fake_time = t\n"
            "  out[#out + 1] = now_text()\n  out[#out + 1] = num(now_ms())\nend\nreturn out\n")
    fake = "local fake_time\nlocal redis = { call = function() return fake_time end }\n"
    times = [["1795858874", u] for u in ("0", "5", "999", "1000", "45678", "100000", "999999", "123456")]
    reply = [text(v) for v in engine.client.eval(fake + with_lib(read_script(LIB), body), 0, json.dumps(times))]
    assert reply[0::2] == reply[1::2]
    assert reply[0::2][:4] == ["1795858874000", "1795858874000", "1795858874000", "1795858874001"]


@pytest.mark.parametrize("events_max", [0, 3])
def test_the_event_log_is_trimmed_alike(make_engine, call_mode, events_max):
    engine = connected(make_engine, call_mode, events_max=events_max)
    for queue, enqueue in (("old", by_enqueue_lua), ("new", by_enqueue_plain)):
        for n in range(250):
            enqueue(engine, queue, n)
    old, new = snapshot(engine, "old"), snapshot(engine, "new")
    assert new == old
    assert ("events" in new) == (events_max > 0)
    if events_max:
        assert 3 <= len(new["events"]) < 250, "trimmed to about events_max (whole stream nodes)"


def test_plain_jobs_take_the_lean_path_and_others_enqueue_lua(engine, monkeypatch):
    ran: list[str] = []
    call = engine.scripts.call
    monkeypatch.setattr(engine.scripts, "call", lambda op: ran.append(op.script) or call(op))
    engine.enqueue("q", 1)
    engine.enqueue_or_get("q", 2, max_attempts=ops.DEFAULT_OPTIONS.max_attempts)
    engine.enqueue_specs("q", [engine.job_spec(3)])
    assert ran == ["enqueue_plain"] * 3
    ran.clear()
    engine.enqueue_specs("q", [engine.job_spec(7), engine.job_spec(8)])   # batches of plain jobs too
    engine.enqueue_many("q", [9])
    assert ran == ["enqueue_plain"] * 2
    ran.clear()
    engine.enqueue("q", 4, priority=1)
    engine.enqueue("q", 5, max_attempts=2)
    engine.enqueue("q", 6, job_id="six")
    engine.enqueue_specs("q", [engine.job_spec(12), engine.job_spec(13, priority=0, delay=0)])
    engine.enqueue_many("q", [14], max_attempts=2)
    parent = engine.enqueue("q", 10, tags=["t"])
    engine.enqueue("q", 11, depends_on=[parent])
    assert ran == ["enqueue"] * 7
    assert [job.payload for job in engine.claim("q", "w", limit=20)] == [4, 1, 2, 3, 7, 8, 9, 5, 6, 12, 13, 14, 10]


@pytest.mark.parametrize("events_max", [0, 3, 10_000])
def test_a_batch_of_plain_jobs_leaves_what_enqueue_lua_leaves(make_engine, call_mode, events_max):
    """enqueue_many / enqueue_specs of jobs without options: one call of the lean script
    leaves what one call of enqueue.lua leaves (hashes, ready order, events and their
    trimming, marker, counts, queue registration), batches of 1 to 2,500 jobs (ZADD in
    chunks of 1,000)."""
    engine = connected(make_engine, call_mode, events_max=events_max)
    replies = {}
    for queue, script in (("old", "enqueue"), ("new", "enqueue_plain")):
        got = []
        for size in (1, 2, 7, 2500):
            encoded = [codec.encode({"n": i, "size": size}) for i in range(size)]
            op = (ops.enqueue(engine, queue, encoded, [ops.DEFAULT_OPTIONS]) if script == "enqueue"
                  else ops.enqueue_plain(engine, queue, encoded))
            got.append(engine.run(op))
        replies[queue] = got
    assert replies["new"] == replies["old"]
    assert [len(r) for r in replies["new"]] == [1, 2, 7, 2500] and replies["new"][1] == [("2", True), ("3", True)]
    assert snapshot(engine, "new") == snapshot(engine, "old")
    assert engine.client.sismember(queues_key(engine.prefix), "new")
    ids = [job_id for batch in replies["new"] for job_id, _ in batch]
    assert [j.id for j in engine.claim("new", "w", limit=1000)] == ids[:1000], "FIFO across the batches"


def test_the_async_engine_takes_the_lean_path_for_one_plain_spec(engine):
    ran: list[str] = []

    async def go() -> list[list[tuple[str, bool]]]:
        aio = AsyncEngine(engine)
        call = aio.scripts.call

        async def spy(op: ops.Op[Any]) -> Any:
            ran.append(op.script)
            return await call(op)

        aio.scripts.call = spy   # type: ignore[method-assign]
        try:
            return [await aio.enqueue_specs("q", [engine.job_spec("a")]),
                    await aio.enqueue_specs("q", [engine.job_spec("b", priority=3)])]
        finally:
            await aio.close()

    assert asyncio.run(go()) == [[("1", True)], [("2", True)]]
    assert ran == ["enqueue_plain", "enqueue"]
    assert engine.client.sismember(queues_key(engine.prefix), "q")


def test_the_lean_script_runs_where_enqueue_does():
    """Same flags (not at maxmemory: its first write may grow memory; durable), and the
    function skips the per-run reset it does not need."""
    lib = read_script(LIB)
    library = function_library()
    for name in script_names():
        body = read_script(name)
        start = library.code.index(f"function_name = '{library.functions[name]}'")
        callback = library.code[start:].split("callback = function(KEYS, ARGV)\n", 1)[1]
        assert callback.startswith("rp_reset_run()\n") == uses_run_state(lib, body), name
    assert not uses_run_state(lib, read_script("enqueue_plain")) and uses_run_state(lib, read_script("enqueue"))
    flags = {name: library.code.split(f"function_name = '{library.functions[name]}', flags = ", 1)[1][:20]
             for name in ("enqueue", "enqueue_plain")}
    assert flags["enqueue"] == flags["enqueue_plain"]
    assert ops.generated_id(7) == "7" and ops.generated_id(10**15) == "1000000000000000"
    assert ops.generated_id(10**17) == "1e+17"
