"""Webhooks and webhook cues (issue 18): the definitions, the deliverer's routing and
POSTs against a loopback receiver, retries, dead deliveries, signatures checked by an
independent verifier, two deliverers at once, and a deliverer SIGKILLed and replaced."""
from __future__ import annotations

import hashlib
import hmac
import json
import signal
import threading
import time
import uuid

import pytest

import redispool
from redispool.deliver import Definitions, Deliverer, DeliveryFailed, DeliveryLog, Poster, Router, delivery_job_id
from redispool.keys import DELIVERY_QUEUE
from redispool.models import DeliveryInfo
from redispool.signing import SCHEMES, verify

from support.cli import cli_process, invoke
from support.processes import terminate
from support.receiver import Received, receiving
from support.waiting import running, wait_for


def independent_check(secret: str, r: Received) -> bool:
    """The README's receiver: HMAC-SHA256 of "<timestamp>.<raw body>", hex, after "sha256="."""
    stamp = r.headers["X-Redispool-Timestamp"]
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + r.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(r.headers["X-Redispool-Signature"], "sha256=" + mac)


@pytest.fixture
def fast(make_engine):
    """An engine whose retries come quickly (backoff 50 ms), on every backend."""
    return make_engine(backoff_base=0.05, backoff_cap=0.2)


@pytest.fixture
def on_redis(redis_url):
    """The same on a real redis-server alone: the deliverer's paths that do not depend
    on the backend (the routing does: that is tested on all three)."""
    engine = redispool.connect(redis_url, prefix=f"wh{uuid.uuid4().hex[:10]}", backoff_base=0.05, backoff_cap=0.2)
    yield engine
    engine.close()


def routed_all(engine, queue):
    """True once the router's group has read and settled every event of the queue's log."""
    [group] = engine.client.xinfo_groups(engine.keys(queue).events)
    return group["lag"] == 0 and group["pending"] == 0


def finish(engine, queue, n=1, fail=False):
    for _ in range(n):
        [job] = engine.claim(queue, "w", block=5)
        if fail:
            engine.fail(job, "boom", retry=False)
        else:
            engine.complete(job, {"ok": True})


# ---------------------------------------------------------------------- definitions
def test_webhooks_are_defined_listed_and_removed(engine):
    info = engine.add_webhook("ops", "https://example.com/hook", events=["dead"], queues=["b", "a"], secret="s")
    assert (info.name, info.events, info.queues, info.signed, info.scheme) == ("ops", ["dead"], ["a", "b"], True,
                                                                               "redispool")
    engine.add_webhook("all", "http://127.0.0.1:9/x")
    assert [w.name for w in engine.webhooks()] == ["all", "ops"]
    assert engine.webhooks()[0].events == ["completed", "dead"] and engine.webhooks()[0].queues is None
    assert "secret" not in vars(engine.get_webhook("ops"))
    engine.remove_webhook("ops")
    assert engine.get_webhook("ops") is None
    with pytest.raises(redispool.WebhookNotFound):
        engine.remove_webhook("ops")
    with pytest.raises(redispool.WebhookNotFound):
        engine.deliveries("ops")


def test_replacing_a_webhook_keeps_where_it_delivers_from(engine):
    first = engine.add_webhook("h", "http://127.0.0.1:9/a")
    time.sleep(0.01)
    again = engine.add_webhook("h", "http://127.0.0.1:9/b", events=["failed"])
    assert again.created_at == first.created_at and again.url.endswith("/b")


@pytest.mark.parametrize("kwargs", [
    {"url": "ftp://example.com/x"}, {"url": "/relative"}, {"url": "http://"}, {"url": "http://a b/"},
    {"url": "http://example.com:99999/"}, {"events": ["nope"]}, {"events": []}, {"queues": ["bad name"]},
    {"scheme": "other"}, {"max_attempts": 0}, {"secret": 5}, {"name": "has space"},
])
def test_bad_webhook_definitions_are_refused_and_write_nothing(engine, kwargs):
    args = {"name": "h", "url": "http://example.com/x", **kwargs}
    with pytest.raises(redispool.RedispoolError) as caught:
        engine.add_webhook(args.pop("name"), args.pop("url"), **args)
    assert isinstance(caught.value, ValueError)
    assert engine.webhooks() == []


