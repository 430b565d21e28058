"""The CLI: every command through click's runner on a real redis-server, the error rules
(one stderr line; exit 2 bad input, 1 unreachable Redis; never a traceback), and real
subprocesses for the worker, the demo and the exit codes."""
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest
import redis
from click.testing import CliRunner

import redispool
from redispool import defaults
from redispool.cli import Context, cli

from support.cli import cli_process, invoke


@pytest.fixture
def prefix() -> str:
    return f"c{uuid.uuid4().hex[:10]}"


@pytest.fixture
def run(redis_url, prefix):
    """Invoke the CLI on the session's redis-server with a fresh prefix."""
    def run_quietly(*args: str, code: int = 0, input: str | None = None, note: str | None = None):
        """A success writes nothing to stderr; ``note``: or just one line holding that text."""
        result = invoke(redis_url, prefix, *args, code=code, input=input)
        if code == 0 and note is None:
            assert result.stderr == ""
        elif code == 0:
            assert note in result.stderr and result.stderr.count("\n") == 1, result.stderr
        return result

    return run_quietly


@pytest.fixture
def engine_for(redis_url, prefix):
    engine = redispool.connect(redis_url, prefix=prefix)
    yield engine
    engine.close()


def test_enqueue_stats_jobs_job(run, engine_for):
    job_id = run("enqueue", "emails", '{"to": "a@b.c"}', "--priority", "5", "--max-attempts", "2").stdout.strip()
    assert engine_for.get("emails", job_id).payload == {"to": "a@b.c"}
    delayed = run("enqueue", "emails", "--delay", "60").stdout.strip()
    again = run("enqueue", "emails", "1", "--unique-key", "u1").stdout.strip()
    assert run("enqueue", "emails", "2", "--unique-key", "u1", note="exists already").stdout.strip() == again
    stats = json.loads(run("stats", "emails", "--json").stdout)
    assert (stats["ready"], stats["scheduled"], stats["paused"]) == (2, 1, False)
    assert "emails" in run("stats").stdout
    assert json.loads(run("stats", "--json").stdout)[0]["queue"] == "emails"
    listed = json.loads(run("jobs", "emails", "--state", "ready", "--json").stdout)
    assert [j["id"] for j in listed] == [job_id, again]
    assert delayed in run("jobs", "emails", "--state", "scheduled").stdout
    shown = json.loads(run("job", "emails", job_id, "--json").stdout)
    assert shown["priority"] == 5 and shown["max_attempts"] == 2 and shown["state"] == "ready"
    assert "payload" in run("job", "emails", job_id).stdout


def test_retry_replay_purge_pause_resume_cancel(run, engine_for):
    ids = engine_for.enqueue_many("q", [1, 2, 3], max_attempts=1)
    for job in engine_for.claim("q", "w", limit=3):
        engine_for.fail(job, "boom")
    assert run("retry", "q", ids[0]).stdout.strip() == "retried 1"
    assert "2 dead" in run("replay", "q").stdout
    assert engine_for.stats("q")["dead"] == 2
    assert run("replay", "q", "--all").stdout.strip() == "replayed 2"
    assert run("purge", "q", "--state", "ready").stdout.strip() == "purged 3"
    assert "paused" in run("pause", "q").stdout and engine_for.stats("q")["paused"]
    assert "resumed" in run("resume", "q").stdout and not engine_for.stats("q")["paused"]
    job_id = engine_for.enqueue("q", "x")
    assert run("cancel", "q", job_id).stdout.strip() == f"cancelled {job_id}"
    assert "nothing to cancel" in run("cancel", "q", job_id).stdout


