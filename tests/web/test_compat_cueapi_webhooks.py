"""cueapi webhook cues and one-off fires against ``redispool serve`` with a real
``redispool scheduler`` and ``redispool deliver`` on a real redis-server: ``cues.create``
with the SDK's default transport (``"webhook"``, a ``callback``) is POSTed to a loopback
receiver that checks each request with the SDK's own ``verify_webhook``, the receiver's
answer is the execution's outcome (``executions.list/get``), and ``POST
/v1/cues/{id}/fire`` honours ``payload_override``, ``merge_strategy``, ``send_at`` and a
24 h ``idempotency_key``.

The installed ``cueapi-sdk`` (0.1.3, the newest on PyPI) has no ``cues.fire`` and no
webhook-secret call yet: those are sent with the SDK's own request helper (``_post``,
``_get``), in the body the SDK's source (``cues.fire``, cueapi-python 0.2.0) sends."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("cueapi")
from cueapi import CueAPI, verify_webhook  # noqa: E402
from cueapi.exceptions import CueAPIError, InvalidScheduleError  # noqa: E402

from redispool.compat.cueapi import QUEUE  # noqa: E402
from redispool.keys import DELIVERY_QUEUE  # noqa: E402

from support.compat import CUEAPI_KEYS, compat_server, daemon  # noqa: E402
from support.receiver import Received, receiving  # noqa: E402
from support.waiting import wait_for  # noqa: E402

ADMIN = CUEAPI_KEYS[0]


@pytest.fixture(scope="module")
def server(redis_url):
    with compat_server(redis_url) as s:
        _, _, prefix = s
        with daemon(redis_url, prefix, "scheduler", "--interval", "0.2"), daemon(redis_url, prefix, "deliver"):
            yield s


@pytest.fixture
def sdk(server):
    c = CueAPI(ADMIN, base_url=server[0] + "/compat/cueapi")
    yield c
    for cue in c.cues.list(limit=100).cues:
        c.cues.delete(cue.id)
    c.close()


def checked_by_the_sdk(secret: str):
    """A receiver's answer: 200 when the SDK's verify_webhook accepts the request, else 401."""
    def answer(r: Received) -> tuple[int, bytes, dict[str, str]]:
        ok = verify_webhook(r.body, r.headers.get("X-CueAPI-Signature", ""), secret,
                            r.headers.get("X-CueAPI-Timestamp", ""))
        return (200, b'{"got": true}', {}) if ok else (401, b"bad signature", {})
    return answer


def executions(sdk: CueAPI, cue_id: str) -> list[dict]:
    return sdk.executions.list(cue_id=cue_id, limit=100)["executions"]


def test_a_webhook_cue_posts_each_fire_signed_and_the_answer_is_its_outcome(sdk, server):
    secret = sdk._get("/v1/auth/webhook-secret")["webhook_secret"]
    assert secret.startswith("whsec_") and len(secret) == 70
    with receiving(checked_by_the_sdk(secret)) as receiver:
        cue = sdk.cues.create("every-second", cron="* * * * * *", callback=receiver.url,
                              callback_headers={"X-Team": "ops"}, payload={"task": "sync"})
        assert (cue.transport, cue.callback.url, cue.callback.headers) == ("webhook", receiver.url, {"X-Team": "ops"})
        wait_for(lambda: receiver.requests, 20, "a fire POSTed")
        sdk.cues.pause(cue.id)
        r = receiver.requests[0]
        assert r.headers["X-CueAPI-Cue-Id"] == cue.id and r.headers["X-Team"] == "ops"
        assert r.headers["User-Agent"] == "CueAPI/1.0" and r.headers["X-CueAPI-Attempt"] == "1"
        body = r.json
        assert (body["cue_id"], body["name"], body["payload"], body["attempt"]) == (
            cue.id, "every-second", {"task": "sync"}, 1)
        assert body["execution_id"] == r.headers["X-CueAPI-Execution-Id"]
        assert r.headers["X-CueAPI-Scheduled-For"] == body["scheduled_for"]
        assert verify_webhook(r.body, r.headers["X-CueAPI-Signature"], secret, r.headers["X-CueAPI-Timestamp"])
        assert not verify_webhook(r.body, r.headers["X-CueAPI-Signature"], "whsec_other",
                                  r.headers["X-CueAPI-Timestamp"])
        # the receiver's 200 is the execution's outcome
        wait_for(lambda: any(e["status"] == "success" for e in executions(sdk, cue.id)), 20, "a success")
        done = sdk.executions.get(body["execution_id"])
        assert (done["status"], done["http_status"], done["cue_id"]) == ("success", 200, cue.id)
        assert done["outcome"]["success"] is True and done["outcome"]["result"] == '{"got": true}'


def test_a_refused_delivery_is_a_failed_execution(sdk, server):
    with receiving(lambda r: (503, b"down for maintenance", {})) as receiver:
        at = datetime.now(timezone.utc) + timedelta(seconds=1)
        cue = sdk.cues.create("once", at=at, callback=receiver.url, payload={"n": 1},
                              retry={"max_attempts": 1, "backoff_minutes": [1]})
        wait_for(lambda: any(e["status"] == "failed" for e in executions(sdk, cue.id)), 20, "a failed execution")
        [ex] = executions(sdk, cue.id)
        assert ex["http_status"] == 503 and ex["outcome"]["success"] is False
        assert "HTTP 503" in ex["error_message"] and len(receiver.requests) == 1
        assert sdk.cues.get(cue.id).status == "completed"


def test_regenerating_the_secret_needs_confirmation_and_signs_with_the_new_one(sdk, server):
    with pytest.raises(InvalidScheduleError):
        sdk._post("/v1/auth/webhook-secret/regenerate")
    old = sdk._get("/v1/auth/webhook-secret")["webhook_secret"]
    r = sdk._http.post("/v1/auth/webhook-secret/regenerate", headers={"X-Confirm-Destructive": "true"})
    new = r.json()["webhook_secret"]
    assert new != old and sdk._get("/v1/auth/webhook-secret")["webhook_secret"] == new
    with receiving(checked_by_the_sdk(new)) as receiver:
        cue = sdk.cues.create("after-regenerate", cron="0 0 1 1 *", callback=receiver.url)
        sdk._post(f"/v1/cues/{cue.id}/fire", json={})
        wait_for(lambda: any(e["status"] == "success" for e in executions(sdk, cue.id)), 20, "a verified delivery")


def test_fire_a_webhook_cue_with_payload_override_merge_and_replace(sdk, server):
    with receiving() as receiver:
        cue = sdk.cues.create("manual", cron="0 0 1 1 *", callback=receiver.url, payload={"a": 1, "b": 2})
        merged = sdk._post(f"/v1/cues/{cue.id}/fire", json={"payload_override": {"b": 3, "c": 4}})
        assert (merged["cue_id"], merged["status"], merged["triggered_by"]) == (cue.id, "pending", "manual_fire")
        replaced = sdk._post(f"/v1/cues/{cue.id}/fire", json={"payload_override": {"only": True},
                                                               "merge_strategy": "replace"})
        plain = sdk._post(f"/v1/cues/{cue.id}/fire")   # no body: the cue's payload
        wait_for(lambda: len(receiver.requests) == 3, 20, "three fires POSTed")
        got = {b["execution_id"]: b["payload"] for b in receiver.bodies()}
        assert got == {merged["id"]: {"a": 1, "b": 3, "c": 4}, replaced["id"]: {"only": True},
                       plain["id"]: {"a": 1, "b": 2}}
        assert sdk.cues.get(cue.id).payload == {"a": 1, "b": 2}   # the cue itself is unchanged
        wait_for(lambda: len([e for e in executions(sdk, cue.id) if e["status"] == "success"]) == 3, 20,
                 "three successes")
        assert {e["triggered_by"] for e in executions(sdk, cue.id)} == {"manual_fire"}
        with pytest.raises(InvalidScheduleError):
            sdk._post(f"/v1/cues/{cue.id}/fire", json={"merge_strategy": "deep"})


def test_fire_send_at_schedules_it_and_a_past_one_fires_now(sdk, server):
    _, engine, _ = server
    with receiving() as receiver:
        cue = sdk.cues.create("later", cron="0 0 1 1 *", callback=receiver.url)
        later = datetime.now(timezone.utc) + timedelta(hours=1)
        fired = sdk._post(f"/v1/cues/{cue.id}/fire", json={"send_at": later.isoformat()})
        assert abs(datetime.fromisoformat(fired["scheduled_for"].replace("Z", "+00:00")) - later) < timedelta(
            seconds=1)
        job = engine.get(DELIVERY_QUEUE, fired["id"])
        assert job.state == "scheduled" and job.run_at == pytest.approx(later.timestamp(), abs=1)
        past = sdk._post(f"/v1/cues/{cue.id}/fire", json={"send_at": "2020-01-01T00:00:00Z"})
        wait_for(lambda: [b for b in receiver.bodies() if b["execution_id"] == past["id"]], 20, "the past one now")
        assert [b["execution_id"] for b in receiver.bodies()] == [past["id"]]
        sdk.cues.delete(cue.id)   # its unsent fire goes with it
        assert engine.get(DELIVERY_QUEUE, fired["id"]).state == "cancelled"


def test_fire_idempotency_key_holds_for_the_same_request_and_refuses_another(sdk, server):
    _, engine, prefix = server
    cue = sdk.cues.create("worker-cue", cron="0 0 1 1 *", transport="worker", payload={"task": "t", "x": 1})
    body = {"payload_override": {"x": 2}, "idempotency_key": "ci-run-456"}
    first = sdk._post(f"/v1/cues/{cue.id}/fire", json=body)
    again = sdk._post(f"/v1/cues/{cue.id}/fire", json=body)
    assert again == first
    assert [j.id for j in engine.jobs(QUEUE, "ready", limit=100) if j.id.startswith(f"cue:{cue.id}:")] == [first["id"]]
    with pytest.raises(CueAPIError) as conflict:
        sdk._post(f"/v1/cues/{cue.id}/fire", json={**body, "payload_override": {"x": 3}})
    assert conflict.value.status_code == 409 and conflict.value.code == "idempotency_key_conflict"
    other = sdk._post(f"/v1/cues/{cue.id}/fire", json={**body, "idempotency_key": "ci-run-457"})
    assert other["id"] != first["id"]
    # the answer is kept for 24 h, and only that long
    key = next(k for k in engine.client.scan_iter(f"{prefix}:*cueapi_fire:{cue.id}:*"))
    assert 86_000 < engine.client.ttl(key) <= 86_400
    # a worker cue's fire is an execution like its scheduled ones: claimable, with the merged payload
    claimable = sdk._get("/v1/executions/claimable")["executions"]
    assert {e["execution_id"]: e["payload"] for e in claimable if e["cue_id"] == cue.id} == {
        first["id"]: {"task": "t", "x": 2}, other["id"]: {"task": "t", "x": 2}}


def test_a_one_time_webhook_cue_made_recurring_fires_on_its_schedule(sdk, server):
    with receiving() as receiver:
        cue = sdk.cues.create("later-then-often", at=datetime.now(timezone.utc) + timedelta(hours=1),
                              callback=receiver.url)
        assert sdk.cues.get(cue.id).status == "active" and not receiver.requests
        assert sdk.cues.update(cue.id, cron="* * * * * *").schedule.type == "recurring"
        wait_for(lambda: receiver.requests, 20, "a fire of the new schedule")
        assert receiver.requests[0].json["name"] == "later-then-often"
