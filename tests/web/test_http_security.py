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
from redispool.http import create_app, load_tokens, parse_tokens  # noqa: E402
from redispool.web.auth import BadTokensFile  # noqa: E402

from support import ROOT  # noqa: E402
from support.served import TOKENS, Served, tokens_file  # noqa: E402
from support.servers import RedisServer, free_port  # noqa: E402

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
  post("/compat/cueapi/v1/cues",
       JSON.stringify({{name: "evil", schedule: {{cron: "* * * * *"}}, transport: "worker"}})),
];
for (const id of ["f1", "f2", "f3"]) document.getElementById(id).submit();
Promise.allSettled(shots).then(r => {{ window.outcome = r.map(x => x.value); document.title = "fired"; }});
</script></body></html>"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed")
@pytest.mark.parametrize("headers,status,code", [
    ({"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    ({"Host": "rebound.example:8080", **JSON}, 421, "wrong_host"),
    ({"Origin": "http://evil.example", **JSON}, 403, "cross_origin"),
])
@pytest.mark.parametrize("path,shape", [
    ("/v1/queues/q/jobs", lambda body: (body["error"], body["message"])),
    ("/compat/spooled/api/v1/jobs", lambda body: (body["code"], body["message"])),
    ("/compat/cueapi/v1/cues", lambda body: (body["error"]["code"], body["error"]["message"])),
])
def test_the_guard_refuses_in_each_protocols_own_error_shape(engine, headers, status, code, path, shape):
    """The hosted services' clients read their own error shapes: the guard answered the
    compat faces in the native one (``{"error": CODE}`` where spooled's clients read
    ``{"code"}`` and cueapi's ``{"error": {"code", "message", "status"}}``)."""
    r = local(engine, 8080).post(path, content=b"{}", headers=headers)
    assert r.status_code == status, r.text
    got, message = shape(r.json())
    assert got == code and message, r.text
    if path.startswith("/compat/cueapi"):
        assert r.json()["error"]["status"] == status


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



# ---------------------------------------------------------------------- §14 tokens file
def _serve_fails(redis_url: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run `redispool serve` expecting it to refuse to start: (exit code, stderr)."""
    cmd = [sys.executable, "-m", "redispool", "--url", redis_url, "serve", "--port", str(free_port()), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # it served: the test fails, and no process is left behind
        proc.kill()
        out, err = proc.communicate()
        return -1, err
    return proc.returncode, err


def test_tokens_file_others_may_read_is_refused(tmp_path, redis_url):
    path = tmp_path / "tokens"
    path.write_text("admin admin-token-0123\n")
    for mode, who in ((0o644, "group and others"), (0o640, "group"), (0o604, "others")):
        path.chmod(mode)
        with pytest.raises(BadTokensFile, match=f"open to {who} .*chmod 600"):
            load_tokens(path)
    code, err = _serve_fails(redis_url, "--tokens-file", str(path))
    assert code == 2 and f"chmod 600 {path}" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1
    path.chmod(0o600)
    assert load_tokens(path) == {"admin-token-0123": "admin"}
    path.chmod(0o400)
    assert load_tokens(path) == {"admin-token-0123": "admin"}


def test_token_with_two_roles_is_refused():
    with pytest.raises(BadTokensFile, match=r"^F:4: this token is listed on line 2 with the role read"):
        parse_tokens("# tokens\nread dupdupdupdup\nworker otherother\nadmin dupdupdupdup\n", "F")
    with pytest.raises(BadTokensFile) as caught:
        parse_tokens("read dupdupdupdup, admin dupdupdupdup", "REDISPOOL_TOKENS")
    assert "dupdupdupdup" not in str(caught.value), "a token is never quoted"
    # the same token twice with the same role is harmless
    assert parse_tokens("read dupdupdupdup\nread dupdupdupdup\n", "F") == {"dupdupdupdup": "read"}


def test_tokens_errors_name_the_right_line():
    """Commas separate entries on a line; they no longer shift the line numbers."""
    with pytest.raises(BadTokensFile, match=r"^F:2: expected 'ROLE TOKEN'"):
        parse_tokens("admin abcdefghij, read klmnopqrst\nadmin abcdefgh,ijklmnop\n", "F")
    with pytest.raises(BadTokensFile, match=r"^F:3: expected"):
        parse_tokens("admin a1234567,read b1234567,worker c1234567\n\nsuper d1234567\n", "F")
    assert parse_tokens("admin a1234567,read b1234567,worker c1234567\n", "F") == \
        {"a1234567": "admin", "b1234567": "read", "c1234567": "worker"}


def test_empty_tokens_variable_is_refused(redis_url):
    """A set but empty REDISPOOL_TOKENS (a template whose secret did not come) does not
    mean "no tokens, everyone is admin": serve refuses it, as it refuses whitespace."""
    for value in ("", " ", "\n"):
        code, err = _serve_fails(redis_url, env={"REDISPOOL_TOKENS": value})
        assert code == 2 and "REDISPOOL_TOKENS holds no token" in err and "Traceback" not in err, (value, err)


# ---------------------------------------------------------------------- §15 non-ASCII credentials
def test_non_ascii_cookie_token_or_csrf_is_refused_not_an_error(engine, caplog):
    """hmac.compare_digest raises on non-ASCII str: the dashboard compared cookies, login
    tokens and CSRF tokens as str, so such a request was an unauthenticated 500."""
    app = TestClient(create_app(engine, tokens=BY_TOKEN), follow_redirects=False)  # server errors raise here
    with caplog.at_level(logging.INFO):
        r = app.get("/workers", headers={"Cookie": "rp_token=été".encode()})
        assert r.status_code == 303 and r.headers["location"] == "/login"
        r = app.post("/login", data={"token": "pässwörd-123"})
        assert r.status_code == 303 and r.headers["location"] == "/login?failed=1"
        assert app.get("/v1/queues", headers={"Authorization": "Bearer pässwörd-123".encode()}).status_code == 401
        assert app.get("/metrics", headers={"Authorization": "Bearer pässwörd-123".encode()}).status_code == 401
        r = app.post("/login", data={"token": TOKENS["admin"]})
        assert r.status_code == 303 and r.headers["location"] == "/"
        app.cookies.set("rp_token", TOKENS["admin"])
        app.cookies.set("rp_csrf", r.cookies["rp_csrf"])
        for action in ("/queues/q/pause", "/enqueue", "/logout"):
            assert app.post(action, data={"csrf": "ünïcode"}).status_code == 403, action
        cookies = f"rp_token={TOKENS['admin']}; rp_csrf=çookie".encode()
        app.cookies.clear()
        assert app.post("/queues/q/pause", data={"csrf": "ascii"}, headers={"Cookie": cookies}).status_code == 403
    assert not engine.stats("q")["paused"]
    assert "Traceback" not in caplog.text


# ---------------------------------------------------------------------- §20 exposure
def test_metrics_need_a_token_when_tokens_are_set(engine):
    engine.enqueue("secret-queue-name", 1)
    app = TestClient(create_app(engine, tokens=BY_TOKEN))
    r = app.get("/metrics")
    assert r.status_code == 401 and "secret-queue-name" not in r.text
    assert app.get("/metrics", headers={"Authorization": "Bearer wrong-token-1"}).status_code == 401
    for role in ("read", "worker", "admin"):
        r = app.get("/metrics", headers={"Authorization": f"Bearer {TOKENS[role]}"})
        assert r.status_code == 200 and "secret-queue-name" in r.text
    public = TestClient(create_app(engine, tokens=BY_TOKEN, public_metrics=True))
    assert public.get("/metrics").status_code == 200
    assert app.get("/healthz").status_code == 200  # for load balancers: no token, and it tells nothing


def test_redis_trouble_answers_without_the_redis_address(redis_url, caplog):
    """503 bodies name no Redis host or port (the log does), carry Retry-After, and a
    Redis at maxmemory is told apart from an unreachable one."""
    server = RedisServer().start()
    engine = redispool.connect(server.url, prefix="t")
    address = f"127.0.0.1:{server.port}"
    app = local(engine)
    server.stop()
    with caplog.at_level(logging.WARNING, logger="redispool.http"):
        answers = [app.post("/v1/queues/q/jobs", json={}), app.get("/v1/queues"), app.get("/healthz"),
                   app.get("/metrics"), app.get("/"), app.get("/queues/q"),
                   app.post("/compat/spooled/api/v1/jobs", json={"queue_name": "q"}),
                   app.get("/compat/cueapi/v1/cues")]
    for r in answers:
        assert r.status_code == 503, (r.request.url, r.status_code, r.text[:200])
        assert address not in r.text and str(server.port) not in r.text, (r.request.url, r.text[:300])
        assert int(r.headers["retry-after"]) > 0, r.request.url
    assert address in caplog.text, "the log keeps the address"
    assert answers[0].json() == {"error": "unavailable",
                                 "message": "Redis cannot be reached; retry later (the server log has the details)"}
    engine.close()


def test_a_full_redis_is_told_apart(caplog):
    """At maxmemory, the dashboard's enqueue and the compat create answer "Redis is full"
    (the dashboard 507, spooled's 503 with its own message and a longer Retry-After),
    not "cannot reach Redis", nor a 400/404 as before."""
    server = RedisServer().start()
    engine = redispool.connect(server.url, prefix="full")
    try:
        engine.enqueue("q", 1)
        engine.client.config_set("maxmemory", 1)   # every write is refused from now on
        app = local(engine)
        app.get("/enqueue")
        with caplog.at_level(logging.WARNING, logger="redispool.http"):
            r = app.post("/enqueue", data={"csrf": app.cookies["rp_csrf"], "queue": "q", "payload": "{}"})
            assert r.status_code == 507 and "Redis is full" in r.text and str(server.port) not in r.text, r.text
            assert int(r.headers["retry-after"]) >= 30
            r = app.post("/compat/spooled/api/v1/jobs", json={"queue_name": "q", "payload": 2})
            assert r.status_code == 503 and "Redis is full" in r.json()["message"], r.text
            assert str(server.port) not in r.text and int(r.headers["retry-after"]) >= 30
        engine.client.config_set("maxmemory", 0)
        assert engine.stats("q")["ready"] == 1
    finally:
        engine.close()
        server.stop()


def test_secure_cookies_behind_tls(engine):
    def cookies_of(app: TestClient, **headers: str) -> list[str]:
        r = app.post("/login", data={"token": TOKENS["admin"]}, headers=headers)
        assert r.status_code == 303
        return r.headers.get_list("set-cookie")

    plain = TestClient(create_app(engine, tokens=BY_TOKEN), follow_redirects=False)
    assert all("secure" not in c.lower() for c in cookies_of(plain))
    for proto in ("https", "https, http", "HTTPS"):
        assert all("; secure" in c.lower() for c in cookies_of(plain, **{"X-Forwarded-Proto": proto})), proto
    flagged = TestClient(create_app(engine, tokens=BY_TOKEN, secure_cookies=True), follow_redirects=False)
    set_cookies = cookies_of(flagged)
    assert len(set_cookies) == 2 and all("; secure" in c.lower() for c in set_cookies)
    # the CSRF cookie a page hands out too
    r = flagged.get("/login")
    assert r.status_code == 200
    page = flagged.get("/", cookies={"rp_token": TOKENS["read"]})
    assert all("; secure" in c.lower() for c in page.headers.get_list("set-cookie"))


@pytest.mark.slow
def test_serve_flags(redis_url, tmp_path):
    """--public-metrics and --secure-cookies through the CLI, on a real server."""
    prefix = f"f{uuid.uuid4().hex[:8]}"
    guarded = Served(redis_url, prefix, tokens_file=tokens_file(tmp_path)).wait_ready()
    flagged = Served(redis_url, prefix, "--public-metrics", "--secure-cookies",
                     tokens_file=tokens_file(tmp_path)).wait_ready()
    try:
        with guarded.client(None) as anonymous, flagged.client(None, follow_redirects=False) as public:
            assert anonymous.get("/metrics").status_code == 401
            assert public.get("/metrics").status_code == 200
            r = public.post("/login", data={"token": TOKENS["admin"]})
            assert r.status_code == 303 and all("; secure" in c.lower() for c in r.headers.get_list("set-cookie"))
        with guarded.client("read") as reader:
            assert reader.get("/metrics").status_code == 200
    finally:
        assert guarded.stop() == 0 and flagged.stop() == 0
