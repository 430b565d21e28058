"""The web kit under every face (issue 16, item 2): the faces never import each other;
only a RedispoolError is the client's fault (4xx), anything else a handler raises is a
logged 500 in the face's own shape; and what an HTTP worker holds lives in Redis, so
server replicas agree, on the compat faces as on /v1."""
from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

import redispool  # noqa: E402
from redispool.compat import create_cueapi_app, create_spooled_app  # noqa: E402
from redispool.errors import JobNotFound, LeaseLost, RedispoolError  # noqa: E402
from redispool.http import create_app  # noqa: E402
from redispool.web.body import BadJson, loads  # noqa: E402
from redispool.web.endpoint import Dialect  # noqa: E402

PACKAGE = Path(redispool.__file__).resolve().parent
FACES = ("http", "compat", "dashboard", "grpc")


def imported_modules(path: Path, package: str) -> set[str]:
    """Every module ``path`` (a module of ``package``) imports, as absolute names, late
    imports inside functions included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = package.split(".")
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


def face_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "redispool" and parts[1] in FACES else None


def test_no_face_imports_another_face():
    """http, compat, dashboard and grpc are siblings: each may import redispool.web and
    the core, never another face (redispool.server and serve assemble them)."""
    crossings = []
    for face in FACES:
        for path in sorted((PACKAGE / face).rglob("*.py")):
            rel = path.relative_to(PACKAGE).with_suffix("")
            parts = ["redispool", *rel.parts]
            package = ".".join(parts if path.name == "__init__.py" else parts[:-1])
            package = package.removesuffix(".__init__")
            for module in imported_modules(path, package):
                other = face_of(module)
                if other is not None and other != face:
                    crossings.append(f"{rel}: imports {module}")
    assert crossings == []


def test_the_import_walk_sees_a_crossing(tmp_path):
    """The walk above finds relative, absolute and late imports of another face."""
    module = tmp_path / "m.py"
    module.write_text("from ..http.app import Api\nimport redispool.dashboard\n"
                      "def f():\n    from ..compat import common\n", encoding="utf-8")
    faces = {face_of(m) for m in imported_modules(module, "redispool.compat")}
    assert {"http", "dashboard", "compat"} <= faces


def test_dialect_looks_errors_up_along_the_class_hierarchy():
    class Lost(LeaseLost):
        pass
    d = Dialect(render=lambda status, code, message: None, trouble={},  # type: ignore[arg-type,return-value]
                errors={LeaseLost: (409, "lease_lost"), RedispoolError: (400, "bad_input")})
    assert d.lookup(Lost("x")) == (409, "lease_lost")
    assert d.lookup(JobNotFound("x")) == (400, "bad_input")
    assert d.lookup(ValueError("x")) is None
    with pytest.raises(TypeError):   # a bug must never look like the client's fault
        Dialect(render=lambda *a: None, errors={ValueError: (400, "bad_input")}, trouble={})  # type: ignore


@pytest.mark.parametrize("face,path,method,shape", [
    ("native", "/v1/queues/q/pause", "pause", lambda body: body["error"] == "internal"),
    ("spooled", "/compat/spooled/api/v1/jobs/stats", "queues", lambda body: body["code"] == "internal"),
    ("cueapi", "/compat/cueapi/v1/executions/claimable", "fire_due_cues",
     lambda body: body["error"]["code"] == "internal"),
])
@pytest.mark.parametrize("stray", [ValueError, TypeError, KeyError])
def test_a_stray_error_in_a_handler_is_a_logged_500_not_a_400(engine, caplog, monkeypatch, face, path, method,
                                                             shape, stray):
    """A ValueError/TypeError/KeyError from a bug is the server's fault: 500 in the face's
    error shape, with its traceback in the log (it was answered 400 before)."""
    def broken(*args, **kwargs):
        raise stray("a bug, not bad input")
    monkeypatch.setattr(engine, method, broken)
    c = TestClient(create_app(engine), base_url="http://127.0.0.1")
    caplog.set_level(logging.INFO, logger="redispool.http")
    r = c.post(path, json={"worker_id": "w"}) if face == "native" else c.get(path)
    assert r.status_code == 500 and shape(r.json()), r.text
    [logged] = [rec for rec in caplog.records if rec.levelno >= logging.ERROR and rec.exc_info]
    assert logged.exc_info[0] is stray and "unexpected error" in logged.getMessage()


def test_bad_input_is_still_the_clients_fault(engine):
    c = TestClient(create_app(engine), base_url="http://127.0.0.1")
    r = c.post("/v1/queues/q/jobs", json={"payload": 1, "priority": 10**9})
    assert r.status_code == 400 and r.json()["error"] == "bad_input", r.text
    r = c.post("/compat/spooled/api/v1/jobs", json={"queue_name": "q", "priority": 101})
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR", r.text
    r = c.post("/compat/cueapi/v1/executions/claim", json={"worker_id": "has space"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "validation_error", r.text


def test_spooled_jobs_in_progress_agree_across_server_replicas(engine):
    """As /v1's: each request of one spooled worker may reach another replica; its
    registration lists what it holds, whichever replica leased, extended or settled it."""
    replicas = [TestClient(create_spooled_app(engine)), TestClient(create_spooled_app(engine))]
    v1 = "/api/v1"
    reg = replicas[0].post(v1 + "/workers/register", json={"queue_name": "lb", "hostname": "h",
                                                            "worker_id": "sw"})
    assert reg.status_code == 201, reg.text
    for n in range(6):
        replicas[n % 2].post(v1 + "/jobs", json={"queue_name": "lb", "payload": {"n": n}})
    held = []
    for n in range(3):   # round robin: two jobs per claim
        r = replicas[n % 2].post(v1 + "/jobs/claim", json={"queue_name": "lb", "worker_id": "sw", "limit": 2})
        held += r.json()["jobs"]
    assert len(held) == 6

    def listed() -> tuple[list[str], int, int]:
        [w] = [w for w in engine.workers() if w.id == "sw"]
        return w.jobs_in_progress, w.processed, w.failed

    assert listed() == (sorted(j["id"] for j in held), 0, 0)
    ack = {"worker_id": "sw"}
    first, second = held[0], held[1]
    assert replicas[1].post(f"{v1}/jobs/{first['id']}/complete",
                            json={**ack, "lease_id": first["lease_id"]}).status_code == 200
    assert replicas[0].post(f"{v1}/jobs/{second['id']}/fail",
                            json={**ack, "lease_id": second["lease_id"], "error": "x"}).status_code == 200
    assert listed() == (sorted(j["id"] for j in held[2:]), 2, 1)
    r = replicas[1].post(f"{v1}/jobs/{held[2]['id']}/heartbeat",
                         json={**ack, "lease_id": held[2]["lease_id"], "lease_duration_secs": 60})
    assert r.status_code == 200, r.text
    assert replicas[0].post(f"{v1}/workers/sw/heartbeat", json={"current_jobs": 4}).status_code == 200
    assert listed() == (sorted(j["id"] for j in held[2:]), 2, 1)
    for replica in replicas:   # each replica reports the same worker
        [w] = [w for w in replica.get(v1 + "/workers").json() if w["id"] == "sw"]
        assert (w["current_jobs"], w["jobs_processed"], w["jobs_failed"]) == (4, 2, 1)
    for replica in replicas:   # and nothing of it is kept in a replica's memory
        api = replica.app.state.api  # type: ignore[attr-defined]
        assert not any(isinstance(v, (dict, list, set)) and v for v in vars(api).values()), vars(api)


def test_cueapi_lists_a_claim_at_once_and_settles_it_with_its_outcome(engine):
    """A cueapi worker's registration lists an execution from its claim (through any
    replica) until its outcome is recorded (through any other)."""
    replicas = [TestClient(create_cueapi_app(engine)), TestClient(create_cueapi_app(engine))]
    assert replicas[0].post("/v1/worker/heartbeat", json={"worker_id": "cw"}).status_code == 200
    engine.enqueue("cueapi", {"task": "t"}, job_id="cue:c1:1000")
    r = replicas[1].post("/v1/executions/claim", json={"worker_id": "cw"})
    assert r.status_code == 200, r.text
    eid = r.json()["execution_id"]
    [w] = [w for w in engine.workers() if w.id == "cw"]
    assert w.jobs_in_progress == [eid]
    r = replicas[0].post(f"/v1/executions/{eid}/outcome", json={"success": True})
    assert r.status_code == 200, r.text
    [w] = [w for w in engine.workers() if w.id == "cw"]
    assert (w.jobs_in_progress, w.processed, w.failed) == ([], 1, 0)


@pytest.mark.parametrize("path", ["/v1/queues/q/ack", "/v1/queues/q/replay", "/v1/queues/q/jobs",
                                  "/compat/spooled/api/v1/jobs"])
@pytest.mark.parametrize("body", [b"\r", b" ", b"\n\t "])
def test_a_body_of_whitespace_alone_is_not_an_empty_body(engine, path, body):
    """No bytes is no body; whitespace alone is a body that is not JSON (the fuzzer's b'\\r'
    was read as no body, and an ack or replay with nothing to do answered 200)."""
    c = TestClient(create_app(engine), base_url="http://127.0.0.1")
    r = c.post(path, content=body, headers={"Content-Type": "application/json"})
    bad_input = 422 if path.startswith("/compat/spooled") else 400  # each protocol's own code
    assert r.status_code == bad_input and "not valid JSON" in r.text, (r.status_code, r.text)
    assert engine.stats("q")["ready"] == 0


@pytest.mark.parametrize("path,body,code", [
    ("/v1/queues/q/jobs", rb'{"job_id": "a\ud800"}', lambda b: b["error"]),
    ("/v1/queues/q/claim", rb'{"worker_id": "w\udc00"}', lambda b: b["error"]),
    ("/v1/queues/q/jobs", b'{"payload": {"k": "\xed\xa0\x80"}}', lambda b: b["error"]),   # the UTF-8 bytes of one
    ("/compat/spooled/api/v1/workers/register", rb'{"queue_name": "q", "hostname": "\ud800"}',
     lambda b: b["code"]),
    ("/compat/cueapi/v1/cues", rb'{"name": "\udfff", "transport": "worker", "schedule": {"cron": "* * * * *"}}',
     lambda b: b["error"]["code"]),
])
def test_a_lone_surrogate_in_a_body_is_bad_json_on_every_face(engine, path, body, code):
    """JSON can write half a UTF-16 pair (``"\\ud800"``), which is no character: Redis,
    msgpack and the answer cannot encode it. It was a 500 on every face; now the body is
    not valid JSON, in each face's words, and nothing is written."""
    c = TestClient(create_app(engine), base_url="http://127.0.0.1")
    r = c.post(path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422) and code(r.json()) in ("bad_input", "VALIDATION_ERROR", "invalid_json"), \
        (r.status_code, r.text)
    assert "surrogate" in r.text
    assert engine.stats("q")["ready"] == 0 and engine.workers() == [] and engine.cues() == []


