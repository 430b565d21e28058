"""Random operation sequences against a plain-Python model of the job states.

After every step: every job is in exactly one state, each state's set holds exactly the
model's jobs, and no job is lost or duplicated. Leases are either long (never expire in a
run) or 1 ms (expired by the time anything else touches them); retries back off 1 ms, so
every step that sleeps 3 ms first knows exactly which jobs are due or expired. The queue's
limits change at random too: a concurrency cap (counting expired leases until swept) and
a rate whose window (an hour) outlasts a run, so the model counts every claim in it.

Each case starts from a small graph across two queues, ``q`` and ``r`` (a parent in each,
a child of both, a grandchild), and later jobs may depend on earlier jobs of either
(``depends_on``, ``dependency_mode`` "all"/"any"): the model keeps each child ``waiting``
until its parents' outcomes allow it to run (then ``ready``, or ``scheduled`` when it was
delayed) or make that impossible (then ``cancelled``, and its own children in turn),
whichever script finished the parent (complete, fail, sweep, cancel, delete) and whether
the parent is in the child's queue (released inside that script) or the other one (the
outbox hand-off, drained by the engine that finished it). Each job's release is checked
in the event log: exactly one ``enqueued`` event from ``waiting`` for a released child.

The run is derandomized (the same cases every run, no example database): a CI verdict
depends on the code, not the dice.
"""
from __future__ import annotations

import copy
import os
import time
import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import redispool
from redispool.keys import STATES

SHORT, LONG = 0.001, 30.0
QUEUES = ("q", "r")
LIVE = ("waiting", "scheduled", "ready", "leased")
Key = tuple[str, str]   # (queue, job id)
# REDISPOOL_SM_NOSHRINK=1: report the first failing case as found (shrinking one can take minutes)
PHASES = [Phase.explicit, Phase.reuse, Phase.generate] if os.environ.get("REDISPOOL_SM_NOSHRINK") else list(Phase)


@dataclass
class ModelJob:
    state: str
    priority: int
    max_attempts: int
    attempts: int = 0
    token: str | None = None
    old_token: str | None = None
    short: bool = False          # leased with a 1 ms lease
    due: bool = False            # scheduled for a retry that is due after a short sleep
    delayed: bool = False        # enqueued with a delay (an hour): scheduled when released
    parents: tuple[Key, ...] = ()
    mode: str = "all"
    applied: set[Key] = field(default_factory=set)   # parents whose outcome counted
    done: int = 0
    failed: int = 0
    released: int = 0            # times it left waiting for ready / scheduled
    dependency_failed: bool = False   # cancelled because a parent failed (its error says so)
    error_checked: bool = False


def tick() -> None:
    time.sleep(0.003)


