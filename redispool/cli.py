"""The ``redispool`` admin CLI: run workers and daemons, inspect and act on queues.

Errors follow one rule: bad input (a bad queue name, JSON, cron, option, an unknown job
or cue) is one line on stderr and exit 2; an unreachable Redis is one line naming the
URL (password masked) and exit 1; never a traceback.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from . import defaults, tojson
from .errors import REDIS_TROUBLE, ConnectionFailed, RedisFull, RedispoolError, from_redis
from .grpc.options import grpc_options
from .grpc.options import settings as grpc_settings
from .keys import STATES

if TYPE_CHECKING:
    from .engine import Engine
    from .worker import Worker

C = TypeVar("C", bound=Callable[..., Any])

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class Context:
    """What every command gets: the global options and a lazily made Engine."""

    current: Context | None = None  # the URL an unexpected ConnectionError is reported with

    def __init__(self, url: str | None, prefix: str, url_given: bool) -> None:
        self.url = url or defaults.URL
        self.prefix = prefix
        self.url_given = url_given
        self._engine: Engine | None = None

    def engine(self, **options: Any) -> Engine:
        if self._engine is None:
            from . import connect
            self._engine = connect(self.url, prefix=self.prefix, **options)
        return self._engine


class Cli(click.Group):
    """A group whose errors are one stderr line: exit 2 for bad input, 1 for Redis."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            code = super().main(args, prog_name or "redispool", complete_var, standalone_mode=False, **extra)
            code = code if isinstance(code, int) else 0
        except click.exceptions.Exit as exc:
            code = exc.exit_code
        except Exception as exc:  # noqa: BLE001 (report() re-raises what it does not know)
            code = report(exc)
        except KeyboardInterrupt:
            code = 130
        if standalone_mode:
            sys.exit(code)
        return code


def report(exc: Exception) -> int:
    """One stderr line for a command's error, and its exit status: 2 for bad input, 1 for
    Redis trouble; an error it does not know is raised again (a bug: its traceback shows)."""
    if isinstance(exc, click.Abort):
        click.echo("redispool: aborted", err=True)
        return 1
    if isinstance(exc, click.ClickException):
        hint = " (see --help)" if isinstance(exc, click.UsageError) else ""
        click.echo(f"redispool: error: {one_line(exc.format_message())}{hint}", err=True)
        return exc.exit_code
    if isinstance(exc, (ConnectionFailed, RedisFull)):   # Redis trouble, not the input: exit 1
        click.echo(f"redispool: {one_line(exc)}", err=True)
        return 1
    if isinstance(exc, REDIS_TROUBLE):  # one that no Engine method wrapped
        url = Context.current.url if Context.current else defaults.URL
        click.echo(f"redispool: {one_line(from_redis(url, exc))}", err=True)
        return 1
    if isinstance(exc, (RedispoolError, ValueError, LookupError, TypeError)):
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        click.echo(f"redispool: error: {one_line(message)}", err=True)
        return 2
    raise exc


def one_line(message: object) -> str:
    return " ".join(str(message).split())


def fail(message: str) -> NoReturn:
    """Stop the command: bad input (exit 2, with a hint to see --help)."""
    raise click.UsageError(message)


class Refused(click.ClickException):
    """Well-formed input the current state rules out (a job that is not dead): exit 2,
    the reason and no --help hint."""

    exit_code = 2


def read_json(text: str | None, what: str) -> Any:
    """``text`` as JSON; ``-`` reads it from stdin and ``@PATH`` from a file (for payloads
    larger than a command line may be)."""
    if text == "-":
        text = click.get_text_stream("stdin").read()
        what = f"{what} (from stdin)"
    elif text is not None and text.startswith("@"):
        path = text[1:]
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read {what} from {path!r}: {exc.strerror if isinstance(exc, OSError) else exc}")
        what = f"{what} (from {path})"
    return parse_json(text, what)


