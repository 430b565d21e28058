"""``redispool deliver``: POST webhook deliveries and webhook cues' fires.

A deliverer is two loops in one process, and any number of deliverers may run:

- the *router* reads every queue's event log through the consumer group ``deliver``
  (each event goes to one deliverer; one that dies leaves its unacknowledged events
  pending, and another claims them after ``RECLAIM_IDLE_S``). Each event matching a
  webhook becomes a job of ``_webhooks`` whose id names the webhook and the event, so
  an event routed twice still makes one job; only then is it acknowledged.
- a ``Worker`` on ``_webhooks`` POSTs each job: a 2xx answer within ``TIMEOUT_S``
  completes it, anything else fails it, retried with backoff and ``dead`` after the
  last attempt, visible and replayable like any job. Redirects are not followed and at
  most 1 KiB of an answer is kept. The POSTs read the webhooks' definitions through a
  cache (``Definitions``) refreshed at most every ``DEFINITIONS_TTL_S``: a removed
  webhook's deliveries still waiting are dropped, and a changed URL or secret is used,
  within that time (a webhook the cache does not know yet is looked up at once). Each
  delivery's "claimed" and "done" lines are logged at DEBUG (its outcome is in the
  webhook's delivery log; a failed attempt is logged at WARNING, a dead one at ERROR).

Events trimmed from a log (``events_max``) before a deliverer read them cannot be
delivered: the router logs how far it fell behind.
"""
from __future__ import annotations

import http.client
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import redis

from . import blocking
from .errors import REDIS_TROUBLE, RedispoolError
from .events import to_event
from .keys import DELIVERY_QUEUE
from .models import DeliveryInfo, Event, Job
from .signing import Delivery, scheme
from .webhooks import RESPONSE_MAX, matches
from .worker import Worker

if TYPE_CHECKING:
    from .engine import Engine

GROUP = "deliver"
TIMEOUT_S = 10.0           # a receiver's answer must be complete within this
READ_MAX = 64 * 1024       # more of an answer than this is not read (the connection is closed instead)
ROUTE_BATCH = 200          # events per read
READ_BLOCK_S = 1.0         # one blocked read of the logs (new webhooks and queues are seen after it)
CLUSTER_PAUSE_S = 0.2      # a cluster's logs are read one by one; with nothing new, the pause
RECLAIM_EVERY_S = 15.0     # how often a router looks for events a dead deliverer left pending
RECLAIM_IDLE_S = 30.0      # ... pending at least this long
TROUBLE_PAUSE_S = 1.0
CONCURRENCY = 32
DEFINITIONS_TTL_S = 1.0    # the POSTs' definitions are at most this old (see the module's docstring)
TROUBLE: tuple[type[BaseException], ...] = (*REDIS_TROUBLE, RedispoolError)
log = logging.getLogger("redispool.deliver")


class DeliveryFailed(Exception):
    """The receiver did not answer 2xx in time (the message says what it did)."""


# ---------------------------------------------------------------------- POSTing
@dataclass
class Answer:
    code: int | None
    body: bytes
    error: str | None
    ms: float

    @property
    def ok(self) -> bool:
        return self.code is not None and 200 <= self.code < 300 and self.error is None


class Poster:
    """POSTs over keep-alive connections (one per receiver and thread), never following a
    redirect, each answer bounded in time (``TIMEOUT_S``) and size."""

    def __init__(self, timeout: float = TIMEOUT_S) -> None:
        self.timeout = timeout
        self._local = threading.local()

    def _connections(self) -> dict[tuple[str, str, int], http.client.HTTPConnection]:
        pool: dict[tuple[str, str, int], http.client.HTTPConnection] | None = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        return pool

    def post(self, url: str, body: bytes, headers: dict[str, str], method: str = "POST") -> Answer:
        parts = urlsplit(url)
        https = parts.scheme == "https"
        key = (parts.scheme, parts.hostname or "", parts.port or (443 if https else 80))
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        pool = self._connections()
        started = time.monotonic()
        for fresh in (key not in pool, True):   # a kept connection the receiver closed: once more on a new one
            conn = pool.get(key)
            if conn is None:
                cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
                conn = pool[key] = cls(key[1], key[2], timeout=self.timeout)
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read(READ_MAX)
                if response.will_close or not response.isclosed():
                    self._drop(key)       # not read to its end, or the receiver closes it
                ms = (time.monotonic() - started) * 1000
                late = f"no complete answer within {self.timeout:g} s" if ms > self.timeout * 1000 else None
                return Answer(response.status, data[:RESPONSE_MAX], late, ms)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._drop(key)
                if fresh:
                    return Answer(None, b"", f"{type(exc).__name__}: {exc}", (time.monotonic() - started) * 1000)
            except (OSError, http.client.HTTPException) as exc:
                self._drop(key)
                timed_out = isinstance(exc, socket.timeout)
                what = f"no answer within {self.timeout:g} s" if timed_out else f"{type(exc).__name__}: {exc}"
                return Answer(None, b"", what, (time.monotonic() - started) * 1000)
        raise AssertionError("unreachable")

    def _drop(self, key: tuple[str, str, int]) -> None:
        conn = self._connections().pop(key, None)
        if conn is not None:
            conn.close()