def test_webhook_cues_are_listed_with_their_queue_and_replace_a_pull_cue(engine):
    engine.add_cue("q", "tick", "* * * * *")
    cue = engine.add_cue("q", "tick", "* * * * *", url="http://127.0.0.1:9/c", secret="s")
    assert cue.url == "http://127.0.0.1:9/c" and cue.queue == "q"
    assert [(c.queue, c.name, c.url) for c in engine.cues("q")] == [("q", "tick", "http://127.0.0.1:9/c")]
    assert [(c.queue, c.name) for c in engine.cues()] == [("q", "tick")]
    engine.pause_cue("q", "tick")
    assert engine.get_cue("q", "tick").paused
    engine.add_cue("q", "tick", "* * * * *")          # back to a pull cue: the webhook cue goes
    assert engine.get_cue("q", "tick").url is None and len(engine.cues()) == 1
    with pytest.raises(redispool.InvalidOption):
        engine.add_cue("q", "x", "* * * * *", secret="s")          # a secret without a url
    with pytest.raises(redispool.InvalidOption):
        engine.add_cue(DELIVERY_QUEUE, "x", "* * * * *")
    with pytest.raises(redispool.InvalidOption):
        engine.add_cue("q", "x", "* * * * *", url="mailto:a@b")


# ---------------------------------------------------------------------- delivering
def test_matching_events_are_posted_signed_once_each(fast):
    with receiving() as receiver:
        fast.add_webhook("done", receiver.url, events=["completed"], queues=["a"], secret="k3y")
        fast.add_webhook("dead", receiver.url, events=["dead"])
        fast.enqueue_many("a", [1, 2, 3])
        fast.enqueue("b", "x")
        finish(fast, "a", 3)
        finish(fast, "b", fail=True)
        with running(Deliverer(fast, concurrency=4)):
            wait_for(lambda: len(receiver.requests) >= 4, what="4 deliveries")
            time.sleep(0.3)   # nothing more arrives
        bodies = receiver.bodies()
    assert len(bodies) == 4, bodies
    assert sorted(b["event"] for b in bodies) == ["completed"] * 3 + ["dead"]
    for r in receiver.requests:
        body = r.json
        assert set(body) == {"id", "event", "queue", "job_id", "at", "data"}
        assert r.headers["X-Redispool-Event"] == body["event"] and r.headers["X-Redispool-Delivery"] == body["id"]
        if body["event"] == "completed":
            assert body["queue"] == "a" and independent_check("k3y", r)
            assert verify("k3y", r.headers, r.body) and not verify("other", r.headers, r.body)
        else:
            assert body["queue"] == "b" and "X-Redispool-Signature" not in r.headers
            assert body["data"]["error"] == "boom"
    assert {d.status for d in fast.deliveries("done")} == {"success"} and len(fast.deliveries("done")) == 3
    assert fast.stats(DELIVERY_QUEUE)["done"] == 4


def test_a_webhook_gets_only_events_after_it_was_added(on_redis):
    """From the millisecond it was added (the README's rule): the earlier event's own
    millisecond is let pass first, else it would count as written then."""
    on_redis.enqueue("a", 1)
    finish(on_redis, "a")
    [done] = [e for e in on_redis.latest_events("a", 5) if e.type == "completed"]
    def redis_ms() -> int:
        seconds, micros = on_redis.scripts.command("TIME")
        return int(seconds) * 1000 + int(micros) // 1000

    wait_for(lambda: redis_ms() > int(done.id.split("-")[0]), what="the next millisecond")
    with receiving() as receiver:
        on_redis.add_webhook("h", receiver.url, events=["completed"])
        on_redis.enqueue("a", 2)
        finish(on_redis, "a")
        with running(Deliverer(on_redis)):
            wait_for(lambda: receiver.requests, what="a delivery")
            time.sleep(0.3)
    assert len(receiver.requests) == 1


