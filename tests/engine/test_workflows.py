"""enqueue_workflow / workflow / cancel_workflow: a graph of jobs created all or nothing
(every node behind the workflow's gate until all exist), run by depends_on, its status
computed from the nodes; on every backend."""
from __future__ import annotations

import pytest

from redispool import InvalidOption, InvalidQueueName, WorkflowNotFound
from redispool.workflows import GATE_QUEUE

DIAMOND = [
    {"key": "fetch", "queue": "crawl", "payload": {"url": "u"}},
    {"key": "parse", "queue": "crawl", "depends_on": ["fetch"]},
    {"key": "thumbs", "queue": "media", "depends_on": ["fetch"], "priority": 5},
    {"key": "index", "queue": "search", "depends_on": ["parse", "thumbs"]},
]


def run_one(engine, queue, ok=True):
    """Claim one job of ``queue`` and finish it; its id."""
    [job] = engine.claim(queue, "w", limit=1)
    if ok:
        engine.complete(job)
    else:
        engine.fail(job, "Boom", retry=False)
    return job.id


def keys_of(engine):
    return sorted(engine.client.scan_iter(match=f"{engine.prefix}:*"))


def test_diamond_runs_in_order_to_completed(engine):
    wf = engine.enqueue_workflow("diamond", DIAMOND)
    assert wf.name == "diamond" and wf.status == "running" and set(wf.jobs) == {"fetch", "parse", "thumbs", "index"}
    assert wf.states == {"fetch": "ready", "parse": "waiting", "thumbs": "waiting", "index": "waiting"}
    assert wf.depends_on["index"] == ["parse", "thumbs"] and wf.created_at > 0
    assert engine.claim("media", "w") == [] and engine.claim("search", "w") == []
    assert run_one(engine, "crawl") == wf.jobs["fetch"][1]
    assert engine.workflow(wf.id).states["index"] == "waiting"
    assert run_one(engine, "media") == wf.jobs["thumbs"][1]
    assert engine.claim("search", "w") == []     # parse is not done yet
    assert run_one(engine, "crawl") == wf.jobs["parse"][1]
    assert run_one(engine, "search") == wf.jobs["index"][1]
    done = engine.workflow(wf.id)
    assert done.status == "completed" and set(done.states.values()) == {"done"}
    assert engine.get("media", wf.jobs["thumbs"][1]).priority == 5
    assert engine.workflow_of("search", wf.jobs["index"][1]) == wf.id
    assert engine.workflow_of("crawl", wf.jobs["index"][1]) is None
    assert [w.id for w in engine.workflows()] == [wf.id]


def test_fan_out_of_500(engine):
    jobs = [{"key": "root", "queue": "fan"}]
    jobs += [{"key": f"leaf{i}", "queue": "fan" if i % 2 else "out", "payload": i, "depends_on": ["root"]}
             for i in range(500)]
    jobs.append({"key": "join", "queue": "fan", "depends_on": [f"leaf{i}" for i in range(500)]})
    wf = engine.enqueue_workflow("fan", jobs)
    assert list(wf.states.values()).count("waiting") == 501
    run_one(engine, "fan")
    assert engine.stats("fan")["ready"] == 250 and engine.stats("out")["ready"] == 250
    for queue in ("fan", "out"):
        for job in engine.claim(queue, "w", limit=250):
            engine.complete(job)
    assert engine.workflow(wf.id).states["join"] == "ready"
    run_one(engine, "fan")
    assert engine.workflow(wf.id).status == "completed"


def test_a_dead_node_fails_the_workflow_and_cancels_its_dependants(engine):
    wf = engine.enqueue_workflow("diamond", DIAMOND)
    run_one(engine, "crawl")
    run_one(engine, "media", ok=False)            # thumbs dead
    now = engine.workflow(wf.id)
    assert now.status == "failed"
    assert now.states == {"fetch": "done", "parse": "ready", "thumbs": "dead", "index": "cancelled"}
    assert wf.jobs["thumbs"][1] in str(engine.get("search", wf.jobs["index"][1]).errors)