class Definitions:
    """Webhook definitions for the POSTs, shared by a deliverer's threads: one HGETALL at
    most every ``ttl`` s instead of one per delivery. A name it does not hold is read again
    at once, so a webhook added since is never taken for a removed one."""

    def __init__(self, engine: Engine, ttl: float = DEFINITIONS_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.ttl = ttl
        self.clock = clock
        self._hooks: dict[str, dict[str, Any]] = {}
        self._read_at = -math.inf       # when (clock) the held definitions were asked for
        self._lock = threading.Lock()

    def get(self, name: str) -> dict[str, Any] | None:
        """Webhook ``name``'s definition as read at most ``ttl`` s ago (None: removed)."""
        hooks = self._hooks
        if self.clock() - self._read_at >= self.ttl or name not in hooks:
            hooks = self._refresh(name)
        return hooks.get(name)

    def _refresh(self, name: str) -> dict[str, Any]:
        asked = self.clock()
        with self._lock:   # one thread reads; the others waiting here take what it read
            if self._read_at >= asked or (asked - self._read_at < self.ttl and name in self._hooks):
                return self._hooks
            started = self.clock()
            self._hooks = self.engine.webhook_definitions()
            self._read_at = started
            return self._hooks


class _Row:
    __slots__ = ("record", "written", "error")

    def __init__(self, record: DeliveryInfo) -> None:
        self.record = record
        self.written = False
        self.error: BaseException | None = None


class DeliveryLog:
    """Writes each attempt's outcome to its webhook's delivery log before the attempt's job
    is settled, in one round trip for the attempts that finish together (group commit): a
    thread that finds no write under way writes every row waiting; the others wait for
    the write that holds theirs and share its outcome (an error fails each of their jobs)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._waiting: list[_Row] = []
        self._writing = False
        self._changed = threading.Condition()

    def write(self, record: DeliveryInfo) -> None:
        """Return once ``record`` is written (DeliveryFailed if its write failed)."""
        row = _Row(record)
        rows: list[_Row] = []
        with self._changed:
            self._waiting.append(row)
            while self._writing and not row.written:
                self._changed.wait()
            if not row.written:        # this thread writes what is waiting, its own row included
                self._writing = True
                rows, self._waiting = self._waiting, []
        if rows:
            error = None
            try:
                self.engine.log_deliveries([r.record for r in rows])
            except Exception as exc:
                error = exc
            with self._changed:
                for r in rows:
                    r.written, r.error = True, error
                self._writing = False
                self._changed.notify_all()
        if row.error is not None:
            raise DeliveryFailed(f"the delivery log was not written: {type(row.error).__name__}: {row.error}"
                                 ) from row.error


# ---------------------------------------------------------------------- routing
def delivery_job_id(webhook: str, event: Event) -> str:
    return f"hook:{webhook}:{event.queue}:{event.id}"


class Router:
    """Turns the events that match a webhook into delivery jobs, through the consumer
    group ``deliver`` of every queue's log."""

    def __init__(self, engine: Engine, consumer: str | None = None) -> None:
        self.engine = engine
        self.consumer = consumer or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        self.grouped: set[str] = set()
        self.warned: dict[str, str] = {}   # queue -> the group position whose loss was reported
        self.next_reclaim = 0.0
        self.cluster = blocking.is_cluster(engine.client)

    def step(self, block: float = READ_BLOCK_S) -> int:
        """Route what is new (or was left pending by a dead deliverer); returns the
        delivery jobs created. Waits up to ``block`` s in Redis when nothing is new."""
        hooks = self.engine.webhook_definitions()
        if not hooks:
            time.sleep(block)
            return 0
        queues = [q for q in self.engine.queues() if q != DELIVERY_QUEUE]
        self._ensure_groups(queues, min(d["since"] for d in hooks.values()))
        created = 0
        if time.monotonic() >= self.next_reclaim:
            self.next_reclaim = time.monotonic() + RECLAIM_EVERY_S
            for queue in queues:
                created += self._route(hooks, queue, self._reclaim(queue))
        read = self.read(queues, block)
        if any(read.values()):
            # what the read brought is routed by the webhooks of now: one added while the
            # read waited gets the events written after it, like every other
            hooks = self.engine.webhook_definitions()
        for queue, entries in read.items():
            created += self._route(hooks, queue, entries)
        return created

    def _ensure_groups(self, queues: list[str], since_ms: int) -> None:
        for queue in queues:
            if queue in self.grouped:
                continue
            try:
                self.engine.scripts.command("XGROUP", "CREATE", self.engine.keys(queue).events, GROUP,
                                            f"{max(0, since_ms - 1)}-0", "MKSTREAM")
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self.grouped.add(queue)

    def _read(self, queues: list[str], block: float) -> dict[str, list[Any]]:
        """New entries per queue, from one blocked XREADGROUP (one server) or one per log."""
        if not queues:
            time.sleep(block)
            return {}
        keys = {self.engine.keys(q).events: q for q in queues}
        head = ["XREADGROUP", "GROUP", GROUP, self.consumer, "COUNT", ROUTE_BATCH]
        if self.cluster:
            out = {}
            for key in keys:
                out.update(self._entries(self.engine.scripts.command(*head, "STREAMS", key, ">"), keys))
            if not any(out.values()):
                time.sleep(min(block, CLUSTER_PAUSE_S))
            return out
        command = [*head, "BLOCK", max(1, round(block * 1000)), "STREAMS", *keys, *(">" for _ in keys)]
        with self.engine.scripts.boundary():
            reply = blocking.call(self.engine.client, next(iter(keys)), command, block)
        return self._entries(reply, keys)

    def read(self, queues: list[str], block: float) -> dict[str, list[Any]]:
        """``_read``, making the groups again when a log lost its group (the queue was
        removed, or Redis lost its data): the read of the other logs must not stall."""
        try:
            return self._read(queues, block)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.info("a queue's event log lost its consumer group; making the groups again")
            self.grouped.clear()
            return {}

    @staticmethod
    def _entries(reply: Any, keys: dict[str, str]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for key, entries in (reply.items() if isinstance(reply, dict) else reply or []):   # RESP3 or RESP2
            name = key.decode() if isinstance(key, bytes) else str(key)
            out[keys[name]] = list(entries or [])
        return out

    def _reclaim(self, queue: str) -> list[Any]:
        """Entries other deliverers read but did not acknowledge for RECLAIM_IDLE_S."""
        key = self.engine.keys(queue).events
        try:
            reply = self.engine.scripts.command("XAUTOCLAIM", key, GROUP, self.consumer,
                                                int(RECLAIM_IDLE_S * 1000), "0-0", "COUNT", ROUTE_BATCH)
        except redis.ResponseError as exc:   # NOGROUP: the log went away with its queue
            log.debug("reclaim skipped queue=%s error=%s", queue, exc)
            return []
        self._behind(queue, key)
        return [e for e in reply[1] if e and e[1] is not None]   # deleted entries come back as None

    def _behind(self, queue: str, key: str) -> None:
        """Log (once per loss) when the log was trimmed past what the group had read: more
        entries are unread (the group's ``lag``, Redis 7) than the log still holds, so
        events were lost. (Unknown lag, or an older Redis: nothing is said.)"""
        try:
            length = int(self.engine.scripts.command("XLEN", key))
            groups = self.engine.scripts.command("XINFO", "GROUPS", key)
        except redis.ResponseError:
            return
        for group in groups:
            fields = group if isinstance(group, dict) else dict(zip(group[::2], group[1::2]))
            fields = {_text(k): v for k, v in fields.items()}
            lag = fields.get("lag")
            if _text(fields.get("name")) != GROUP or lag is None or int(lag) <= length:
                continue
            read = _text(fields.get("last-delivered-id"))
            if self.warned.get(queue) != read:
                self.warned[queue] = read
                log.warning("deliverers fell behind queue=%s: %d events after %s were trimmed from its log "
                            "(events_max) before they were delivered", queue, int(lag) - length, read)

    def _route(self, hooks: dict[str, dict[str, Any]], queue: str, entries: list[Any]) -> int:
        if not entries:
            return 0
        specs, names = [], []
        for entry in entries:
            event = to_event(queue, entry)
            for name, definition in hooks.items():
                if matches(definition, event):
                    specs.append(self.engine.job_spec({"webhook": name, "event": event.to_dict()},
                                                      job_id=delivery_job_id(name, event),
                                                      max_attempts=definition.get("max_attempts", 5)))
                    names.append(name)
        created = sum(new for _, new in self.engine.enqueue_specs(DELIVERY_QUEUE, specs)) if specs else 0
        ids = [_text(entry[0]) for entry in entries]
        self.engine.scripts.command("XACK", self.engine.keys(queue).events, GROUP, *ids)
        return created


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------- the daemon
class Deliverer:
    """The router (a thread) and a Worker on ``_webhooks`` that POSTs each delivery."""

    def __init__(self, engine: Engine, *, concurrency: int = CONCURRENCY, timeout: float = TIMEOUT_S,
                 worker_id: str | None = None, log_format: str = "text") -> None:
        self.engine = engine
        self.poster = Poster(timeout)
        self.definitions = Definitions(engine)
        self.delivery_log = DeliveryLog(engine)
        self.router = Router(engine)
        self.worker = Worker(engine, [DELIVERY_QUEUE], concurrency=concurrency, lease=timeout * 3,
                             worker_id=worker_id, log_format=log_format, job_log_level=logging.DEBUG)
        self.worker.process(self.deliver)
        self._stop = threading.Event()

    def run(self, burst: bool = False) -> None:
        """Route and deliver until SIGTERM/SIGINT (``burst``: until nothing is left)."""
        router = threading.Thread(target=self._route_loop, name="redispool-router", daemon=True)
        router.start()
        try:
            self.worker.run(burst=burst)
        finally:
            self._stop.set()
            router.join(READ_BLOCK_S + 5)

    def stop(self) -> None:
        self.worker.stop()

    def _route_loop(self) -> None:
        trouble = False
        while not self._stop.is_set():
            try:
                self.router.step()
                if trouble:
                    log.info("router resumed: Redis answers again")
                    trouble = False
            except TROUBLE as exc:
                if not trouble:
                    log.warning("router paused: %s", exc)
                    trouble = True
                self._stop.wait(TROUBLE_PAUSE_S)
            except Exception:   # a bug must not silently stop routing: say it, go on
                log.exception("router step failed")
                self._stop.wait(TROUBLE_PAUSE_S)

    # ------------------------------------------------------------------ one job
    def deliver(self, job: Job) -> dict[str, Any]:
        """POST one delivery job; its result on a 2xx, else DeliveryFailed (retried)."""
        if job.id.startswith("cue:"):
            return self._deliver_cue(job)
        payload = job.payload if isinstance(job.payload, dict) else {}
        name, event = payload.get("webhook"), payload.get("event")
        if not isinstance(name, str) or not isinstance(event, dict):
            raise DeliveryFailed("not a delivery job (no webhook and event in its payload)")
        definition = self.definitions.get(name)
        if definition is None:
            return {"skipped": f"the webhook {name!r} was removed"}
        if not definition.get("enabled", True):
            return {"skipped": f"the webhook {name!r} is disabled"}
        delivery = Delivery(id=job.id, event=event["type"], queue=event["queue"], job_id=event.get("job_id") or "",
                            at=event["at"], data=event.get("data") or {}, attempt=job.attempt)
        answer = self._post(definition, delivery)
        self.delivery_log.write(DeliveryInfo(
            id=job.id, webhook=name, event=delivery.event, queue=delivery.queue, job_id=event.get("job_id"),
            attempt=job.attempt, status="success" if answer.ok else "dead" if job.attempt >= job.max_attempts
            else "failed", code=answer.code, error=answer.error, response=answer.body.decode("utf-8", "replace"),
            duration_ms=round(answer.ms, 2), at=time.time()))
        return self._outcome(answer, definition["url"])

    def _deliver_cue(self, job: Job) -> dict[str, Any]:
        stored, _, fired = job.id[4:].rpartition(":")
        queue, _, name = stored.partition("/")
        definition = self.engine.webhook_cue(stored)
        if definition is None:
            return {"skipped": f"the cue {name!r} of queue {queue!r} was removed"}
        fire_ms = int(fired.split("-", 1)[0])
        # the fire's own payload (a cue's as it was when it fired, or a one-off fire's)
        data = {"cue": name, "payload": job.payload, "attempt": job.attempt}
        if definition.get("label"):
            data["name"] = definition["label"]
        delivery = Delivery(id=job.id, event="cue", queue=queue, job_id=job.id, at=fire_ms / 1000, data=data,
                            attempt=job.attempt)
        return self._outcome(self._post(definition, delivery), definition["url"])

    def _post(self, definition: dict[str, Any], delivery: Delivery) -> Answer:
        body, headers = scheme(definition.get("scheme", "redispool")).request(delivery, definition.get("secret"))
        headers.update(definition.get("headers") or {})   # a webhook cue's own, last
        return self.poster.post(definition["url"], body, headers, definition.get("method", "POST"))

    @staticmethod
    def _outcome(answer: Answer, url: str) -> dict[str, Any]:
        text = answer.body.decode("utf-8", "replace")
        if answer.ok:
            return {"status": answer.code, "response": text, "ms": round(answer.ms, 2)}
        if answer.code is None:
            raise DeliveryFailed(f"POST {url}: {answer.error}")
        raise DeliveryFailed(f"POST {url}: HTTP {answer.code}{' (' + answer.error + ')' if answer.error else ''}"
                             f"{': ' + text if text else ''}")


