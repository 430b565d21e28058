"""Cues: named recurring schedules that enqueue a job at each fire time of a cron.

A cue lives under its queue's hash tag: its definition (JSON) in ``rp:{q}:cues`` and,
while it is not paused, its next fire time in ``rp:{q}:cue_next``. Every change is a
compare-and-set in Lua against the definition the caller read, so concurrent edits and
schedulers never interleave; firing also checks the stored next fire time, so each fire
time produces one job (id ``cue:<name>:<fire ms>``) however many schedulers run.

A webhook cue (``add_cue(..., url=)``) is delivered by ``redispool deliver`` instead of
the queue's workers: it is kept as the cue ``<queue>/<name>`` of the deliverer's queue
``_webhooks``, so its fires are jobs there (same slot, same exactly-once firing), and the
receiver's answer settles each one. The methods here take the cue's own queue and name
either way.

Each run (a fire, or ``run_cue``) is logged in the cue's run log, the latest
``defaults.CUE_RUNS_MAX`` (``cue_runs``), and counted in its definition (``CueInfo.runs``).

Misfires (the scheduler was down when fire times passed): ``skip`` fires once for the
missed times and moves on to the next future time; ``catch_up`` fires one job per missed
time, the latest ``defaults.CATCH_UP_MAX`` (100) of them at most.
"""
from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from . import codec, defaults, ops, validate
from .base import EngineBase
from .cron import Schedule, check_zone
from .errors import CueNotFound, InvalidCron, InvalidOption
from .keys import DELIVERY_QUEUE, QUEUE_NAME, check_queue
from .models import CueInfo
from .signing import scheme as check_scheme
from .webhooks import check_headers, check_method, check_secret, check_url

MISFIRE = ("skip", "catch_up")
CAS_TRIES = 20
log = logging.getLogger("redispool.scheduler")


def check_cue_name(name: object) -> str:
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        raise InvalidOption(f"invalid cue name {name!r}: use 1-128 characters of A-Za-z0-9_.:-")
    return name


Definition = dict[str, Any]