def test_a_surrogate_pair_and_an_escaped_backslash_are_still_json():
    """A pair is one character; ``"\\\\ud800"`` is six; a lone one is refused however written."""
    assert loads(rb'["\ud83d\ude00", "\\ud800"]') == ["\U0001F600", "\\ud800"]
    assert loads('{"k": "\u00e9"}'.encode()) == {"k": "\u00e9"}
    utf16 = '"\ud800"'.encode("utf-16", "surrogatepass")
    for bad in (rb'"\ud800"', rb'{"\uDC00": 1}', b'"\xed\xb0\x80"', '"\ud800"', utf16):
        with pytest.raises(BadJson, match="surrogate"):
            loads(bad)


def nested(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_a_result_that_could_not_be_handed_back_is_refused_on_the_compat_faces(engine):
    """As /v1's /complete: a result nested deeper than 100 levels is bad input and the
    lease stands (spooled's /complete and cueapi's /outcome stored it, and every read
    showed ``$undeliverable`` in its place)."""
    c = TestClient(create_app(engine), base_url="http://127.0.0.1")
    sp = "/compat/spooled/api/v1"
    engine.enqueue("q", 1)
    [job] = c.post(sp + "/jobs/claim", json={"queue_name": "q", "worker_id": "w"}).json()["jobs"]
    done = {"worker_id": "w", "lease_id": job["lease_id"]}
    r = c.post(f"{sp}/jobs/{job['id']}/complete", json={**done, "result": nested(101)})
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR" and "100 levels" in r.text, r.text
    assert c.post(f"{sp}/jobs/{job['id']}/complete", json={**done, "result": nested(100)}).status_code == 200
    assert engine.get("q", job["id"].split("~")[1]).result == nested(100)

    engine.enqueue("cueapi", {"task": "t"}, job_id="cue:c1:1000")
    claim = c.post("/compat/cueapi/v1/executions/claim", json={"worker_id": "w"})
    assert claim.status_code == 200, claim.text
    out = "/compat/cueapi/v1/executions/cue:c1:1000/outcome"
    for deep in ({"metadata": {"m": nested(99)}}, {"artifacts": nested(100)}):   # stored as {"metadata": ...}
        r = c.post(out, json={"success": True, **deep})
        assert r.status_code == 400 and r.json()["error"]["code"] == "validation_error" and "100 levels" in r.text, \
            r.text
    assert engine.get("cueapi", "cue:c1:1000").state == "leased"
    assert c.post(out, json={"success": True, "metadata": {"m": nested(98)}}).status_code == 200
    assert engine.get("cueapi", "cue:c1:1000").result == {"metadata": {"m": nested(98)}}


@pytest.mark.parametrize("number", [b"1e400", b"-1E+309", b"1" + b"0" * 400 + b".5", b"2" + b"0" * 250 + b"e60"])
def test_a_number_past_the_range_of_a_double_is_not_json_here(engine, number):
    """Python's json reads it as Infinity: a payload of 1e400 was stored and handed back
    as ``{"$float": "Infinity"}``, and a delay of 1e400 answered 'got Infinity'."""
    with pytest.raises(BadJson, match="range of a double"):
        loads(b'{"payload": %s}' % number)
    assert loads(b"[1e308, 1e-400, 1" + b"0" * 400 + b"]") == [1e308, 0.0, 10 ** 400]   # a tiny one is 0; ints stay
    c = TestClient(create_app(engine), base_url="http://127.0.0.1", headers={"Content-Type": "application/json"})
    r = c.post("/v1/queues/q/jobs", content=b'{"payload": %s}' % number)
    assert r.status_code == 400 and "range of a double" in r.json()["message"], r.text
    r = c.post("/compat/spooled/api/v1/jobs", content=b'{"queue_name": "q", "payload": [%s]}' % number)
    assert r.status_code == 422 and "range of a double" in r.json()["message"], r.text
    assert engine.stats("q")["ready"] == 0
