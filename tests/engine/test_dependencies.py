"""depends_on / dependency_mode: the waiting state, release exactly once, cancellation of
children that can no longer run; in one queue (in the finishing script) and across queues
(through the parent queue's outbox), on every backend."""
from __future__ import annotations

import threading

import pytest

from redispool import InvalidOption, JobNotFound, ops
from redispool.scheduler import Scheduler


def finish(engine, queue, job_id, ok=True):
    [job] = engine.claim(queue, "w", limit=1)
    assert job.id == job_id, (job.id, job_id)
    if ok:
        engine.complete(job)
    else:
        engine.fail(job, "Boom", retry=False)


def state(engine, queue, job_id):
    return engine.get(queue, job_id).state


def test_chain_waits_and_releases_in_order(engine):
    a = engine.enqueue("q", "a")
    b = engine.enqueue("q", "b", depends_on=[a])
    c = engine.enqueue("q", "c", depends_on=[b])
    assert (state(engine, "q", b), state(engine, "q", c)) == ("waiting", "waiting")
    info = engine.get("q", b)
    assert info.depends_on == [("q", a)] and info.dependency_mode == "all"
    stats = engine.stats("q")
    assert (stats["waiting"], stats["ready"]) == (2, 1)
    assert [j.id for j in engine.jobs("q", "waiting")] == [b, c]
    finish(engine, "q", a)
    assert (state(engine, "q", b), state(engine, "q", c)) == ("ready", "waiting")
    finish(engine, "q", b)
    finish(engine, "q", c)
    assert engine.stats("q")["done"] == 3
    types = [(e.type, e.job_id) for e in engine.events("q", limit=100)]
    assert ("waiting", b) in types and ("waiting", c) in types


def test_all_and_any(engine):
    p1, p2 = engine.enqueue("q", 1), engine.enqueue("q", 2)
    both = engine.enqueue("q", "both", depends_on=[p1, p2])
    first = engine.enqueue("q", "first", depends_on=[p1, p2], dependency_mode="any")
    finish(engine, "q", p1)
    assert state(engine, "q", both) == "waiting"
    assert state(engine, "q", first) == "ready"
    finish(engine, "q", p2)
    assert state(engine, "q", both) == "ready"
    # the second parent of "any" changed nothing: released once
    released = [e for e in engine.events("q", limit=100) if e.job_id == first and e.type == "enqueued"]
    assert len(released) == 1


def test_diamond_released_with_its_delay(engine):
    top = engine.enqueue("q", "top")
    left = engine.enqueue("q", "l", depends_on=[top])
    right = engine.enqueue("q", "r", depends_on=[top])
    bottom = engine.enqueue("q", "b", depends_on=[left, right], delay=3600)
    finish(engine, "q", top)
    jobs = engine.claim("q", "w", limit=10)
    assert {j.id for j in jobs} == {left, right}
    engine.complete(jobs[0])
    assert state(engine, "q", bottom) == "waiting"
    engine.complete(jobs[1])
    info = engine.get("q", bottom)
    assert info.state == "scheduled" and info.run_at is not None


def test_fan_out_of_500(engine):
    root = engine.enqueue("q", "root")
    children = engine.enqueue_many("q", range(500), depends_on=[root])
    assert engine.stats("q")["waiting"] == 500
    finish(engine, "q", root)
    stats = engine.stats("q")
    assert (stats["waiting"], stats["ready"]) == (0, 500)
    assert {j.id for j in engine.jobs("q", "ready", limit=1000)} == set(children)


def test_dead_parent_cancels_children_transitively(engine):
    a = engine.enqueue("q", "a", max_attempts=1)
    b = engine.enqueue("q", "b", depends_on=[a])
    c = engine.enqueue("q", "c", depends_on=[b])
    other = engine.enqueue("q", "x")
    d = engine.enqueue("q", "d", depends_on=[a, other], dependency_mode="any")
    finish(engine, "q", a, ok=False)
    assert (state(engine, "q", b), state(engine, "q", c)) == ("cancelled", "cancelled")
    assert f"parent q/{a} is dead" in engine.get("q", b).error
    assert f"parent q/{b} is cancelled" in engine.get("q", c).error
    assert state(engine, "q", d) == "waiting"        # "any": the other parent may still run
    engine.cancel("q", other)
    assert state(engine, "q", d) == "cancelled"


def test_cancel_waiting_child_and_its_children(engine):
    a = engine.enqueue("q", "a")
    b = engine.enqueue("q", "b", depends_on=[a])
    c = engine.enqueue("q", "c", depends_on=[b])
    assert engine.cancel("q", b) is True
    assert state(engine, "q", c) == "cancelled"
    finish(engine, "q", a)
    assert state(engine, "q", b) == "cancelled"