def test_failed_answers_are_retried_then_dead_and_logged(on_redis):
    calls = {"n": 0}

    def answer(r):
        calls["n"] += 1
        return (503, b"x" * 5000, {}) if calls["n"] <= 2 else (200, b"fine", {})

    with receiving(answer) as receiver:
        on_redis.add_webhook("flaky", receiver.url, events=["completed"], max_attempts=4)
        on_redis.add_webhook("down", receiver.url.replace("/hook", "/down"), events=["completed"], max_attempts=2)
        receiver.answer = lambda r: (500, b"no", {}) if r.path == "/down" else answer(r)
        on_redis.enqueue("a", 1)
        finish(on_redis, "a")
        with running(Deliverer(on_redis)):
            wait_for(lambda: [on_redis.stats(DELIVERY_QUEUE)[s] for s in ("done", "dead")] == [1, 1],
                     what="one delivered, one dead")
    flaky = on_redis.deliveries("flaky")
    assert [d.status for d in flaky] == ["success", "failed", "failed"]
    assert [d.attempt for d in flaky] == [3, 2, 1] and flaky[1].code == 503
    assert len(flaky[1].response) == 1024                # a receiver's answer is kept to 1 KiB
    down = on_redis.deliveries("down")
    assert [d.status for d in down] == ["dead", "failed"]
    [dead] = on_redis.jobs(DELIVERY_QUEUE, "dead")
    assert "HTTP 500" in dead.error and dead.attempts == 2
    assert on_redis.replay_dead(DELIVERY_QUEUE) == 1          # replayable like any job


def test_redirects_are_not_followed_and_slow_receivers_time_out(on_redis):
    with receiving(lambda r: (302, b"", {"Location": "http://127.0.0.1:9/elsewhere"})) as receiver:
        answer = Poster(timeout=2).post(receiver.url, b"{}", {"Content-Type": "application/json"})
        assert answer.code == 302 and not answer.ok and len(receiver.requests) == 1
    gate = threading.Event()
    with receiving(lambda r: (gate.wait(5), (200, b"late", {}))[1]) as receiver:
        answer = Poster(timeout=0.3).post(receiver.url, b"{}", {})
        gate.set()
    assert answer.code is None and "no answer within 0.3 s" in answer.error


def test_webhook_cue_fires_are_posted_and_settle_their_jobs(on_redis):
    answers = iter([(500, b"not yet", {}), (200, b"thanks", {})])
    with receiving(lambda r: next(answers)) as receiver:
        on_redis.add_cue("reports", "nightly", "0 3 * * *", payload={"kind": "daily"}, url=receiver.url,
                     secret="cue-secret", max_attempts=3)
        job_id = on_redis.run_cue("reports", "nightly")
        with running(Deliverer(on_redis)):
            wait_for(lambda: on_redis.get(DELIVERY_QUEUE, job_id).state == "done", what="the fire's job done")
    first, second = receiver.requests
    body = second.json
    assert body["event"] == "cue" and body["queue"] == "reports" and body["job_id"] == job_id
    assert body["data"]["payload"] == {"kind": "daily"} and body["data"]["cue"] == "nightly"
    assert independent_check("cue-secret", second) and first.json["data"]["attempt"] == 1
    info = on_redis.get(DELIVERY_QUEUE, job_id)
    assert info.attempts == 2 and info.result["response"] == "thanks"
    assert on_redis.stats("reports")["ready"] == 0          # the queue's own workers never see it


def test_a_due_webhook_cue_fires_once_through_the_scheduler(on_redis):
    with receiving() as receiver:
        on_redis.add_cue("r", "every-second", "* * * * * *", url=receiver.url)
        wait_for(lambda: on_redis.fire_due_cues(DELIVERY_QUEUE) > 0, what="a fire")
        with running(Deliverer(on_redis)):
            wait_for(lambda: receiver.requests, what="the fire posted")
    assert receiver.requests[0].json["data"]["cue"] == "every-second"


def test_the_cueapi_scheme_is_a_table_entry(on_redis):
    with receiving() as receiver:
        on_redis.add_cue("r", "c", "0 3 * * *", payload={"a": 1}, url=receiver.url, secret="whsec_x", scheme="cueapi")
        on_redis.run_cue("r", "c")
        with running(Deliverer(on_redis)):
            wait_for(lambda: receiver.requests, what="the fire posted")
    r = receiver.requests[0]
    assert r.body == json.dumps(json.loads(r.body), sort_keys=True).encode()   # what the cron service signs
    assert verify("whsec_x", r.headers, r.body, scheme_name="cueapi")
    assert r.headers["X-CueAPI-Signature"].startswith("v1=") and r.json["payload"] == {"a": 1}
    assert set(SCHEMES) >= {"redispool", "spooled", "cueapi"}


