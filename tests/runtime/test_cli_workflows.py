"""``redispool workflow list|show|cancel`` on a real redis-server: text and --json, an
unknown id (exit 2, one line), an unreachable Redis (exit 1)."""
from __future__ import annotations

import json
import uuid

import redispool

from support.cli import invoke


def diamond(engine):
    return engine.enqueue_workflow("ingest", [
        {"key": "fetch", "queue": "crawl", "payload": {"url": "u"}},
        {"key": "parse", "queue": "crawl", "depends_on": ["fetch"]},
        {"key": "thumbs", "queue": "media", "depends_on": ["fetch"]},
        {"key": "index", "queue": "search", "depends_on": ["parse", "thumbs"], "dependency_mode": "any"},
    ])


def test_workflow_show_list_and_cancel(redis_url):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    engine = redispool.connect(redis_url, prefix=prefix)
    wf = diamond(engine)
    [job] = engine.claim("crawl", "w")
    engine.complete(job)                         # fetch done: parse and thumbs ready
    lines = invoke(redis_url, prefix, "workflow", "show", wf.id).output.splitlines()
    assert lines[0].startswith(f"workflow {wf.id} 'ingest': running, 4 nodes, created ")
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows["fetch"][:3] == ["crawl", wf.jobs["fetch"][1], "done"] and rows["fetch"][3] == "-"
    assert rows["thumbs"][:4] == ["media", wf.jobs["thumbs"][1], "ready", "fetch"]
    assert rows["index"][2:] == ["waiting", "parse,thumbs", "(any)"]
    shown = json.loads(invoke(redis_url, prefix, "workflow", "show", wf.id, "--json").output)
    assert shown == json.loads(json.dumps(engine.workflow(wf.id).to_dict()))
    assert shown["jobs"]["index"] == {"queue": "search", "id": wf.jobs["index"][1], "state": "waiting",
                                      "depends_on": ["parse", "thumbs"], "dependency_mode": "any"}
    other = engine.enqueue_workflow("solo", [{"key": "only", "queue": "crawl"}])
    listed = invoke(redis_url, prefix, "workflow", "list").output.splitlines()
    assert [line.split()[0] for line in listed[1:]] == [other.id, wf.id]          # newest first
    assert "done 1, ready 2, waiting 1" in listed[2]
    assert [w["id"] for w in json.loads(invoke(redis_url, prefix, "workflow", "list", "--json",
                                               "--limit", "1").output)] == [other.id]
    assert invoke(redis_url, prefix, "workflow", "cancel", wf.id).output.strip() == (
        f"workflow {wf.id} cancelled: 3 node(s) stopped")
    assert engine.workflow(wf.id).status == "cancelled"
    again = json.loads(invoke(redis_url, prefix, "workflow", "cancel", wf.id, "--json").output)
    assert again == {"id": wf.id, "cancelled": 0}
    assert "cancelled" in invoke(redis_url, prefix, "workflow", "show", wf.id).output.splitlines()[0]
    engine.close()


def test_workflow_bad_input_and_no_redis(redis_url):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    for args in (["show", "wf-nope"], ["cancel", "wf-nope"], ["list", "--limit", "0"]):
        result = invoke(redis_url, prefix, "workflow", *args, code=2)
        assert "wf-nope" in result.stderr or "--limit" in result.stderr
    header = "id  name  status  nodes  created (UTC)  states"
    assert invoke(redis_url, prefix, "workflow", "list").output.splitlines() == [header]
    assert json.loads(invoke(redis_url, prefix, "workflow", "list", "--json").output) == []
    result = invoke("redis://127.0.0.1:1/0", prefix, "workflow", "show", "wf-x", code=1)
    assert "127.0.0.1:1" in result.stderr