def test_cue_commands(run, engine_for):
    assert "next fires at" in run("cue", "add", "reports", "nightly", "30 2 * * *", "--tz", "Europe/Berlin",
                                  "--payload", '{"k": 1}', "--misfire", "catch_up").stdout
    [cue] = json.loads(run("cue", "list", "--json").stdout)
    assert (cue["name"], cue["tz"], cue["misfire"], cue["payload"]) == \
        ("nightly", "Europe/Berlin", "catch_up", {"k": 1})
    assert "nightly" in run("cue", "list").stdout
    run("cue", "pause", "reports", "nightly")
    assert engine_for.get_cue("reports", "nightly").paused
    run("cue", "resume", "reports", "nightly")
    job_id = run("cue", "run", "reports", "nightly").stdout.strip().rsplit(" ", 1)[1]
    assert engine_for.get("reports", job_id).payload == {"k": 1}
    run("cue", "rm", "reports", "nightly")
    assert engine_for.cues() == []


def columns(line: str) -> list[int]:
    return [m.start() for m in re.finditer(r"\S+", line)]


def test_tables_are_aligned(run, engine_for):
    engine_for.enqueue_many("q", [1] * 12)
    engine_for.enqueue("a-much-longer-queue-name", 1, delay=60)
    header, *rows = run("stats").stdout.splitlines()
    assert len(rows) == 2 and header.split()[:4] == ["queue", "waiting", "scheduled", "ready"]
    for row in rows:
        assert columns(row) == columns(header), (header, row)


def test_workers_command(run, engine_for):
    engine_for.register_worker("w-1", host="box", pid=42, queues=["q"])
    [w] = json.loads(run("workers", "--json").stdout)
    assert (w["id"], w["host"], w["pid"], w["queues"]) == ("w-1", "box", 42, ["q"])
    assert "w-1" in run("workers").stdout


@pytest.mark.parametrize("args", [
    ["enqueue", "bad queue", "1"],
    ["enqueue", "q", "{not json"],
    ["enqueue", "q", "1", "--lease", "0"],
    ["enqueue", "q", "1", "--priority", "5000"],
    ["enqueue", "q", "1", "--job-id", "123"],
    ["enqueue", "q", "1", "--max-attempts", "0"],
    ["enqueue", "q", "1", "--delay", "-5"],
    ["enqueue", "q", "1", "--timeout", "0"],
    ["cue", "add", "q", "c", "* * * * *", "--timeout", "-1"],
    ["stats", "bad!q"],
    ["stats", "q", "--limit", "3"],
    ["job", "q", "nope"],
    ["retry", "q", "nope"],
    ["cancel", "q", "nope"],
    ["jobs", "q", "--state", "sleeping"],
    ["jobs", "q"],
    ["purge", "q!", "--state", "done"],
    ["cue", "add", "q", "c", "61 * * * *"],
    ["cue", "add", "q", "c", "* * * * *", "--tz", "Mars/Base"],
    ["cue", "add", "q", "c", "* * * * *", "--tz", "localtime"],
    ["cue", "add", "q", "c", "* * * * *", "--tz", "posixrules"],
    ["cue", "add", "q", "c", "* * * * *", "--tz", "/etc/localtime"],
    ["cue", "add", "q", "c", "* * * * *", "--payload", "@/nonexistent/payload.json"],
    ["enqueue", "q", "@/nonexistent/payload.json"],
    ["enqueue", "q", "@"],
    ["cue", "add", "q", "c", "* * * * *", "--payload", "{"],
    ["cue", "rm", "q", "missing"],
    ["cue", "pause", "q", "missing"],
    ["cue", "resume", "q", "missing"],
    ["cue", "run", "q", "missing"],
    ["cue", "add", "q", "c", "* * * * *", "--misfire", "never"],
    ["worker", "no_such_module:worker"],
    ["worker", "nocolon"],
    ["worker", "json:loads"],
    ["worker", "os:sep"],
    ["nonsense"],
])
def test_bad_input_is_one_line_and_exit_2(run, engine_for, args):
    result = run(*args, code=2)
    assert result.stderr.startswith("redispool: error:")
    assert engine_for.queues() == [] or args[0] in ("retry", "cancel", "job")
    assert engine_for.client.keys(f"{engine_for.prefix}:{{q}}:job:*") == []


