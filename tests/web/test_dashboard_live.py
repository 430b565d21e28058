"""The dashboard's live feed (issue 18): ``GET /dashboard/events`` needs the dashboard's
session, sends the events of the queues (or the job) a page shows, skips ahead when a
busy queue would leave it behind, and ends at SIGTERM; pages name their feed, and a
refresh for an event never gets figures read before it. The browser side is in
test_dashboard_browser.py."""
from __future__ import annotations

import contextlib
import re
import signal
import time
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

import redispool  # noqa: E402
from redispool.dashboard import create_dashboard  # noqa: E402

from support.served import TOKENS, Served, tokens_file  # noqa: E402
from support.sse import END, Stream  # noqa: E402

FEED = "/dashboard/events"


def feed_of(html: str) -> dict[str, list[str]] | None:
    """The query of the page's live feed (body data-events), None without one."""
    found = re.search(r'<body [^>]*data-events="([^"]*)"', html)
    if found is None:
        return None
    url = urlsplit(found.group(1).replace("&amp;", "&"))
    assert url.path == FEED
    return parse_qs(url.query)


# ---------------------------------------------------------------------- in process
def test_the_feed_needs_a_session_and_good_parameters(engine):
    app = TestClient(create_dashboard(engine, tokens={"look-token": "read"}), follow_redirects=False)
    assert app.get(FEED, params={"queue": "q"}).status_code == 401
    app.cookies.set("rp_token", "forged")
    assert app.get(FEED, params={"queue": "q"}).status_code == 401
    app.cookies.set("rp_token", "look-token")
    for params in ({"queue": "no spaces"}, {"job": "1"}, {"queue": ["a", "b"], "job": "1"},
                   {"queue": [f"q{i}" for i in range(51)]}, {"queue": "q", "last_event_id": "yesterday"}):
        assert app.get(FEED, params=params).status_code == 400, params
    assert app.get(FEED, params={"queue": "q"}, headers={"Last-Event-ID": "nope"}).status_code == 400


def test_pages_name_their_feed_from_before_their_figures(engine):
    job_id = engine.enqueue("mail", 1)
    engine.enqueue("mail", 2)
    last = engine.latest_events("mail", 1)[-1].id
    app = TestClient(create_dashboard(engine, fallback_s=25), follow_redirects=False)
    overview = app.get("/").text
    assert 'data-fallback="25"' in overview
    assert list(feed_of(overview)) == ["last_event_id"], "every queue while they fit on a page"
    assert feed_of(app.get("/queues/mail").text) == {"queue": ["mail"], "last_event_id": [last]}
    assert feed_of(app.get(f"/queues/mail/jobs/{job_id}").text) == {
        "queue": ["mail"], "job": [job_id], "last_event_id": [last]}
    assert feed_of(app.get("/queues/empty").text) == {"queue": ["empty"], "last_event_id": ["0-0"]}
    for path in ("/workers", "/cues"):   # time changes these too: they keep the timer
        assert feed_of(app.get(path).text) is None, path
    assert feed_of(app.get("/queues/mail", headers={"X-Live": "1"}).text) is None, "a refresh reads no cursor"
    quiet = redispool.connect(engine.url, prefix=engine.prefix, events_max=0)
    try:
        assert feed_of(TestClient(create_dashboard(quiet)).get("/").text) is None, "no events, no feed"
    finally:
        quiet.close()


def test_a_refresh_for_an_event_takes_no_figures_read_before_it(engine):
    """The overview's reads are shared for cache_s; a page refreshing because of an event
    says which (X-Live-Since) and gets figures read after it."""
    app = TestClient(create_dashboard(engine, cache_s=60))
    engine.enqueue("fresh", 1)

    def done(headers: dict[str, str]) -> int:
        html = app.get("/", headers={"X-Live": "1", **headers}).text
        return int(re.search(r'<div class="n">([\d,]+)</div><div class="l">done</div>', html).group(1))
    assert done({}) == 0
    [job] = engine.claim("fresh", "w")
    engine.complete(job)
    heard = engine.latest_events("fresh", 1)[-1]
    assert heard.type == "completed"
    assert done({}) == 0, "kept for cache_s"
    assert done({"X-Live-Since": heard.id.split("-")[0]}) == 1


