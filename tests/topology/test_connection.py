"""Every URL scheme of the README on real servers, through the library, the CLI and
``redispool serve``; read timeouts; connection errors.

- One redis-server serves ``redis://`` (TCP), ``rediss://`` (TLS, certificates made here
  with the openssl CLI) and ``unix://``; a master + replica + 3 sentinels serve
  ``redis+sentinel://``; the session's 3-master cluster serves ``redis+cluster://``.
- Blocking waits (claim(block=), wait_for_jobs, the worker's idle wait, the cluster
  watchers, AsyncEngine, HTTP long-polls) last 7-8 s, past redis-py 8's default 5 s read
  timeout, and still end normally; every other call keeps a finite read timeout.
- An unreachable cluster or sentinel, a missing database: one line, the right error.
"""
from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import redispool
from redispool import ConnectionFailed, InvalidOption, NotDurable, Worker
from redispool.aio import AsyncEngine

from support import ROOT
from support.servers import REDIS_DOWN, RedisServer, SentinelGroup, free_port, need, started
from support.waiting import running, wait_for

SCHEMES = ["redis", "rediss-ca", "rediss-noverify", "unix", "cluster", "sentinel", "memory"]
LONG_WAIT_S = 8.0       # past redis-py 8's default socket_timeout of 5 s
JOB_AFTER_S = 7.0       # a job arrives this long into a wait


def prefix() -> str:
    return f"cn{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------- servers
def make_certs(d: Path) -> None:
    """A CA and a server certificate for 127.0.0.1, with the openssl CLI."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d, timeout=60)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "2", "-subj", "/CN=redispool-test-ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf")


class Multi:
    """One redis-server on a TCP port, a TLS port and a unix socket."""

    def __init__(self, d: Path) -> None:
        make_certs(d)
        self.ca = d / "ca.crt"
        self.socket = d / "redis.sock"
        self.tls_port = free_port()
        self.server = RedisServer("--tls-port", str(self.tls_port), "--tls-cert-file", str(d / "server.crt"),
                                  "--tls-key-file", str(d / "server.key"), "--tls-ca-cert-file", str(self.ca),
                                  "--tls-auth-clients", "no", "--unixsocket", str(self.socket),
                                  "--unixsocketperm", "700", dir=d)

    def urls(self) -> dict[str, str]:
        return {"redis": f"redis://127.0.0.1:{self.server.port}/3",
                "rediss-ca": f"rediss://127.0.0.1:{self.tls_port}/4?ssl_ca_certs={self.ca}",
                "rediss-noverify": f"rediss://127.0.0.1:{self.tls_port}/6?ssl_cert_reqs=none",
                "unix": f"unix://{self.socket}?db=5"}

    def db(self, scheme: str) -> int:
        """The database the scheme's URL names."""
        return {"redis": 3, "rediss-ca": 4, "rediss-noverify": 6, "unix": 5}[scheme]


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Multi]:
    need("redis-server", "openssl")
    m = Multi(tmp_path_factory.mktemp("multi"))
    m.server.start()
    yield m
    m.server.stop()


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    with started(SentinelGroup(tmp_path_factory.mktemp("sentinel"))) as group:
        yield group


@pytest.fixture
def scheme_url(request: pytest.FixtureRequest) -> str:
    """The URL of the test's ``scheme`` parameter; only the servers it needs start."""
    scheme = request.node.callspec.params["scheme"]
    if scheme == "cluster":
        return request.getfixturevalue("cluster_url")
    if scheme == "sentinel":
        return request.getfixturevalue("sentinels").url + "?db=2"
    if scheme == "memory":
        return f"memory://schemes-{uuid.uuid4().hex}"
    return request.getfixturevalue("multi").urls()[scheme]