@pytest.mark.parametrize("option", [["--lease", "0"], ["--lease", "50000"], ["--grace", "-1"], ["--timeout", "0"]])
def test_worker_options_are_checked_before_the_app_is_imported(run, tmp_path, monkeypatch, option):
    marker, module = tmp_path / "imported", f"markapp_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').close()\nworker = None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the worker command adds the cwd
    assert "redispool: error:" in run("worker", f"{module}:worker", *option, code=2).stderr
    assert not marker.exists()


def test_a_connection_lost_mid_command_names_the_given_url(monkeypatch):
    class Lost:
        def queues(self):
            raise redis.ConnectionError("Connection reset by peer")

    monkeypatch.setattr(Context, "engine", lambda self, **_: Lost())
    result = CliRunner().invoke(cli, ["--url", "redis://:pw@db.example:6380/2", "stats"],
                                env={defaults.URL_ENV: "redis://elsewhere:1/0"})
    assert result.exit_code == 1
    assert result.stderr == ("redispool: cannot reach Redis at redis://:***@db.example:6380/2: "
                             "Connection reset by peer\n")


def test_retry_of_a_job_that_is_not_dead_is_bad_input(run, engine_for):
    job_id = engine_for.enqueue("q", 1)
    dead = engine_for.enqueue("q", 2, max_attempts=1)
    engine_for.claim("q", "w")  # the first job is leased now
    [job] = engine_for.claim("q", "w")
    engine_for.fail(job, "boom")
    err = run("retry", "q", dead, job_id, code=2).stderr
    assert f"job '{job_id}' of queue 'q' is leased, not dead" in err and "see --help" not in err
    assert engine_for.get("q", dead).state == "dead", "nothing is retried when one of the jobs is not dead"