def test_unknown_parent_writes_nothing(engine):
    engine.enqueue("q", "a")
    with pytest.raises(JobNotFound):
        engine.enqueue("q", "b", depends_on=["nope"])
    with pytest.raises(JobNotFound):
        engine.enqueue("q", "b", depends_on=[("other", "nope")])
    stats = engine.stats("q")
    assert stats["ready"] == 1 and stats["waiting"] == 0
    with pytest.raises(InvalidOption):
        engine.enqueue("q", "b", depends_on=["1"], dependency_mode="some")
    with pytest.raises(InvalidOption):
        engine.enqueue("q", "b", depends_on="1")


def test_finished_parents_count_at_enqueue(engine):
    a = engine.enqueue("q", "a")
    finish(engine, "q", a)
    dead = engine.enqueue("q", "x")
    finish(engine, "q", dead, ok=False)
    assert state(engine, "q", engine.enqueue("q", "b", depends_on=[a])) == "ready"
    child = engine.enqueue("q", "c", depends_on=[a, dead])
    assert state(engine, "q", child) == "cancelled"
    assert state(engine, "q", engine.enqueue("q", "d", depends_on=[a, dead], dependency_mode="any")) == "ready"


# ---------------------------------------------------------------- across queues
def test_cross_queue_release_and_cancel(engine):
    a = engine.enqueue("parents", "a")
    b = engine.enqueue("parents", "b", max_attempts=1)
    child = engine.enqueue("kids", "c", depends_on=[("parents", a)])
    other = engine.enqueue("kids", "d", depends_on=[("parents", b)])
    grandchild = engine.enqueue("more", "e", depends_on=[("kids", other)])
    assert state(engine, "kids", child) == "waiting"
    finish(engine, "parents", a)
    assert state(engine, "kids", child) == "ready"          # released by the finishing engine
    finish(engine, "parents", b, ok=False)
    assert state(engine, "kids", other) == "cancelled"
    assert state(engine, "more", grandchild) == "cancelled"  # its cancel crossed a queue again
    assert f"parent parents/{b} is dead" in engine.get("kids", other).error
    for queue in ("parents", "kids", "more"):
        assert engine.client.zcard(engine.keys(queue).outbox) == 0
    # a parent finished before the child came counts at once
    assert state(engine, "more", engine.enqueue("more", "f", depends_on=[("parents", a)])) == "ready"


