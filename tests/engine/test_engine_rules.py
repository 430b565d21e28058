"""Rules the engine applies the same way on every path (issue 14): one worker-id rule for
claim(), ack(), the async engine, Worker and the registry; enqueue_or_get tells a new job
from an existing one; new cues take IANA zone names only; one strict JSON encoding."""
from __future__ import annotations

import asyncio
import json
import math

import pytest

import redispool
from redispool import tojson
from redispool.aio import AsyncEngine
from redispool.cron import Schedule

BAD_IDS = ["worker 1", "", "a" * 257, "tab\tid", "new\nline", None, 5]
GOOD_IDS = ["w-1", "héllo.42", "a" * 256, "host:1234:abc"]


def keys_of(engine) -> list:
    return sorted(engine.client.keys(f"{engine.prefix}:*"))


@pytest.mark.parametrize("worker_id", BAD_IDS)
def test_a_worker_id_the_registry_refuses_is_refused_everywhere_before_any_write(engine, worker_id):
    engine.enqueue("q", 1)
    before = keys_of(engine)
    with pytest.raises(redispool.InvalidOption, match="worker_id"):
        engine.claim("q", worker_id)
    with pytest.raises(redispool.InvalidOption, match="worker_id"):
        engine.ack("q", worker_id=worker_id, limit=1)
    with pytest.raises(redispool.InvalidOption, match="worker_id"):
        engine.register_worker(worker_id, host="h", pid=1, queues=["q"])
    with pytest.raises(redispool.InvalidOption, match="worker_id"):
        redispool.Worker(engine, queues=["q"], worker_id=worker_id or "x y")

    async def claim_async():
        a = AsyncEngine(engine)
        try:
            await a.claim("q", worker_id)
        finally:
            await a.close()
    with pytest.raises(redispool.InvalidOption, match="worker_id"):
        asyncio.run(claim_async())
    assert keys_of(engine) == before and engine.stats("q")["ready"] == 1


@pytest.mark.parametrize("worker_id", GOOD_IDS)
def test_a_worker_id_claim_takes_a_worker_can_register(engine, worker_id):
    engine.enqueue("q", 1)
    [job] = engine.claim("q", worker_id)
    assert job.worker_id == worker_id
    assert redispool.Worker(engine, queues=["q"], worker_id=worker_id).id == worker_id
    engine.register_worker(worker_id, host="h", pid=1, queues=["q"])
    assert [w.id for w in engine.workers()] == [worker_id]


def test_enqueue_or_get_says_whether_it_created_the_job(engine):
    job_id, created = engine.enqueue_or_get("q", 1, unique_key="nightly")
    assert created and engine.get("q", job_id).payload == 1
    assert engine.enqueue_or_get("q", 2, unique_key="nightly") == (job_id, False)
    assert engine.get("q", job_id).payload == 1, "an existing job is left as it was"
    assert engine.enqueue_or_get("q", 3, job_id="order-7") == ("order-7", True)
    assert engine.enqueue_or_get("q", 4, job_id="order-7") == ("order-7", False)
    assert engine.enqueue("q", 5, job_id="order-7") == "order-7", "enqueue still returns the id alone"
    assert engine.stats("q")["ready"] == 2
    with pytest.raises(redispool.InvalidOption):
        engine.enqueue_or_get("q", 1, priority=5000)


@pytest.mark.parametrize("tz", ["localtime", "posixrules", "Factory", "/etc/localtime", "../zoneinfo/UTC",
                                "europe/berlin", "", None])
def test_a_new_cue_takes_iana_zone_names_only(engine, tz):
    with pytest.raises(redispool.InvalidCron, match="IANA"):
        engine.add_cue("q", "c", "0 3 * * *", tz=tz)
    assert engine.cues() == [] and keys_of(engine) == []


@pytest.mark.parametrize("tz", ["Etc", "America", "a" * 300])
def test_a_zone_name_that_is_no_zone_file_is_an_invalid_cron(tz):
    """A directory of the zone files, or a name too long for a file: ZoneInfo raises an
    OSError, which the web faces answered as Redis trouble (503)."""
    with pytest.raises(redispool.InvalidCron, match="unknown time zone"):
        Schedule("* * * * *", tz)


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "Australia/Lord_Howe", "US/Eastern", "Etc/GMT+5"])
def test_iana_zone_names_are_taken(engine, tz):
    assert engine.add_cue("q", "c", "0 3 * * *", tz=tz).tz == tz


def test_the_json_encoding_tags_what_json_lacks():
    value = {"b": b"\x00\xff", "f": [math.nan, math.inf, -math.inf, 0.5], 1: None, None: "n", "s": "nan"}
    text = tojson.dumps(value)
    assert json.loads(text, parse_constant=lambda t: pytest.fail(t)) == {
        "b": {"$bytes_base64": "AP8="}, "f": [{"$float": "NaN"}, {"$float": "Infinity"}, {"$float": "-Infinity"}, 0.5],
        "1": None, "null": "n", "s": "nan"}
    info = redispool.JobInfo(id="1", queue="q", state="done", payload=b"\xfe", attempts=1, max_attempts=1,
                             priority=0, result=math.nan, error=None, worker_id=None, created_at=1.0,
                             updated_at=1.0, errors=[(1, "x", 2.0)])
    record = json.loads(tojson.dumps(info))
    assert record["payload"] == {"$bytes_base64": "/g=="} and record["result"] == {"$float": "NaN"}
    assert record["errors"] == [[1, "x", 2.0]]


def test_connect_refuses_an_empty_prefix_instead_of_using_the_default(redis_url):
    """``connect(prefix="")`` used to fall back to ``rp`` silently (the CLI refuses it too)."""
    with pytest.raises(redispool.InvalidOption, match="prefix"):
        redispool.connect(redis_url, prefix="")


def test_an_exception_without_a_message_is_stored_as_its_name(engine):
    class Boom(Exception):
        pass

    engine.enqueue("q", 1, max_attempts=1)
    [job] = engine.claim("q", "w-1")
    assert engine.fail(job, Boom()) == "dead"
    assert engine.get("q", job.id).error == "Boom"