class QueueMachine(RuleBasedStateMachine):
    base: redispool.Engine    # the test's engine: each case works under a prefix of its own

    @initialize(modes=st.tuples(st.sampled_from(["all", "any"]), st.sampled_from(["all", "any"])),
                delayed=st.booleans())
    def setup(self, modes, delayed):
        # a copy sharing the connection and loaded scripts (connecting loads every script,
        # which on memory:// costs more than a whole case)
        self.engine = copy.copy(self.base)
        self.engine.prefix = f"sm{uuid.uuid4().hex[:8]}"
        self.jobs: dict[Key, ModelJob] = {}
        self.handles: dict[Key, redispool.Job] = {}
        self.rate: int | None = None          # the limits are queue q's
        self.concurrency: int | None = None
        self.in_window = 0           # claims in the rate's window (all since the rate was set)
        self.releases: dict[Key, int] = {}    # "enqueued" events from waiting, per job
        self.read_to: dict[str, str] = {}     # the last event read, per queue
        # every case starts from a small graph across both queues: a parent in each, a
        # child of both in q, a grandchild in r (of the child and of q's parent)
        p_q, p_r = ("q", self.engine.enqueue("q", "p")), ("r", self.engine.enqueue("r", "p"))
        self.jobs[p_q], self.jobs[p_r] = ModelJob("ready", 0, 2), ModelJob("ready", 0, 2)
        child = ("q", self.engine.enqueue("q", "c", depends_on=[p_q, p_r], dependency_mode=modes[0]))
        self.jobs[child] = ModelJob("waiting", 0, 2, parents=(p_q, p_r), mode=modes[0])
        grandchild = ("r", self.engine.enqueue("r", "g", depends_on=[child, p_q], dependency_mode=modes[1],
                                               delay=3600 if delayed else None))
        self.jobs[grandchild] = ModelJob("waiting", 0, 2, delayed=delayed, parents=(child, p_q), mode=modes[1])

    def teardown(self):
        if hasattr(self, "engine"):   # the case's keys go (the server is the session's)
            stale = self.engine.client.keys(f"{self.engine.prefix}:*")
            if stale:
                self.engine.client.delete(*stale)

    def ids(self, *states: str, queue: str | None = None) -> list[Key]:
        return sorted(k for k, j in self.jobs.items() if j.state in states and queue in (None, k[0]))

    def promote_due_in_model(self, queue: str) -> int:
        due = [j for k, j in self.jobs.items() if k[0] == queue and j.state == "scheduled" and j.due]
        for job in due:
            job.state, job.due = "ready", False
        return len(due)

    # ---------------------------------------------------------------- dependencies in the model
    def apply(self, child: ModelJob, parent: Key, outcome: str) -> bool:
        """Parent ``parent`` ended ``outcome``: count it for a waiting ``child`` (once);
        True when that cancelled the child."""
        if child.state != "waiting" or parent in child.applied:
            return False
        child.applied.add(parent)
        if outcome == "done":
            child.done += 1
            if child.mode == "any" or child.done == len(child.parents):
                child.state = "scheduled" if child.delayed else "ready"
                child.released += 1
            return False
        child.failed += 1
        if child.mode == "all" or child.failed == len(child.parents):
            child.state, child.dependency_failed = "cancelled", True
            return True
        return False

    def finished(self, key: Key, outcome: str) -> None:
        """Job ``key`` just ended ``outcome``: tell its waiting children, theirs in turn."""
        work = [(key, outcome)]
        while work:
            parent, out = work.pop()
            for child_key, child in self.jobs.items():
                if parent in child.parents and self.apply(child, parent, out):
                    work.append((child_key, "cancelled"))

    # ---------------------------------------------------------------- producing
    @rule(queue=st.sampled_from(QUEUES), priority=st.sampled_from([-1, 0, 1]), delayed=st.booleans(),
          max_attempts=st.integers(1, 3), mode=st.sampled_from(["all", "any"]), data=st.data())
    def enqueue(self, queue, priority, delayed, max_attempts, mode, data):
        known = sorted(self.jobs)
        parents: list[Key] = []
        if known:
            parents = data.draw(st.lists(st.sampled_from(known), max_size=3, unique=True), label="parents")
        job_id = self.engine.enqueue(queue, {"n": len(self.jobs)}, priority=priority,
                                     delay=3600 if delayed else None, max_attempts=max_attempts,
                                     depends_on=parents or None, dependency_mode=mode)
        key = (queue, job_id)
        assert key not in self.jobs
        if not parents:
            self.jobs[key] = ModelJob("scheduled" if delayed else "ready", priority, max_attempts)
            return
        model = self.jobs[key] = ModelJob("waiting", priority, max_attempts, delayed=delayed,
                                          parents=tuple(parents), mode=mode)
        for parent in parents:
            state = self.jobs[parent].state
            if state in ("done", "dead", "cancelled") and self.apply(model, parent, state):
                break

    @precondition(lambda self: self.jobs)
    @rule(queue=st.sampled_from(QUEUES), mode=st.sampled_from(["all", "any"]), delayed=st.booleans(),
          data=st.data())
    def enqueue_child(self, queue, mode, delayed, data):
        """A job with one or two parents (``enqueue`` draws none as often as some)."""
        live = [k for k in sorted(self.jobs) if self.jobs[k].state in LIVE]
        pool = data.draw(st.sampled_from([live, sorted(self.jobs)]) if live else st.just(sorted(self.jobs)))
        parents = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True), label="parents")
        job_id = self.engine.enqueue(queue, "child", delay=3600 if delayed else None, depends_on=parents,
                                     dependency_mode=mode)
        model = self.jobs[(queue, job_id)] = ModelJob("waiting", 0, 1, delayed=delayed, parents=tuple(parents),
                                                      mode=mode)
        for parent in parents:
            state = self.jobs[parent].state
            if state in ("done", "dead", "cancelled") and self.apply(model, parent, state):
                break

    # ---------------------------------------------------------------- consuming
    @rule(queue=st.sampled_from(QUEUES))
    def work_one(self, queue):
        """A worker's whole turn: claim one job (long lease) and complete it at once."""
        tick()
        self.promote_due_in_model(queue)
        ready = self.ids("ready", queue=queue)
        capped = queue == "q" and (
            (self.concurrency is not None and len(self.ids("leased", queue="q")) >= self.concurrency)
            or (self.rate is not None and self.in_window >= self.rate))
        got = self.engine.claim(queue, "w", limit=1, lease=LONG)
        if not ready or capped:
            assert got == []
            return
        [job] = got
        key = (queue, job.id)
        assert key in ready
        if queue == "q":
            self.in_window += 1
        model = self.jobs[key]
        model.attempts += 1
        model.old_token, model.token = model.token, job.token
        self.handles[key] = job
        self.engine.complete(job, "ok")
        model.state = "done"
        self.finished(key, "done")

    @rule(queue=st.sampled_from(QUEUES), limit=st.integers(1, 3), short=st.booleans())
    def claim(self, queue, limit, short):
        tick()
        self.promote_due_in_model(queue)
        ready = {k: self.jobs[k] for k in self.ids("ready", queue=queue)}
        allowed = min(limit, len(ready))
        if queue == "q" and self.concurrency is not None:
            allowed = min(allowed, max(0, self.concurrency - len(self.ids("leased", queue="q"))))
        if queue == "q" and self.rate is not None:
            allowed = min(allowed, max(0, self.rate - self.in_window))
        got = self.engine.claim(queue, "w", limit=limit, lease=SHORT if short else LONG)
        assert len(got) == allowed
        if queue == "q":
            self.in_window += len(got)
        claimed = {(queue, j.id) for j in got}
        assert claimed <= set(ready), "claimed a job that was not ready"
        if claimed and len(claimed) < len(ready):
            lowest_taken = min(ready[k].priority for k in claimed)
            highest_left = max(ready[k].priority for k in ready if k not in claimed)
            assert lowest_taken >= highest_left, "priority order broken"
        for job in got:
            key = (queue, job.id)
            model = self.jobs[key]
            model.attempts += 1
            assert job.attempt == model.attempts
            model.state, model.short = "leased", short
            model.old_token, model.token = model.token, job.token
            self.handles[key] = job

    @precondition(lambda self: self.ids("leased"))
    @rule(data=st.data())
    def complete(self, data):
        key = data.draw(st.sampled_from(self.ids("leased")))
        model = self.jobs[key]
        if model.short:
            tick()
            with pytest.raises(redispool.LeaseLost):
                self.engine.complete(self.handles[key])
        else:
            self.engine.complete(self.handles[key], "ok")
            model.state = "done"
            self.finished(key, "done")

    @precondition(lambda self: self.ids("leased"))
    @rule(data=st.data(), retry=st.booleans())
    def fail(self, data, retry):
        key = data.draw(st.sampled_from(self.ids("leased")))
        model = self.jobs[key]
        if model.short:
            tick()
            with pytest.raises(redispool.LeaseLost):
                self.engine.fail(self.handles[key], "x", retry=retry)
            return
        state = self.engine.fail(self.handles[key], "boom", retry=retry)
        expected = "scheduled" if retry and model.attempts < model.max_attempts else "dead"
        assert state == expected
        model.state, model.due = expected, expected == "scheduled"
        if expected == "dead":
            self.finished(key, "dead")

    @precondition(lambda self: self.ids("leased"))
    @rule(data=st.data())
    def heartbeat(self, data):
        key = data.draw(st.sampled_from(self.ids("leased")))
        if self.jobs[key].short:
            tick()
            with pytest.raises(redispool.LeaseLost):
                self.engine.heartbeat(self.handles[key])
        else:
            assert self.engine.heartbeat(self.handles[key]) > time.time()

    @precondition(lambda self: self.ids("leased"))
    @rule(data=st.data())
    def release(self, data):
        key = data.draw(st.sampled_from(self.ids("leased")))
        model = self.jobs[key]
        if model.short:
            tick()
            with pytest.raises(redispool.LeaseLost):
                self.engine.release(self.handles[key])
        else:
            self.engine.release(self.handles[key])
            model.state, model.attempts = "ready", model.attempts - 1

    @precondition(lambda self: any(j.old_token for j in self.jobs.values()))
    @rule(data=st.data())
    def stale_token(self, data):
        key = data.draw(st.sampled_from(sorted(k for k, j in self.jobs.items() if j.old_token)))
        stale = redispool.Job(**{**self.handles[key].__dict__, "token": self.jobs[key].old_token})
        with pytest.raises(redispool.LeaseLost):
            self.engine.complete(stale)

    # ---------------------------------------------------------------- daemons, admin
    @rule(queue=st.sampled_from(QUEUES))
    def sweep(self, queue):
        tick()
        expired = [(k, j) for k, j in self.jobs.items() if k[0] == queue and j.state == "leased" and j.short]
        assert self.engine.sweep(queue) == len(expired)
        for key, job in expired:
            job.state = "dead" if job.attempts >= job.max_attempts else "ready"
            job.token = None
            if job.state == "dead":
                self.finished(key, "dead")

    @rule(queue=st.sampled_from(QUEUES))
    def promote(self, queue):
        tick()
        assert self.engine.promote(queue) == self.promote_due_in_model(queue)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), delete=st.sampled_from([False, False, True]))
    def cancel(self, data, delete):
        """cancel, or (one time in three) delete_job: the job is gone, and an unfinished
        one's children can no longer count on it."""
        key = data.draw(st.sampled_from(sorted(self.jobs)))
        model = self.jobs[key]
        live = model.state in LIVE
        if delete:
            del self.jobs[key]
            self.handles.pop(key, None)
            assert self.engine.delete_job(*key) is True
            if live:
                self.finished(key, "deleted")
            return
        assert self.engine.cancel(*key) is live
        if live:
            model.state = "cancelled"
            self.finished(key, "cancelled")

    @rule(rate=st.sampled_from([None, 1, 3, 6]), concurrency=st.sampled_from([None, 1, 2, 4]))
    def set_limits(self, rate, concurrency):
        if rate is None or self.rate is None:
            self.in_window = 0   # no rate before or now: no log of claims
        else:
            self.in_window = min(self.in_window, rate)   # the log is cut to the new rate
        self.rate, self.concurrency = rate, concurrency
        assert self.engine.set_limits("q", rate=rate, per=3600, concurrency=concurrency) == {
            "rate": rate, "per": 3600.0 if rate else None, "concurrency": concurrency}

    @rule()
    def stats(self):
        """stats() counts each state as the model does (a rule, not an invariant: on
        memory:// the stats script costs more than the rest of a step)."""
        for queue in QUEUES:
            counted = self.engine.stats(queue)
            assert {s: counted[s] for s in STATES} == {s: len(self.ids(s, queue=queue)) for s in STATES}

    # ---------------------------------------------------------------- invariants
    @invariant()
    def states_match_model(self):
        if not hasattr(self, "engine"):
            return
        pipe = self.engine.client.pipeline(transaction=False)
        for queue in QUEUES:
            keys = self.engine.keys(queue)
            for state in STATES:
                pipe.zrange(keys.state(state), 0, -1)
        replies = iter(pipe.execute())
        for queue in QUEUES:
            seen: dict[str, str] = {}
            for state in STATES:
                members = {m.decode() for m in next(replies)}
                for job_id in members:
                    assert job_id not in seen, f"job {queue}/{job_id} in {seen[job_id]} and {state}"
                    seen[job_id] = state
                assert members == {i for _, i in self.ids(state, queue=queue)}, f"{queue}: {state} differs"
            assert set(seen) == {i for q, i in self.jobs if q == queue}, f"{queue}: a job was lost or invented"

    @invariant()
    def released_exactly_once(self):
        """Each child left ``waiting`` as often as the model says (0 or 1), by the event log
        (read on from where the last step stopped)."""
        if not hasattr(self, "engine"):
            return
        for queue in QUEUES:
            events = self.engine.events(queue, after=self.read_to.get(queue), limit=1000)
            for event in events:
                if event.type == "enqueued" and event.data.get("previous") == "waiting":
                    key = (queue, event.job_id)
                    self.releases[key] = self.releases.get(key, 0) + 1
            if events:
                self.read_to[queue] = events[-1].id
        for key, model in self.jobs.items():
            got = self.releases.get(key, 0)
            assert got == model.released, f"{key} released {got} times, {model.released} expected"

    @invariant()
    def dependency_failures_say_why(self):
        if not hasattr(self, "engine"):
            return
        for key, model in self.jobs.items():
            if model.dependency_failed and not model.error_checked:
                error = self.engine.get(*key).error or ""
                assert error.startswith("DependencyFailed: parent "), error
                model.error_checked = True


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_state_machine(backend, request):
    url = "memory://sm-" + uuid.uuid4().hex if backend == "memory" else request.getfixturevalue("redis_url")
    base = redispool.connect(url, backoff_base=0.001, backoff_cap=0.001)
    machine = type("Machine", (QueueMachine,), {"base": base})
    try:
        run_state_machine_as_test(machine, settings=settings(
            max_examples=40, stateful_step_count=30, deadline=None, derandomize=True, database=None,
            suppress_health_check=[HealthCheck.too_slow], phases=PHASES))
    finally:
        base.close()