def parse_json(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{what} is not valid JSON: {exc}")
    except RecursionError:
        fail(f"{what} nests deeper than JSON can be read here")


def when(seconds: float | None) -> str:
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    delta = time.time() - seconds
    return f"{delta:.1f}s ago" if delta >= 0 else f"in {-delta:.1f}s"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print an aligned text table."""
    cells = [[str(c) for c in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def as_json(value: object) -> None:
    """Every --json output: strict JSON, bytes and NaN/Infinity tagged as the HTTP API writes them."""
    click.echo(tojson.dumps(value, indent=2))


class _Formatter(logging.Formatter):
    """logging's default text format (or the message alone: JSON lines), with the date and
    time formatted once per second rather than on every line, and a line without an
    exception or stack written by one f-string (a worker writes two lines per job)."""

    TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    _second: int | None = None
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info or self._fmt not in (self.TEXT, "%(message)s"):
            return super().format(record)
        record.message = record.getMessage()
        if self._fmt == "%(message)s":
            return record.message
        record.asctime = self.formatTime(record)
        return f"{record.asctime} {record.levelname} {record.name}: {record.message}"

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return f"{self._stamp},{int(record.msecs):03d}"   # logging's default_msec_format


class _BatchedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes its lines in batches: what came in the last FLUSH_S
    seconds (or BATCH lines) in one write. A worker writes two lines per job, and a write
    per line (a system call, the GIL given up and fought for with the handler threads)
    was half of what its logging cost. Written at exit (logging.shutdown) and before a
    fork; a process killed with SIGKILL loses at most its last FLUSH_S of lines. Only in
    the processes that run a worker, never in the supervisor of ``--processes``: a thread
    there would get each child a second SIGTERM when a SIGKILL ends it (the kernel sends
    PR_SET_PDEATHSIG again as the children pass from one dying thread to the next), and a
    second signal makes a worker exit without releasing its jobs."""

    FLUSH_S = 0.05
    BATCH = 64

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._lines: list[str] = []
        self._closed = False
        self._start_flusher()
        os.register_at_fork(before=self.flush, after_in_child=self._start_flusher)

    def _start_flusher(self) -> None:
        if self._closed:
            return
        self._pending = threading.Event()
        threading.Thread(target=self._flusher, args=(self._pending,), name="redispool-log", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:   # (called holding self.lock)
        try:
            self._lines.append(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)
            return
        if len(self._lines) == 1:
            self._pending.set()
        elif len(self._lines) >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            lines, self._lines = self._lines, []
            if lines:
                with contextlib.suppress(OSError, ValueError):   # a broken or closed stream is not fatal
                    self.stream.write("".join(lines))
                    self.stream.flush()

    def close(self) -> None:
        self.flush()
        self._closed = True
        self._pending.set()   # its flusher ends
        super().close()

    def _flusher(self, pending: threading.Event) -> None:
        while not self._closed:
            pending.wait()
            pending.clear()
            time.sleep(self.FLUSH_S)
            self.flush()


def setup_logging(level: str, fmt: str = "text", *, batched: bool = False) -> None:
    """Log to stderr at ``level``, as text or JSON lines; ``batched``: in batches (a
    process running a worker: two lines per job), else each line as it comes. Batched
    logging replaces the handlers a first call made."""
    pattern = "%(message)s" if fmt == "json" else _Formatter.TEXT
    handler = _BatchedStreamHandler(sys.stderr) if batched else logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(pattern))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler], force=batched)


state_option = click.option("--state", "state", required=True, type=click.Choice(STATES),
                            help="job state")
json_option = click.option("--json", "as_json_", is_flag=True, help="machine-readable JSON on stdout")

RETENTION_DEFAULTS = (
    ("done_ttl", float, defaults.DONE_TTL_ENV,
     f"seconds done and cancelled jobs are kept (default {defaults.DONE_TTL_S:g})"),
    ("done_max", click.IntRange(0), defaults.DONE_MAX_ENV,
     f"done (and cancelled) jobs kept per queue (default {defaults.DONE_MAX})"),
    ("dead_ttl", float, defaults.DEAD_TTL_ENV, f"seconds dead jobs are kept (default {defaults.DEAD_TTL_S:g})"),
    ("dead_max", click.IntRange(0), defaults.DEAD_MAX_ENV, f"dead jobs kept per queue (default {defaults.DEAD_MAX})"),
)


def retention_defaults(command: C) -> C:
    """--done-ttl/--done-max/--dead-ttl/--dead-max (or their environment variables) of the
    processes that finish or trim jobs: this process's retention for queues that have none
    stored (`redispool retention`), so a fleet can agree on one."""
    for name, kind, env, text in reversed(RETENTION_DEFAULTS):
        command = click.option("--" + name.replace("_", "-"), name, type=kind, envvar=env,
                               help=f"{text}, for queues without stored retention (env {env})")(command)
    return command


def given(options: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in options.items() if value is not None}


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--url", envvar=defaults.URL_ENV, help=f"Redis URL (env {defaults.URL_ENV}; default {defaults.URL})")
@click.option("--prefix", envvar=defaults.PREFIX_ENV, default=defaults.PREFIX, show_default=True,
              help=f"key prefix (env {defaults.PREFIX_ENV})")
@click.option("--log-level", default="INFO", show_default=True, type=click.Choice(LOG_LEVELS, case_sensitive=False),
              help="log level of the worker and daemons")