class CuesMixin(EngineBase):
    """Cue methods of ``Engine`` (it also provides ``queues`` and ``enqueue``)."""

    queues: Callable[[], list[str]]
    enqueue: Callable[..., str]

    # ------------------------------------------------------------------ reading
    def _cue_read(self, queue: str, name: str = "") -> tuple[int, list[ops.CueRow]]:
        """Server time (ms) and (name, definition, next fire ms or None) of one cue or all."""
        return self.run(ops.list_cues(self, queue, name))

    def _home(self, queue: str, name: str) -> tuple[str, str]:
        """Where cue ``name`` of ``queue`` is kept: there, or as a webhook cue in
        ``_webhooks`` (CueNotFound when neither has it)."""
        check_queue(queue)
        check_cue_name(name)
        if self._cue_read(queue, name)[1]:
            return queue, name
        if queue != DELIVERY_QUEUE and self._cue_read(DELIVERY_QUEUE, f"{queue}/{name}")[1]:
            return DELIVERY_QUEUE, f"{queue}/{name}"
        raise CueNotFound(f"no cue {name!r} in queue {queue!r}")

    def webhook_cue(self, stored: str) -> Definition | None:
        """The definition (url and secret included) of the webhook cue kept as ``stored``
        (``<queue>/<name>``) in ``_webhooks``, or None (for the deliverer)."""
        found = self._cue_read(DELIVERY_QUEUE, stored)[1]
        return json.loads(found[0][1]) if found else None

    @staticmethod
    def _cue_info(queue: str, name: str, raw: str, next_ms: int | None, now_ms: int) -> CueInfo:
        d = json.loads(raw)
        if queue == DELIVERY_QUEUE and "/" in name:   # a webhook cue: shown as its own queue's
            queue, name = name.split("/", 1)
        if next_ms is None:  # paused: when it would fire if resumed now
            try:
                next_ms = Schedule(d["cron"], d["tz"]).next_after(now_ms)
            except InvalidCron:
                next_ms = 0
        return CueInfo(queue=queue, name=name, cron=d["cron"], tz=d["tz"], next_fire_at=next_ms / 1000,
                       paused=bool(d.get("paused")), payload=_payload(d, queue, name),
                       priority=d.get("priority", 0), misfire=d.get("misfire", "skip"),
                       max_attempts=d.get("max_attempts", defaults.MAX_ATTEMPTS),
                       lease=d["lease_ms"] / 1000 if d.get("lease_ms") else None,
                       last_fire_at=d["last"] / 1000 if d.get("last") else None, url=d.get("url"),
                       timeout=d["timeout_ms"] / 1000 if d.get("timeout_ms") else None, runs=d.get("runs", 0))

    def get_cue(self, queue: str, name: str) -> CueInfo | None:
        """One cue, or None when the queue has no cue of that name."""
        try:
            home, stored = self._home(queue, name)
        except CueNotFound:
            return None
        now, found = self._cue_read(home, stored)
        return self._cue_info(home, *found[0], now) if found else None

    def cues(self, queue: str | None = None) -> list[CueInfo]:
        """The cues of ``queue``, or of every queue, sorted by queue and name."""
        out: list[CueInfo] = []
        for q in [check_queue(queue), DELIVERY_QUEUE][:2 if queue != DELIVERY_QUEUE else 1] if queue is not None \
                else self.queues():
            now, found = self._cue_read(q)
            out.extend(self._cue_info(q, name, raw, next_ms, now) for name, raw, next_ms in found)
        if queue is not None:
            out = [c for c in out if c.queue == queue]
        return sorted(out, key=lambda c: (c.queue, c.name))

    # ------------------------------------------------------------------ changing
    def _save_cue(self, queue: str, name: str,
                  change: Callable[[Definition | None, int, int | None], tuple[Definition, int]]
                  ) -> tuple[Definition, int]:
        """Read-modify-compare-and-set one cue: ``change(old definition or None, now_ms,
        old next ms)`` returns the new definition and next fire ms (-1 = paused)."""
        for _ in range(CAS_TRIES):
            now, found = self._cue_read(queue, name)
            raw = found[0][1] if found else ""
            definition, next_ms = change(json.loads(raw) if raw else None, now, found[0][2] if found else None)
            new = json.dumps(definition, separators=(",", ":"), sort_keys=True)
            if self.run(ops.save_cue(self, queue, name, raw, new, next_ms)):
                return definition, next_ms
        raise RuntimeError(f"cue {name!r} of queue {queue!r} kept changing; gave up after {CAS_TRIES} tries")

    def add_cue(self, queue: str, name: str, cron: str, *, tz: str = "UTC", payload: Any = None,
                priority: int = 0, misfire: str = "skip", max_attempts: int = defaults.MAX_ATTEMPTS,
                lease: float | None = None, url: str | None = None, secret: str | None = None,
                scheme: str = "redispool", timeout: float | None = None, label: str | None = None,
                headers: dict[str, str] | None = None, method: str = "POST") -> CueInfo:
        """Create or replace a cue. Replacing one keeps its paused state, and its next
        fire time when cron and tz are unchanged (so re-adding cues at every deploy
        neither skips nor repeats a fire). With ``url`` each fire is POSTed there by the
        deliverer (signed with ``secret`` in the framing of ``scheme``) instead of going
        to the queue's workers; a 2xx answer completes the fire's job, anything else
        fails it, retried up to ``max_attempts``; ``headers`` are added to each request,
        sent with ``method``, and ``label`` names the cue in the framing of schemes that
        carry a name (cueapi's). ``timeout``: each fire's job's timeout (seconds one
        attempt may run; None: the worker's)."""
        check_queue(queue)
        check_cue_name(name)
        if queue == DELIVERY_QUEUE:
            raise InvalidOption(f"the queue {DELIVERY_QUEUE} is the deliverer's own: add cues to your queues")
        schedule = Schedule(cron, check_zone(tz))  # new cues: IANA names only, never 'localtime'
        if misfire not in MISFIRE:
            raise InvalidOption(f"misfire must be one of {', '.join(MISFIRE)}, got {misfire!r}")
        definition = {
            "cron": schedule.cron, "tz": tz, "misfire": misfire,
            "payload": base64.b64encode(codec.encode(payload)).decode(),
            "priority": validate.priority(priority), "max_attempts": validate.max_attempts(max_attempts),
            "lease_ms": validate.lease_ms(lease),
        }
        if timeout is not None:   # (absent: a cue stored before timeouts reads the same)
            definition["timeout_ms"] = validate.timeout_ms(timeout)
        home, stored, other = queue, name, (DELIVERY_QUEUE, f"{queue}/{name}")
        if url is not None:
            definition.update(url=check_url(url), secret=check_secret(secret), scheme=check_scheme(scheme).name)
            if label is not None and (not isinstance(label, str) or not 1 <= len(label) <= 255):
                raise InvalidOption(f"label must be text of 1 to 255 characters, got {label!r}")
            extra = {"label": label, "headers": check_headers(headers), "method": check_method(method)}
            definition.update({k: v for k, v in extra.items() if v not in (None, "POST")})
            home, stored, other = DELIVERY_QUEUE, f"{queue}/{name}", (queue, name)
        elif secret is not None or label is not None or headers or method != "POST":
            raise InvalidOption("a secret, label, headers and method are a webhook cue's: give the cue a url too")

        def change(old: Definition | None, now: int, old_next: int | None) -> tuple[Definition, int]:
            new = dict(definition, paused=bool(old and old.get("paused")), last=old and old.get("last"),
                       runs=old.get("runs", 0) if old else 0)
            if new["paused"]:
                return new, -1
            same = old and old["cron"] == schedule.cron and old["tz"] == tz
            return new, old_next if same and old_next is not None else schedule.next_after(now)

        self._save_cue(home, stored, change)
        self.run(ops.remove_cue(self, *other))   # a cue of the same name but the other kind is replaced
        info = self.get_cue(queue, name)
        if info is None:  # removed by someone else in the meantime
            raise CueNotFound(f"no cue {name!r} in queue {queue!r}")
        return info

    def remove_cue(self, queue: str, name: str) -> None:
        """Delete a cue (jobs it fired stay); CueNotFound if there is none."""
        check_cue_name(name)
        removed = self.run(ops.remove_cue(self, queue, name))
        if not removed and queue != DELIVERY_QUEUE:
            removed = self.run(ops.remove_cue(self, DELIVERY_QUEUE, f"{queue}/{name}"))
        if not removed:
            raise CueNotFound(f"no cue {name!r} in queue {queue!r}")

    def _set_paused(self, queue: str, name: str, paused: bool) -> None:
        home, stored = self._home(queue, name)

        def change(old: Definition | None, now: int, old_next: int | None) -> tuple[Definition, int]:
            if old is None:
                raise CueNotFound(f"no cue {name!r} in queue {queue!r}")
            if paused:
                return dict(old, paused=True), -1
            if not old.get("paused") and old_next is not None:
                return old, old_next
            return dict(old, paused=False), Schedule(old["cron"], old["tz"]).next_after(now)

        self._save_cue(home, stored, change)

    def pause_cue(self, queue: str, name: str) -> None:
        """Stop a cue firing until ``resume_cue``; CueNotFound if there is none."""
        self._set_paused(queue, name, True)

    def resume_cue(self, queue: str, name: str) -> None:
        """Fire a paused cue again from its next fire time after now (the times passed
        while it was paused are not fired)."""
        self._set_paused(queue, name, False)

    def run_cue(self, queue: str, name: str) -> str:
        """Enqueue one job of the cue now, without moving its schedule; returns its id."""
        home, stored = self._home(queue, name)
        now, found = self._cue_read(home, stored)
        if not found:
            raise CueNotFound(f"no cue {name!r} in queue {queue!r}")
        d = json.loads(found[0][1])
        job_id = f"cue:{stored}:{now}-run" if home == DELIVERY_QUEUE else None   # the deliverer reads the cue from it
        made = self.enqueue(home, _payload(d, queue, name), priority=d.get("priority", 0),
                            max_attempts=d.get("max_attempts", defaults.MAX_ATTEMPTS),
                            lease=d["lease_ms"] / 1000 if d.get("lease_ms") else None, job_id=job_id,
                            timeout=d["timeout_ms"] / 1000 if d.get("timeout_ms") else None)
        # logged and counted after the job exists (a process dying in between loses the entry, not the job)
        runs = self.keys(home).cue_runs_prefix + stored
        self.scripts.pipeline([("LPUSH", runs, f"{now}:{made}"), ("LTRIM", runs, 0, defaults.CUE_RUNS_MAX - 1)])

        def count(old: Definition | None, now: int, old_next: int | None) -> tuple[Definition, int]:
            if old is None:
                raise CueNotFound(f"no cue {name!r} in queue {queue!r}")
            return dict(old, runs=old.get("runs", 0) + 1), -1 if old.get("paused") else (
                old_next if old_next is not None else Schedule(old["cron"], old["tz"]).next_after(now))
        with contextlib.suppress(CueNotFound):   # removed meanwhile: the job stays, as for any cue
            self._save_cue(home, stored, count)
        return made

    def cue_runs(self, queue: str, name: str, limit: int = 10) -> list[tuple[str, float]]:
        """The cue's latest ``limit`` runs (its fires and ``run_cue``), newest first, as
        (job id, unix seconds of the fire); the log keeps the latest
        ``defaults.CUE_RUNS_MAX``. CueNotFound if there is no such cue."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= defaults.CUE_RUNS_MAX:
            raise InvalidOption(f"limit must be an integer in [1, {defaults.CUE_RUNS_MAX}], got {limit!r}")
        home, stored = self._home(queue, name)
        rows = self.scripts.command("LRANGE", self.keys(home).cue_runs_prefix + stored, 0, limit - 1)
        out = []
        for row in rows:
            ms, _, job_id = (row.decode() if isinstance(row, bytes) else str(row)).partition(":")
            out.append((job_id, int(ms) / 1000))
        return out

    # ------------------------------------------------------------------ firing
    def fire_due_cues(self, queue: str) -> int:
        """Fire every due cue of ``queue`` once (see misfire); returns the jobs created.
        Safe to call from any number of schedulers at once."""
        return self._fire_due(queue)[0]

    def _fire_due(self, queue: str) -> tuple[int, float | None]:
        """Jobs created, and seconds until the earliest next fire of the queue's cues."""
        now, earliest, due = self.run(ops.due_cues(self, queue, defaults.CUES_DUE_MAX))
        created = 0
        for name, raw, due_ms in due:
            try:
                created += self._fire_cue(queue, name, raw, due_ms, now)
            except (ValueError, KeyError) as exc:
                log.error("cue cannot fire queue=%s cue=%s error=%s", queue, name, exc)
        if created or due:
            earliest = self.run(ops.due_cues(self, queue, 0)).earliest_ms
        return created, (max(0, earliest - now) / 1000 if earliest >= 0 else None)

    def _fire_cue(self, queue: str, name: str, raw: str, due_ms: int, now: int) -> int:
        d = json.loads(raw)
        schedule = Schedule(d["cron"], d["tz"])
        if d.get("misfire") == "catch_up":
            fires = schedule.between(due_ms, now, defaults.CATCH_UP_MAX) or [due_ms]
            dropped = due_ms < fires[0]
            if dropped:
                log.warning("cue catch-up capped queue=%s cue=%s fired=%d (older missed times dropped)",
                            queue, name, len(fires))
        else:
            fires = [due_ms]
        next_ms = schedule.next_after(max(now, fires[-1]))
        new = json.dumps(dict(d, last=fires[-1], runs=d.get("runs", 0) + len(fires)), separators=(",", ":"),
                         sort_keys=True)
        created = self.run(ops.fire_cue(self, queue, name, raw, due_ms, new, next_ms, base64.b64decode(d["payload"]),
                                        d.get("priority", 0), d.get("max_attempts", defaults.MAX_ATTEMPTS),
                                        d.get("lease_ms", 0), d.get("timeout_ms", 0), fires))
        if created > 0:
            log.info("cue fired queue=%s cue=%s jobs=%d fire_at=%s next_at=%s", queue, name, created,
                     fires[-1] / 1000, next_ms / 1000)
        return max(0, int(created))


def _payload(d: Definition, queue: str, name: str) -> Any:
    try:
        return codec.decode(base64.b64decode(d["payload"]))
    except Exception as exc:
        return f"<undecodable payload of cue {queue}/{name}: {exc}>"
