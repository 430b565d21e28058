"""`bin/bench --sse` and `bin/bench --webhooks`: how soon an event reaches its live views.

Latency is measured from the event's own Redis timestamp (its id's milliseconds, Redis's
clock; this machine's clock too) to the moment this side sees it: an id holds whole
milliseconds, so each figure carries up to 1 ms (on average 0.5 ms) of truncation on
top. The SSE figures also give the time from the start of the ``enqueue`` call (this
process's clock alone, no truncation, but the call's round trip included: an upper
bound; from its return would read the frame that arrived meanwhile, a lower one).

- ``sse_latency``: a ``redispool serve`` process, one ``GET /v1/events?queue=Q`` stream
  held open on a raw socket, jobs enqueued one at a time ``GAP_S`` apart; the time until
  each ``enqueued`` frame arrives.
- ``webhook_figures``: a loopback receiver (``receive``: an asyncio HTTP/1.1 keep-alive
  server in a process of its own, each answer written in one send, so no Nagle/delayed-ACK
  stall) and one ``redispool deliver`` process, a signed webhook on ``enqueued`` events.
  Latency: jobs enqueued one at a time, event -> arrival at the receiver. Throughput:
  ``enqueue_many`` of N jobs (batches of 1,000), deliveries/s at the receiver from the
  first arrival to the last (and from the first enqueue to the last arrival).
  Also the CPU each process used per delivery (deliverer, receiver: /proc; Redis: INFO
  cpu) and the Redis commands clients sent per delivery. ``BENCH_PYSPY=FILE`` records
  py-spy's collapsed stacks (``--gil``) of the deliverer meanwhile; ``BENCH_DELIVER_LOG``
  is the deliverer's ``--log-level`` (default INFO).
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redispool

ROOT = Path(__file__).resolve().parent.parent
GAP_S = 0.01            # between two latency samples
WEBHOOK_GAP_S = 0.02
READY_TIMEOUT_S = 20.0


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pcts(values: list[float], name: str) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {f"{name}_samples": 0}
    at = lambda p: values[min(len(values) - 1, int(len(values) * p))]  # noqa: E731
    return {f"{name}_p50_ms": at(0.5), f"{name}_p95_ms": at(0.95), f"{name}_p99_ms": at(0.99),
            f"{name}_max_ms": values[-1], f"{name}_samples": len(values)}


def _stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used (Linux; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _redis_cpu_s(engine: Any) -> float:
    cpu = engine.client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def _id_ms(event_id: str) -> int:
    return int(event_id.rsplit(":", 1)[-1].split("-", 1)[0])


# ---------------------------------------------------------------------- SSE
class SseStream:
    """``GET /v1/events`` on a raw socket: each ``data:`` line's Event with its arrival time
    (wall clock, as Redis's)."""

    def __init__(self, port: int, query: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(f"GET /v1/events?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                          "Accept: text/event-stream\r\n\r\n".encode())
        self.buffer = b""
        self.connected = False

    def events(self) -> list[tuple[float, dict[str, Any]]]:
        """What the next recv brought (blocks until something does)."""
        data = self.sock.recv(65536)
        now = time.time()
        if not data:
            raise SystemExit("bin/bench: the SSE stream ended")
        self.buffer += data
        if not self.connected and self.buffer.startswith(b"HTTP/1.1 ") and not self.buffer.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"bin/bench: GET /v1/events answered {self.buffer[:300]!r}")
        *lines, self.buffer = self.buffer.split(b"\n")
        out = []
        for line in lines:
            if line.startswith(b": connected"):
                self.connected = True
            elif line.startswith(b"data: "):
                out.append((now, json.loads(line[6:])))
        return out

    def close(self) -> None:
        self.sock.close()


def sse_latency(engine: Any, url: str, samples: int) -> dict[str, float]:
    """An SSE client of ``redispool serve`` while jobs are enqueued one at a time."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "redispool", "--url", url, "--prefix", engine.prefix,
                               "--log-level", "WARNING", "serve", "--port", str(port)], env=_env())
    queue = "bench-sse"
    stream = None
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while stream is None:
            try:
                stream = SseStream(port, f"queue={queue}")
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("bin/bench: redispool serve did not start") from None
                time.sleep(0.05)
        while not stream.connected:
            stream.events()
        from_event: list[float] = []
        from_call: list[float] = []
        for k in range(samples + 10):        # the first 10 warm up the path
            time.sleep(GAP_S)
            called = time.time()
            job_id = engine.enqueue(queue, {"k": k})
            while True:
                got = [(t, e) for t, e in stream.events() if e["type"] == "enqueued" and e["job_id"] == job_id]
                if got:
                    break
            arrived, event = got[0]
            if k >= 10:
                from_event.append((arrived - _id_ms(event["id"]) / 1000) * 1000)
                from_call.append((arrived - called) * 1000)
        return {**_pcts(from_event, "sse_from_event"), **_pcts(from_call, "sse_from_enqueue_call")}
    finally:
        if stream is not None:
            stream.close()
        _stop(server)
        engine.purge(queue, "ready")


# ---------------------------------------------------------------------- the receiver
class _Receiver(asyncio.Protocol):
    """HTTP/1.1 keep-alive: each request recorded (arrival time, body), answered 200 in
    one write. ``GET /records`` answers what was recorded (JSON) and forgets it; with
    nothing recorded it waits up to ``WAIT_S`` for the next (so the bench need not poll)."""

    records: list[tuple[float, bytes]] = []
    waiting: list[Any] = []         # transports of GET /records waiting for a record
    WAIT_S = 1.0
    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            if head.startswith("GET /records"):
                if self.records:
                    self.answer_records(self.transport)
                else:
                    self.waiting.append(self.transport)
                    asyncio.get_running_loop().call_later(self.WAIT_S, self.answer_waiting)
            else:
                self.records.append((now, body))
                self.transport.write(self.ANSWER)
                self.answer_waiting()

    @classmethod
    def answer_records(cls, transport: Any) -> None:
        out = json.dumps([[t, b.decode()] for t, b in cls.records]).encode()
        cls.records.clear()
        transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))

    @classmethod
    def answer_waiting(cls) -> None:
        while cls.waiting:
            cls.answer_records(cls.waiting.pop())


def receive(port: int) -> None:
    """Run the receiver on 127.0.0.1:``port`` until killed."""
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Receiver, "127.0.0.1", port)
        print("ready", flush=True)
        await server.serve_forever()
    asyncio.run(main())


def _records(port: int) -> list[tuple[float, dict[str, Any]]]:
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/records")
    rows = json.loads(conn.getresponse().read())
    conn.close()
    return [(t, json.loads(b)) for t, b in rows]


# ---------------------------------------------------------------------- webhooks
def webhook_figures(engine: Any, url: str, samples: int, jobs: int, concurrency: int | None,
                    counter: Any) -> dict[str, Any]:
    """``counter``: bin/bench's CommandCounter (Redis commands clients sent, per delivery)."""
    port = _free_port()
    receiver = subprocess.Popen([sys.executable, str(Path(__file__)), "receive", str(port)], env=_env(),
                                stdout=subprocess.PIPE)
    assert receiver.stdout is not None
    if receiver.stdout.readline().strip() != b"ready":
        raise SystemExit("bin/bench: the receiver did not start")
    queue = "bench-hooks"
    engine.enqueue(queue, {"k": "create"})      # the queue exists before the deliverer lists them
    engine.add_webhook("bench", f"http://127.0.0.1:{port}/hook", events=["enqueued"], queues=[queue],
                       secret="bench-secret")
    log = tempfile.NamedTemporaryFile("w+", prefix="bench-deliver-", suffix=".log")  # noqa: SIM115
    args = [sys.executable, "-m", "redispool", "--url", url, "--prefix", engine.prefix,
            "--log-level", os.environ.get("BENCH_DELIVER_LOG", "INFO"), "deliver"]
    if concurrency:
        args += ["--concurrency", str(concurrency)]
    deliverer = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=log)
    out: dict[str, Any] = {"deliverer_concurrency": concurrency or "default"}
    try:
        def wait_records(n: int, stall: float) -> list[tuple[float, dict[str, Any]]]:
            """``n`` deliveries, or SystemExit when none arrives for ``stall`` s."""
            got: list[tuple[float, dict[str, Any]]] = []
            deadline = time.monotonic() + stall
            while len(got) < n:
                if time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(f"bin/bench: {len(got)} of {n} deliveries arrived; the deliverer's log ends: "
                                     f"{log.read()[-2000:]}")
                if deliverer.poll() is not None:
                    log.seek(0)
                    raise SystemExit(f"bin/bench: the deliverer exited: {log.read()[-2000:]}")
                more = _records(port)
                if more:
                    got += more
                    deadline = time.monotonic() + stall
            return got

        engine.enqueue(queue, {"k": "warm-up"})
        wait_records(1, READY_TIMEOUT_S)
        # latency: one event at a time
        latencies: list[float] = []
        for k in range(samples):
            time.sleep(WEBHOOK_GAP_S)
            job_id = engine.enqueue(queue, {"k": k})
            deadline = time.monotonic() + 10
            while True:
                got = [(t, b) for t, b in _records(port) if b["job_id"] == job_id]
                if got or time.monotonic() > deadline:
                    break
            if got:
                latencies.append((got[0][0] - _id_ms(got[0][1]["id"]) / 1000) * 1000)
        out.update(_pcts(latencies, "webhook_from_event"))
        # throughput: N events at once, in a log long enough to hold them all (the default
        # events_max would trim the first before the deliverer read them: lost, and logged so)
        big = redispool.connect(url, prefix=engine.prefix, events_max=max(redispool.defaults.EVENTS_MAX, 2 * jobs))
        profiler = None
        if os.environ.get("BENCH_PYSPY"):   # py-spy's collapsed stacks of the deliverer while it works
            profiler = subprocess.Popen(["py-spy", "record", "-p", str(deliverer.pid), "-f", "raw", "-r", "100",
                                         "--gil", "-o", os.environ["BENCH_PYSPY"]], stdout=subprocess.DEVNULL)
            time.sleep(1)
        cpu = {"deliverer": (deliverer.pid, _cpu_s(deliverer.pid)), "receiver": (receiver.pid, _cpu_s(receiver.pid))}
        redis_cpu = _redis_cpu_s(engine)
        commands = counter.snapshot()
        started = time.time()
        try:
            for i in range(0, jobs, 1000):
                big.enqueue_many(queue, [{"n": n} for n in range(i, min(jobs, i + 1000))])
        finally:
            big.close()
        enqueued = time.time()
        got = wait_records(jobs, 15)
        for name, (pid, before) in cpu.items():
            out[f"{name}_cpu_ms_per_delivery"] = (_cpu_s(pid) - before) / jobs * 1000
        out["redis_cpu_ms_per_delivery"] = (_redis_cpu_s(engine) - redis_cpu) / jobs * 1000
        out["redis_calls_per_delivery"] = counter.delta(commands)[0] / jobs
        if profiler is not None:
            profiler.send_signal(2)
            profiler.wait(30)
        arrivals = sorted(t for t, _ in got)
        out.update({"webhook_throughput_deliveries": len(got),
                    "webhook_enqueue_s": enqueued - started,
                    "webhook_deliveries_s": (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]),
                    "webhook_deliveries_s_from_enqueue": len(arrivals) / (arrivals[-1] - started),
                    "webhook_distinct_events": len({b["id"] for _, b in got})})
        return out
    finally:
        _stop(deliverer)
        _stop(receiver)
        log.close()
        engine.remove_webhook("bench")


if __name__ == "__main__":
    if sys.argv[1:2] == ["receive"]:
        receive(int(sys.argv[2]))
