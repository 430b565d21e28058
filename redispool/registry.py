"""The worker registry: which worker processes are alive, and what they are doing.

Every worker (the Python ``Worker`` and, later, HTTP clients) registers under an id,
refreshes its heartbeat every few seconds with the jobs it holds and how many it has
processed and failed since the last beat, and deregisters when it stops. Heartbeat times
come from the Redis server clock. A worker whose heartbeat is older than a timeout drops
out of ``workers()``; the sweeper lists such workers with ``expired_workers()``, takes
back their leases and deregisters them.

Keys (all in the Cluster slot of the tag ``{#workers}``, so one script may touch both):

    rp:{#workers}:index      zset  worker ids by last heartbeat (ms)
    rp:{#workers}:w:<id>     hash  host, pid, queues (JSON), started (ms), beat (ms),
                                   jobs (JSON), held (JSON {job: lease expiry ms},
                                   kept for HTTP workers), processed, failed

``processed`` counts every job a worker finished (done or failed); ``failed`` counts
those that failed, so failed/processed is the worker's error rate.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import redis

from . import defaults, validate
from .errors import ConnectionFailed, InvalidOption
from .keys import check_queue, worker_key, workers_index_key
from .models import WorkerInfo
from .scripts import Call

EXPIRED_BATCH = 1000  # expired workers listed per call


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidOption(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _worker_id(value: str) -> str:
    if value is None:
        raise InvalidOption("worker_id must be 1-256 printable characters without spaces, got None")
    return validate.identifier(value, "worker_id")


class WorkersMixin:
    """Registry methods of ``Engine`` (it provides ``prefix``, ``url`` and ``scripts``)."""

    prefix: str
    url: str
    scripts: Any

    def _registry_call(self, name: str, worker_id: str, args: list[Any]) -> Call:
        """Registry script ``name`` on the index and one worker's hash ('' = prefix)."""
        return Call(name, [workers_index_key(self.prefix), worker_key(self.prefix, worker_id)], args)

    def _run_registry(self, call: Call) -> Any:
        try:
            return self.scripts.run(*call)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ConnectionFailed(self.url, exc) from exc

    def _registry(self, name: str, worker_id: str, args: list[Any]) -> Any:
        return self._run_registry(self._registry_call(name, worker_id, args))

    # The ``_<op>_call`` builders are shared with the async engine (aio.py).
    def _register_call(self, worker_id: str, host: str, pid: int, queues: Sequence[str]) -> Call:
        worker_id = _worker_id(worker_id)
        if not isinstance(host, str):
            raise InvalidOption(f"host must be a string, got {host!r}")
        pid = _count(pid, "pid")
        names = [check_queue(q) for q in queues]
        return self._registry_call("register_worker", worker_id, [worker_id, host, pid, json.dumps(names)])

    def _beat_call(self, worker_id: str, jobs_in_progress: Sequence[str] | None, processed: int, failed: int,
                   queue: str | None = None, taken: Mapping[str, float] | None = None,
                   settled: Sequence[str] | None = None) -> Call:
        worker_id = _worker_id(worker_id)
        if jobs_in_progress is not None and (taken or settled):
            raise InvalidOption("give jobs_in_progress (the whole list) or taken/settled (changes), not both")
        jobs = "" if jobs_in_progress is None else json.dumps([str(j) for j in jobs_in_progress])
        return self._registry_call("beat_worker", worker_id, [
            worker_id, jobs, _count(processed, "processed"), _count(failed, "failed"),
            check_queue(queue) if queue else "",
            json.dumps({str(j): int(expires * 1000) for j, expires in taken.items()}) if taken else "",
            json.dumps([str(j) for j in settled]) if settled else ""])

    def _workers_call(self, timeout: float) -> Call:
        return self._registry_call("workers", "", [self._timeout_ms(timeout)])

    @staticmethod
    def _workers_reply(reply: Sequence[Any]) -> list[WorkerInfo]:
        out = []
        for i in range(1, len(reply), 9):
            wid, host, pid, queues, started, beat, jobs, processed, failed = reply[i:i + 9]
            out.append(WorkerInfo(
                id=_text(wid), host=_text(host), pid=int(pid or 0),
                queues=json.loads(queues) if queues else [],
                started_at=int(started or 0) / 1000, last_heartbeat=int(beat) / 1000,
                jobs_in_progress=json.loads(jobs) if jobs else [],
                processed=int(processed or 0), failed=int(failed or 0)))
        return out

    @staticmethod
    def _timeout_ms(timeout: float) -> int:
        return validate.seconds_to_ms(timeout, "timeout", allow_zero=False)

    def register_worker(self, worker_id: str, *, host: str, pid: int,
                        queues: Sequence[str]) -> float:
        """Register (or re-register) a worker; returns its start time (unix seconds)."""
        return int(self._run_registry(self._register_call(worker_id, host, pid, queues))) / 1000

    def beat_worker(self, worker_id: str, *, jobs_in_progress: Sequence[str] | None = None,
                    processed: int = 0, failed: int = 0, queue: str | None = None,
                    taken: Mapping[str, float] | None = None, settled: Sequence[str] | None = None) -> bool:
        """Refresh a worker's heartbeat and add ``processed`` / ``failed`` (deltas since the
        last beat) to its counters. Its jobs in progress are either replaced
        (``jobs_in_progress``, what a worker process that knows them all sends) or changed:
        ``taken`` maps jobs leased or extended to their lease expiry (unix seconds),
        ``settled`` lists jobs it no longer holds — what the servers of HTTP workers send,
        so that several server replicas keep one list; leases past their expiry drop out.
        ``queue`` is added to the queues it is registered for. Returns False when the
        worker is not registered (its registration expired): register it again."""
        return int(self._run_registry(self._beat_call(worker_id, jobs_in_progress, processed, failed, queue,
                                                      taken, settled))) != 0

    def deregister_worker(self, worker_id: str) -> bool:
        """Remove a worker's registration; True if it was registered."""
        worker_id = _worker_id(worker_id)
        return self._registry("deregister_worker", worker_id, [worker_id]) == 1

    def workers(self, *, timeout: float = defaults.WORKER_TIMEOUT_S) -> list[WorkerInfo]:
        """Registered workers whose last heartbeat is at most ``timeout`` seconds old."""
        return self._workers_reply(self._run_registry(self._workers_call(timeout)))

    def expired_workers(self, timeout: float = defaults.WORKER_TIMEOUT_S) -> list[tuple[str, list[str]]]:
        """(id, queues) of registered workers whose heartbeat is older than ``timeout``
        seconds, oldest first (at most 1000 per call). ``queues`` is empty when the
        registration lost its hash."""
        reply = self._registry("expired_workers", "", [self._timeout_ms(timeout), EXPIRED_BATCH])
        return [(_text(reply[i]), json.loads(reply[i + 1]) if reply[i + 1] else [])
                for i in range(0, len(reply), 2)]