@click.version_option(package_name="redispool")
@click.pass_context
def cli(ctx: click.Context, url: str | None, prefix: str, log_level: str) -> None:
    """redispool: a Redis-backed job queue. Run workers and daemons, inspect and act on queues."""
    if not prefix or "{" in prefix or "}" in prefix:  # the library would fall back to "rp" for ''
        raise click.BadParameter(f"must be a non-empty key prefix without braces, got {prefix!r}",
                                 param_hint="'--prefix'")
    source = ctx.get_parameter_source("url")
    ctx.obj = Context.current = Context(url, prefix, url_given=source == click.core.ParameterSource.COMMANDLINE)
    ctx.meta["log_level"] = log_level


def obj() -> Context:
    """The Context of the command running now (made by the group callback)."""
    context = click.get_current_context().find_object(Context)
    if context is None:  # only when a command is invoked outside the `cli` group
        raise RuntimeError("no redispool CLI context")
    return context


# ---------------------------------------------------------------------- processes
def load_worker(target: str) -> Worker:
    """Import ``module:attr`` (from the current directory too): a Worker, or a callable
    returning one."""
    from .worker import Worker
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        fail(f"worker target must be MODULE:ATTR, got {target!r}")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        fail(f"cannot import {module_name!r}: {exc}")
    value = getattr(module, attr, None)
    if value is None:
        fail(f"module {module_name!r} has no attribute {attr!r}")
    if not isinstance(value, Worker) and callable(value):
        try:
            value = value()
        except TypeError as exc:
            fail(f"{target} is neither a redispool.Worker nor a factory callable without arguments: {exc}")
    if not isinstance(value, Worker):
        fail(f"{target} is not a redispool.Worker (got {type(value).__name__})")
    return value


@cli.command()
@click.argument("target")
@click.option("--concurrency", type=click.IntRange(1),
              help="jobs in progress at once in each process (default: the Worker's)")
@click.option("--processes", type=click.IntRange(1), envvar="REDISPOOL_PROCESSES",
              help="worker processes, each with its own --concurrency (env REDISPOOL_PROCESSES; "
                   "default: one per CPU, plus one)")
@click.option("--prefetch", type=click.IntRange(0), envvar="REDISPOOL_PREFETCH",
              help="jobs each process may hold beyond --concurrency, waiting for a thread, while its "
                   "handlers are quick (env REDISPOOL_PREFETCH; default: the Worker's, --concurrency; 0: none)")
@click.option("--lease", type=float, help="seconds each claimed job is leased for")
@click.option("--grace", type=float, help="seconds in-flight jobs get to finish on shutdown")
@click.option("--timeout", type=float,
              help="seconds one attempt of a job without a timeout of its own may run (default: the Worker's)")
@click.option("--health-port", type=click.IntRange(0, 65535), help="serve 200/503 health on this port")
@click.option("--metrics-port", type=click.IntRange(0, 65535),
              help="serve Prometheus metrics (queue figures, as redispool serve) on this port")
@click.option("--health-host", default="127.0.0.1", show_default=True,
              help="address --health-port and --metrics-port listen on (0.0.0.0 in a container)")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--burst", is_flag=True,
              help="exit once no job is ready or in progress and no retry or delayed job is due "
                   "within --burst-wait seconds")
@click.option("--burst-wait", type=float, default=30.0, show_default=True,
              help="with --burst: wait for scheduled jobs due this soon; later ones are left (and counted)")
@retention_defaults
@click.pass_context
def worker(ctx: click.Context, /, target: str, concurrency: int | None, lease: float | None,
           grace: float | None, health_port: int | None, log_format: str, burst: bool,
           metrics_port: int | None = None, health_host: str = "127.0.0.1",
           burst_wait: float = 30.0, timeout: float | None = None, processes: int | None = None,
           prefetch: int | None = None, **retention: Any) -> None:
    """Run the redispool.Worker at TARGET (MODULE:ATTR) until SIGTERM/SIGINT.

    The app's own redispool.connect() sees --url/--prefix through REDISPOOL_URL and
    REDISPOOL_PREFIX, which this command sets before importing it. With more than one
    process (the default: one per CPU, plus one) this process supervises one
    child per process, each running the worker with its own --concurrency."""
    from . import validate
    from .retention import engine_defaults
    keep = engine_defaults(**given(retention))  # before the app is imported: bad input costs no connection
    if lease is not None:
        validate.lease_ms(lease)
    if grace is not None:
        validate.seconds_to_ms(grace, "grace")
    validate.timeout_ms(timeout)
    validate.seconds_to_ms(burst_wait, "burst_wait")
    setup_logging(ctx.meta["log_level"], log_format)
    o = obj()
    if o.url_given or defaults.URL_ENV not in os.environ:
        os.environ[defaults.URL_ENV] = o.url
    os.environ[defaults.PREFIX_ENV] = o.prefix
    w = load_worker(target)
    w.override(concurrency=concurrency, lease=lease, grace=grace, health_port=health_port,
               health_host=health_host, log_format=log_format, timeout=timeout, prefetch=prefetch)
    for attr, value in keep.items():  # the app engine's defaults, as --concurrency overrides its Worker's
        setattr(w.engine, attr, value)

    def start(index: int | None = None) -> int:
        setup_logging(ctx.meta["log_level"], log_format, batched=True)   # (in this process only)
        if index is not None:
            w.forked(index)   # its own worker id; the health port only in process 0
        if metrics_port is not None and not index:
            try:
                from .metrics import serve_metrics
            except ImportError as exc:
                fail(f"--metrics-port needs the http extra: pip install 'redispool[http]' ({exc.name} is missing)")
            try:
                serve_metrics(w.engine, metrics_port, health_host)
            except OSError as exc:
                fail(f"--metrics-port {metrics_port} on {health_host}: {exc.strerror or exc}")
        w.run(burst=burst, burst_wait=burst_wait)
        return 0

    from .processes import default_processes, supervise
    processes = processes or default_processes()
    if processes == 1:
        start()
        return
    logging.getLogger("redispool.worker").info("starting %d worker processes (--processes)", processes)
    ctx.exit(supervise([functools.partial(child, start, i) for i in range(processes)], burst=burst))


