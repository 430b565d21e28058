"""memory:// stays honest: the same operations on fakeredis and on a real redis-server
leave the same keys, with the same values once clock readings are normalised."""
from __future__ import annotations

import json
import uuid

import redispool

TIME_FIELDS = {b"c", b"u", b"scheduler_at", b"sweeper_at", b"paused_at"}
TIMED_SETS = ("scheduled", "leased", "done", "dead", "cancelled", "scheduler", "sweeper")  # rp:due:<daemon> too


def scenario(engine: redispool.Engine) -> None:
    engine.set_limits("q", rate=100, per=2, concurrency=10)
    engine.enqueue_many("q", range(5), priority=2)
    engine.enqueue("q", "u", unique_key="k1", max_attempts=1)
    engine.enqueue("q", "later", delay=3600, job_id="later")
    engine.enqueue("other", {"x": [1, 2]}, lease=60)
    jobs = engine.claim("q", "w1", limit=4)
    engine.complete(jobs[0], {"ok": 1})
    engine.fail(jobs[1], "boom", delay=3600)
    engine.fail(jobs[2], "fatal", retry=False)
    engine.release(jobs[3])
    engine.ack("q", worker_id="w2", limit=2)
    engine.cancel("q", "later")
    engine.pause("other", "maintenance")
    engine.replay_dead("q")
    engine.enqueue("q", "tagged", tags={"team": "ops"}, expires_at=4_000_000_000, job_id="tagged")
    engine.enqueue("q", "gone", tags=["a"], expires_at=1_000_000_000, job_id="gone")
    engine.set_priority("q", "tagged", 7)
    engine.claim("q", "w3", limit=3)   # cancels "gone" (expired), leases the next ones


def dump(engine: redispool.Engine) -> dict:
    client, out = engine.client, {}
    for raw in sorted(client.scan_iter(match=f"{engine.prefix}:*")):
        key = raw.decode().split(":", 1)[1]
        kind = client.type(raw).decode()
        if kind == "zset":
            members = client.zrange(raw, 0, -1, withscores=True)
            timed = key.rsplit(":", 1)[-1] in TIMED_SETS
            out[key] = [(m.decode(), None if timed else s) for m, s in members]
        elif kind == "hash" and key.endswith(":minutes"):   # "<minute>:d": the minute is the clock's
            totals: dict[str, int] = {}
            for f, v in client.hgetall(raw).items():
                kind_of = f.decode().rsplit(":", 1)[1]
                totals[kind_of] = totals.get(kind_of, 0) + int(v)
            out[key] = totals
        elif kind == "hash":
            fields = client.hgetall(raw)
            value = {f.decode(): (None if f in TIME_FIELDS else v.decode("latin-1")) for f, v in fields.items()}
            if "e" in value:
                value["e"] = [e[:2] for e in json.loads(value["e"])]
            out[key] = value
        elif kind == "set":
            out[key] = sorted(m.decode() for m in client.smembers(raw))
        else:
            out[key] = kind
    return out


def test_memory_and_redis_leave_the_same_keys(redis_url):
    prefix = f"d{uuid.uuid4().hex[:8]}"
    dumps = []
    for url in (f"memory://diff-{uuid.uuid4().hex}", redis_url):
        engine = redispool.connect(url, prefix=prefix)
        scenario(engine)
        dumps.append(dump(engine))
        engine.close()
    assert dumps[0] == dumps[1]
    assert len(dumps[0]) > 10
