"""Property-based fuzzing of every route from the OpenAPI document (schemathesis): whatever
the body, parameters and token, no 5xx, the status is a documented one, and the response
matches its schema. Data that breaks the schema must be refused with a 4xx. Two in three
cases of the lease routes name a live lease (``_live_leases``), so their writes are fuzzed
too. Also checks that the body schemas list exactly the fields the handlers accept.

The suite's run is derandomized (the same cases on every run, no example database), so a
CI verdict depends on the code, not the dice. ``bin/fuzz`` explores instead: it sets
``REDISPOOL_FUZZ_EXAMPLES`` (examples per route, generated at random) and
``REDISPOOL_FUZZ_SEED`` (a random seed it prints, so that a failure can be replayed)."""
from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
import random
import uuid

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis import checks  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

import redispool  # noqa: E402
from redispool.http import create_app  # noqa: E402
from redispool.http.openapi import BODIES, SCHEMAS  # noqa: E402
from redispool.keys import QUEUE_NAME  # noqa: E402
from redispool.models import DeliveryInfo, Job  # noqa: E402

pytestmark = pytest.mark.slow
# Hypothesis mixes in constants it reads from the loaded modules of this project: load all
# of redispool first, so the cases are the same whether this file runs alone or in the suite.
for _module in pkgutil.walk_packages(redispool.__path__, "redispool."):
    with contextlib.suppress(ImportError):
        importlib.import_module(_module.name)
TOKEN = "fuzz-admin-token"
EXPLORE = int(os.environ.get("REDISPOOL_FUZZ_EXAMPLES") or 0)   # bin/fuzz; 0: the suite's fixed run
SEED = int(os.environ.get("REDISPOOL_FUZZ_SEED") or random.getrandbits(32)) if EXPLORE else None
FUZZ = settings(max_examples=EXPLORE or 60, derandomize=not EXPLORE, database=None, deadline=None,
                suppress_health_check=list(HealthCheck))
ENGINE = redispool.connect(f"memory://fuzz-{uuid.uuid4().hex}", prefix="fz")
APP = create_app(ENGINE, tokens={TOKEN: "admin"}, dashboard=False)
# GET /v1/events is a stream that ends only when its client goes away, which the test
# client never does: tests/web/test_http_events.py covers it over a real server. GET
# /v1/ws is a WebSocket, which the fuzzer cannot open: tests/web/test_http_ws.py.
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP, config=SchemathesisConfig(seed=SEED)) \
    .exclude(path=["/v1/events", "/v1/ws"])
CHECKS = (checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.negative_data_rejection)
RUNS: list[str] = []
LEASES: list[str] = []   # the live leases _live_leases handed out


@pytest.fixture(autouse=True, scope="module")
def seeded():
    """Jobs, a dead job, cues and a webhook with deliveries, so fuzzed ids and names
    sometimes hit something."""
    ENGINE.enqueue_many("q", [{"n": i} for i in range(5)])
    ENGINE.enqueue("q", b"\x00bytes", job_id="j-1")
    [job] = ENGINE.claim("q", "w", limit=1)
    ENGINE.fail(job, "boom", retry=False)
    ENGINE.add_cue("q", "nightly", "0 3 * * *")
    ENGINE.add_cue("q", "ping", "0 3 * * *", url="https://example.com/cue", secret="s")
    ENGINE.add_webhook("nightly", "https://example.com/hook", secret="s")
    for n, (code, error) in enumerate([(200, None), (None, "timed out"), (500, "HTTP 500")]):
        ENGINE.log_delivery(DeliveryInfo(id=f"hook:nightly:q:{n}-0", webhook="nightly", event="completed",
                                         queue="q", job_id=str(n), attempt=1, status="failed" if error else "success",
                                         code=code, error=error, response="\x00<b>é" * n, duration_ms=1.5, at=1e9))
    yield
    print(f"\nschemathesis: {len(RUNS)} cases, {len(LEASES)} live leases"
          + (f", {EXPLORE} per route, seed {SEED}" if EXPLORE else ""))


@SCHEMA.parametrize()
@FUZZ
def test_every_route_against_the_document(case):
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKEN}"}
    _no_long_polls(case.body)
    _live_leases(case)
    RUNS.append(case.operation.label)
    case.call_and_validate(checks=CHECKS)