def child(start: Callable[[int], int], index: int) -> int:
    """Process ``index`` of ``worker --processes N``: the worker, with the CLI's error rule."""
    try:
        return start(index)
    except Exception as exc:  # noqa: BLE001 (report() re-raises what it does not know)
        return report(exc)


@cli.command()
@click.option("--interval", type=float, default=defaults.SCHEDULER_INTERVAL_S, show_default=True,
              help="seconds between steps (shorter when a cue is due sooner)")
@retention_defaults
@click.pass_context
def scheduler(ctx: click.Context, /, interval: float, **retention: Any) -> None:
    """Promote due delayed jobs and fire due cues of every queue, until SIGTERM."""
    from .scheduler import Scheduler
    setup_logging(ctx.meta["log_level"])
    Scheduler(obj().engine(**given(retention)), interval=interval).run()


@cli.command()
@click.option("--interval", type=float, default=1.0, show_default=True, help="seconds between sweeps")
@click.option("--worker-timeout", type=float, default=defaults.WORKER_TIMEOUT_S, show_default=True,
              help="seconds without a heartbeat before a worker's leases are taken back")
@retention_defaults
@click.pass_context
def sweeper(ctx: click.Context, /, interval: float, worker_timeout: float, **retention: Any) -> None:
    """Requeue expired leases and the jobs of vanished workers, and trim finished jobs to
    each queue's retention (stored, else this process's --done-ttl ...), until SIGTERM."""
    from .sweeper import Sweeper
    setup_logging(ctx.meta["log_level"])
    Sweeper(obj().engine(**given(retention)), interval=interval, worker_timeout=worker_timeout).run()


# ---------------------------------------------------------------------- producing
@cli.command()
@click.argument("queue")
@click.argument("payload_json", required=False)
@click.option("--priority", type=int, default=0, help="higher runs first, -1000..1000")
@click.option("--delay", type=float, help="seconds before the job is ready")
@click.option("--unique-key", help="no second unfinished job with this key")
@click.option("--max-attempts", type=int, default=defaults.MAX_ATTEMPTS, show_default=True)
@click.option("--lease", type=float, help="this job's lease in seconds")
@click.option("--timeout", type=float, help="seconds one attempt may run (default: the worker's)")
@click.option("--job-id", help="a custom job id (not all digits)")
@json_option
def enqueue(queue: str, payload_json: str | None, priority: int, delay: float | None,
            unique_key: str | None, max_attempts: int, lease: float | None, job_id: str | None,
            as_json_: bool, timeout: float | None = None) -> None:
    """Add a job to QUEUE with PAYLOAD_JSON (- reads it from stdin, @FILE from a file);
    prints its id. For a duplicate --job-id or a --unique-key an unfinished job holds, it
    prints the existing job's id and says so on stderr (--json: {"id", "created"})."""
    from .keys import check_queue
    check_queue(queue)
    payload = read_json(payload_json, "PAYLOAD_JSON")
    job_id, created = obj().engine().enqueue_or_get(
        queue, payload, priority=priority, delay=delay, unique_key=unique_key, max_attempts=max_attempts,
        lease=lease, job_id=job_id, timeout=timeout)
    if as_json_:
        return as_json({"id": job_id, "created": created})
    click.echo(job_id)
    if not created:
        click.echo(f"redispool: job {job_id} exists already (same job id, or an unfinished job holds the "
                   "unique key): nothing enqueued", err=True)