def test_unreachable_redis_is_one_line_and_exit_1():
    result = CliRunner().invoke(cli, ["--url", "redis://:s3cret@127.0.0.1:1/0", "stats"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "127.0.0.1:1" in result.stderr and "s3cret" not in result.stderr and "***" in result.stderr


def test_real_process_exit_codes(redis_url, prefix):
    bad = cli_process("--url", redis_url, "--prefix", prefix, "enqueue", "q", "{nope")
    out, err = bad.communicate(timeout=30)
    assert bad.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err
    down = cli_process("--url", "redis://user:pw@127.0.0.1:1/0", "stats")
    out, err = down.communicate(timeout=30)
    assert down.returncode == 1 and err.count("\n") == 1 and "pw@" not in err
    ok = cli_process("--prefix", prefix, "enqueue", "q", "[1, 2]", env={"REDISPOOL_URL": redis_url})
    out, err = ok.communicate(timeout=30)
    assert ok.returncode == 0 and out.strip() and err == ""


WORKER_APP = '''
import time, redispool
worker = redispool.Worker(redispool.connect(), queues=["cli-q"], concurrency=4, lease=10)

@worker.process
def handle(job):
    time.sleep(job.payload)
    return job.payload
'''


def test_worker_process_runs_jobs_and_stops_on_sigterm(tmp_path, redis_url, prefix, engine_for):
    (tmp_path / "cliapp.py").write_text(WORKER_APP)
    engine_for.enqueue_many("cli-q", [0] * 20)
    engine_for.enqueue("cli-q", 1.5)  # still running when SIGTERM comes
    proc = cli_process("--url", redis_url, "--prefix", prefix, "worker", "cliapp:worker",
                       "--concurrency", "2", "--log-format", "json", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 20
        while engine_for.stats("cli-q")["done"] < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine_for.stats("cli-q")["done"] == 20
    except BaseException:
        proc.kill()
        raise
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    stats = engine_for.stats("cli-q")
    assert stats["leased"] == 0 and stats["done"] == 21, "the in-flight job finished within the grace period"
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert sum(e["event"] == "done" for e in events) == 21
    assert all(e["queue"] == "cli-q" for e in events if "job_id" in e)
    assert engine_for.workers() == []


FACTORY_APP = '''
import os, redispool

def make_worker():
    """A factory: called by `redispool worker factoryapp:make_worker` after --url/--prefix are set."""
    pool = redispool.connect()
    assert pool.prefix == os.environ["EXPECTED_PREFIX"]
    worker = redispool.Worker(pool, queues=["fq"])
    worker.process(lambda job: job.payload * 2)
    return worker
'''


def test_worker_target_may_be_a_factory_that_sees_url_and_prefix(tmp_path, redis_url, prefix, engine_for):
    (tmp_path / "factoryapp.py").write_text(FACTORY_APP)
    ids = engine_for.enqueue_many("fq", [1, 2, 3])
    proc = cli_process("--url", redis_url, "--prefix", prefix, "worker", "factoryapp:make_worker", "--burst",
                       cwd=tmp_path, env={"REDISPOOL_URL": "redis://127.0.0.1:1/0", "EXPECTED_PREFIX": prefix})
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert [engine_for.get("fq", i).result for i in ids] == [2, 4, 6]


def test_worker_with_unreachable_redis_is_one_line_and_exit_1():
    proc = cli_process("--url", "redis://:hunter2@127.0.0.1:1/0", "worker", "examples.app:worker")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "127.0.0.1:1" in err and "hunter2" not in err


def test_burst_worker_exits_when_queue_is_empty(tmp_path, redis_url, prefix, engine_for):
    (tmp_path / "cliapp.py").write_text(WORKER_APP)
    engine_for.enqueue_many("cli-q", [0] * 5)
    proc = cli_process("--url", redis_url, "--prefix", prefix, "worker", "cliapp:worker", "--burst", cwd=tmp_path)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert engine_for.stats("cli-q")["done"] == 5


def test_daemon_commands_run_until_sigterm(redis_url, prefix, engine_for):
    import threading
    engine_for.enqueue("q", 1, delay=0.2)
    engine_for.add_cue("q", "tick", "* * * * * *")
    procs = [cli_process("--url", redis_url, "--prefix", prefix, "scheduler", "--interval", "0.1"),
             cli_process("--url", redis_url, "--prefix", prefix, "sweeper", "--interval", "0.1")]
    lines: list[list[str]] = [[], []]
    readers = [threading.Thread(target=lambda p=p, out=out: out.extend(p.stderr), daemon=True)
               for p, out in zip(procs, lines)]
    for r in readers:
        r.start()
    try:  # conditions with a deadline, not a fixed sleep: a loaded machine starts Python slowly
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                all(any(" started" in line for line in out) for out in list(lines))
                and engine_for.stats("q")["scheduled"] == 0 and engine_for.stats("q")["ready"] >= 2):
            time.sleep(0.05)
    finally:  # the processes are stopped whatever happens
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)
        for r in readers:
            r.join(10)
    logs = ["".join(out) for out in lines]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert "promoted queue=q" in logs[0] and "cue fired" in logs[0]
    assert engine_for.stats("q")["ready"] >= 2


def test_demo_runs_and_exits_0():
    start = time.monotonic()
    proc = cli_process("demo", "--seconds", "2")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "demo finished" in out and "report 1: done" in out
    assert "retried queue=demo.reports" in out and "cue fired" in out
    assert "done queue=demo.emails job_id=6 " in out  # the delayed one (the scheduler or a claim promotes it)
    assert time.monotonic() - start < 15


def test_demo_piped_into_head_stops_without_a_traceback():
    proc = cli_process("demo", "--seconds", "2")
    proc.stdout.readline()
    proc.stdout.close()  # like `redispool demo | head -1`
    err = proc.stderr.read()
    proc.wait(60)
    assert "Traceback" not in err and "Exception" not in err, err


# ---------------------------------------------------------------------- issue 14
def strict_json(text: str):
    """Parse as strict parsers do: no NaN/Infinity tokens, nothing after the value."""
    def refuse(token):
        raise ValueError(f"not JSON: {token}")
    return json.loads(text, parse_constant=refuse)


ODD = {"blob": b"\x00\xff\xfe binary", "text": "é", "nan": float("nan"), "inf": float("inf"),
       "ninf": float("-inf"), "nested": [b"\x80", 1.5, {"k": float("nan")}], 7: "int key"}
ODD_JSON = {"blob": {"$bytes_base64": "AP/+IGJpbmFyeQ=="}, "text": "é", "nan": {"$float": "NaN"},
            "inf": {"$float": "Infinity"}, "ninf": {"$float": "-Infinity"},
            "nested": [{"$bytes_base64": "gA=="}, 1.5, {"k": {"$float": "NaN"}}], "7": "int key"}


def test_every_json_output_is_strict_and_lossless(run, engine_for, redis_url, prefix):
    """Bytes and NaN/Infinity in payloads, results and cue payloads come out tagged (as the
    HTTP API writes them) from every --json command, and strict parsers accept it all."""
    job_id = engine_for.enqueue("odd", ODD, job_id="odd-1")
    [job] = engine_for.claim("odd", "w-1")
    engine_for.complete(job, {"raw": b"\xff", "score": float("nan")})
    engine_for.enqueue("odd", ODD)
    engine_for.add_cue("odd", "c", "0 3 * * *", payload=ODD)
    engine_for.register_worker("w-1", host="box", pid=1, queues=["odd"])
    outputs = {" ".join(args): run(*args).stdout for args in [
        ("job", "odd", job_id, "--json"), ("jobs", "odd", "--state", "ready", "--json"),
        ("jobs", "odd", "--state", "done", "--json"), ("cue", "list", "--json"), ("cue", "list", "odd", "--json"),
        ("stats", "--json"), ("stats", "odd", "--json"), ("workers", "--json"),
        ("enqueue", "odd", "1", "--json")]}
    parsed = {command: strict_json(out) for command, out in outputs.items()}
    shown = parsed[f"job odd {job_id} --json"]
    assert shown["payload"] == ODD_JSON
    assert shown["result"] == {"raw": {"$bytes_base64": "/w=="}, "score": {"$float": "NaN"}}
    assert parsed["jobs odd --state ready --json"][0]["payload"] == ODD_JSON
    assert parsed["cue list --json"][0]["payload"] == ODD_JSON
    assert all("\ufffd" not in out for out in outputs.values())
    human = run("job", "odd", job_id).stdout
    assert "\ufffd" not in human and '"$bytes_base64": "AP/+IGJpbmFyeQ=="' in human
    # the same through a real process, read by jq and by node's JSON.parse when they are installed
    proc = cli_process("--url", redis_url, "--prefix", prefix, "job", "odd", job_id, "--json")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and strict_json(out)["payload"] == ODD_JSON, err
    node = ("let s = ''; process.stdin.on('data', d => s += d)"
            ".on('end', () => console.log(JSON.stringify(JSON.parse(s).payload.nan)))")
    for tool in (["jq", "-c", ".payload.nan"], ["node", "-e", node]):
        if shutil.which(tool[0]):
            done = subprocess.run(tool, input=out, capture_output=True, text=True, timeout=30, check=False)
            assert done.returncode == 0 and done.stdout.strip() == '{"$float":"NaN"}', done.stderr


def test_payload_from_stdin_and_from_a_file(run, engine_for, tmp_path, redis_url, prefix):
    """A 1 MB payload: over what a command line takes, so it comes from stdin (-) or a file (@FILE)."""
    payload = {"rows": ["x" * 1000] * 1000, "note": "é"}
    text = json.dumps(payload)
    assert len(text) > 1_000_000
    (tmp_path / "big.json").write_text(text, encoding="utf-8")
    from_stdin = run("enqueue", "big", "-", input=text).stdout.strip()
    from_file = run("enqueue", "big", f"@{tmp_path / 'big.json'}").stdout.strip()
    assert engine_for.get("big", from_stdin).payload == payload == engine_for.get("big", from_file).payload
    proc = cli_process("--url", redis_url, "--prefix", prefix, "enqueue", "big", "-", "--json",
                       stdin=subprocess.PIPE)
    out, err = proc.communicate(text, timeout=60)
    assert proc.returncode == 0, err
    assert engine_for.get("big", strict_json(out)["id"]).payload == payload
    run("cue", "add", "big", "from-file", "0 3 * * *", "--payload", f"@{tmp_path / 'big.json'}")
    run("cue", "add", "big", "from-stdin", "0 4 * * *", "--payload", "-", input=text)
    assert engine_for.get_cue("big", "from-file").payload == payload == engine_for.get_cue("big", "from-stdin").payload
    err = run("enqueue", "big", "-", input="{broken", code=2).stderr
    assert "PAYLOAD_JSON (from stdin) is not valid JSON" in err
    deep = run("enqueue", "big", "-", input="[" * 100_000 + "]" * 100_000, code=2).stderr   # was a traceback
    assert "nests deeper than JSON can be read" in deep and "Traceback" not in deep
    assert engine_for.stats("big")["ready"] == 3


def test_enqueue_says_whether_it_created_the_job(run, engine_for):
    first = strict_json(run("enqueue", "q", "1", "--unique-key", "k", "--json").stdout)
    assert first == {"id": first["id"], "created": True}
    again = strict_json(run("enqueue", "q", "2", "--unique-key", "k", "--json").stdout)
    assert again == {"id": first["id"], "created": False}
    assert run("enqueue", "q", "3", "--job-id", "order-1").stdout == "order-1\n"
    result = run("enqueue", "q", "4", "--job-id", "order-1", note="job order-1 exists already")
    assert result.stdout == "order-1\n" and engine_for.get("q", "order-1").payload == 3
    assert strict_json(run("enqueue", "q", "5", "--job-id", "order-1", "--json").stdout) == {
        "id": "order-1", "created": False}


def test_an_empty_prefix_is_refused(redis_url):
    queue = f"q{uuid.uuid4().hex[:8]}"
    for args in (["--prefix", ""], ["--prefix", "a{b}"]):
        result = CliRunner().invoke(cli, ["--url", redis_url, *args, "enqueue", queue, "1"],
                                    env={defaults.URL_ENV: None, defaults.PREFIX_ENV: None})
        assert result.exit_code == 2 and "--prefix" in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    client = redis.Redis.from_url(redis_url)
    assert client.keys(f"*{queue}*") == [], "nothing was written under the default prefix"
    client.close()


def test_demo_labels_lifetime_totals_apart_from_this_run(redis_url, prefix):
    """On a real Redis the lifetime totals survive the demo's clean slate: the second run
    retries one report, and says so apart from the queue's lifetime total of 2."""
    rows = []
    for _ in range(2):
        proc = cli_process("--url", redis_url, "--prefix", prefix, "demo", "--seconds", "1")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        header = next(line for line in out.splitlines() if line.startswith("queue "))
        row = next(line for line in out.splitlines() if line.startswith("demo.reports "))
        rows.append(dict(zip(header.replace("this run", "this_run").replace("all runs", "all_runs").split(),
                             row.split())))
    assert [(r["done"], r["this_run"], r["all_runs"]) for r in rows] == [("1", "1", "1"), ("1", "1", "2")]


def test_a_full_redis_is_one_line_and_exit_1_not_bad_input():
    """Redis at maxmemory (noeviction): `enqueue` and `cue add` say so in one line, exit 1
    (Redis trouble, not the input), and write nothing."""
    from support.servers import RedisServer

    server = RedisServer("--maxmemory-policy", "noeviction").start()
    try:
        client = redis.Redis(port=server.port)
        client.set("ballast", "x" * 2_000_000)
        client.config_set("maxmemory", str(client.info("memory")["used_memory"] // 2))
        for args in (["enqueue", "orders", '{"a": 1}'], ["cue", "add", "orders", "tick", "* * * * *"]):
            result = CliRunner().invoke(cli, ["--url", server.url, *args], env={defaults.URL_ENV: None})
            assert result.exit_code == 1, (args, result.stderr)
            assert "full" in result.stderr and result.stderr.count("\n") == 1, result.stderr
            assert "Traceback" not in result.stderr
        client.config_set("maxmemory", "0")
        assert client.keys("rp:{orders}*") == []
        client.close()
    finally:
        server.stop()