def cli(*args: str, url: str, pfx: str = "rp", stdin: str | None = None) -> subprocess.CompletedProcess:
    """``redispool --url URL --prefix P ARGS`` in a subprocess (PYTHONPATH picks this tree)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDISPOOL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "redispool", "--url", url, "--prefix", pfx, *args],
                          check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, input=stdin)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# ---------------------------------------------------------------------- every scheme
@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_url_scheme_connects_enqueues_claims_and_completes(scheme, scheme_url, request):
    engine = redispool.connect(scheme_url, prefix=prefix())
    try:
        job_id = engine.enqueue("q", {"n": 1})
        [job] = engine.claim("q", "w1")
        engine.complete(job, "ok")
        info = engine.get("q", job_id)
        assert (info.state, info.result) == ("done", "ok")
        assert engine.stats("q")["done"] == 1
        if scheme in ("redis", "rediss-ca", "rediss-noverify", "unix"):  # in the URL's database
            multi = request.getfixturevalue("multi")
            raw = redis.Redis(port=multi.server.port, db=multi.db(scheme))
            assert raw.exists(engine.keys("q").job(job_id)) == 1
            raw.close()

        async def over_asyncio() -> None:  # the async client made from this one (serve's)
            aio = AsyncEngine(engine)
            try:
                [job] = await aio.claim("q", "w2")
                assert job.id == second
                await aio.complete(job, "async ok")
            finally:
                await aio.close()
        second = engine.enqueue("q", 2)
        asyncio.run(over_asyncio())
        assert engine.get("q", second).result == "async ok"
    finally:
        engine.close()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_url_scheme_through_the_cli(scheme, scheme_url):
    pfx = prefix()
    made = cli("enqueue", "q", '{"n": 1}', url=scheme_url, pfx=pfx)
    assert made.returncode == 0 and made.stderr == "", made.stderr
    job_id = made.stdout.strip()
    stats = cli("stats", "q", url=scheme_url, pfx=pfx)
    assert stats.returncode == 0 and stats.stderr == "", stats.stderr
    if scheme == "memory":
        return  # every process has its own memory:// server: nothing to look at from here
    engine = redispool.connect(scheme_url, prefix=pfx)
    try:
        assert engine.get("q", job_id).payload == {"n": 1}
    finally:
        engine.close()


# ---------------------------------------------------------------------- blocking waits
@pytest.mark.slow
@pytest.mark.parametrize("scheme", SCHEMES)
def test_blocking_waits_past_five_seconds_end_normally_on_every_scheme(scheme, scheme_url):
    """claim(block=8) woken by a job 7 s in, and wait_for_jobs(7) running out, sync and
    async at once (redis-py 8 cut every one of them off at 5 s)."""
    engine = redispool.connect(scheme_url, prefix=prefix())
    out: dict[str, Any] = {}

    starts: list[float] = []

    def timed(name: str, fn: Callable[[], Any]) -> None:
        start = time.monotonic()
        starts.append(start)
        try:
            out[name] = fn()
        except Exception as exc:  # noqa: BLE001 - reported by the asserts below
            out[name] = exc
        out[name + "_s"] = time.monotonic() - start

    async def both_async() -> None:
        aio = AsyncEngine(engine)
        try:
            async def claim() -> None:
                start = time.monotonic()
                starts.append(start)
                out["aclaim"] = await aio.claim("ac", "w", block=LONG_WAIT_S)
                out["aclaim_s"] = time.monotonic() - start

            async def wait() -> None:
                start = time.monotonic()
                starts.append(start)
                out["await"] = await aio.wait_for_jobs("aw", JOB_AFTER_S)
                out["await_s"] = time.monotonic() - start
            results = await asyncio.gather(claim(), wait(), return_exceptions=True)
            out["async_errors"] = [r for r in results if isinstance(r, BaseException)]
        finally:
            await aio.close()

    threads = [threading.Thread(target=timed, args=("claim", lambda: engine.claim("sc", "w", block=LONG_WAIT_S))),
               threading.Thread(target=timed, args=("wait", lambda: engine.wait_for_jobs(["sw"], JOB_AFTER_S))),
               threading.Thread(target=lambda: asyncio.run(both_async()))]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: len(starts) == 4, 30, "every wait to start", tolerate=REDIS_DOWN)
        time.sleep(max(starts) + JOB_AFTER_S - time.monotonic())  # 7 s into the last wait
        sync_job, async_job = engine.enqueue("sc", "sync"), engine.enqueue("ac", "async")
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        assert out.get("async_errors") == [], out
        assert [j.id for j in out["claim"]] == [sync_job], out
        assert [j.id for j in out["aclaim"]] == [async_job], out
        assert out["claim_s"] >= JOB_AFTER_S - 0.5 and out["aclaim_s"] >= JOB_AFTER_S - 0.5, out
        assert out["wait"] is None and out["await"] is False, out
        assert out["wait_s"] >= JOB_AFTER_S - 0.1 and out["await_s"] >= JOB_AFTER_S - 0.1, out
    finally:
        engine.close()


@pytest.mark.slow
@pytest.mark.parametrize("queues", [["idle"], ["idle", "other"]], ids=["one-queue", "two-queues"])
def test_an_idle_worker_waits_eight_seconds_and_takes_a_job_enqueued_after_seven(redis_url, queues, caplog):
    """One queue waits in claim(block=), two in wait_for_jobs: neither may see Redis
    "unavailable" while it waits."""
    _idle_worker_picks_up_a_late_job(redis_url, queues, caplog)


@pytest.mark.slow
def test_an_idle_multi_queue_worker_on_a_cluster_takes_a_job_enqueued_after_seven_s(cluster_url, caplog):
    """On a cluster a multi-queue worker waits with one watcher per queue (waiter._Watchers)."""
    _idle_worker_picks_up_a_late_job(cluster_url, ["wa", "wb", "wc"], caplog)


def _idle_worker_picks_up_a_late_job(url: str, queues: list[str], caplog: pytest.LogCaptureFixture) -> None:
    engine = redispool.connect(url, prefix=prefix())
    done: list[Any] = []
    worker = Worker(engine, queues=queues, idle_wait=LONG_WAIT_S, beat_interval=30)
    worker.process(lambda job: done.append(job.payload))
    caplog.set_level(logging.INFO, logger="redispool")
    try:
        with running(worker):
            time.sleep(JOB_AFTER_S)
            engine.enqueue(queues[-1], "late")
            wait_for(lambda: done == ["late"], 20, "the late job to run", tolerate=REDIS_DOWN)
    finally:
        engine.close()
    trouble = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert trouble == [], trouble


@pytest.mark.slow
@pytest.mark.parametrize("scheme", SCHEMES)
def test_redispool_serve_on_every_scheme_with_long_polls_past_five_seconds(scheme, scheme_url):
    from support.served import Served
    served = Served(scheme_url, prefix()).wait_ready()
    polls: dict[str, Any] = {}

    def long_poll(queue: str, wait: float) -> None:
        with served.client(None) as http:
            start = time.monotonic()
            r = http.post(f"/v1/queues/{queue}/claim", json={"worker_id": f"lp-{queue}", "wait": wait})
            polls[queue] = (r.status_code, r.json(), time.monotonic() - start)

    threads = [threading.Thread(target=long_poll, args=("late", LONG_WAIT_S)),
               threading.Thread(target=long_poll, args=("empty", JOB_AFTER_S))]
    try:
        started = time.monotonic()
        for t in threads:
            t.start()
        with served.client(None) as http:
            r = http.post("/v1/queues/q/jobs", json={"payload": {"n": 1}})
            assert r.status_code == 201, r.text
            job_id = r.json()["id"]
            [job] = http.post("/v1/queues/q/claim", json={"worker_id": "w1"}).json()["jobs"]
            assert http.post(f"/v1/queues/q/jobs/{job_id}/complete",
                             json={"token": job["token"], "result": "ok"}).status_code == 200
            assert http.get(f"/v1/queues/q/jobs/{job_id}").json()["state"] == "done"
            time.sleep(max(0.0, JOB_AFTER_S - (time.monotonic() - started)))
            late_id = http.post("/v1/queues/late/jobs", json={"payload": "late"}).json()["id"]
        for t in threads:
            t.join(30)
        status, body, _ = polls["late"]
        assert status == 200 and [j["id"] for j in body["jobs"]] == [late_id], body
        status, body, seconds = polls["empty"]
        assert (status, body["jobs"]) == (200, []), body
        assert seconds >= JOB_AFTER_S - 0.1
    finally:
        code = served.stop()
    assert code == 0, served.output


# ---------------------------------------------------------------------- finite read timeouts
def test_a_blocking_wait_reads_for_its_wait_plus_the_read_timeout(lone):
    """With ?socket_timeout=1 a 2.5 s claim(block=) still ends normally (sync and async):
    its read is allowed 2.5 + 1 s."""
    engine = redispool.connect(lone.url + "?socket_timeout=1", prefix=prefix())
    try:
        assert engine.claim("q", "w", block=2.5) == []
        assert engine.wait_for_jobs(["q"], 2.5) is None

        async def over_asyncio() -> tuple[list, bool]:
            aio = AsyncEngine(engine)
            try:
                return await aio.claim("q", "w", block=2.5), await aio.wait_for_jobs("q", 2.5)
            finally:
                await aio.close()
        assert asyncio.run(over_asyncio()) == ([], False)
    finally:
        engine.close()


def test_a_server_that_stops_answering_is_noticed_by_every_call(lone):
    """SIGSTOP: the socket stays open, nothing answers. A plain call fails after the read
    timeout, a blocking one after its wait plus that timeout, sync and async."""
    engine = redispool.connect(lone.url + "?socket_timeout=1", prefix=prefix())
    engine.enqueue("q", 1)
    results: dict[str, Any] = {}

    def attempt(name: str, fn: Callable[[], Any]) -> None:
        try:
            results[name] = fn()
        except Exception as exc:  # noqa: BLE001 - the asserts below check it
            results[name] = exc

    async def async_calls() -> None:
        aio = AsyncEngine(engine)
        try:
            for name, call in (("astats", lambda: aio.stats("q")), ("aclaim", lambda: aio.claim("e", "w", block=1))):
                try:
                    results[name] = await call()
                except Exception as exc:  # noqa: BLE001 - the asserts below check it
                    results[name] = exc
        finally:
            await aio.close()

    lone.pause()
    try:
        threads = [threading.Thread(target=attempt, args=("stats", lambda: engine.stats("q"))),
                   threading.Thread(target=attempt, args=("claim", lambda: engine.claim("e", "w", block=1))),
                   threading.Thread(target=lambda: asyncio.run(async_calls()))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads), "a call hung on a server that does not answer"
    finally:
        lone.resume()
        engine.close()
    for name in ("stats", "claim", "astats", "aclaim"):
        assert isinstance(results[name], ConnectionFailed), (name, results[name])


def test_a_durable_wait_longer_than_the_read_timeout_ends_in_not_durable(lone):
    """WAIT holds its reply for durable_timeout: it is read allowing for that, so a lone
    master gives NotDurable, not a read timeout."""
    url = lone.url + "?socket_timeout=0.5&durable=1&durable_timeout=1.5"
    engine = redispool.connect(url, prefix=prefix())
    try:
        with pytest.raises(NotDurable, match="no replica acknowledged the write within 1.5s"):
            engine.enqueue("q", 1)
    finally:
        engine.close()


# ---------------------------------------------------------------------- errors
def test_not_durable_says_what_happened_and_connect_warns_without_a_replica(lone, caplog):
    caplog.set_level(logging.WARNING, logger="redispool")
    engine = redispool.connect(lone.url, prefix=prefix(), durable=True, durable_timeout=0.2)
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "0 connected replicas" in warnings[0], warnings
        with pytest.raises(NotDurable) as caught:
            engine.enqueue("q", 1)
        message = str(caught.value)
        assert isinstance(caught.value, ConnectionFailed), "still caught by code that retries a lost Redis"
        assert "cannot reach" not in message and message.startswith(f"write not durable at {lone.url}")
        assert "no replica acknowledged the write within 0.2s" in message
    finally:
        engine.close()


def test_connect_does_not_warn_when_the_primary_has_a_replica(sentinels, caplog):
    caplog.set_level(logging.WARNING, logger="redispool")
    engine = redispool.connect(sentinels.url, prefix=prefix(), durable=True)
    try:
        engine.enqueue("q", 1)
    finally:
        engine.close()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_an_unreachable_cluster_is_one_line_of_connection_failed():
    url = f"redis+cluster://admin:topsecret@127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    with pytest.raises(ConnectionFailed) as caught:
        redispool.connect(url)
    message = str(caught.value)
    assert "\n" not in message and "topsecret" not in message and "admin:***@" in message
    assert message.startswith("cannot reach Redis at redis+cluster://") and "no cluster node answered" in message
    line = one_line_error(cli("stats", url=url))
    assert line.startswith("redispool: cannot reach Redis at redis+cluster://admin:***@")
    assert cli("stats", url=url).returncode == 1


def test_an_unreachable_sentinel_is_one_short_line_naming_the_sentinels():
    ports = [free_port(), free_port()]
    url = f"redis+sentinel://admin:topsecret@127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}/mymaster"
    with pytest.raises(ConnectionFailed) as caught:
        redispool.connect(url)
    message = str(caught.value)
    assert "\n" not in message and "topsecret" not in message and len(message) < 300, message
    assert "<redis" not in message and "mymaster" in message
    assert all(f"127.0.0.1:{p}" in message for p in ports), message
    result = cli("stats", url=url)
    assert result.returncode == 1
    assert one_line_error(result).startswith("redispool: cannot reach Redis at redis+sentinel://admin:***@")


def test_sentinels_that_know_no_such_master_say_so(sentinels):
    url = sentinels.url.rsplit("/", 1)[0] + "/no-such-master"
    with pytest.raises(ConnectionFailed, match="the sentinels know no healthy master by that name"):
        redispool.connect(url)


def test_a_database_the_server_does_not_have_is_bad_input(multi):
    url = f"redis://127.0.0.1:{multi.server.port}/99"
    with pytest.raises(InvalidOption, match="has no database 99"):
        redispool.connect(url)
    result = cli("stats", url=url)
    assert result.returncode == 2
    assert "has no database 99" in one_line_error(result)


def test_unix_socket_urls_connect(multi):
    """unix:// raised TypeError ('socket_keepalive') at the first call."""
    engine = redispool.connect(f"unix://{multi.socket}", prefix=prefix())
    try:
        assert engine.ping() and engine.enqueue("q", 1)
        assert engine.claim("q", "w")[0].payload == 1
    finally:
        engine.close()


def test_a_timeout_in_the_url_must_be_a_positive_number():
    for bad in ("abc", "0", "-1"):
        with pytest.raises(InvalidOption, match="socket_timeout"):
            redispool.connect(f"redis+cluster://127.0.0.1:1?socket_timeout={bad}")