# ---------------------------------------------------------------------- inspecting
@cli.command()
@click.argument("queue", required=False)
@json_option
def stats(queue: str | None, as_json_: bool) -> None:
    """Jobs per state, paused, and latency of QUEUE (or of every queue)."""
    engine = obj().engine()
    rows = [engine.stats(q) for q in ([queue] if queue else engine.queues())]
    if as_json_:
        return as_json(rows[0] if queue else rows)
    table(["queue", *STATES, "paused", "latency_s"],
          [[r["queue"], *(r[s] for s in STATES), "yes" if r["paused"] else "no", f"{r['latency']:.3f}"]
           for r in rows])


@cli.command()
@click.argument("queue")
@state_option
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@json_option
def jobs(queue: str, state: str, limit: int, offset: int, as_json_: bool) -> None:
    """List jobs of QUEUE in one state (finished ones newest first)."""
    infos = obj().engine().jobs(queue, state, limit=limit, offset=offset)
    if as_json_:
        return as_json(infos)
    table(["id", "state", "attempts", "priority", "created", "updated", "error"],
          [[j.id, j.state, f"{j.attempts}/{j.max_attempts}", j.priority, when(j.created_at),
            when(j.updated_at), (j.error or "")[:60]] for j in infos])


@cli.command()
@click.argument("queue")
@click.argument("job_id")
@json_option
def job(queue: str, job_id: str, as_json_: bool) -> None:
    """Show one job: state, payload, options, result, errors."""
    from .errors import JobNotFound
    info = obj().engine().get(queue, job_id)
    if info is None:
        raise JobNotFound(f"no job {job_id!r} in queue {queue!r}")
    if as_json_:
        return as_json(info)
    for name in ("id", "queue", "state", "attempts", "max_attempts", "priority", "unique_key", "worker_id"):
        click.echo(f"{name:<16} {getattr(info, name)}")
    if info.timeout is not None:
        click.echo(f"{'timeout':<16} {info.timeout:g} s")
    for name in ("created_at", "updated_at", "run_at", "lease_expires_at", "finished_at"):
        if getattr(info, name):
            click.echo(f"{name:<16} {when(getattr(info, name))} UTC")
    if info.progress is not None:
        p = info.progress
        click.echo(f"{'progress':<16} {p['value']:g}%" + (f" {p['message']}" if p["message"] else "")
                   + f" (at {when(p['at'])} UTC)")
    dropped = "<dropped by the queue's retention: {} bytes>"
    click.echo(f"{'payload':<16} " + (dropped.format(info.payload_dropped) if info.payload_dropped is not None
                                      else tojson.dumps(info.payload)))
    click.echo(f"{'result':<16} " + (dropped.format(info.result_dropped) if info.result_dropped is not None
                                     else tojson.dumps(info.result)))
    for attempt, error, at in info.errors:
        click.echo(f"{'error':<16} attempt {attempt} at {when(at)}: {error}")


@cli.command()
@json_option
def workers(as_json_: bool) -> None:
    """Live workers: id, host, pid, queues, heartbeat, jobs in progress, counts."""
    infos = obj().engine().workers()
    if as_json_:
        return as_json(infos)
    table(["id", "host", "pid", "queues", "up", "heartbeat", "in_progress", "processed", "failed"],
          [[w.id, w.host, w.pid, ",".join(w.queues), f"{time.time() - w.started_at:.0f}s", ago(w.last_heartbeat),
            len(w.jobs_in_progress), w.processed, w.failed] for w in infos])


# ---------------------------------------------------------------------- acting
@cli.command()
@click.argument("queue")
@click.argument("job_ids", nargs=-1, required=True)
def retry(queue: str, job_ids: tuple[str, ...]) -> None:
    """Replay the given dead jobs of QUEUE (back to ready, attempts reset)."""
    from .errors import JobNotFound
    engine = obj().engine()
    for job_id in job_ids:
        info = engine.get(queue, job_id)
        if info is None:
            raise JobNotFound(f"no job {job_id!r} in queue {queue!r}")
        if info.state != "dead":
            raise Refused(f"job {job_id!r} of queue {queue!r} is {info.state}, not dead: retry replays dead "
                          "jobs only (nothing was retried)")
    click.echo(f"retried {engine.replay_dead(queue, list(job_ids))}")


@cli.command()
@click.argument("queue")
@click.option("--all", "all_", is_flag=True, help="replay every dead job (without it: only show how many)")
def replay(queue: str, all_: bool) -> None:
    """Replay every dead job of QUEUE (with --all)."""
    engine = obj().engine()
    if not all_:
        dead = engine.stats(queue)["dead"]
        click.echo(f"{dead} dead job(s) in {queue}; run with --all to replay them")
        return
    click.echo(f"replayed {engine.replay_dead(queue)}")


