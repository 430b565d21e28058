"""`redispool serve` against web pages and careless set-ups: other origins and rebound
names in the no-token mode (guard.py), JSON-only bodies, the tokens file's rules,
non-ASCII credentials, /metrics behind a token, what a 503 tells, Secure cookies.
Everything on a real redis-server."""
from __future__ import annotations

import http.client
import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

import redispool  # noqa: E402
from conftest import RedisServer, free_port  # noqa: E402
from http_helpers import ROOT, TOKENS, Served, tokens_file  # noqa: E402
from redispool.http import create_app, load_tokens, parse_tokens  # noqa: E402
from redispool.http.auth import BadTokensFile  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
BY_TOKEN = {token: role for role, token in TOKENS.items()}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def engine(redis_url):
    e = redispool.connect(redis_url, prefix=f"s{uuid.uuid4().hex[:10]}")
    yield e
    e.close()


def local(engine, port: int = 8080, **options) -> TestClient:
    """A no-token app as a client on the machine reaches it on 127.0.0.1:``port``."""
    return TestClient(create_app(engine, **options), base_url=f"http://127.0.0.1:{port}", follow_redirects=False)


def raw(port: int, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    """One request with exactly these headers (Host included) to 127.0.0.1:``port``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------- §3 no-token mode
def test_api_bodies_must_be_declared_json(engine):
    """A body of another type is refused (415) and writes nothing, with or without tokens:
    text/plain and form types are what a web page may send cross-origin without asking."""
    for app in (local(engine), TestClient(create_app(engine, tokens=BY_TOKEN),
                                          headers={"Authorization": f"Bearer {TOKENS['admin']}"})):
        body = json.dumps({"payload": {"cmd": "rm -rf /"}, "priority": 1000})
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                             "application/xml", None):
            headers = {"Content-Type": content_type} if content_type else {}
            r = app.post("/v1/queues/attacker/jobs", content=body, headers=headers)
            assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type", (content_type, r.text)
        r = app.post("/v1/queues/victim/claim", content=json.dumps({"worker_id": "evil"}),
                     headers={"Content-Type": "text/plain;charset=UTF-8"})
        assert r.status_code == 415
        assert app.post("/v1/queues/ok/jobs", content=body, headers={"Content-Type": "application/json; charset=utf-8"}
                        ).status_code == 201
        assert app.post("/v1/queues/ok/pause").status_code == 200  # no body: nothing to declare
    assert engine.queues() == ["ok"]


def test_no_token_mode_answers_only_to_its_own_host(engine):
    """DNS rebinding: a page on a name the attacker points at 127.0.0.1 reaches the server
    with that name in Host. Without tokens only localhost/IP addresses on the served port
    pass (421 otherwise); /healthz stays open; --allow-host adds names."""
    engine.enqueue("victim", {"secret": 1})
    app = local(engine, 8080)
    for host in ("evil.attacker.example:8080", "evil.attacker.example", "127.0.0.1:9999", "localhost:9999",
                 "localhost.attacker.example:8080", "user@127.0.0.1:8080", "127.0.0.1:8080/x"):
        for method, path in (("GET", "/v1/queues"), ("GET", "/v1/queues/victim/jobs"),
                             ("DELETE", "/v1/queues/victim/jobs?state=ready"), ("GET", "/metrics"),
                             ("GET", "/compat/spooled/api/v1/jobs/stats"), ("GET", "/compat/cueapi/v1/cues"),
                             ("GET", "/"), ("GET", "/queues/victim")):
            r = app.request(method, path, headers={"Host": host})
            assert r.status_code == 421, (host, method, path, r.status_code)
            assert "secret" not in r.text
    assert engine.stats("victim")["ready"] == 1
    for host in ("127.0.0.1:8080", "localhost:8080", "LOCALHOST:8080", "[::1]:8080", "10.1.2.3:8080"):
        assert app.get("/v1/queues", headers={"Host": host}).status_code == 200, host
    assert app.get("/healthz", headers={"Host": "evil.attacker.example"}).status_code == 200
    named = local(engine, 8080, allow_hosts=["queues.internal"])
    assert named.get("/v1/queues", headers={"Host": "queues.internal:8080"}).status_code == 200
    assert named.get("/v1/queues", headers={"Host": "other.internal:8080"}).status_code == 421
    # with tokens the Host is left alone (a load balancer's name), the token does the work
    tokens = TestClient(create_app(engine, tokens=BY_TOKEN), headers={"Authorization": f"Bearer {TOKENS['read']}"})
    assert tokens.get("/v1/queues", headers={"Host": "queues.example.com"}).status_code == 200


def test_no_token_mode_refuses_other_origins(engine):
    """A request carrying Origin (a browser's cross-origin request, every browser POST)
    must come from the server's own origin (403 otherwise); the dashboard still works."""
    app = local(engine, 8080)
    for origin in ("http://localhost:19999", "http://127.0.0.1:9999", "https://127.0.0.1:8080", "null",
                   "http://evil.example"):
        for method, path in (("POST", "/v1/queues/victim/pause"), ("POST", "/compat/spooled/api/v1/jobs/claim"),
                             ("POST", "/queues/victim/pause"), ("GET", "/v1/queues")):
            r = app.request(method, path, headers={"Origin": origin})
            assert r.status_code == 403, (origin, method, path, r.status_code)
    assert not engine.stats("victim")["paused"]
    assert app.post("/v1/queues/victim/pause", headers={"Origin": "http://127.0.0.1:8080"}).status_code == 200
    assert app.post("/v1/queues/victim/resume", headers={"Origin": "http://localhost:8080", "Host": "localhost:8080"}
                    ).status_code == 200
    # the dashboard's own form posts (same origin, with its CSRF token) go through
    page = app.get("/queues/victim")
    csrf = page.cookies.get("rp_csrf") or app.cookies.get("rp_csrf")
    r = app.post("/queues/victim/pause", data={"csrf": csrf}, headers={"Origin": "http://127.0.0.1:8080"})
    assert r.status_code == 303 and engine.stats("victim")["paused"]


def test_compat_routes_are_guarded_without_tokens(engine):
    app = local(engine, 8080)
    body = json.dumps({"queue_name": "attacker", "payload": 1})
    assert app.post("/compat/spooled/api/v1/jobs", content=body, headers={"Content-Type": "text/plain"}
                    ).status_code == 415
    cue = json.dumps({"name": "evil", "schedule": {"cron": "* * * * *"}, "transport": "worker"})
    assert app.post("/compat/cueapi/v1/cues", content=cue).status_code == 415
    assert app.post("/compat/spooled/api/v1/jobs", content=body, headers=JSON).status_code == 201
    assert engine.queues() == ["attacker"] and engine.cues() == []


@pytest.fixture
def attacker_site(tmp_path):
    """A web server for another origin (http://localhost:PORT) serving tmp_path."""
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port),
                                 partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    server.RequestHandlerClass.log_message = lambda *a: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://localhost:{port}"
    server.shutdown()
    server.server_close()


ATTACK = """<!doctype html><html><body>
<iframe name="a"></iframe><iframe name="b"></iframe><iframe name="c"></iframe>
<form id="f1" target="a" method="post" action="{api}/v1/queues/held/resume"></form>
<form id="f2" target="b" method="post" enctype="text/plain" action="{api}/v1/queues/formjobs/jobs">
  <input name='{{"payload": "' value='"}}'></form>
<form id="f3" target="c" method="post" action="{api}/queues/victim/pause"><input name="csrf" value="guess"></form>
<script>
const api = "{api}";
const post = (path, body, type) => fetch(api + path, {{method: "POST", mode: "no-cors", body: body,
  headers: type ? {{"Content-Type": type}} : {{}}}}).then(r => "sent", e => "blocked: " + e);
const shots = [
  post("/v1/queues/victim/pause"),
  post("/v1/queues/victim/replay", "{{}}"),
  post("/v1/queues/attacker/jobs", JSON.stringify({{payload: {{cmd: "rm -rf /"}}, priority: 1000}}), "text/plain"),
  post("/v1/queues/victim/claim", JSON.stringify({{worker_id: "evil", limit: 100, lease: 43200}})),
  fetch(api + "/v1/queues/attacker/jobs", {{method: "POST", headers: {{"Content-Type": "application/json"}},
        body: "{{}}"}}).then(r => "sent", e => "blocked"),
  fetch(api + "/v1/queues/victim/jobs?state=ready", {{method: "DELETE"}}).then(r => "sent", e => "blocked"),
  post("/compat/spooled/api/v1/jobs", JSON.stringify({{queue_name: "attacker-sp", payload: 1}}), "text/plain"),
  post("/compat/spooled/api/v1/jobs/claim", JSON.stringify({{queue_name: "victim", worker_id: "evil", limit: 100}})),
  post("/compat/cueapi/v1/cues", JSON.stringify({{name: "evil", schedule: {{cron: "* * * * *"}}, transport: "worker"}})),
];
for (const id of ["f1", "f2", "f3"]) document.getElementById(id).submit();
Promise.allSettled(shots).then(r => {{ window.outcome = r.map(x => x.value); document.title = "fired"; }});
</script></body></html>"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed")
def test_cross_origin_page_in_chromium_changes_nothing(redis_url, attacker_site):
    """The probe's page (§3), from another origin in a real browser, against a no-token
    server on loopback: simple requests, form posts (a text/plain form forging a JSON
    body), a JSON fetch (preflighted), the compat routes and the dashboard's own form.
    Every one reaches the server and is refused; nothing changes. A rebound name (the
    browser resolving it to 127.0.0.1) gets 421. The server's own dashboard still acts."""
    sync_api = pytest.importorskip("playwright.sync_api")
    prefix = f"x{uuid.uuid4().hex[:8]}"
    engine = redispool.connect(redis_url, prefix=prefix)
    engine.enqueue("victim", 0, max_attempts=1)
    engine.fail(engine.claim("victim", "w").pop(), "boom")  # one dead job to replay
    engine.enqueue_many("victim", [1, 2, 3])
    engine.enqueue("held", 1)
    engine.pause("held")
    engine.enqueue("mine-ctl", 1)
    before = {q: engine.stats(q) for q in engine.queues() if q != "mine-ctl"}
    server = Served(redis_url, prefix).wait_ready()
    site, origin = attacker_site
    site.joinpath("index.html").write_text(ATTACK.format(api=server.base))
    seen: list[tuple[str, int]] = []
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM,
                                        args=["--host-resolver-rules=MAP rebound.example 127.0.0.1"])
            try:
                page = browser.new_page()
                page.on("response", lambda r: seen.append((r.url, r.status)) if r.url.startswith(server.base)
                        else None)
                page.goto(origin + "/index.html")
                page.wait_for_function("document.title === 'fired'", timeout=30_000)
                page.wait_for_timeout(500)  # the three form posts land in their frames
                # DNS rebinding: the browser resolves the attacker's name to 127.0.0.1
                rebound = page.goto(f"http://rebound.example:{server.port}/v1/queues/victim/jobs")
                assert rebound.status == 421 and "payload" not in rebound.text()
                # the server's own dashboard (same origin) still pauses a queue
                own = browser.new_page()
                own.goto(server.base + "/queues/mine-ctl")
                own.click("text=Pause")
                own.wait_for_url("**/queues/mine-ctl?*")
            finally:
                browser.close()
    finally:
        code = server.stop()
    assert code == 0, server.output
    statuses = {url.split(str(server.port), 1)[1].split("?")[0]: status for url, status in seen}
    for path in ("/v1/queues/victim/pause", "/v1/queues/victim/replay", "/v1/queues/attacker/jobs",
                 "/v1/queues/victim/claim", "/v1/queues/held/resume", "/v1/queues/formjobs/jobs",
                 "/queues/victim/pause", "/compat/spooled/api/v1/jobs", "/compat/spooled/api/v1/jobs/claim",
                 "/compat/cueapi/v1/cues"):
        assert statuses.get(path) in (403, 415), (path, statuses)
    after = {q: engine.stats(q) for q in engine.queues() if q != "mine-ctl"}
    assert set(after) == set(before), "no queue was created"
    for q in before:
        for key in ("ready", "leased", "dead", "paused", "scheduled"):
            assert after[q][key] == before[q][key], (q, key)
    assert engine.cues() == []
    assert engine.stats("mine-ctl")["paused"]
    assert "Traceback" not in server.output
    engine.close()

