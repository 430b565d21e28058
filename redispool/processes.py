"""``redispool worker --processes N``: N worker processes under one supervising command.

One Python process runs handlers on one core at a time (the GIL), and one process is
never busy all the time either (it waits for Redis and for its threads' turns at the
GIL), so the worker command starts one process per CPU plus one by default
(``default_processes``; dramatiq and Celery start one per CPU). The supervisor is the
process a container or systemd sees. It loads the app once (a bad target is one error
line), then forks the children before any worker thread exists (redis-py opens fresh
connections in a forked child); each child runs the worker as a single process would.

- Each child has a process group of its own, so a terminal's Ctrl-C reaches only the
  supervisor, which forwards the first SIGINT/SIGTERM to every child (they finish or
  release their jobs) and a second one too (they exit at once), as one worker does.
- A child is told by the kernel when the supervisor dies, even by SIGKILL
  (``PR_SET_PDEATHSIG``): it gets SIGTERM and shuts down cleanly, so no orphan keeps
  working under a dead command.
- When a child exits on its own (its Redis was unreachable, a crash, SIGKILL) the
  supervisor stops the others and exits with that child's status, so whatever restarts
  the command restarts all of it; with ``--burst`` the children end one by one and the
  supervisor waits for all of them.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from types import FrameType

PR_SET_PDEATHSIG = 1


def cpus() -> int:
    """The CPUs this process may run on (a container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_processes() -> int:
    """How many processes ``redispool worker`` starts without ``--processes``: one per CPU
    plus one. A worker process leaves part of its core idle while it waits (on a 2-CPU
    machine, 2 processes used about 75% of the CPUs; 3 drained 9-22% more jobs per second
    with the INCR handler of bin/bench, 29% more with its no-op one; 4 and 5 no more
    than 3)."""
    return cpus() + 1


def exit_status(wait_status: int) -> int:
    """A child's wait status as a shell shows it (killed by signal N: 128 + N)."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def _child(parent: int, run: Callable[[], int]) -> None:
    """The forked child: its own process group, SIGTERM when the supervisor dies, the
    default signal dispositions back (the worker installs its own), then ``run()``."""
    status = 1
    try:
        os.setpgid(0, 0)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl (not Linux): children outlive a SIGKILLed supervisor
        if os.getppid() != parent:
            return   # the supervisor died before the line above: exit
        status = run()
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except BaseException:
        traceback.print_exc()
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def supervise(runs: list[Callable[[], int]], *, burst: bool) -> int:
    """Fork one child per function (each calls it and exits with what it returns) and wait
    for them; returns the command's exit status."""
    parent = os.getpid()
    children: set[int] = set()
    signals_seen = 0

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        for pid in children:
            with contextlib.suppress(ProcessLookupError):   # it has just exited
                os.kill(pid, signal.SIGTERM if signals_seen == 1 else signal.SIGINT)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        for run in runs:
            if signals_seen:
                break   # told to stop while starting them: start no more
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(parent, run)
            children.add(pid)
        while children:
            pid, wait_status = os.wait()   # (a signal runs `forward` and the wait goes on)
            children.discard(pid)
            code = exit_status(wait_status)
            if signals_seen and code == 128 + signal.SIGTERM:
                code = 0   # still starting when the signal came, so it held no job: a clean stop
            status = status or code
            if not signals_seen and (code != 0 or not burst):
                forward(signal.SIGTERM, None)   # one ended on its own: stop the rest
        return 1 if signals_seen > 1 else status
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