@cli.command()
@click.argument("queue")
@state_option
def purge(queue: str, state: str) -> None:
    """Delete every job of QUEUE in one state, for good."""
    click.echo(f"purged {obj().engine().purge(queue, state)}")


@cli.command()
@click.argument("queue")
def pause(queue: str) -> None:
    """Stop handing out jobs of QUEUE."""
    changed = obj().engine().pause(queue)
    click.echo(f"{queue} paused" if changed else f"{queue} was paused already")


@cli.command()
@click.argument("queue")
def resume(queue: str) -> None:
    """Hand out jobs of QUEUE again."""
    changed = obj().engine().resume(queue)
    click.echo(f"{queue} resumed" if changed else f"{queue} was not paused")


@cli.command("remove-queue")
@click.argument("queue")
def remove_queue(queue: str) -> None:
    """Delete QUEUE for good: its finished jobs, counters and history. Refused (exit 2,
    nothing changed) while it has scheduled, ready or leased jobs or cues."""
    if not obj().engine().remove_queue(queue):
        raise click.UsageError(f"no queue {queue!r}: nothing removed")
    click.echo(f"removed {queue}")


@cli.command()
@click.argument("queue")
@click.argument("job_id")
def cancel(queue: str, job_id: str) -> None:
    """Cancel a scheduled, ready or leased job."""
    engine = obj().engine()
    if engine.cancel(queue, job_id):
        click.echo(f"cancelled {job_id}")
    else:
        info = engine.get(queue, job_id)
        click.echo(f"job {job_id} is {info.state if info else 'gone'}: nothing to cancel")


@cli.command("retention")
@click.argument("queue")
@click.option("--done-ttl", type=float, help="seconds done and cancelled jobs are kept")
@click.option("--done-max", type=click.IntRange(0), help="done (and cancelled) jobs kept at most")
@click.option("--dead-ttl", type=float, help="seconds dead jobs are kept")
@click.option("--dead-max", type=click.IntRange(0), help="dead jobs kept at most")
@click.option("--drop-payloads/--keep-payloads", "drop_payloads", default=None,
              help="delete a job's payload when it is done (or keep it, the default)")
@click.option("--result-max", type=click.IntRange(0), metavar="BYTES",
              help="store no result bigger than this (msgpack bytes; get() says it was dropped)")
@click.option("--clear", is_flag=True, help="drop every stored setting first (back to each process's defaults)")
@json_option
def retention_command(queue: str, done_ttl: float | None, done_max: int | None, dead_ttl: float | None,
                      dead_max: int | None, drop_payloads: bool | None, result_max: int | None, clear: bool,
                      as_json_: bool) -> None:
    """Show QUEUE's retention, or store settings every process honours (workers, sweepers,
    serve). Options change just the settings given; --clear drops the stored ones first."""
    from .keys import check_queue
    check_queue(queue)
    changes = given({"done_ttl": done_ttl, "done_max": done_max, "dead_ttl": dead_ttl, "dead_max": dead_max,
                     "keep_payload": None if drop_payloads is None else not drop_payloads,
                     "result_max": result_max})
    engine = obj().engine()
    if changes or clear:
        stored = {} if clear else engine.retention(queue)["stored"]
        settings = engine.set_retention(queue, **{**stored, **changes})
    else:
        settings = engine.retention(queue)
    if as_json_:
        return as_json(settings)
    table(["setting", "value", "from"],
          [[name, _setting(value), "stored" if name in settings["stored"] else "this process's default"]
           for name, value in settings.items() if name != "stored"])