def test_cancel_workflow(engine):
    wf = engine.enqueue_workflow("diamond", DIAMOND)
    run_one(engine, "crawl")
    assert engine.cancel_workflow(wf.id) == 3
    now = engine.workflow(wf.id)
    assert now.status == "cancelled" and now.cancelled_at is not None
    assert now.states == {"fetch": "done", "parse": "cancelled", "thumbs": "cancelled", "index": "cancelled"}
    assert engine.cancel_workflow(wf.id) == 0
    with pytest.raises(WorkflowNotFound):
        engine.workflow("nope")
    with pytest.raises(WorkflowNotFound):
        engine.cancel_workflow("nope")


def test_a_creation_that_died_half_way_never_runs_and_is_cleaned_or_finished(engine):
    # what a process that died after the first queue's nodes leaves: the gate still closed
    created = []
    real = engine.enqueue_specs

    def dying(queue, specs):
        if queue == "search":
            raise ConnectionError("died")
        created.append(queue)
        return real(queue, specs)
    engine.enqueue_specs = dying
    with pytest.raises(ConnectionError):
        engine.enqueue_workflow("diamond", DIAMOND, workflow_id="wf-crash")
    del engine.enqueue_specs
    assert "crawl" in created
    half = engine.workflow("wf-crash")
    assert half.status == "running" and half.states["index"] is None
    assert engine.claim("crawl", "w") == [] and engine.claim("media", "w") == []   # nothing runnable
    # the same id again finishes it; a different workflow under that id is refused
    with pytest.raises(InvalidOption):
        engine.enqueue_workflow("diamond", DIAMOND[:2], workflow_id="wf-crash")
    whole = engine.enqueue_workflow("diamond", DIAMOND, workflow_id="wf-crash")
    assert whole.states["fetch"] == "ready" and whole.states["index"] == "waiting"
    # or cancel_workflow cleans a half-created one
    engine.enqueue_specs = dying
    with pytest.raises(ConnectionError):
        engine.enqueue_workflow("diamond", DIAMOND, workflow_id="wf-crash2")
    del engine.enqueue_specs
    engine.cancel_workflow("wf-crash2")
    gone = engine.workflow("wf-crash2")
    assert gone.status == "cancelled"
    assert {s for s in gone.states.values()} == {"cancelled", None}
    assert engine.get(GATE_QUEUE, "wf-crash2").state == "cancelled"


@pytest.mark.parametrize("jobs, says", [
    ([{"key": "a", "queue": "q"}, {"key": "a", "queue": "q"}], "twice"),
    ([{"key": "a", "queue": "q", "depends_on": ["b"]}], "unknown key"),
    ([{"key": "a", "queue": "q", "depends_on": ["b"]}, {"key": "b", "queue": "q", "depends_on": ["a"]}], "cycle"),
    ([{"key": "a", "queue": "q", "depends_on": ["a"]}], "cycle"),
    ([{"key": "a", "queue": "q"}, {"key": "b", "queue": "bad queue"}], "queue"),
    ([{"key": "a", "queue": "q", "priority": 10**6}], "priority"),
    ([{"key": "a", "queue": "q", "colour": "red"}], "unknown fields"),
    ([{"key": "a", "queue": "q", "dependency_mode": "most"}, {"key": "b", "queue": "q", "depends_on": ["a"],
                                                              "dependency_mode": "most"}], "dependency_mode"),
    ([], "at least one"),
])
def test_bad_workflows_are_refused_with_nothing_written(engine, jobs, says):
    engine.enqueue("q", "other")
    before = keys_of(engine)
    with pytest.raises((InvalidOption, InvalidQueueName), match=says) as caught:
        engine.enqueue_workflow("bad", jobs)
    assert isinstance(caught.value, ValueError)
    assert keys_of(engine) == before


