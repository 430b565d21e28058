"""`bin/bench --limits`: does a queue's rate limit hold, and what do limits cost a drain?

- hold: ``claimers`` real `redispool worker` processes (bin/bench_app.py's no-op handler,
  default settings) drain a backlog under ``set_limits(rate=N, per=1)`` for ``seconds``,
  measured from 2 s after the last of them registered. Each job's result is the server
  time (ms) of the claim that leased it (bin/bench_app.py): the jobs claimed in the
  measured span against N x span, and the most claims in any 1 s window of the whole
  run (never over N).
- cost: drains of ``jobs`` by one worker process with no limits and with limits far above
  the drain rate (rate 10^6/s, concurrency 10^6), alternating, ``rounds`` of each: jobs/s
  and the time spent in scripts per job (INFO commandstats), which the limits' checks add
  to (the ratelog's LPUSH/trim, the config read, a ZCARD).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FAR_ABOVE = {"rate": 1_000_000, "per": 1.0, "concurrency": 1_000_000}


def _workers(url: str, prefix: str, queue: str, n: int, events_max: int = 10_000) -> list[subprocess.Popen[bytes]]:
    env = dict(os.environ, REDISPOOL_URL=url, REDISPOOL_PREFIX=prefix, BENCH_QUEUE=queue,
               REDISPOOL_EVENTS_MAX=str(events_max),
               PYTHONPATH=os.pathsep.join([str(ROOT / "bin"), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    args = [sys.executable, "-m", "redispool", "--url", url, "--prefix", prefix, "--log-level", "WARNING",
            "worker", "bench_app:worker"]
    return [subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(n)]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _completed(engine: Any, queue: str) -> int:
    return int(engine.client.hget(engine.keys(queue).counts, "completed") or 0)


def rate_hold(engine: Any, url: str, rate: int, seconds: float, claimers: int) -> dict[str, Any]:
    queue = "bench-limits-rate"
    warmup = 2.0
    backlog = int(rate * (seconds + warmup + 3) * 1.2)   # the measured span's jobs and more
    total = 0

    def top_up(n: int) -> None:
        nonlocal total
        for i in range(total, total + n, 1000):
            engine.enqueue_many(queue, [{"claim_ms": 1, "n": k} for k in range(i, min(total + n, i + 1000))])
        total += n
    top_up(backlog)
    engine.set_limits(queue, rate=rate, per=1.0)
    engine.set_retention(queue, done_max=10 * backlog)
    procs = _workers(url, engine.prefix, queue, claimers)
    try:
        deadline = time.monotonic() + 120
        while len(engine.workers()) < claimers:   # every process started and claiming
            if time.monotonic() > deadline:
                raise SystemExit("bin/bench: the --limits workers did not start")
            time.sleep(0.05)
        top_up(max(0, backlog - engine.stats(queue)["ready"]))   # what the first ones claimed while the rest started
        seconds_, micros = engine.client.time()
        start = seconds_ * 1000 + micros // 1000 + int(warmup * 1000)
        time.sleep(warmup + seconds + 0.5)
    finally:
        _stop(procs)
    times = sorted(info.result for offset in range(0, total, 1000)
                   for info in engine.jobs(queue, "done", limit=1000, offset=offset))
    span = [t for t in times if start <= t < start + int(seconds * 1000)]
    busiest = _most_in_window(times, 1000)
    engine.purge(queue, "ready")
    engine.purge(queue, "done")
    engine.remove_queue(queue)
    return {"limits_rate": rate, "limits_claimers": claimers, "limits_span_s": seconds,
            "limits_claimed_in_span": len(span), "limits_rate_held_pct": 100 * len(span) / (rate * seconds),
            "limits_most_claims_in_any_1s": busiest}


def _most_in_window(times: list[int], per_ms: int) -> int:
    """The most of ``times`` (sorted ms) in any half-open window of ``per_ms``."""
    most, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - per_ms:
            lo += 1
        most = max(most, hi - lo + 1)
    return most


def _script_usec(client: Any) -> int:
    stats = client.info("commandstats")   # script calls: FCALL(_RO), or EVALSHA without functions
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("usec", 0)) for c in ("fcall", "fcall_ro", "evalsha"))


def drain_cost(engine: Any, url: str, jobs: int, rounds: int) -> dict[str, Any]:
    if rounds < 1:
        return {}
    figures: dict[str, list[tuple[float, float]]] = {"none": [], "far_above": []}
    for n in range(rounds):
        for mode in ("none", "far_above"):
            queue = f"bench-limits-drain-{mode}{n}"
            for i in range(0, jobs, 1000):
                engine.enqueue_many(queue, [{"n": k} for k in range(i, min(jobs, i + 1000))])
            if mode == "far_above":
                engine.set_limits(queue, **FAR_ABOVE)
            usec = _script_usec(engine.client)
            procs = _workers(url, engine.prefix, queue, 1)
            marks: list[tuple[float, int]] = []
            try:
                deadline = time.perf_counter() + 300
                while time.perf_counter() < deadline:
                    done = _completed(engine, queue)
                    marks.append((time.perf_counter(), done))
                    if done >= jobs:
                        break
                    time.sleep(0.02)
            finally:
                _stop(procs)
            lo = next(t for t, d in marks if d >= jobs * 0.1)
            hi = next(t for t, d in marks if d >= jobs * 0.9)
            script_us = (_script_usec(engine.client) - usec) / jobs
            figures[mode].append((jobs * 0.8 / (hi - lo), script_us))
            engine.purge(queue, "done")
            engine.remove_queue(queue)
    best = {mode: max(r for r, _ in runs) for mode, runs in figures.items()}
    return {"limits_drain_none_jobs_s": [round(r) for r, _ in figures["none"]],
            "limits_drain_far_above_jobs_s": [round(r) for r, _ in figures["far_above"]],
            "limits_drain_none_script_us_per_job": [round(u, 1) for _, u in figures["none"]],
            "limits_drain_far_above_script_us_per_job": [round(u, 1) for _, u in figures["far_above"]],
            "limits_drain_cost_pct_best": (1 - best["far_above"] / best["none"]) * 100}
