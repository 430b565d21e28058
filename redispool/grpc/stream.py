"""One native ``Work`` stream: jobs pushed against credits, acks in batches, leases kept alive.

A worker opens the stream with its queues, worker id, lease and a first credit (how
many jobs it can take). Four tasks serve it on the server's event loop, no thread:

- the *puller* claims up to the unused credit as soon as a job is ready: a claim on each
  queue that blocks in the engine's wait hub (one blocked BZPOPMIN per queue for the
  whole process, woken by the queue's marker; never polling) and ends early when the
  stream ends. With several queues the first claim that gets jobs stops the others;
  jobs beyond the credit that a racing claim still got are released at once (attempt
  not counted), so a worker never holds more than it granted;
- the *reader* takes credits and acks in order: an ack's items are settled with one
  script call per queue (``AsyncEngine.ack``: fencing token per item) and answered
  with one ``AckResults``, its items in the ack's order (completed, then failed, then
  released, then progress: one script call each, the job stays leased);
- the *keeper* extends the leases of the jobs the stream holds every third of the
  lease (one script call per queue), so an open stream is its jobs' heartbeat;
- the *registry* writer sends what changed (jobs taken and settled, processed, failed)
  to the worker's registration, at most every ``REGISTRY_S`` (the first change and the
  stream's end at once), coalescing everything that happened meanwhile: a job taken
  and settled between two writes is never written.

When the stream ends -- the worker half-closes, its connection breaks, the server shuts
down -- what it still holds is released at once, so another worker gets those jobs
without waiting for the lease. At shutdown the puller stops and the stream ends as soon
as the worker has acked what it holds (or when grpc's grace runs out: then released).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from .. import defaults, validate
from ..aio import GIVE_UP, AsyncEngine
from ..errors import LeaseLost
from ..keys import check_queue
from .borrowed import MAX_DEPTH, BadInput, check_depth, deliverable, loads, rendered
from .status import trouble
from .stubs import jobs_pb2 as pb

log = logging.getLogger("redispool.grpc")
BLOCK_S = 30.0                 # one blocking claim's wait (then it claims again)
PAIRED_WAIT_S = 0.25           # a wait sent with its claim (one queue, jobs arriving): it cannot
                               # be cut short (a stream that ends waits this long at most), and
                               # it learns no due time (a delayed job that falls due while it
                               # waits, with no scheduler daemon to wake it, is this late at most)
RETRY_S = (0.05, 2.0)          # pause after Redis trouble in the puller: first, and at most
BEAT_S = 10.0                  # the registration's beat while nothing else changes
REGISTRY_S = 0.25              # the registration's writes at most this often (a write per ack
                               # and per pushed batch was two script calls a pickup)
MAX_QUEUES = 100
RELEASING = 4                      # releases in flight per stream: a burst would open new pooled connections
RELEASE_CHUNK = 500                # releases pipelined in one round trip when a stream ends
_END = object()


@dataclass(slots=True)
class Held:
    """A job the stream pushed and the worker has not acked: enough to extend and release it."""

    queue: str
    id: str
    token: str


@dataclass
class Changes:
    """What the worker's registration has not been told yet."""

    taken: dict[str, float] = field(default_factory=dict)
    settled: set[str] = field(default_factory=set)
    processed: int = 0
    failed: int = 0
    queues: set[str] = field(default_factory=set)


def opened(request: Any) -> tuple[list[str], str, float | None, int]:
    """(queues, worker id, lease, credit) of the stream's first request (BadInput if it is
    not a valid ``open``)."""
    if request is None or request.WhichOneof("kind") != "open":
        raise BadInput("the first request of a Work stream must be 'open'")
    o = request.open
    queues = list(dict.fromkeys(o.queues))
    if not 1 <= len(queues) <= MAX_QUEUES:
        raise BadInput(f"open.queues must name 1 to {MAX_QUEUES} queues")
    for q in queues:
        check_queue(q)
    worker_id = validate.worker_id(o.worker_id)
    lease = o.lease or None
    validate.lease_ms(lease)
    return queues, worker_id, lease, o.credit


