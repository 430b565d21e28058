"""The dashboard's webhooks pages (issue 18): the list with each webhook's last delivery, a
webhook's latest deliveries, hostile URLs and receivers' answers escaped, removal by an
admin with the CSRF token only."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from redispool.dashboard import create_dashboard  # noqa: E402
from redispool.models import DeliveryInfo  # noqa: E402

XSS = "<script>alert(1)</script>"
HOSTILE_URL = 'https://example.com/"><script>alert(1)</script>'


def client(engine, **options) -> TestClient:
    return TestClient(create_dashboard(engine, cache_s=0, **options), follow_redirects=False)


def attempt(name: str, n: int, **fields) -> DeliveryInfo:
    return DeliveryInfo(**{"id": f"hook:{name}:emails:{n}-0", "webhook": name, "event": "dead", "queue": "emails",
                           "job_id": str(n), "attempt": n + 1, "status": "failed", "code": 500, "error": "HTTP 500",
                           "response": "no", "duration_ms": 12.5, "at": time.time(), **fields})


@pytest.fixture
def hooks(engine):
    engine.add_webhook("ops", HOSTILE_URL, events=["dead", "failed"], queues=["emails"], secret="s3cret",
                       scheme="spooled", max_attempts=7)
    engine.add_webhook("quiet", "http://127.0.0.1:9/q")
    engine.log_delivery(attempt("ops", 0, status="success", code=200, error=None, response="fine"))
    engine.log_delivery(attempt("ops", 1, status="dead", code=None, error=f"refused: {XSS}",
                                response=f"{XSS}\x1b[31m\u202e" + "x" * 2000))
    return engine


def test_the_list_shows_every_webhook_and_its_last_delivery(hooks):
    c = client(hooks)
    assert 'href="/webhooks"' in c.get("/").text, "linked from the navigation"
    page = c.get("/webhooks")
    assert page.status_code == 200
    text = page.text
    assert "<script>alert" not in text and "s3cret" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&quot;&gt;" in text
    assert 'href="https://example.com' not in text, "a receiver's URL is no link"
    row = text[text.index('href="/webhooks/ops"'):text.index('href="/webhooks/quiet"')]
    for shown in ("dead, failed", "emails", ">yes<", "spooled", ">7<", 'class="badge dead"'):
        assert shown in row, shown
    quiet = text[text.index('href="/webhooks/quiet"'):]
    assert "every queue" in quiet and ">no<" in quiet and "never" in quiet
    assert text.count(">Remove</button>") == 2


def test_a_webhook_page_lists_its_deliveries_escaped(hooks):
    c = client(hooks)
    text = c.get("/webhooks/ops").text
    assert "<script>alert" not in text and "s3cret" not in text
    assert text.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 3, "the URL, the error and the response"
    assert "\\x1b[31m\\u202e" in text and "\x1b" not in text and "\u202e" not in text
    assert "x" * 150 in text and "x" * 300 not in text, "the first bytes of the answer only"
    assert 'class="badge success">success 200<' in text and 'class="badge dead">dead<' in text
    assert 'href="/queues/emails/jobs/1"' in text and 'href="/queues/_webhooks/jobs/hook%3Aops%3Aemails%3A1-0"' in text
    assert text.index("refused:") < text.index("fine"), "newest first"
    assert "no delivery yet" in c.get("/webhooks/quiet").text
    assert c.get("/webhooks/nope").status_code == 404
    assert c.get("/webhooks/bad%20name").status_code == 404


def test_an_admin_removes_a_webhook_with_the_csrf_token(hooks):
    c = client(hooks)
    c.get("/webhooks")
    token = c.cookies.get("rp_csrf")
    assert c.post("/webhooks/ops/remove", data={}).status_code == 403
    assert c.post("/webhooks/ops/remove", data={"csrf": "forged"}).status_code == 403
    assert hooks.get_webhook("ops") is not None
    r = c.post("/webhooks/ops/remove", data={"csrf": token})
    assert r.status_code == 303 and r.headers["location"].startswith("/webhooks?msg=webhook+ops+removed")
    assert hooks.get_webhook("ops") is None
    again = c.post("/webhooks/ops/remove", data={"csrf": token}, headers={"referer": "/webhooks"})
    assert again.status_code == 303 and "err=1" in again.headers["location"]
    listing = c.get("/webhooks").text
    assert 'href="/webhooks/ops"' not in listing and 'href="/webhooks/quiet"' in listing


def test_the_read_role_only_looks(hooks):
    c = client(hooks, tokens={"admin-secret": "admin", "look-secret": "read"})
    assert c.get("/webhooks").headers["location"] == "/login"
    c.post("/login", data={"token": "look-secret"})
    for path in ("/webhooks", "/webhooks/ops"):
        page = c.get(path).text
        assert page.count('method="post"') == 1 and ">Remove<" not in page, path
    assert c.post("/webhooks/ops/remove", data={"csrf": c.cookies.get("rp_csrf")}).status_code == 403
    assert hooks.get_webhook("ops") is not None


def test_webhook_cues_show_where_they_post(engine):
    engine.add_cue("emails", "ping", "0 3 * * *", url=HOSTILE_URL, secret="s3cret")
    engine.add_cue("emails", "pull", "0 4 * * *")
    text = client(engine).get("/cues").text
    assert "<script>alert" not in text and "s3cret" not in text
    assert text.count("POSTed to") == 1 and "&lt;script&gt;" in text
