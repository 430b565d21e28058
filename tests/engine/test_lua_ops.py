"""Each Lua script has its Op of the same name, and every KEY its header names is bound by
that name from a key object (scripts.py), so no call site orders keys by hand."""
from __future__ import annotations

import inspect

import pytest

from redispool import ops
from redispool.keys import DueKeys, QueueKeys, RegistryKeys, StateKeys
from redispool.scripts import LUA_DIR, key_name, read_header, script_names

# Every attribute a header may name, per key object.
BINDABLE = set(QueueKeys.__slots__) | set(StateKeys.__slots__) | set(RegistryKeys.__slots__) \
    | set(DueKeys.__slots__)


@pytest.mark.parametrize("name", script_names())
def test_every_script_has_an_op_of_its_name(name):
    assert inspect.isfunction(getattr(ops, name, None)), f"ops.{name} builds {name}.lua's call"


@pytest.mark.parametrize("name", script_names())
def test_every_header_key_is_bound_by_name(name):
    header = read_header((LUA_DIR / f"{name}.lua").read_text())
    assert header.keys, "every script names its keys"
    assert set(header.keys) <= BINDABLE, f"no key object has {set(header.keys) - BINDABLE}"
    assert len(set(header.keys)) == len(header.keys), "a key is listed once"


def test_header_patterns_name_their_attributes():
    assert key_name("rp:{q}:ready") == "ready"
    assert key_name("rp:{q}:job:") == "job_prefix"
    assert key_name("rp:{q}:<state>") == "state"
    assert key_name("rp:{#workers}:index") == "index"
    assert key_name("rp:{#workers}:w:<id>") == "worker"
    assert key_name("rp:{#workers}:w:") == "worker_prefix"
    assert key_name("rp:due:<daemon>") == "due"


def test_bound_keys_follow_the_header_order(engine):
    k = engine.keys("q")
    assert engine.scripts.bind("release", k) == [k.ready, k.leased, k.marker, k.meta, k.job_prefix, k.events]
    assert engine.scripts.bind("purge", StateKeys(k, "dead"))[:2] == [k.dead, k.marker]
    assert engine.scripts.bind("workers", RegistryKeys(engine.prefix)) == [
        f"{engine.prefix}:{{#workers}}:index", f"{engine.prefix}:{{#workers}}:w:"]


def test_the_minute_histogram_is_a_declared_key(engine):
    """complete counts into rp:{q}:minutes, named by the caller, not derived in Lua."""
    engine.enqueue("q", 1)
    [job] = engine.claim("q", "w")
    engine.complete(job)
    assert engine.client.exists(engine.keys("q").minutes) == 1
    assert sum(done for _, done, _ in engine.throughput("q", 1)) == 1


def test_rewake_sets_the_marker_only_when_a_claim_could_use_it(engine):
    k = engine.keys("q")
    engine.rewake("q")
    assert engine.client.zcard(k.marker) == 0, "an empty queue wakes nobody"
    engine.enqueue("q", 1, delay=60)
    engine.client.delete(k.marker)
    engine.rewake("q")
    assert engine.client.zcard(k.marker) == 1, "a scheduled job: claimers learn its run time"
    engine.pause("q")
    engine.client.delete(k.marker)
    engine.rewake("q")
    assert engine.client.zcard(k.marker) == 0, "a paused queue hands out nothing"


def test_a_claim_leaves_the_marker_set_exactly_while_jobs_are_ready(engine):
    """claim reads one job more than it takes to know whether ready still holds any: the
    marker stays while it does and goes with the last job, by claim and by ack."""
    k = engine.keys("q")
    for n in range(5):
        engine.enqueue("q", n)
    assert len(engine.claim("q", "w", limit=2)) == 2
    assert engine.client.zcard(k.marker) == 1, "three jobs left"
    jobs = engine.claim("q", "w", limit=3)
    assert len(jobs) == 3 and engine.client.zcard(k.marker) == 0, "the last ones taken"
    engine.enqueue_many("q", [5, 6, 7])
    got = engine.ack("q", completed=[(j, None) for j in jobs], worker_id="w", limit=2)
    assert len(got.jobs) == 2 and engine.client.zcard(k.marker) == 1, "one left"
    got = engine.ack("q", completed=[(j, None) for j in got.jobs], worker_id="w", limit=1)
    assert len(got.jobs) == 1 and engine.client.zcard(k.marker) == 0, "exactly the last one taken"
    assert engine.claim("q", "w", limit=4) == [] and engine.stats("q")["ready"] == 0


def test_enqueue_sends_one_option_set_or_one_per_job(engine):
    specs = [engine.job_spec(n, priority=2) for n in range(3)]
    payloads = [spec.payload for spec in specs]
    op = ops.enqueue(engine, "q", payloads, [ops.job_options(priority=2)])
    assert op.args[:3] == [3, 1, engine.events_max] and len(op.args) == 3 + 12 + 3
    assert [created for _, created in engine.run(op)] == [True] * 3
    op = ops.enqueue(engine, "q", payloads, [spec.options for spec in specs])
    assert op.args[:3] == [3, 3, engine.events_max] and len(op.args) == 3 + 36 + 3
    assert [created for _, created in engine.run(op)] == [True] * 3
    assert engine.stats("q")["ready"] == 6 and all(info.priority == 2 for info in engine.jobs("q", "ready"))