def _refuse(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _json_encoder() -> Callable[[Any], str]:
    """``json.dumps(value, separators=(",", ":"), allow_nan=False)`` at half its cost: json
    builds an encoder on every call, this is the C one built once (without json's
    check for cycles: a decoded payload has none, and a RecursionError is caught)."""
    from json import encoder
    make = getattr(encoder, "c_make_encoder", None)   # typeshed leaves the C part out
    if make is None:  # pragma: no cover - CPython has it
        return json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    c = make(None, _refuse, encoder.encode_basestring_ascii, None, ":", ",", False, False, False)
    return lambda value: "".join(c(value, 0))


_encode = _json_encoder()


def payload_text(payload: Any) -> str:
    """A payload as JSON text, as the HTTP API sends it (Undeliverable when it nests too
    deep). Fast path: plain JSON values encode directly, and a text shorter than twice
    the depth limit cannot nest deeper than it; anything else (bytes, NaN, a long text)
    takes the HTTP API's checked way."""
    try:
        text = _encode(payload)
    except (TypeError, ValueError, RecursionError):
        text = None
    if text is not None and len(text) <= 2 * MAX_DEPTH:
        return text
    return json.dumps(deliverable(payload), separators=(",", ":"))


def job_message(job: Any, make: Any = pb.Job) -> Any:
    """The ``Job`` of a leased job (Undeliverable when its payload cannot be JSON), made by
    ``make`` (a repeated field's ``add``: built in place)."""
    return make(queue=job.queue, id=job.id, token=job.token, payload=payload_text(job.payload),
                attempt=job.attempt, max_attempts=job.max_attempts, lease_expires_at=job.lease_expires_at,
                timeout=job.timeout or 0.0)


def _json_text(text: str, what: str) -> Any:
    return check_depth(loads(text, what), what) if text else None


class WorkStream:
    """The server side of one open Work stream (see the module's docstring)."""

    def __init__(self, aio: AsyncEngine, queues: list[str], worker_id: str, lease: float | None,
                 credit: int, host: str, shutdown: asyncio.Event) -> None:
        self.aio, self.queues, self.worker_id, self.lease, self.host = aio, queues, worker_id, lease, host
        self.lease_s = (validate.lease_ms(lease) or aio.engine.lease_ms) / 1000
        self.shutdown = shutdown
        self.held: dict[tuple[str, str], Held] = {}
        self.outbox: asyncio.Queue[Any] = asyncio.Queue()
        self.has_credit = asyncio.Event()
        self.stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.changes = Changes(queues=set(queues))
        self.listed: set[str] = set()   # the jobs the registration lists (written)
        self.changed = asyncio.Event()
        self.changed.set()   # register at once
        self._tasks: list[asyncio.Task[Any]] = []
        self.closed = False
        self._woken = True   # the last wait was ended by a job: wait and claim in one call
        self._valid_queues: set[str] = set(queues)
        self._releasing = asyncio.Semaphore(RELEASING)
        self.credit = 0
        self._set_credit(credit)

    # ------------------------------------------------------------------ the stream
    async def run(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """The replies of the stream until it ends; whatever it holds then is released."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read(requests)), loop.create_task(self._pull()),
                       loop.create_task(self._keep()), loop.create_task(self._registry())]
        watch = loop.create_task(self._watch_shutdown())
        try:
            while True:
                reply = await self.outbox.get()
                if reply is _END:
                    return
                yield reply
        finally:
            watch.cancel()
            await asyncio.shield(self._finish())

    async def _finish(self) -> None:
        """Give back what is held at once, then let the puller end (a claim in flight when
        the stream ended releases what it got) and tell the registration."""
        if not self.stop.done():
            self.stop.set_result(None)
        reader, puller, keeper, registry = self._tasks
        for task in (reader, keeper):
            task.cancel()
        held, self.held = list(self.held.values()), {}
        started = time.monotonic()
        await self._release_all(held)
        log.info("stream of worker %s ended: %d job(s) it held released (in %.0f ms)", self.worker_id, len(held),
                 (time.monotonic() - started) * 1000)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(puller, 10)   # (a wait paired with its claim ends within PAIRED_WAIT_S)
        late, self.held = list(self.held.values()), {}   # none expected: a claim ending after stop releases
        if late:
            await self._release_all(late)
            log.info("stream of worker %s: %d job(s) its last claim got released", self.worker_id, len(late))
        held += late
        for h in held:
            self._let_go(f"{h.queue}/{h.id}")
        self.closed = True   # the registry writer sends this last change, then ends
        self.changed.set()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(registry, 10)

    async def _release_all(self, held: list[Held]) -> None:
        """Give ``held`` back at once: ``RELEASE_CHUNK`` releases per round trip (a lease
        already gone is fine). Best effort: on Redis trouble, one at a time, and what
        cannot be released comes back when its lease expires."""
        for i in range(0, len(held), RELEASE_CHUNK):
            chunk = held[i:i + RELEASE_CHUNK]
            try:
                await self.aio.release_many(chunk)
            except GIVE_UP:
                await asyncio.gather(*(self._release(h) for h in chunk))

    async def _release(self, h: Any) -> None:
        async with self._releasing:
            with contextlib.suppress(*GIVE_UP):
                await self.aio.release(h)

    async def _watch_shutdown(self) -> None:
        await self.shutdown.wait()
        if not self.stop.done():
            self.stop.set_result(None)
        self._end_if_drained()

    def _end_if_drained(self) -> None:
        if self.shutdown.is_set() and not self.held:
            self.outbox.put_nowait(_END)

    def _set_credit(self, credit: int) -> None:
        self.credit = credit
        if credit > 0:
            self.has_credit.set()
        else:
            self.has_credit.clear()

    # ------------------------------------------------------------------ reading requests
    async def _read(self, requests: AsyncIterator[Any]) -> None:
        try:
            async for request in requests:
                kind = request.WhichOneof("kind")
                if kind == "credit":
                    self._set_credit(self.credit + request.credit)
                elif kind == "ack":
                    self.outbox.put_nowait(await self._ack(request.ack))
                    self._end_if_drained()
                # a second 'open' or an empty request changes nothing
        finally:
            self.outbox.put_nowait(_END)   # the worker half-closed (or went away)

    async def _ack(self, ack: Any) -> Any:
        """Settle an ack's items: a ``WorkReply`` with one result per item, in the ack's order."""
        by_queue: dict[str, tuple[list[Any], list[Any]]] = defaultdict(lambda: ([], []))
        slots: list[tuple[str, int, Any]] = []   # where each item's result comes from
        valid = self._valid_queues
        for c in ack.completed:
            ref = c.job
            queue, job_id, token = ref.queue, ref.id, ref.token
            if queue in valid and job_id and token and not c.result:
                value = None   # the common item, checked at once
            else:
                try:
                    self._check_queue(queue)
                    if not job_id or not token:
                        raise BadInput("a job ref needs its queue, id and token")
                    value = _json_text(c.result, "result")
                except ValueError as exc:
                    slots.append(("bad", 0, (ref, str(exc))))
                    continue
            done = by_queue[queue][0]
            slots.append(("completed", len(done), ref))
            done.append((Held(queue, job_id, token), value))
        for f in ack.failed:
            ref = f.job
            try:
                self._check_queue(ref.queue)
                if not ref.id or not ref.token:
                    raise BadInput("a job ref needs its queue, id and token")
                delay = f.delay or None
                if delay is not None:
                    validate.delay_ms(delay)
            except ValueError as exc:
                slots.append(("bad", 0, (ref, str(exc))))
                continue
            _, failed = by_queue[ref.queue]
            slots.append(("failed", len(failed), ref))
            failed.append((Held(ref.queue, ref.id, ref.token), f.error, not f.no_retry, delay))
        outcome = dict(zip(by_queue, await asyncio.gather(
            *(self._ack_queue(q, done, failed) for q, (done, failed) in by_queue.items()))))
        reply = pb.WorkReply()
        reply.results.SetInParent()   # an empty ack gets its (empty) results too
        add = reply.results.results.add   # built in place: a message passed to a constructor is copied
        processed = failed_n = 0
        for kind, index, item in slots:
            if kind == "bad":
                ref, why = item
                add(queue=ref.queue, id=ref.id, ok=False, error=f"bad_input: {why}")
                continue
            ref = item
            got = outcome[ref.queue]
            if isinstance(got, str):   # Redis trouble: not settled, the job stays held
                add(queue=ref.queue, id=ref.id, ok=False, error=got)
                continue
            state = ("done" if got.completed[index] else None) if kind == "completed" else got.failed[index]
            self._settled(ref)
            if state is None:
                add(queue=ref.queue, id=ref.id, ok=False, error="lease_lost")
            else:
                processed += 1
                failed_n += kind == "failed"
                add(queue=ref.queue, id=ref.id, ok=True, state=state)
        for ref in ack.released:
            add(**await self._give(ref))
        if ack.progress:
            for fields in await asyncio.gather(*(self._progress(p) for p in ack.progress)):
                add(**fields)
        self.changes.processed += processed
        self.changes.failed += failed_n
        self.changed.set()
        return reply

    def _check_queue(self, queue: str) -> None:
        """check_queue, remembered per stream (an ack names the same few queues per item)."""
        if queue not in self._valid_queues:
            check_queue(queue)
            if len(self._valid_queues) < MAX_QUEUES:
                self._valid_queues.add(queue)

    async def _ack_queue(self, queue: str, done: list[Any], failed: list[Any]) -> Any:
        try:
            return await self.aio.ack(queue, completed=done, failed=failed)
        except GIVE_UP as exc:
            log.warning("worker %s: ack on %s not settled: %s", self.worker_id, queue, exc)
            return trouble(exc) or "unavailable"

    async def _give(self, ref: Any) -> dict[str, Any]:
        """Release one job the worker hands back (only a job this stream holds with that
        token): the fields of its ``AckResult``."""
        held = self.held.get((ref.queue, ref.id))
        if held is None or held.token != ref.token:
            return {"queue": ref.queue, "id": ref.id, "ok": False, "error": "lease_lost"}
        try:
            await self.aio.release(held)
        except GIVE_UP as exc:
            return {"queue": ref.queue, "id": ref.id, "ok": False, "error": trouble(exc) or "unavailable"}
        self._settled(ref)
        return {"queue": ref.queue, "id": ref.id, "ok": True, "state": "ready"}

    async def _progress(self, p: Any) -> dict[str, Any]:
        """Record one job's progress (fenced by its token; the job stays leased): the
        fields of its ``AckResult``."""
        ref = p.job
        try:
            self._check_queue(ref.queue)
            if not ref.id or not ref.token:
                raise BadInput("a job ref needs its queue, id and token")
            await self.aio.progress(Held(ref.queue, ref.id, ref.token), p.value, p.message or None)
        except LeaseLost:
            return {"queue": ref.queue, "id": ref.id, "ok": False, "error": "lease_lost"}
        except ValueError as exc:   # an id, token, value or message refused (before any write)
            return {"queue": ref.queue, "id": ref.id, "ok": False, "error": f"bad_input: {exc}"}
        except GIVE_UP as exc:
            return {"queue": ref.queue, "id": ref.id, "ok": False, "error": trouble(exc) or "unavailable"}
        return {"queue": ref.queue, "id": ref.id, "ok": True, "state": "leased"}

    def _settled(self, ref: Any) -> None:
        key = (ref.queue, ref.id)
        held = self.held.get(key)
        if held is not None and held.token == ref.token:
            del self.held[key]
            self._let_go(f"{ref.queue}/{ref.id}")

    def _let_go(self, job: str) -> None:
        """The stream no longer holds ``job`` (``queue/id``): the registration is told, unless
        it was never told the stream took it (taken and let go between two writes)."""
        if self.changes.taken.pop(job, None) is None or job in self.listed:
            self.changes.settled.add(job)

    # ------------------------------------------------------------------ pushing jobs
    async def _pull(self) -> None:
        pause = RETRY_S[0]
        while not self.stop.done():
            credit_or_stop: asyncio.Future[Any] = asyncio.ensure_future(self.has_credit.wait())
            await asyncio.wait({credit_or_stop, self.stop}, return_when=asyncio.FIRST_COMPLETED)
            credit_or_stop.cancel()
            if self.stop.done():
                return
            try:
                jobs = await self._claim(min(self.credit, defaults.BATCH_MAX))
            except GIVE_UP as exc:
                log.warning("worker %s: claim failed, trying again in %gs: %s", self.worker_id, pause, exc)
                await asyncio.wait({self.stop}, timeout=pause)
                pause = min(pause * 2, RETRY_S[1])
                continue
            pause = RETRY_S[0]
            if jobs:
                await self._push(jobs)

    async def _claim(self, limit: int) -> list[Any]:
        """Up to ``limit`` jobs from the stream's queues, blocking until one is ready (or
        the stream ends); a surplus from racing claims is released."""
        if self._woken and len(self.queues) == 1:
            return await self._wait_then_claim(limit)
        loop = asyncio.get_running_loop()
        round_stop: asyncio.Future[None] = loop.create_future()

        def end_round(_: Any = None) -> None:
            if not round_stop.done():
                round_stop.set_result(None)
        self.stop.add_done_callback(end_round)
        claims = [asyncio.ensure_future(self.aio.claim(q, self.worker_id, limit=limit, lease=self.lease,
                                                       block=BLOCK_S, stop=round_stop)) for q in self.queues]
        try:
            await asyncio.wait(claims, return_when=asyncio.FIRST_COMPLETED)
            end_round()
            outcomes = await asyncio.gather(*claims, return_exceptions=True)
        finally:
            self.stop.remove_done_callback(end_round)
        jobs = [j for o in outcomes if isinstance(o, list) for j in o]
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        keep, surplus = jobs[:limit], jobs[limit:]
        if self.stop.done():
            keep, surplus = [], jobs
        await asyncio.gather(*(self._release(j) for j in surplus))
        if errors and not keep:
            raise errors[0]
        self._woken = bool(keep)
        return keep

    async def _wait_then_claim(self, limit: int) -> list[Any]:
        """While jobs keep coming to a one-queue stream: the wait and the claim in one round
        trip (the hub's wait wakes a claim that then goes to Redis: two). A wait that ends
        with nothing goes back to the hub's waits, which the stream's end can cut short
        and an idle stream keeps without calls, until a job wakes one again."""
        _, jobs, _ = await self.aio.wait_then_claim(self.queues[0], self.worker_id, PAIRED_WAIT_S,
                                                    limit=limit, lease=self.lease)
        self._woken = bool(jobs)   # (none: also when a limit held them back, whose due time the hub's wait keeps)
        if self.stop.done():
            await asyncio.gather(*(self._release(j) for j in jobs))
            return []
        return jobs

    async def _push(self, jobs: list[Any]) -> None:
        reply = pb.WorkReply()
        add = reply.jobs.jobs.add   # built in place: a message passed to a constructor is copied
        _, sent, broken = rendered(jobs, lambda job: job_message(job, add))
        if broken:
            await self.aio.bury(broken)
        held, taken, settled = self.held, self.changes.taken, self.changes.settled
        for j in sent:
            held[(j.queue, j.id)] = Held(j.queue, j.id, j.token)
            key = f"{j.queue}/{j.id}"
            taken[key] = j.lease_expires_at
            settled.discard(key)   # taken again since it was settled
        self._set_credit(self.credit - len(sent))
        self.changed.set()
        if sent:
            self.outbox.put_nowait(reply)

    # ------------------------------------------------------------------ leases and registry
    async def _keep(self) -> None:
        """Extend every held lease each third of the lease (the stream is the heartbeat)."""
        every = max(0.05, self.lease_s / 3)
        while True:
            await asyncio.sleep(every)
            by_queue: dict[str, list[Held]] = defaultdict(list)
            for h in self.held.values():
                by_queue[h.queue].append(h)
            await asyncio.gather(*(self._extend(q, held) for q, held in by_queue.items()))
            self.changed.set()

    async def _extend(self, queue: str, held: list[Held]) -> None:
        """Extend ``held`` (of one queue) in one script call (``Engine.heartbeat_many``: the
        async engine has no batch form, so a thread, once per queue per third of a lease)."""
        try:
            expiries = await asyncio.to_thread(self.aio.engine.heartbeat_many, queue, held, self.lease_s)
        except GIVE_UP as exc:
            log.warning("worker %s: %d leases in %s not extended: %s", self.worker_id, len(held), queue, exc)
            return
        for h, expires in zip(held, expiries):
            key = f"{h.queue}/{h.id}"
            if self.held.get((h.queue, h.id)) is not h:
                continue                        # acked meanwhile
            if expires is None:                 # swept or taken over: its ack will say lease_lost
                del self.held[(h.queue, h.id)]
                self._let_go(key)
            else:
                self.changes.taken[key] = expires

    async def _registry(self) -> None:
        """Send the registration what changed, at most every ``REGISTRY_S`` (at once when
        the stream ends); one write covers all that happened since the previous one. Best
        effort: the jobs' own state never depends on it."""
        loop = asyncio.get_running_loop()
        next_at = 0.0
        while True:
            changed = asyncio.ensure_future(self.changed.wait())
            try:   # not wait_for: on 3.11 it may swallow a cancel that meets a wake-up
                await asyncio.wait({changed}, timeout=BEAT_S)
            finally:
                changed.cancel()
            if (pause := next_at - loop.time()) > 0 and not self.stop.done():
                await asyncio.wait({self.stop}, timeout=pause)   # the stream's end writes at once
            self.changed.clear()
            closed = self.closed
            try:
                await self._beat()
                next_at = loop.time() + REGISTRY_S
            except GIVE_UP as exc:
                log.warning("worker %s: registration not updated: %s", self.worker_id, exc)
                if not closed:
                    await asyncio.sleep(RETRY_S[1])
            if closed:
                return

    async def _beat(self) -> None:
        c, self.changes = self.changes, Changes()
        try:
            beat: dict[str, Any] = {"processed": c.processed, "failed": c.failed, "taken": c.taken or None,
                                    "settled": sorted(c.settled) or None}
            queues = sorted(c.queues)
            if not await self.aio.beat_worker(self.worker_id, queue=queues[0] if queues else None, **beat):
                await self.aio.register_worker(self.worker_id, host=self.host, pid=0, queues=self.queues)
                await self.aio.beat_worker(self.worker_id, **beat)
            for q in queues[1:]:
                await self.aio.beat_worker(self.worker_id, queue=q)
        except BaseException:
            self._merge_back(c)
            raise
        self.listed |= c.taken.keys()
        self.listed -= c.settled

    def _merge_back(self, c: Changes) -> None:
        """Changes a failed write did not deliver, kept for the next one."""
        n = self.changes
        n.taken = {**c.taken, **n.taken}
        n.settled |= c.settled
        n.processed += c.processed
        n.failed += c.failed
        n.queues |= c.queues