def _live_leases(case) -> None:
    """Two in three of the lease routes' cases (by the length of their token) name a lease that is live:
    a job enqueued and claimed just before, so the fuzzer reaches their writes, not only
    409 lease_lost. Only valid ids and tokens are replaced, by valid ones: a case the
    fuzzer made invalid stays invalid."""
    queue = (case.path_parameters or {}).get("queue")
    if not isinstance(queue, str) or not QUEUE_NAME.fullmatch(queue) or not isinstance(case.body, dict):
        return
    if case.operation.path.endswith(("/complete", "/fail", "/heartbeat", "/release", "/progress")):
        job_id = case.path_parameters.get("id")
        if _live(job_id, case.body.get("token")) and (job := _lease(queue)):
            case.path_parameters["id"], case.body["token"] = job.id, job.token
    elif case.operation.path.endswith("/ack"):
        items = [i for part in ("complete", "fail") if isinstance(case.body.get(part), list)
                 for i in case.body[part][:20] if isinstance(i, dict)]
        for item in items:
            if _live(item.get("id"), item.get("token")) and (job := _lease(queue)):
                item["id"], item["token"] = job.id, job.token


def _live(job_id, token) -> bool:
    return isinstance(job_id, str) and 1 <= len(job_id) <= 256 and isinstance(token, str) \
        and len(token) % 3 != 0


def _lease(queue: str) -> Job | None:
    """A new job of ``queue``, leased (None when the queue is paused)."""
    job = ENGINE.claim_id(queue, ENGINE.enqueue(queue, {"live": True}), "fuzz-worker")
    if job is not None:
        LEASES.append(job.id)
    return job


def _no_long_polls(body) -> None:
    """A valid ``wait`` (up to 30 s) becomes 0: the fuzzer would spend its time waiting.
    Invalid values stay as they are, so they are still refused."""
    for claim in (body, body.get("claim")) if isinstance(body, dict) else ():
        wait = claim.get("wait") if isinstance(claim, dict) else None
        if isinstance(wait, (int, float)) and not isinstance(wait, bool) and 0 < wait <= 30:
            claim["wait"] = 0


def test_body_schemas_list_exactly_the_accepted_fields():
    """Every documented field is accepted (not an "unknown field"), and a field the
    document does not list is refused."""
    client = TestClient(APP, headers={"Authorization": f"Bearer {TOKEN}"})
    for (method, path), schema in BODIES.items():
        if "$ref" in schema:
            schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
        url = path.format(queue="schema-check", id="1", name="c1")
        for field in schema["properties"]:
            r = client.request(method, url, json={field: None})
            assert "unknown field" not in r.text, (method, path, field, r.text)
        r = client.request(method, url, json={"surely_not_a_field": 1})
        assert r.status_code == 400 and "unknown field" in r.json()["message"], (method, path, r.text)


def test_webhook_answers_match_the_document():
    """The webhook routes' answers for a webhook that exists, with deliveries of every
    outcome, and a webhook cue in the cue list (the fuzzer's names rarely hit one)."""
    ENGINE.add_webhook("seen", "https://example.com/seen", queues=["q"], secret="s", scheme="cueapi")
    ENGINE.add_cue("q", "seen", "0 3 * * *", url="https://example.com/seen-cue")
    for n, (status, code) in enumerate([("success", 204), ("failed", 503), ("dead", None)]):
        ENGINE.log_delivery(DeliveryInfo(id=f"hook:seen:q:{n}-0", webhook="seen", event="dead", queue="q",
                                         job_id=None if code is None else str(n), attempt=n + 1, status=status,
                                         code=code, error=None if code == 204 else "no", response="",
                                         duration_ms=0, at=1e9))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for path, method, params in [("/v1/webhooks", "GET", {}), ("/v1/webhooks/{name}", "GET", {"name": "seen"}),
                                 ("/v1/webhooks/{name}/deliveries", "GET", {"name": "seen"}),
                                 ("/v1/cues", "GET", {}), ("/v1/webhooks/{name}", "DELETE", {"name": "seen"})]:
        case = SCHEMA[path][method].Case(path_parameters=params, headers=auth)
        response = case.call_and_validate(checks=CHECKS)
        assert response.status_code == 200 and ("seen" in response.text or method == "DELETE"), (method, path)
    assert ENGINE.get_webhook("seen") is None
