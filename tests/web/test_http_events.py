"""``GET /v1/events`` over a real ``redispool serve`` process: events as Server-Sent
Events, live, for one queue, several or all, resumed with Last-Event-ID with nothing
skipped or repeated, kept alive by comments, ended cleanly by SIGTERM."""
from __future__ import annotations

import signal
import time

import pytest

from support.sse import END, Stream


def test_one_queue_live(served):
    server, engine = served
    engine.enqueue("q", "before", delay=60)   # before the stream opened: not sent
    with server.client("read") as client:
        stream = Stream(client, [("queue", "q")])
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert stream.next(comments=True) == {"comment": "connected"}
        job_id = engine.enqueue("q", {"n": 1})
        engine.enqueue("other", 1)   # another queue: not sent
        [job] = engine.claim("q", "w")
        engine.complete(job)
        frames = stream.events(3)
        stream.close()
    assert [f["event"] for f in frames] == ["enqueued", "claimed", "completed"]
    assert all(f["data"]["job_id"] == job_id and f["data"]["queue"] == "q" for f in frames)
    assert [f["id"] for f in frames] == [f["data"]["id"] for f in frames], "one queue: the bare event id"
    assert frames[1]["data"]["data"] == {"attempt": 1, "worker_id": "w"}


def test_several_queues_resume_with_nothing_skipped_or_repeated(served):
    server, engine = served
    with server.client("read") as client:
        stream = Stream(client, [("queue", "a"), ("queue", "b")])
        for _ in range(5):   # the same ms in both logs, often: the order breaks ties by queue
            engine.enqueue_many("a", range(20))
            engine.enqueue_many("b", range(20))
        first = stream.events(77)
        stream.close()
        last = first[-1]["id"]
        assert "@" in last, "several queues: the token names the queue"
        resumed = Stream(client, [("queue", "a"), ("queue", "b")], headers={"Last-Event-ID": last})
        rest = resumed.events(200 - 77)
        resumed.close()
    seen = [(f["data"]["queue"], f["data"]["id"]) for f in first + rest]
    logged = [(q, e.id) for q in ("a", "b") for e in engine.events(q, limit=1000)]
    assert len(seen) == len(set(seen)) == 200
    assert set(seen) == set(logged)
    order = [(tuple(map(int, i.split("-"))), q) for q, i in seen]
    assert order == sorted(order), "one total order: event id, then queue"


def test_every_queue_and_a_new_one(served):
    server, engine = served
    with server.client("read") as client:
        stream = Stream(client, [])
        stream.next(comments=True)
        engine.enqueue("first", 1)
        assert stream.next()["data"]["queue"] == "first"
        engine.enqueue("second", 1)   # a queue that did not exist when the stream began
        frame = stream.next(timeout=15)
        stream.close()
    assert frame["data"]["queue"] == "second" and frame["event"] == "enqueued"


def test_bad_input_and_roles(served):
    server, _ = served
    with server.client("read") as client:
        assert client.get("/v1/events", headers={"Last-Event-ID": "yesterday"}).status_code == 400
        # ids Redis refuses: answered 400 before the stream, not a 200 stream that broke at once
        for last in ("18446744073709551616-0", "1-99999999999999999999@q", "\u0661-\u0661"):
            with client.stream("GET", "/v1/events", params={"last_event_id": last}) as r:
                assert r.status_code == 400, last
        assert client.get("/v1/events", params={"queue": "no spaces"}).status_code == 400
    with server.client(None) as client:
        assert client.get("/v1/events").status_code == 401


def test_sigterm_ends_the_stream_cleanly(served):
    server, engine = served
    with server.client("read") as client:
        stream = Stream(client, [("queue", "q")])
        stream.next(comments=True)
        engine.enqueue("q", 1)
        assert stream.next()["event"] == "enqueued"
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert stream.next(timeout=15) is END, "the stream ends, no half frame"
        assert server.proc.wait(15) == 0
        assert time.monotonic() - started < 10


@pytest.mark.slow
def test_a_comment_at_least_every_15_s(served):
    server, _ = served
    with server.client("read") as client:
        stream = Stream(client, [("queue", "quiet")])
        assert stream.next(comments=True) == {"comment": "connected"}
        started = time.monotonic()
        assert stream.next(timeout=16, comments=True) == {"comment": "ping"}
        assert time.monotonic() - started <= 15
        stream.close()
