"""Timeouts and progress over ``/v1`` (issue 19): ``timeout`` on enqueue and cues, in
leases and job records; ``POST .../jobs/{id}/progress`` fenced by the token (409 when
stale), refused with 400 for bad values (nothing written); the body declared once, so the
OpenAPI document shows what the route checks."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from redispool.http import create_app  # noqa: E402


@pytest.fixture
def api(engine) -> TestClient:
    return TestClient(create_app(engine, dashboard=False), base_url="http://127.0.0.1",
                      headers={"Content-Type": "application/json"})


def url(path: str, queue: str = "q") -> str:
    return f"/v1/queues/{queue}{path}"


def claim(api) -> dict:
    [job] = api.post(url("/claim"), json={"worker_id": "go-1"}).json()["jobs"]
    return job


def test_timeout_on_enqueue_in_the_lease_and_in_the_record(api, engine):
    job_id = api.post(url("/jobs"), json={"payload": 1, "timeout": 2.5}).json()["id"]
    batch = api.post(url("/jobs/batch"), json={"jobs": [{"payload": 2, "timeout": 1}, {"payload": 3}]}).json()["ids"]
    assert [engine.get("q", i).timeout for i in [job_id, *batch]] == [2.5, 1.0, None]
    assert api.get(url(f"/jobs/{job_id}")).json()["timeout"] == 2.5
    leases = api.post(url("/claim"), json={"worker_id": "go-1", "limit": 3}).json()["jobs"]
    assert [j["timeout"] for j in leases] == [2.5, 1, None]
    cue = api.put(url("/cues/nightly"), json={"cron": "0 3 * * *", "timeout": 60}).json()
    assert cue["timeout"] == 60 and engine.get_cue("q", "nightly").timeout == 60


@pytest.mark.parametrize("body", [{"timeout": 0}, {"timeout": -1}, {"timeout": "5"}, {"timeout": 10**7}])
def test_a_bad_timeout_is_400_and_writes_nothing(api, engine, body):
    r = api.post(url("/jobs"), json={"payload": 1, **body})
    assert r.status_code == 400 and r.json()["error"] == "bad_input"
    assert api.put(url("/cues/c"), json={"cron": "* * * * *", **body}).status_code == 400
    assert engine.queues() == [] and engine.cues() == []


def test_progress_is_recorded_and_shown(api, engine):
    job_id = engine.enqueue("q", 1)
    job = claim(api)
    r = api.post(url(f"/jobs/{job_id}/progress"), json={"token": job["token"], "value": 45, "message": "copying",
                                                       "worker_id": "go-1"})
    assert r.status_code == 200
    answer = r.json()
    assert (answer["value"], answer["message"]) == (45, "copying") and answer["at"] > 0
    assert api.get(url(f"/jobs/{job_id}")).json()["progress"] == answer
    api.post(url(f"/jobs/{job_id}/progress"), json={"token": job["token"], "value": 99.5})
    assert engine.get("q", job_id).progress["value"] == 99.5
    assert [e.data for e in engine.events("q") if e.type == "progress"] == [
        {"value": 45, "message": "copying"}, {"value": 99.5}]
    listed = api.get(url("/jobs?state=leased")).json()["jobs"]
    assert listed[0]["progress"]["value"] == 99.5


def test_progress_with_a_stale_token_is_409_and_changes_nothing(api, engine):
    job_id = engine.enqueue("q", 1)
    job = claim(api)
    r = api.post(url(f"/jobs/{job_id}/progress"), json={"token": "999999", "value": 10})
    assert r.status_code == 409 and r.json()["error"] == "lease_lost"
    api.post(url(f"/jobs/{job_id}/complete"), json={"token": job["token"]})
    assert api.post(url(f"/jobs/{job_id}/progress"), json={"token": job["token"], "value": 10}).status_code == 409
    assert engine.get("q", job_id).progress is None


@pytest.mark.parametrize("body", [
    {"value": 101}, {"value": -0.5}, {"value": "50"}, {"value": True}, {"value": None}, {},
    {"value": 5, "message": "x" * 501}, {"value": 5, "message": 7}, {"value": 5, "colour": "red"},
    {"value": 5, "token": ""}, {"value": 5, "worker_id": "has space"}, {"value": 5, "message": "\ud800"}])
def test_bad_progress_is_400_and_writes_nothing(api, engine, body):
    job_id = engine.enqueue("q", 1)
    job = claim(api)
    r = api.post(url(f"/jobs/{job_id}/progress"), content=json.dumps({"token": job["token"], **body}))
    assert r.status_code == 400 and r.json()["error"] == "bad_input", r.text
    assert engine.get("q", job_id).progress is None
    assert "progress" not in [e.type for e in engine.events("q")]


def test_the_openapi_document_declares_the_progress_route(api):
    doc = api.get("/openapi.json").json()
    route = doc["paths"]["/v1/queues/{queue}/jobs/{id}/progress"]["post"]
    body = route["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"token", "value", "message", "worker_id"}
    assert body["properties"]["value"]["maximum"] == 100 and body["required"] == ["token", "value"]
    schemas = doc["components"]["schemas"]
    assert {"timeout", "progress"} <= set(schemas["JobInfo"]["properties"])
    assert "timeout" in schemas["Lease"]["properties"] and "timeout" in schemas["NewJob"]["properties"]