# ---------------------------------------------------------------------- a real server
@pytest.fixture(scope="module")
def served(redis_url, tmp_path_factory):
    prefix = f"l{uuid.uuid4().hex[:8]}"
    server = Served(redis_url, prefix, tokens_file=tokens_file(tmp_path_factory.mktemp("live"))).wait_ready()
    engine = redispool.connect(redis_url, prefix=prefix)
    yield server, engine
    engine.close()
    server.stop()


@contextlib.contextmanager
def signed_in(server: Served, role: str = "read") -> Iterator[httpx.Client]:
    """A client with the dashboard's session cookie, as a browser after signing in."""
    with httpx.Client(base_url=server.base, timeout=40) as client:
        assert client.post("/login", data={"token": TOKENS[role]}).status_code == 303
        assert client.cookies.get("rp_token")
        yield client


def test_a_job_feed_sends_that_jobs_events_and_resumes(served):
    server, engine = served
    q = f"q{uuid.uuid4().hex[:6]}"
    job_id = engine.enqueue(q, 1)
    cursor = engine.latest_events(q, 1)[-1].id   # what a job page rendered now puts in its feed
    engine.enqueue(q, 2)   # another job of the queue: not sent
    with signed_in(server) as client:
        stream = Stream(client, [("queue", q), ("job", job_id), ("last_event_id", cursor)], path=FEED)
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert stream.next(comments=True) == {"comment": "connected"}
        [job] = engine.claim(q, "w")
        assert job.id == job_id
        engine.complete(job, "ok")
        frames = stream.events(2)
        stream.close()
        resumed = Stream(client, [("queue", q), ("job", job_id), ("last_event_id", cursor)], path=FEED,
                         headers={"Last-Event-ID": frames[0]["id"]})   # an EventSource reconnecting
        again = resumed.next()
        resumed.close()
    assert [f["data"]["type"] for f in frames] == ["claimed", "completed"]
    assert all(f["data"]["job_id"] == job_id and f["data"]["queue"] == q for f in frames)
    assert all("event" not in f for f in frames), "no event: line, so every frame reaches onmessage"
    assert again == frames[1], "Last-Event-ID wins over the address's cursor"


def test_a_feed_left_behind_by_a_busy_queue_skips_ahead(served):
    server, engine = served
    q = f"q{uuid.uuid4().hex[:6]}"
    with signed_in(server) as client:
        stream = Stream(client, [("queue", q)], path=FEED)
        assert stream.next(comments=True) == {"comment": "connected"}
        engine.enqueue_many(q, range(300))   # one script call: 300 events at once
        frames = stream.events(101)
        after = engine.enqueue(q, "after")
        last = stream.next()
        stream.close()
    assert [f["data"]["type"] for f in frames[:100]] == ["enqueued"] * 100
    assert frames[100]["data"]["type"] == "behind", "the page is told to look instead"
    assert last["data"]["job_id"] == after, "the 200 left behind are not sent"


def test_sigterm_ends_the_feed(redis_url, tmp_path):
    prefix = f"l{uuid.uuid4().hex[:8]}"
    server = Served(redis_url, prefix, tokens_file=tokens_file(tmp_path)).wait_ready()
    engine = redispool.connect(redis_url, prefix=prefix)
    try:
        with signed_in(server) as client:
            stream = Stream(client, [("queue", "q")], path=FEED)
            assert stream.next(comments=True) == {"comment": "connected"}
            engine.enqueue("q", 1)
            assert stream.next()["data"]["type"] == "enqueued"
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            assert stream.next(timeout=15) is END, "the feed ends, no half frame"
            assert server.proc.wait(15) == 0
            assert time.monotonic() - started < 10, "not left to the 20 s graceful timeout"
    finally:
        engine.close()
        server.stop()