def test_http_routes(engine):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from redispool.http import create_app
    tokens = {"a": "admin", "w": "worker", "r": "read"}
    api = TestClient(create_app(engine, tokens=tokens, dashboard=False), base_url="http://127.0.0.1",
                     headers={"Content-Type": "application/json"})

    def as_(role):
        return {"Authorization": f"Bearer {dict(admin='a', worker='w', read='r')[role]}"}
    body = {"name": "diamond", "jobs": DIAMOND}
    assert api.post("/v1/workflows", json=body, headers=as_("read")).status_code == 403
    r = api.post("/v1/workflows", json=body, headers=as_("worker"))
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["status"] == "running" and made["jobs"]["index"]["depends_on"] == ["parse", "thumbs"]
    assert made["jobs"]["fetch"]["state"] == "ready"
    got = api.get(f"/v1/workflows/{made['id']}", headers=as_("read")).json()
    assert got["jobs"]["thumbs"] == {"queue": "media", "id": made["jobs"]["thumbs"]["id"], "state": "waiting",
                                     "depends_on": ["fetch"], "dependency_mode": "all"}
    assert [w["id"] for w in api.get("/v1/workflows?limit=5", headers=as_("read")).json()] == [made["id"]]
    bad = api.post("/v1/workflows", json={"name": "x", "jobs": [{"key": "a", "queue": "q", "depends_on": ["a"]}]},
                   headers=as_("worker"))
    assert bad.status_code == 400 and "cycle" in bad.json()["message"]
    assert api.post("/v1/workflows", json={"name": "x", "jobs": [{"key": "a", "queue": "q", "colour": 1}]},
                    headers=as_("worker")).status_code == 400
    assert api.get("/v1/workflows/nope", headers=as_("read")).status_code == 404
    assert api.post(f"/v1/workflows/{made['id']}/cancel", headers=as_("worker")).status_code == 403
    assert api.post(f"/v1/workflows/{made['id']}/cancel", headers=as_("admin")).json() == {"cancelled": 4}
    assert api.get(f"/v1/workflows/{made['id']}", headers=as_("read")).json()["status"] == "cancelled"
    schema = api.get("/openapi.json").json()
    assert "/v1/workflows/{id}/cancel" in schema["paths"] and "WorkflowNode" in schema["components"]["schemas"]


def test_dashboard_page_renders_and_escapes(engine):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from redispool.dashboard import create_dashboard
    xss = "<script>alert(1)</script>"
    wf = engine.enqueue_workflow(xss, [{"key": "a<b>", "queue": "q", "payload": xss},
                                       {"key": "c", "queue": "q", "depends_on": ["a<b>"]}],
                                 workflow_id="wf<i>")
    c = TestClient(create_dashboard(engine), follow_redirects=False)
    page = c.get("/workflows/wf<i>")
    assert page.status_code == 200 and "<script>alert" not in page.text and "<b>" not in page.text
    assert "&lt;script&gt;" in page.text and "a&lt;b&gt;" in page.text and "running" in page.text
    assert f'/queues/q/jobs/{wf.jobs["c"][1].replace("<", "%3C").replace(">", "%3E")}' in page.text
    job = c.get(f"/queues/q/jobs/{wf.jobs['c'][1]}").text
    assert 'href="/workflows/wf%3Ci%3E"' in job and "<dt>depends on</dt>" in job
    assert c.get("/workflows/nope").status_code == 404
    c.get("/")
    cancel = c.post("/workflows/wf<i>/cancel", data={"csrf": c.cookies.get("rp_csrf")})
    assert cancel.status_code == 303, cancel.text
    assert engine.workflow("wf<i>").status == "cancelled"
    assert "cancelled" in c.get("/workflows/wf<i>").text


def test_enqueue_specs_takes_a_parent_earlier_in_the_same_batch(engine):
    from redispool import JobNotFound
    specs = [engine.job_spec("a", job_id="c-a"), engine.job_spec("b", job_id="c-b", depends_on=["c-a"], queue="q"),
             engine.job_spec("c", job_id="c-c", depends_on=["c-b"], queue="q")]
    assert engine.enqueue_specs("q", specs) == [("c-a", True), ("c-b", True), ("c-c", True)]
    assert [engine.get("q", i).state for i in ("c-a", "c-b", "c-c")] == ["ready", "waiting", "waiting"]
    run_one(engine, "q")
    assert engine.get("q", "c-b").state == "ready"
    later = [engine.job_spec("x", job_id="l-x", depends_on=["l-y"], queue="q"), engine.job_spec("y", job_id="l-y")]
    with pytest.raises(JobNotFound):       # a parent later in the batch is not there yet: nothing written
        engine.enqueue_specs("q", later)
    assert engine.get("q", "l-y") is None