def _setting(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "any size"
    return f"{value:g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------- cues
@cli.group()
def cue() -> None:
    """Named recurring schedules (cron in a time zone)."""


@cue.command("add")
@click.argument("queue")
@click.argument("name")
@click.argument("cron")
@click.option("--tz", default="UTC", show_default=True,
              help="IANA time zone of the cron (Europe/Berlin; not 'localtime', which differs per host)")
@click.option("--payload", "payload_json", help="job payload as JSON; - reads it from stdin, @FILE from a file")
@click.option("--misfire", type=click.Choice(["skip", "catch_up"]), default="skip", show_default=True)
@click.option("--priority", type=int, default=0)
@click.option("--max-attempts", type=int, default=defaults.MAX_ATTEMPTS, show_default=True)
@click.option("--lease", type=float)
@click.option("--timeout", type=float, help="seconds one attempt of each fire's job may run")
@click.option("--url", help="POST each fire here (by `redispool deliver`) instead of to QUEUE's workers")
@click.option("--secret", envvar="REDISPOOL_WEBHOOK_SECRET",
              help="with --url: sign the requests with this secret (default $REDISPOOL_WEBHOOK_SECRET)")
@click.option("--scheme", type=click.Choice(["redispool", "spooled", "cueapi"]), default="redispool",
              show_default=True, help="with --url: headers and body of the requests")
def cue_add(queue: str, name: str, cron: str, tz: str, payload_json: str | None, misfire: str,
            priority: int, max_attempts: int, lease: float | None, url: str | None = None,
            secret: str | None = None, scheme: str = "redispool", timeout: float | None = None) -> None:
    """Create or replace cue NAME of QUEUE firing at CRON (5 fields, or 6 with seconds first)."""
    from .cron import Schedule, check_zone
    from .keys import check_queue
    check_queue(queue)
    Schedule(cron, check_zone(tz))
    payload = read_json(payload_json, "--payload")
    info = obj().engine().add_cue(queue, name, cron, tz=tz, payload=payload, priority=priority,
                                  misfire=misfire, max_attempts=max_attempts, lease=lease, url=url,
                                  secret=secret if url else None, scheme=scheme, timeout=timeout)
    click.echo(f"cue {queue}/{name} next fires at {when(info.next_fire_at)} UTC"
               + (f", posted to {info.url}" if info.url else ""))


@cue.command("list")
@click.argument("queue", required=False)
@json_option
def cue_list(queue: str | None, as_json_: bool) -> None:
    """Every cue (of QUEUE, if given)."""
    infos = obj().engine().cues(queue)
    if as_json_:
        return as_json(infos)
    table(["queue", "name", "cron", "tz", "next_fire (UTC)", "last_fire (UTC)", "misfire", "paused"],
          [[c.queue, c.name, c.cron, c.tz, when(c.next_fire_at), when(c.last_fire_at), c.misfire,
            "yes" if c.paused else "no"] for c in infos])


def _cue_action(name: str, method: str, done: str) -> None:
    @cue.command(name, help=f"{done.capitalize()} cue NAME of QUEUE.")
    @click.argument("queue")
    @click.argument("cue_name", metavar="NAME")
    def command(queue: str, cue_name: str) -> None:
        result = getattr(obj().engine(), method)(queue, cue_name)
        click.echo(f"cue {queue}/{cue_name} {done}" + (f": job {result}" if isinstance(result, str) else ""))


_cue_action("rm", "remove_cue", "removed")
_cue_action("pause", "pause_cue", "paused")
_cue_action("resume", "resume_cue", "resumed")
_cue_action("run", "run_cue", "ran now")


# ---------------------------------------------------------------------- serve
LOOPBACK = ("127.0.0.1", "localhost", "::1")
SETTLE_S = 1.0   # at SIGTERM, how long the waits get to end before uvicorn closes connections


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--tokens-file", type=click.Path(dir_okay=False),
              help="lines of 'ROLE TOKEN' (admin, worker, read), read again on SIGHUP; "
                   "or env REDISPOOL_TOKENS with those lines")
@click.option("--worker-timeout", type=float, default=defaults.WORKER_TIMEOUT_S, show_default=True,
              help="seconds before a silent worker shows as stale")
@click.option("--keep-alive", type=click.FloatRange(1, 3600), default=75.0, show_default=True,
              help="seconds an idle keep-alive connection stays open (keep it above your load "
                   "balancer's idle timeout)")
@click.option("--graceful-timeout", type=click.FloatRange(0, 3600), default=20.0, show_default=True,
              help="on SIGTERM, seconds in-flight requests get to finish before they are cut")
@click.option("--read-timeout", type=click.FloatRange(1, 3600), default=30.0, show_default=True,
              help="seconds a request's head, and then its body, may take to arrive")
@click.option("--insecure-no-auth", "no_auth", is_flag=True,
              help="serve without tokens on a non-loopback host (everyone is admin)")
@click.option("--public-metrics", is_flag=True, help="serve /metrics without a token even when tokens are set")
@click.option("--secure-cookies", is_flag=True,
              help="mark the dashboard's cookies Secure (served behind TLS; X-Forwarded-Proto: https does it "
                   "per request)")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME[:PORT]",
              help="without tokens, a name the Host header may carry besides localhost and IP addresses")
@click.option("--sweep/--no-sweep", default=True, show_default=True,
              help="run the sweeper's step in this process (expired leases and silent workers' jobs taken "
                   "back); --no-sweep when a `redispool sweeper` runs beside it")
@click.option("--sweep-interval", type=click.FloatRange(0.05, 3600), default=1.0, show_default=True,
              help="seconds between sweeps (with --sweep)")
