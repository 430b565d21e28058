"""Random operation sequences against a plain-Python model of the job states.

After every step: every job is in exactly one state, each state's set holds exactly the
model's jobs, and no job is lost or duplicated. Leases are either long (never expire in a
run) or 1 ms (expired by the time anything else touches them); retries back off 1 ms, so
every step that sleeps 3 ms first knows exactly which jobs are due or expired. The queue's
limits change at random too: a concurrency cap (counting expired leases until swept) and
a rate whose window (an hour) outlasts a run, so the model counts every claim in it.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import pytest
from hypothesis import settings
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


def tick() -> None:
    time.sleep(0.003)


class QueueMachine(RuleBasedStateMachine):
    url = "memory://"

    @initialize()
    def setup(self):
        self.engine = redispool.connect(self.url, prefix=f"sm{uuid.uuid4().hex[:8]}",
                                        backoff_base=0.001, backoff_cap=0.001)
        self.jobs: dict[str, ModelJob] = {}
        self.handles: dict[str, redispool.Job] = {}
        self.rate: int | None = None
        self.concurrency: int | None = None
        self.in_window = 0           # claims in the rate's window (all since the rate was set)

    def teardown(self):
        if hasattr(self, "engine"):
            for state in STATES:
                self.engine.purge("q", state)
            self.engine.close()

    def ids(self, *states: str) -> list[str]:
        return sorted(i for i, j in self.jobs.items() if j.state in states)

    def promote_due_in_model(self) -> int:
        due = [j for j in self.jobs.values() if j.state == "scheduled" and j.due]
        for job in due:
            job.state, job.due = "ready", False
        return len(due)

    # ---------------------------------------------------------------- producing
    @rule(priority=st.sampled_from([-1, 0, 1]), delayed=st.booleans(),
          max_attempts=st.integers(1, 3))
    def enqueue(self, priority, delayed, max_attempts):
        job_id = self.engine.enqueue("q", {"n": len(self.jobs)}, priority=priority,
                                     delay=3600 if delayed else None, max_attempts=max_attempts)
        assert job_id not in self.jobs
        self.jobs[job_id] = ModelJob("scheduled" if delayed else "ready", priority, max_attempts)

    # ---------------------------------------------------------------- consuming
    @rule(limit=st.integers(1, 3), short=st.booleans())
    def claim(self, limit, short):
        tick()
        self.promote_due_in_model()
        ready = {i: self.jobs[i] for i in self.ids("ready")}
        allowed = min(limit, len(ready))
        if self.concurrency is not None:
            allowed = min(allowed, max(0, self.concurrency - len(self.ids("leased"))))
        if self.rate is not None:
            allowed = min(allowed, max(0, self.rate - self.in_window))
        got = self.engine.claim("q", "w", limit=limit, lease=SHORT if short else LONG)
        assert len(got) == allowed
        self.in_window += len(got)
        claimed = {j.id for j in got}
        assert claimed <= set(ready), "claimed a job that was not ready"
        if claimed and len(claimed) < len(ready):
            lowest_taken = min(ready[i].priority for i in claimed)
            highest_left = max(ready[i].priority for i in ready if i not in claimed)
            assert lowest_taken >= highest_left, "priority order broken"
        for job in got:
            model = self.jobs[job.id]
            model.attempts += 1
            assert job.attempt == model.attempts
            model.state, model.short = "leased", short
            model.old_token, model.token = model.token, job.token
            self.handles[job.id] = job

    def leased(self):
        return st.sampled_from(self.ids("leased"))

    @precondition(lambda self: self.ids("leased"))
    @rule(data=st.data())
    def complete(self, data):
        job_id = data.draw(st.sampled_from(self.ids("leased")))
        model = self.jobs[job_id]
        if model.short:
            tick()
            with pytest.raises(redispool.LeaseLost):
                self.engine.complete(self.handles[job_id])
        else:
            self.engine.complete(self.handles[job_id], "ok")
            model.state = "done"

    @precondition(lambda self: self.ids("leased"))
    @rule(data=st.data(), retry=st.booleans())
    def fail(self, data, retry):
        job_id = data.draw(st.sampled_from(self.ids("leased")))
        model = self.jobs[job_id]
        if model.short:
            tick()
            with pytest.raises(redispool.LeaseLost):
                self.engine.fail(self.handles[job_id], "x", retry=retry)
            return
        state = self.engine.fail(self.handles[job_id], "boom", retry=retry)
        expected = "scheduled" if retry and model.attempts < model.max_attempts else "dead"
        assert state == expected
        model.state, model.due = expected, expected == "scheduled"

    @precondition(lambda self: self.ids("leased"))
    @rule(data=st.data())
    def heartbeat(self, data):
        job_id = data.draw(st.sampled_from(self.ids("leased")))
        if self.jobs[job_id].short:
            tick()
            with pytest.raises(redispool.LeaseLost):
                self.engine.heartbeat(self.handles[job_id])
        else:
            assert self.engine.heartbeat(self.handles[job_id]) > time.time()

    @precondition(lambda self: self.ids("leased"))
    @rule(data=st.data())
    def release(self, data):
        job_id = data.draw(st.sampled_from(self.ids("leased")))
        model = self.jobs[job_id]
        if model.short:
            tick()
            with pytest.raises(redispool.LeaseLost):
                self.engine.release(self.handles[job_id])
        else:
            self.engine.release(self.handles[job_id])
            model.state, model.attempts = "ready", model.attempts - 1

    @precondition(lambda self: any(j.old_token for j in self.jobs.values()))
    @rule(data=st.data())
    def stale_token(self, data):
        job_id = data.draw(st.sampled_from(sorted(i for i, j in self.jobs.items() if j.old_token)))
        stale = redispool.Job(**{**self.handles[job_id].__dict__, "token": self.jobs[job_id].old_token})
        with pytest.raises(redispool.LeaseLost):
            self.engine.complete(stale)

    # ---------------------------------------------------------------- daemons, admin
    @rule()
    def sweep(self):
        tick()
        expired = [j for j in self.jobs.values() if j.state == "leased" and j.short]
        assert self.engine.sweep("q") == len(expired)
        for job in expired:
            job.state = "dead" if job.attempts >= job.max_attempts else "ready"
            job.token = None

    @rule()
    def promote(self):
        tick()
        assert self.engine.promote("q") == self.promote_due_in_model()

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def cancel(self, data):
        job_id = data.draw(st.sampled_from(sorted(self.jobs)))
        model = self.jobs[job_id]
        live = model.state in ("scheduled", "ready", "leased")
        assert self.engine.cancel("q", job_id) is live
        if live:
            model.state = "cancelled"

    @rule(rate=st.sampled_from([None, 1, 3, 6]), concurrency=st.sampled_from([None, 1, 2, 4]))
    def set_limits(self, rate, concurrency):
        if rate is None or self.rate is None:
            self.in_window = 0   # no rate before or now: no log of claims
        else:
            self.in_window = min(self.in_window, rate)   # the log is cut to the new rate
        self.rate, self.concurrency = rate, concurrency
        assert self.engine.set_limits("q", rate=rate, per=3600, concurrency=concurrency) == {
            "rate": rate, "per": 3600.0 if rate else None, "concurrency": concurrency}

    # ---------------------------------------------------------------- invariants
    @invariant()
    def states_match_model(self):
        if not hasattr(self, "engine"):
            return
        keys = self.engine.keys("q")
        seen: dict[str, str] = {}
        for state in STATES:
            members = {m.decode() for m in self.engine.client.zrange(keys.state(state), 0, -1)}
            for job_id in members:
                assert job_id not in seen, f"job {job_id} in {seen[job_id]} and {state}"
                seen[job_id] = state
            assert members == set(self.ids(state)), f"{state} differs from the model"
        assert set(seen) == set(self.jobs), "a job was lost or invented"
        stats = self.engine.stats("q")
        for state in STATES:
            assert stats[state] == len(self.ids(state))


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_state_machine(backend, request):
    url = "memory://sm-" + uuid.uuid4().hex if backend == "memory" else request.getfixturevalue("redis_url")
    machine = type("Machine", (QueueMachine,), {"url": url})
    run_state_machine_as_test(machine, settings=settings(max_examples=40, stateful_step_count=30,
                                                         deadline=None))
