"""``redispool events [QUEUE] [--follow] [--json]`` on a real redis-server."""
from __future__ import annotations

import json
import signal
import time
import uuid

import redispool

from support.cli import cli_process, invoke


def test_the_newest_events_as_text_and_json(redis_url):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    engine = redispool.connect(redis_url, prefix=prefix)
    engine.enqueue("a", 1, priority=2)
    engine.enqueue("b", 2)
    [job] = engine.claim("a", "w")
    engine.fail(job, "boom bad")
    text = invoke(redis_url, prefix, "events").output.splitlines()
    rows = [line.split()[2:5] for line in text]
    assert [r for r in rows if r[0] == "a"] == [["a", "enqueued", "1"], ["a", "claimed", "1"], ["a", "failed", "1"]]
    assert [r for r in rows if r[0] == "b"] == [["b", "enqueued", "1"]] and len(rows) == 4
    assert any('error="boom bad"' in line for line in text) and "priority=2" in text[0]
    lines = invoke(redis_url, prefix, "events", "a", "--json", "--limit", "2").output.splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["claimed", "failed"]
    assert json.loads(lines[0])["data"] == {"attempt": 1, "worker_id": "w"}
    assert invoke(redis_url, prefix, "events", "nothing-here").output == ""
    invoke(redis_url, prefix, "events", "bad queue", code=2)
    engine.close()


def test_follow_prints_new_events_and_ends_at_sigterm(redis_url):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    engine = redispool.connect(redis_url, prefix=prefix)
    engine.enqueue("q", "old")
    proc = cli_process("--url", redis_url, "--prefix", prefix, "events", "q", "--follow", "--json")
    try:
        first = json.loads(proc.stdout.readline())
        assert first["job_id"] == "1", "the tail first"
        time.sleep(0.5)
        engine.enqueue("q", "new")
        engine.enqueue("other", "elsewhere")
        second = json.loads(proc.stdout.readline())
        assert (second["job_id"], second["type"], second["queue"]) == ("2", "enqueued", "q")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert out == "" and "Traceback" not in err
    engine.close()