def test_cross_queue_exactly_once_under_racing_schedulers(engine):
    """The parents' finishing scripts run without the engine's drain (a worker killed right
    after them); three schedulers then race to hand the outcomes on."""
    parents = [engine.enqueue(f"p{i}", i) for i in range(3)]
    children = [engine.enqueue("kids", n, depends_on=[(f"p{i}", pid) for i, pid in enumerate(parents)],
                               dependency_mode=mode) for n, mode in enumerate(["all", "any", "all"] * 10)]
    for i in range(len(parents)):
        [job] = engine.claim(f"p{i}", "w")
        reply = engine.scripts.call(ops.complete(engine, job))   # no drain, no follow-ups
        assert reply[-1] == 1
    barrier = threading.Barrier(3)

    def race():
        scheduler = Scheduler(engine, interval=0.01)
        barrier.wait()
        for _ in range(3):
            scheduler.step()
            for i in range(3):
                engine._drain_outbox(f"p{i}")
    threads = [threading.Thread(target=race) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n, child in enumerate(children):
        assert state(engine, "kids", child) == "ready"
        info = engine.client.hmget(engine.keys("kids").job(child), "dd", "df")
        assert info == [b"1" if n % 3 == 1 else b"3", None]   # "any" stops counting once released
    released = [e for e in engine.events("kids", limit=1000) if e.type == "enqueued"]
    assert sorted(e.job_id for e in released) == sorted(children)


@pytest.mark.parametrize("how", ["purge", "delete_job"])
def test_a_deleted_unfinished_parent_cancels_the_children_it_held(engine, how):
    """Purging or deleting a parent that had not finished: its children (this queue's and,
    through the outbox, other queues') can no longer run. An "any" child with another
    parent left keeps waiting; a finished parent deleted changes nothing."""
    done = engine.enqueue("p", "done")
    finish(engine, "p", done)
    parent = engine.enqueue("p", "parent", delay=3600)
    other = engine.enqueue("p", "other", delay=3600)
    here = engine.enqueue("p", "here", depends_on=[parent])
    grandchild = engine.enqueue("far", "grandchild", depends_on=[("p", here)])
    there = engine.enqueue("far", "there", depends_on=[("p", parent), ("p", done)])
    either = engine.enqueue("far", "either", depends_on=[("p", parent), ("p", other)], dependency_mode="any")
    after_done = engine.enqueue("p", "after", depends_on=[done, other])
    if how == "purge":
        assert engine.purge("p", "scheduled") == 2           # parent and other
    else:
        assert engine.delete_job("p", done) is True          # finished: nothing to tell
        assert state(engine, "p", after_done) == "waiting"
        assert engine.delete_job("p", parent) is True
    assert state(engine, "p", here) == "cancelled"
    assert f"DependencyFailed: parent p/{parent} is deleted" in engine.get("p", here).error
    assert state(engine, "far", grandchild) == "cancelled"     # its cancel crossed a queue
    assert state(engine, "far", there) == "cancelled"
    if how == "purge":
        assert state(engine, "far", either) == "cancelled"     # both of its parents are gone
        assert state(engine, "p", after_done) == "cancelled"
    else:
        assert state(engine, "far", either) == "waiting"       # "other" may still be done
        [job] = engine.claim("p", "w") or [None]
        assert job is None                                     # other is still delayed
    for queue in ("p", "far"):
        assert engine.client.zcard(engine.keys(queue).outbox) == 0


def test_purging_waiting_children_with_their_parent_keeps_the_sets_whole(engine):
    """Purging "waiting" where one purged job is the parent of another: the child, cancelled
    by its parent's deletion earlier in the same call, is cancelled (not a ghost in a set)."""
    root = engine.enqueue("q", "root", delay=3600)
    first = engine.enqueue("q", "first", depends_on=[root])
    second = engine.enqueue("q", "second", depends_on=[first])
    assert engine.purge("q", "waiting") == 1
    assert engine.get("q", first) is None and state(engine, "q", second) == "cancelled"
    assert engine.client.zrange(engine.keys("q").cancelled, 0, -1) == [second.encode()]
    assert engine.stats("q")["waiting"] == 0


def created_unlinked(engine, queue, payload, parents, mode="all"):
    """A child created by enqueue.lua whose creator died before link.lua ran."""
    spec = engine.job_spec(payload, depends_on=parents, dependency_mode=mode, queue=queue)
    [(child, created)] = engine.run(ops.enqueue(engine, queue, [spec.payload], [spec.options], [spec.deps]))
    assert created
    return child


def test_a_child_whose_creator_died_before_linking_is_linked_by_the_scheduler(engine, monkeypatch):
    running = engine.enqueue("p", "running")
    finished = engine.enqueue("p", "finished")
    finish(engine, "p", running)   # claims "running" first: it is the first ready
    child = created_unlinked(engine, "kids", "a", [("p", running)])            # its parent finished unaware
    waits = created_unlinked(engine, "kids", "b", [("p", finished), ("p", running)])
    linked = engine.enqueue("kids", "c", depends_on=[("p", running)])         # linked as usual: released
    assert [state(engine, "kids", j) for j in (child, waits, linked)] == ["waiting", "waiting", "ready"]
    assert engine.client.zcard(engine.keys("kids").linking) == 3
    scheduler = Scheduler(engine)
    moved, next_ms = scheduler.visit("kids")
    assert moved == 0 and next_ms > 0                           # not LINK_GRACE_S old yet: planned
    planned = engine.client.zscore(f"{engine.prefix}:due:scheduler", "kids")
    assert planned is not None                                  # enqueue planned the visit LINK_GRACE_S on
    monkeypatch.setattr("redispool.base.LINK_GRACE_S", 0)
    moved, _ = scheduler.visit("kids")
    assert moved == 3                                           # three links made again, idempotently
    assert state(engine, "kids", child) == "ready"
    assert state(engine, "kids", waits) == "waiting"            # its other parent now knows it
    assert engine.client.zcard(engine.keys("kids").linking) == 0
    finish(engine, "p", finished)
    assert state(engine, "kids", waits) == "ready"
    released = [e.job_id for e in engine.events("kids", limit=100) if e.data.get("previous") == "waiting"]
    assert sorted(released) == sorted([child, waits, linked])   # each released once


def test_http_enqueue_with_depends_on(engine):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from redispool.http import create_app
    api = TestClient(create_app(engine, dashboard=False), base_url="http://127.0.0.1",
                     headers={"Content-Type": "application/json"})
    parent = api.post("/v1/queues/q/jobs", json={"payload": 1}).json()["id"]
    r = api.post("/v1/queues/k/jobs", json={"payload": 2, "depends_on": [["q", parent]], "dependency_mode": "any"})
    assert r.status_code == 201
    child = r.json()["id"]
    job = api.get(f"/v1/queues/k/jobs/{child}").json()
    assert job["state"] == "waiting"
    assert api.get("/v1/queues/k").json()["waiting"] == 1
    r = api.post("/v1/queues/k/jobs/batch", json={"jobs": [{"payload": 3, "depends_on": [parent, "x"]}]})
    assert r.status_code == 404
    assert api.post("/v1/queues/k/jobs", json={"depends_on": [parent], "dependency_mode": "no"}).status_code == 400
    finish(engine, "q", parent)
    assert api.get(f"/v1/queues/k/jobs/{child}").json()["state"] == "ready"
