"""The dashboard in process (Starlette's test client): pages, roles, CSRF, escaping."""
from __future__ import annotations

import re

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from redispool.dashboard import create_dashboard  # noqa: E402

XSS = "<script>alert(1)</script>"


@pytest.fixture
def system(engine):
    ids = engine.enqueue_many("emails", [{"to": XSS}] * 3, max_attempts=1, timeout=90)
    jobs = engine.claim("emails", "w", limit=2)
    engine.fail(jobs[0], f"ValueError: {XSS}")
    jobs[1].progress(75, XSS)
    engine.complete(jobs[1], XSS)
    engine.add_cue("emails", "nightly", "0 3 * * *", tz="Europe/Berlin")
    engine.register_worker("w-1", host="box", pid=7, queues=["emails"])
    return engine, ids


def client(engine, **options) -> TestClient:
    return TestClient(create_dashboard(engine, **options), follow_redirects=False)


def csrf_of(c: TestClient) -> str:
    c.get("/")
    return c.cookies.get("rp_csrf")


def test_every_page_renders_and_escapes(system):
    engine, ids = system
    c = client(engine)
    pages = ["/", "/workers", "/queues/emails", "/queues/emails?state=dead", "/queues/emails?state=done",
             f"/queues/emails/jobs/{ids[0]}", f"/queues/emails/jobs/{ids[1]}", "/cues", "/enqueue"]
    for path in pages:
        r = c.get(path)
        assert r.status_code == 200, path
        assert "<script>alert" not in r.text, f"{path} shows a payload unescaped"
    job = c.get(f"/queues/emails/jobs/{ids[0]}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in job and "ValueError" in job
    assert "<dt>timeout</dt><dd>90s</dd>" in job and "<progress" not in job
    done = c.get(f"/queues/emails/jobs/{ids[1]}").text
    assert '<progress max="100" value="75"></progress> 75% &lt;script&gt;' in done
    assert "w-1" in c.get("/workers").text
    assert "Europe/Berlin" in c.get("/cues").text
    assert c.get("/queues/emails/jobs/nope").status_code == 404
    assert c.get("/find?queue=emails&id=2").headers["location"] == "/queues/emails/jobs/2"


def test_admin_actions_need_the_csrf_token(system):
    engine, ids = system
    c = client(engine)
    dead = ids[0]
    assert c.post(f"/queues/emails/jobs/{dead}/retry", data={}).status_code == 403
    assert c.post(f"/queues/emails/jobs/{dead}/retry", data={"csrf": "forged"}).status_code == 403
    assert engine.get("emails", dead).state == "dead"
    r = c.post(f"/queues/emails/jobs/{dead}/retry", data={"csrf": csrf_of(c)})
    assert r.status_code == 303 and engine.get("emails", dead).state == "ready"


def test_actions(system):
    engine, ids = system
    c = client(engine)
    token = csrf_of(c)
    assert c.post("/queues/emails/pause", data={"csrf": token}).status_code == 303
    assert engine.stats("emails")["paused"]
    c.post("/queues/emails/resume", data={"csrf": token})
    assert not engine.stats("emails")["paused"]
    c.post("/queues/emails/bulk", data={"csrf": token, "action": "cancel", "ids": [ids[2]], "state": "ready"})
    assert engine.get("emails", ids[2]).state == "cancelled"
    c.post(f"/queues/emails/jobs/{ids[1]}/delete", data={"csrf": token})
    assert engine.get("emails", ids[1]) is None
    c.post("/cues/emails/nightly/pause", data={"csrf": token})
    assert engine.get_cue("emails", "nightly").paused
    r = c.post("/cues/emails/nightly/run", data={"csrf": token})
    job_id = re.search(r"job\+([^)+%]+)", r.headers["location"]).group(1)
    assert engine.get("emails", job_id).state == "ready"
    c.post("/cues/emails/nightly/remove", data={"csrf": token})
    assert engine.cues() == []
    c.post("/queues/emails/purge", data={"csrf": token, "state": "cancelled"})
    assert engine.stats("emails")["cancelled"] == 0


def test_retry_all_dead(engine):
    engine.enqueue_many("q", range(120), max_attempts=1)
    for job in engine.claim("q", "w", limit=120):
        engine.fail(job, "no")
    c = client(engine)
    assert "Retry all 120 dead" in c.get("/queues/q").text
    c.post("/queues/q/retry-all", data={"csrf": c.cookies.get("rp_csrf")})
    assert engine.stats("q")["dead"] == 0 and engine.stats("q")["ready"] == 120


def test_enqueue_form_shows_bad_json_and_writes_nothing(engine):
    c = client(engine)
    token = csrf_of(c)
    r = c.post("/enqueue", data={"csrf": token, "queue": "forms", "payload": "{nope", "priority": "1"})
    assert r.status_code == 400 and 'id="payload-error"' in r.text and "{nope" in r.text
    r = c.post("/enqueue", data={"csrf": token, "queue": "bad name", "payload": "{}"})
    assert r.status_code == 400 and 'id="queue-error"' in r.text
    r = c.post("/enqueue", data={"csrf": token, "queue": "forms", "payload": "{}", "priority": "5000"})
    assert r.status_code == 400 and 'id="priority-error"' in r.text
    assert engine.queues() == []
    r = c.post("/enqueue", data={"csrf": token, "queue": "forms", "payload": '{"a": [1, 2]}', "priority": "3"})
    assert r.status_code == 303
    [job] = engine.jobs("forms", "ready")
    assert job.payload == {"a": [1, 2]} and job.priority == 3


@pytest.mark.parametrize("payload", ["[" * 101 + "]" * 101, "[" * 100_000 + "]" * 100_000, "NaN", "[1e400]",
                                     '"\\ud800"'])
def test_enqueue_form_refuses_a_payload_the_api_refuses(engine, payload):
    """The form reads its payload as the API reads a body (web.body): nested past 100
    levels (stored, then shown as $undeliverable; 100,000 levels: a RecursionError, 500),
    NaN, a number past a double, a lone surrogate are shown next to the field."""
    c = client(engine)
    r = c.post("/enqueue", data={"csrf": csrf_of(c), "queue": "forms", "payload": payload})
    assert r.status_code == 400 and 'id="payload-error"' in r.text, r.text[:300]
    assert engine.queues() == []


def test_read_role_sees_no_buttons_and_cannot_act(system):
    engine, ids = system
    c = client(engine, tokens={"admin-secret": "admin", "look-secret": "read"})
    assert c.get("/").headers["location"] == "/login"
    assert c.post("/login", data={"token": "wrong"}).headers["location"] == "/login?failed=1"
    r = c.post("/login", data={"token": "look-secret"})
    assert r.status_code == 303
    cookie = r.headers.get_list("set-cookie")[0].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    for path in ["/", f"/queues/emails/jobs/{ids[0]}", "/queues/emails?state=dead", "/cues"]:
        page = c.get(path).text
        assert page.count('method="post"') == 1 and 'action="/logout"' in page, f"{path}: only sign-out"
        assert not re.search(r">(Retry|Cancel|Delete|Pause|Resume|Purge|Run now|Remove)", page), path
    token = c.cookies.get("rp_csrf")
    assert c.post(f"/queues/emails/jobs/{ids[0]}/retry", data={"csrf": token}).status_code == 403
    assert c.post("/enqueue", data={"csrf": token, "queue": "q", "payload": "1"}).status_code == 403
    assert engine.get("emails", ids[0]).state == "dead"
    admin = client(engine, tokens={"admin-secret": "admin"})
    admin.post("/login", data={"token": "admin-secret"})
    assert "Retry" in admin.get(f"/queues/emails/jobs/{ids[0]}").text


def test_queue_page_is_paged(engine):
    engine.enqueue_many("big", range(130))
    c = client(engine)
    first = c.get("/queues/big").text
    assert first.count('name="ids"') == 50 and "older" in first
    third = c.get("/queues/big?page=2").text
    assert third.count('name="ids"') == 30 and "newer" in third