def test_a_webhook_cue_sends_its_headers_with_its_method_and_names_itself(on_redis):
    with receiving() as receiver:
        on_redis.add_cue("r", "c", "0 3 * * *", payload={"a": 1}, url=receiver.url, secret="whsec_x", scheme="cueapi",
                         label="Nightly report", headers={"Authorization": "Bearer rcv", "X-Team": "ops"},
                         method="put")
        job_id = on_redis.run_cue("r", "c")
        with running(Deliverer(on_redis)):
            wait_for(lambda: receiver.requests, what="the fire sent")
    r = receiver.requests[0]
    assert r.method == "PUT" and r.headers["Authorization"] == "Bearer rcv" and r.headers["X-Team"] == "ops"
    assert r.json["name"] == "Nightly report" and r.json["cue_id"] == "c" and r.json["execution_id"] == job_id
    assert r.headers["X-CueAPI-Cue-Id"] == "c" and r.headers["X-CueAPI-Scheduled-For"] == r.json["scheduled_for"]
    assert verify("whsec_x", r.headers, r.body, scheme_name="cueapi")


@pytest.mark.parametrize("kwargs", [
    {"method": "DELETE"}, {"headers": {"Content-Type": "text/plain"}}, {"headers": {"Bad Name": "v"}},
    {"headers": {"X-A": "line\nbreak"}}, {"headers": {f"X-{i}": "v" for i in range(21)}}, {"label": ""},
])
def test_bad_webhook_cue_options_are_refused(engine, kwargs):
    with pytest.raises(redispool.InvalidOption):
        engine.add_cue("q", "c", "* * * * *", url="http://127.0.0.1:9/c", **kwargs)
    with pytest.raises(redispool.InvalidOption):   # and none of them without a url
        engine.add_cue("q", "c", "* * * * *", **{k: v for k, v in kwargs.items() if k != "method"} or {"method": "PUT"})
    assert engine.cues("q") == []


def test_two_deliverers_deliver_each_event_once(fast, make_engine):
    other = make_engine(backoff_base=0.05, backoff_cap=0.2)   # every backend: the groups split the events
    with receiving() as receiver:
        fast.add_webhook("h", receiver.url, events=["enqueued"])
        with running(Deliverer(fast, concurrency=4)), running(Deliverer(other, concurrency=4)):
            ids = fast.enqueue_many("q", list(range(200)))
            wait_for(lambda: len(receiver.requests) >= 200, timeout=30, what="200 deliveries")
            time.sleep(0.5)
    delivered = [b["job_id"] for b in receiver.bodies()]
    assert sorted(delivered) == sorted(ids)


def test_events_a_dead_router_read_are_reclaimed(on_redis, monkeypatch):
    """A router that read events and died before acknowledging them: another claims them."""
    monkeypatch.setattr("redispool.deliver.RECLAIM_IDLE_S", 0.2)
    with receiving() as receiver:
        on_redis.add_webhook("h", receiver.url, events=["enqueued"])
        on_redis.enqueue("q", 1)
        dying = Router(on_redis)
        dying._ensure_groups(["q"], 0)
        assert sum(len(v) for v in dying._read(["q"], 0.5).values()) == 1   # read, never acknowledged
        time.sleep(0.3)
        with running(Deliverer(on_redis)):
            wait_for(lambda: receiver.requests, what="the reclaimed event delivered")
    assert len(receiver.requests) == 1


def test_cached_definitions_see_a_removal_within_their_ttl_and_a_new_webhook_at_once(on_redis):
    """The POSTs read definitions at most every ttl s (DEFINITIONS_TTL_S): a removed
    webhook may be POSTed to until then, never after; a name not held is read at once."""
    reads, now = [], [0.0]
    read = on_redis.webhook_definitions
    on_redis.webhook_definitions = lambda: (reads.append(1), read())[1]
    definitions = Definitions(on_redis, ttl=1.0, clock=lambda: now[0])
    on_redis.add_webhook("h", "http://127.0.0.1:9/h")
    assert definitions.get("h")["url"] == "http://127.0.0.1:9/h" and len(reads) == 1
    on_redis.remove_webhook("h")
    now[0] = 0.9
    assert definitions.get("h") is not None and len(reads) == 1     # within the ttl: the cached one
    on_redis.add_webhook("new", "http://127.0.0.1:9/new")
    assert definitions.get("new") is not None and len(reads) == 2   # unknown: read at once
    now[0] = 2.0
    assert definitions.get("h") is None and len(reads) == 3         # the ttl ran out: removed


