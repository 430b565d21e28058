"""``redispool demo``: the whole system in one process, printing what happens.

A worker, the scheduler and the sweeper run on threads against one engine (memory:// by
default). The demo enqueues e-mails (one delayed), a report whose first attempt fails
and is retried after a backoff, and a cue firing every second; it ends when all of that
is done, prints the figures, and exits 0 (1 if something did not finish).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .models import Job

QUEUES = ("demo.emails", "demo.reports", "demo.ticks")
CUE = "every-second"


class _Echo(logging.Handler):
    def __init__(self, echo: Callable[[str], object], start: float) -> None:
        super().__init__(logging.INFO)
        self.echo, self.start = echo, start
        self.closed = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.closed:
            return
        who = record.name.rsplit(".", 1)[-1]
        line = record.getMessage().split("\n", 1)[0]  # tracebacks stay out of the demo
        try:
            self.echo(f"  {time.monotonic() - self.start:5.2f}s {who:<9} {line}")
        except OSError:  # stdout went away (`redispool demo | head`): the threads must not die of it
            self.closed = True


def run_demo(url: str, prefix: str, seconds: float, echo: Callable[[str], object]) -> None:
    from . import Scheduler, Sweeper, Worker, connect
    start = time.monotonic()
    engine = connect(url, prefix=prefix, backoff_base=0.3, backoff_cap=1.0)
    echo(f"redispool demo on {engine.url} (prefix {prefix!r}); queues {', '.join(QUEUES)}")
    for queue in QUEUES:  # a clean slate, in case a demo ran here before
        for state in ("scheduled", "ready", "leased", "done", "dead", "cancelled"):
            engine.purge(queue, state)
    retried_before = {q: engine.stats(q)["totals"]["retried"] for q in QUEUES}  # lifetime totals stay
    handler = _Echo(echo, start)
    logger = logging.getLogger("redispool")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)

    worker = Worker(engine, queues=list(QUEUES), concurrency=4, lease=5, grace=5, idle_wait=0.5)

    @worker.process("demo.emails")
    def send_email(job: Job) -> dict[str, str]:
        time.sleep(0.05)  # the "work"
        return {"sent_to": job.payload["to"]}

    @worker.process("demo.reports")
    def build_report(job: Job) -> str:
        if job.attempt == 1:
            raise RuntimeError("upstream timed out (the demo fails the first attempt)")
        return f"report {job.payload['name']} built on attempt {job.attempt}"

    @worker.process("demo.ticks")
    def tick(job: Job) -> str:
        return f"tick {job.id}"

    scheduler = Scheduler(engine, interval=0.2)
    sweeper = Sweeper(engine, interval=0.5)
    threads = [threading.Thread(target=t.run, name=f"demo-{name}", daemon=True)
               for name, t in (("worker", worker), ("scheduler", scheduler), ("sweeper", sweeper))]
    try:
        emails = engine.enqueue_many("demo.emails", [{"to": f"user{i}@example.com"} for i in range(5)])
        later = engine.enqueue("demo.emails", {"to": "later@example.com"}, delay=1.5)
        report = engine.enqueue("demo.reports", {"name": "daily"}, max_attempts=3)
        engine.add_cue("demo.ticks", CUE, "* * * * * *", payload={"from": "cue"})
        echo(f"enqueued e-mails {', '.join(emails)}, delayed e-mail {later} (1.5 s), report {report};"
             f" cue {CUE!r} fires every second for {seconds:g} s")
        for t in threads:  # after the enqueues, so the lines above come first
            t.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline + 5:
            time.sleep(0.25)
            done = {q: engine.stats(q)["done"] for q in QUEUES}
            if (time.monotonic() >= deadline and done["demo.emails"] == 6 and done["demo.reports"] == 1):
                break
        engine.remove_cue("demo.ticks", CUE)
    finally:
        worker.stop()
        scheduler.stop()
        sweeper.stop()
        for t in threads:
            if t.ident is not None:  # started
                t.join(10)
        logger.removeHandler(handler)
        logger.setLevel(old_level)

    echo("")
    # jobs now: current counts per state; retried: during this run, and the queue's lifetime
    # total (a demo that ran here before counted its retries too)
    echo(f"{'':<14}{'jobs now':<27}   retried")
    echo(f"{'queue':<14}{'done':>6}{'dead':>6}{'ready':>7}{'leased':>8}   {'this run':>8}{'all runs':>10}")
    for queue in QUEUES:
        s = engine.stats(queue)
        retried = s["totals"]["retried"]
        echo(f"{queue:<14}{s['done']:>6}{s['dead']:>6}{s['ready']:>7}{s['leased']:>8}"
             f"   {retried - retried_before[queue]:>8}{retried:>10}")
    info = engine.get("demo.reports", report)
    ticks = engine.stats("demo.ticks")["done"]
    if info is None:  # trimmed already (a stored retention of this queue keeps nothing)
        echo(f"report {report}: gone")
    else:
        echo(f"report {report}: {info.state}, result {info.result!r}, errors {[e for _, e, _ in info.errors]}")
    echo(f"cue {CUE!r} fired {ticks} job(s), one per second")
    ok = info is not None and info.state == "done" and engine.stats("demo.emails")["done"] == 6 and ticks >= 1
    engine.close()
    if not ok:
        raise SystemExit("redispool demo: something did not finish (see above)")
    echo(f"demo finished in {time.monotonic() - start:.1f}s")