@retention_defaults
@grpc_options
@click.pass_context
def serve(ctx: click.Context, /, host: str, port: int, tokens_file: str | None, worker_timeout: float,
          keep_alive: float, graceful_timeout: float, read_timeout: float, no_auth: bool, public_metrics: bool,
          secure_cookies: bool, allow_hosts: tuple[str, ...], sweep: bool, sweep_interval: float,
          **retention: Any) -> None:
    """The HTTP API (/v1), /healthz, /metrics, /openapi.json and the web dashboard (/).
    Redis must answer at start (else exit 1); SIGTERM stops it, SIGHUP reloads the tokens file."""
    grpc = grpc_settings(retention)  # --grpc-port etc. (redispool/grpc/options.py)
    try:
        from .http.server import Server, config, listen
        from .server import create_app
        from .web.auth import load_tokens, parse_tokens
    except ImportError as exc:
        fail(f"redispool serve needs the http extra: pip install 'redispool[http]' ({exc.name} is missing)")
    if tokens_file:
        tokens = load_tokens(tokens_file)
    elif os.environ.get("REDISPOOL_TOKENS") is not None:  # set but empty is refused, not "no tokens"
        tokens = parse_tokens(os.environ["REDISPOOL_TOKENS"], "REDISPOOL_TOKENS")
    else:
        tokens = None
    if tokens is None and host not in LOOPBACK and not no_auth:
        fail(f"refusing to serve without tokens on {host}: anyone could act; "
             "give --tokens-file, bind to 127.0.0.1, or pass --insecure-no-auth")
    setup_logging(ctx.meta["log_level"])
    engine = obj().engine(**given(retention))   # Redis must answer now: ConnectionFailed is one line, exit 1
    try:
        sock = listen(host, port) if grpc.http else None
    except OSError as exc:  # one line, exit 2, before anything says "serving"
        taken = click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        taken.exit_code = 2
        raise taken from None
    app = create_app(engine, tokens=tokens, worker_timeout=worker_timeout,
                     public_metrics=public_metrics, secure_cookies=secure_cookies, allow_hosts=allow_hosts)
    server = Server(config(app, host=host, port=port, keep_alive=keep_alive,
                                   graceful_timeout=graceful_timeout, read_timeout=read_timeout))
    log = logging.getLogger("redispool.http")
    sweeper = None
    if sweep:  # the sweeper's own loop and backoff, on a thread: HTTP workers that vanish get their jobs back
        from .sweeper import Sweeper
        sweeper = Sweeper(engine, interval=sweep_interval, worker_timeout=worker_timeout)
        threading.Thread(target=sweeper.run, name="redispool-sweeper", daemon=True).start()

    def on_loop(callback: Callable[[], Any]) -> bool:
        """Run ``callback`` on the server's event loop (not inside a signal handler);
        False when no loop runs."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        loop.call_soon_threadsafe(callback)
        return True

    async def shut_down() -> None:
        try:   # long-polls answer and streams send their last frame, before uvicorn closes connections
            await app.state.api.waits.interrupt(settle=SETTLE_S)
        finally:
            server.should_exit = True

    def stop(*_: Any) -> None:  # end long-polls and streams, finish in-flight requests, then exit 0
        if sweeper is not None:
            sweeper.stop()
        if not on_loop(lambda: asyncio.ensure_future(shut_down())):
            server.should_exit = True

    def reload_tokens() -> None:
        if not tokens_file or tokens is None:
            log.warning("SIGHUP: no tokens file to reload (tokens come from %s); nothing changed",
                        "REDISPOOL_TOKENS" if tokens is not None else "nowhere: no-token mode")
            return
        try:
            fresh = load_tokens(tokens_file)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the tokens in use
            log.error("SIGHUP: tokens file not reloaded, the %d tokens in use stay: %s", len(tokens), exc)
            return
        tokens.clear()
        tokens.update(fresh)  # the one dict every route checks: in effect for the next request
        roles = ", ".join(f"{sum(r == role for r in fresh.values())} {role}" for role in ("admin", "worker", "read"))
        log.info("SIGHUP: tokens reloaded from %s (%s)", tokens_file, roles)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, lambda *_: on_loop(reload_tokens))
    if sock is not None:
        log.info("serving on http://%s:%d (%s)", host, sock.getsockname()[1],
                 "tokens" if tokens else "no tokens: everyone is admin")
    grpc.run(engine, tokens, server=server, sockets=[sock], host=host, grace=graceful_timeout)


# ---------------------------------------------------------------------- demo
@cli.command()
@click.option("--seconds", type=click.FloatRange(1, 600), default=6.0, show_default=True,
              help="how long the cue keeps firing")
def demo(seconds: float) -> None:
    """Run the whole system in one process on memory:// (or --url): a worker, the
    scheduler, the sweeper, a cue, a delayed job and a retry."""
    from .demo import run_demo
    o = obj()
    run_demo(o.url if o.url_given else "memory://demo", o.prefix, seconds, click.echo)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="redispool")



# commands in modules of their own register themselves on the group when imported
from . import cli_events, cli_limits, cli_webhooks, cli_workflows  # noqa: E402,F401