def test_a_removed_webhooks_waiting_deliveries_are_dropped(on_redis):
    with receiving() as receiver:
        on_redis.add_webhook("h", receiver.url, events=["enqueued"])
        job_id = on_redis.enqueue("q", 1)
        router = Router(on_redis)
        wait_for(lambda: router.step(block=0.1) or on_redis.stats(DELIVERY_QUEUE)["ready"], what="the event routed")
        on_redis.remove_webhook("h")
        with running(Deliverer(on_redis)):
            wait_for(lambda: on_redis.stats(DELIVERY_QUEUE)["done"] == 1, what="the delivery settled")
    [done] = on_redis.jobs(DELIVERY_QUEUE, "done")
    assert done.result == {"skipped": "the webhook 'h' was removed"} and job_id in done.id
    assert receiver.requests == []


def test_a_webhook_added_while_the_router_waits_gets_the_events_after_it(on_redis):
    on_redis.add_webhook("a", "http://127.0.0.1:9/a", events=["enqueued"])
    on_redis.enqueue("q", 0)
    router = Router(on_redis)
    wait_for(lambda: router.step(block=0.1), what="the first event routed")
    waiting = router._read

    def read(queues, block):   # the router holds its definitions and waits for events: a webhook comes
        on_redis.add_webhook("b", "http://127.0.0.1:9/b", events=["enqueued"])
        on_redis.enqueue("q", 1)
        return waiting(queues, block)

    router._read = read
    assert router.step(block=1) == 2
    event = on_redis.events("q")[-1]
    assert on_redis.get(DELIVERY_QUEUE, delivery_job_id("b", event)) is not None


def test_delivery_log_rows_written_together_share_one_round_trip(on_redis):
    on_redis.add_webhook("h", "http://127.0.0.1:9/h")
    writes, gate, entered = [], threading.Event(), threading.Event()
    write = on_redis.log_deliveries

    def log_deliveries(records):
        writes.append([r.attempt for r in records])
        if len(writes) == 1:       # the first write waits while the others queue up
            entered.set()
            gate.wait(10)
        write(records)

    on_redis.log_deliveries = log_deliveries
    log = DeliveryLog(on_redis)
    row = lambda n: DeliveryInfo(id=f"d{n}", webhook="h", event="completed", queue="q", job_id=str(n),  # noqa: E731
                                 attempt=n, status="success", code=200, error=None, response="", duration_ms=1.0,
                                 at=time.time())
    first = threading.Thread(target=log.write, args=(row(1),))
    first.start()
    entered.wait(10)
    others = [threading.Thread(target=log.write, args=(row(n),)) for n in (2, 3, 4)]
    for t in others:
        t.start()
    wait_for(lambda: len(log._waiting) == 3, what="three rows waiting")
    gate.set()
    for t in [first, *others]:
        t.join(10)
    assert writes[0] == [1] and sorted(writes[1]) == [2, 3, 4] and len(writes) == 2
    assert sorted(d.attempt for d in on_redis.deliveries("h")) == [1, 2, 3, 4]
    on_redis.log_deliveries = lambda records: 1 / 0
    with pytest.raises(DeliveryFailed, match="the delivery log was not written: ZeroDivisionError"):
        log.write(row(5))


# ---------------------------------------------------------------------- processes
@pytest.mark.slow
def test_a_deliverer_killed_mid_stream_and_replaced_loses_nothing(redis_url, tmp_path):
    """SIGKILL a deliverer process while events keep coming; a new one delivers every
    event (at least once: a delivery in flight at the kill may come twice). The killed
    one's leased deliveries come back through the sweeper once their lease (3x the
    receiver timeout) runs out; the events it read but had not routed, through the group."""
    prefix = f"wh{time.monotonic_ns()}"
    engine = redispool.connect(redis_url, prefix=prefix, backoff_base=0.05, backoff_cap=0.2)
    gate = threading.Event()
    with receiving(lambda r: (gate.wait(0.002), (200, b"ok", {}))[1]) as receiver:
        engine.add_webhook("h", receiver.url, events=["enqueued"])
        args = ["--url", redis_url, "--prefix", prefix, "deliver", "--concurrency", "8", "--timeout", "1"]
        logs = [open(tmp_path / f"deliver{i}.log", "w") for i in range(3)]  # noqa: SIM115 - a full pipe would stall them
        sweeper = cli_process("--url", redis_url, "--prefix", prefix, "sweeper", "--interval", "0.2", stderr=logs[2])
        first = cli_process(*args, stderr=logs[0])
        ids = engine.enqueue_many("q", list(range(300)))
        wait_for(lambda: len(receiver.requests) >= 50, timeout=30, what="deliveries under way")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        ids += engine.enqueue_many("q", list(range(300)))
        second = cli_process(*args, stderr=logs[1])
        try:
            wait_for(lambda: {b["job_id"] for b in receiver.bodies()} >= set(ids), timeout=90,
                     what="every event delivered")
        finally:
            assert terminate(second) == 0, (tmp_path / "deliver1.log").read_text()[-3000:]
            assert terminate(sweeper) == 0
    engine.close()


def test_a_post_cut_off_before_its_body_is_not_a_request():
    """What a deliverer SIGKILLed between a POST's headers and its body leaves the receiver
    (http.client sends them apart): no request. The test above once failed decoding the
    empty body the receiver recorded for it."""
    import socket
    with receiving() as receiver:
        port = int(receiver.url.split(":")[2].split("/")[0])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{\"cut")
        with socket.create_connection(("127.0.0.1", port)) as sock:   # a whole one after it
            sock.sendall(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
    assert [r.body for r in receiver.requests] == [b"{}"]


def test_cli_webhook_commands(redis_url):
    prefix = f"cw{time.monotonic_ns()}"
    out = invoke(redis_url, prefix, "webhook", "add", "h", "https://example.com/x", "--event", "dead",
                 "--queue", "a", "--secret", "s").output
    assert "webhook h posts dead of a to https://example.com/x (signed)" in out
    listed = json.loads(invoke(redis_url, prefix, "webhook", "list", "--json").output)
    assert listed[0]["name"] == "h" and listed[0]["signed"] is True and "secret" not in listed[0]
    assert json.loads(invoke(redis_url, prefix, "webhook", "deliveries", "h", "--json").output) == []
    out = invoke(redis_url, prefix, "webhook", "add", "off", "https://example.com/y", "--disabled",
                 "--disable-after", "20").output
    assert out.strip().endswith("(disabled)")
    [off] = [w for w in json.loads(invoke(redis_url, prefix, "webhook", "list", "--json").output) if w["name"] == "off"]
    assert (off["enabled"], off["disable_after"], off["failures"]) == (False, 20, 0)
    assert "failures" in invoke(redis_url, prefix, "webhook", "list").output
    invoke(redis_url, prefix, "webhook", "add", "x", "ftp://nope", code=2)
    invoke(redis_url, prefix, "webhook", "rm", "h")
    invoke(redis_url, prefix, "webhook", "rm", "h", code=2)
    out = invoke(redis_url, prefix, "cue", "add", "q", "c", "0 3 * * *", "--url", "https://example.com/c").output
    assert "posted to https://example.com/c" in out


def readme_receiver():
    """The README's ``verified`` function, as written there."""
    from support import ROOT
    text = (ROOT / "README.md").read_text()
    start = text.index("import hashlib, hmac, time")
    code = text[start:text.index("```", start)]
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    return scope["verified"]


def test_the_readme_receiver_verifies_a_real_delivery(on_redis):
    verified = readme_receiver()
    with receiving() as receiver:
        on_redis.add_webhook("h", receiver.url, events=["enqueued"], secret="whsec_readme")
        on_redis.enqueue("q", {"n": 1})
        with running(Deliverer(on_redis)):
            wait_for(lambda: receiver.requests, what="a delivery")
    r = receiver.requests[0]
    assert verified("whsec_readme", r.headers, r.body)
    assert not verified("whsec_other", r.headers, r.body)
    assert not verified("whsec_readme", r.headers, r.body + b" ")
    old = dict(r.headers, **{"X-Redispool-Timestamp": str(int(time.time()) - 3600)})
    assert not verified("whsec_readme", old, r.body)


@pytest.mark.parametrize("backend", ["redis", "cluster"])
def test_a_log_that_lost_its_group_does_not_stall_the_others(backend, request):
    """A queue's log deleted under the router (the queue removed, Redis data lost): the
    router makes the groups again and every other queue's events still go out."""
    url = request.getfixturevalue("redis_url" if backend == "redis" else "cluster_url")
    engine = redispool.connect(url, prefix=f"ng{uuid.uuid4().hex[:8]}", backoff_base=0.05, backoff_cap=0.2)
    with receiving() as receiver:
        engine.add_webhook("h", receiver.url, events=["enqueued"])
        engine.enqueue("a", 1)
        engine.enqueue("b", 1)
        with running(Deliverer(engine)):
            wait_for(lambda: len(receiver.requests) == 2, what="both delivered")
            engine.scripts.command("DEL", engine.keys("a").events)
            engine.enqueue("b", 2)
            engine.enqueue("a", 2)
            wait_for(lambda: len(receiver.requests) == 4, what="both queues delivered again")
    engine.close()


def test_falling_behind_the_log_is_logged_once_and_only_when_events_were_lost(redis_url, caplog):
    engine = redispool.connect(redis_url, prefix=f"fb{uuid.uuid4().hex[:8]}", events_max=5)
    engine.add_webhook("h", "http://127.0.0.1:9/x", events=["enqueued"])
    router = Router(engine)
    engine.enqueue("q", 0)
    router.step(block=0.1)          # the group exists and has read everything: nothing lost
    engine.scripts.command("XTRIM", engine.keys("q").events, "MAXLEN", 0)   # trimmed after being read
    router._behind("q", engine.keys("q").events)
    assert "fell behind" not in caplog.text
    engine.enqueue_many("q", list(range(300)))   # trimmed to ~5 before the router reads them
    router._behind("q", engine.keys("q").events)
    router._behind("q", engine.keys("q").events)
    assert caplog.text.count("fell behind queue=q") == 1
    engine.close()


def test_a_webhook_disables_itself_after_consecutive_failed_deliveries(on_redis):
    up = {"ok": True}
    with receiving(lambda r: (200, b"ok", {}) if up["ok"] else (500, b"down", {})) as receiver:
        on_redis.add_webhook("h", receiver.url, events=["enqueued"], max_attempts=1, disable_after=2)
        assert on_redis.get_webhook("h").disable_after == 2 and on_redis.get_webhook("h").enabled
        with running(Deliverer(on_redis)):
            on_redis.enqueue("a", 1)
            wait_for(lambda: on_redis.stats(DELIVERY_QUEUE)["done"] == 1, what="the first delivered")
            up["ok"] = False
            on_redis.enqueue("a", 2)
            wait_for(lambda: on_redis.get_webhook("h").failures == 1, what="one failed delivery counted")
            assert on_redis.get_webhook("h").enabled
            up["ok"] = True       # a success resets the count
            on_redis.enqueue("a", 3)
            wait_for(lambda: on_redis.stats(DELIVERY_QUEUE)["done"] == 2, what="the third delivered")
            assert on_redis.get_webhook("h").failures == 0
            up["ok"] = False
            for n in (4, 5):
                on_redis.enqueue("a", n)
                wait_for(lambda n=n: on_redis.stats(DELIVERY_QUEUE)["dead"] == n - 2, what=f"delivery {n} dead")
            info = on_redis.get_webhook("h")
            assert (info.enabled, info.failures) == (False, 2) and info.auto_disabled_at is not None
            up["ok"] = True
            on_redis.enqueue("a", 6)                 # not routed while disabled ...
            wait_for(lambda: routed_all(on_redis, "a"), what="the router past job 6")   # ... before enabling
            seen = len(receiver.requests)
            on_redis.add_webhook("h", receiver.url, events=["enqueued"], max_attempts=1, disable_after=2)
            info = on_redis.get_webhook("h")
            assert (info.enabled, info.failures, info.auto_disabled_at) == (True, 0, None)
            on_redis.enqueue("a", 7)
            wait_for(lambda: any(r.json["data"].get("state") and r.json["job_id"] for r in receiver.requests[seen:]),
                     what="delivered again once enabled")
    payloads = [on_redis.get("a", r.json["job_id"]).payload for r in receiver.requests]
    assert 6 not in payloads and payloads[-1] == 7


def test_a_disabled_webhook_drops_its_waiting_deliveries(on_redis):
    with receiving() as receiver:
        on_redis.add_webhook("h", receiver.url, events=["enqueued"])
        on_redis.enqueue("a", 1)
        Router(on_redis).step(block=0.1)               # routed while enabled ...
        on_redis.add_webhook("h", receiver.url, events=["enqueued"], enabled=False)   # ... then disabled
        assert not on_redis.get_webhook("h").enabled
        with running(Deliverer(on_redis)):
            wait_for(lambda: on_redis.stats(DELIVERY_QUEUE)["done"] == 1, what="the delivery settled")
    assert receiver.requests == []
    [done] = on_redis.jobs(DELIVERY_QUEUE, "done")
    assert "disabled" in done.result["skipped"]
