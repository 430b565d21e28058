"""Cues: named recurring schedules that enqueue a job at each fire time of a cron.

A cue lives under its queue's hash tag: its definition (JSON) in ``rp:{q}:cues`` and,
while it is not paused, its next fire time in ``rp:{q}:cue_next``. Every change is a
compare-and-set in Lua against the definition the caller read, so concurrent edits and
schedulers never interleave; firing also checks the stored next fire time, so each fire
time produces one job (id ``cue:<name>:<fire ms>``) however many schedulers run.

Misfires (the scheduler was down when fire times passed): ``skip`` fires once for the
missed times and moves on to the next future time; ``catch_up`` fires one job per missed
time, the latest ``defaults.CATCH_UP_MAX`` (100) of them at most.
"""
from __future__ import annotations

import base64
import json
import logging
from typing import Any, Callable

from . import codec, defaults, validate
from .cron import Schedule, check_zone
from .errors import CueNotFound, InvalidCron, InvalidOption, reports_unreachable
from .keys import QUEUE_NAME, QueueKeys, check_queue
from .models import CueInfo

MISFIRE = ("skip", "catch_up")
CAS_TRIES = 20
log = logging.getLogger("redispool.scheduler")


def check_cue_name(name: object) -> str:
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        raise InvalidOption(f"invalid cue name {name!r}: use 1-128 characters of A-Za-z0-9_.:-")
    return name


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class CuesMixin:
    """Cue methods of ``Engine`` (it provides ``url``, ``scripts``, ``keys``, ``queues``,
    ``enqueue`` and, from queues.py, ``_followups`` and ``_send_followups``)."""

    url: str
    scripts: Any
    keys: Callable[[str], QueueKeys]
    queues: Callable[[], list[str]]
    enqueue: Callable[..., str]
    _followups: Callable[..., list[Any]]
    _send_followups: Callable[[list[Any]], None]

    # ------------------------------------------------------------------ reading
    def _cue_read(self, queue: str, name: str = "") -> tuple[int, list[tuple[str, str, int | None]]]:
        """Server time (ms) and (name, definition, next fire ms or None) of one cue or all."""
        k = self.keys(queue)
        reply = self.scripts.run("cue_list", [k.cues, k.cue_next], [name])
        cues = [(_text(reply[i]), _text(reply[i + 1]), int(float(reply[i + 2])) if reply[i + 2] else None)
                for i in range(1, len(reply), 3)]
        return int(reply[0]), cues

    @staticmethod
    def _cue_info(queue: str, name: str, raw: str, next_ms: int | None, now_ms: int) -> CueInfo:
        d = json.loads(raw)
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
                       last_fire_at=d["last"] / 1000 if d.get("last") else None)

    @reports_unreachable
    def get_cue(self, queue: str, name: str) -> CueInfo | None:
        """One cue, or None when the queue has no cue of that name."""
        check_queue(queue)
        check_cue_name(name)
        now, found = self._cue_read(queue, name)
        return self._cue_info(queue, *found[0], now) if found else None

    @reports_unreachable
    def cues(self, queue: str | None = None) -> list[CueInfo]:
        """The cues of ``queue``, or of every queue, sorted by queue and name."""
        out = []
        for q in [check_queue(queue)] if queue is not None else self.queues():
            now, found = self._cue_read(q)
            out.extend(self._cue_info(q, name, raw, next_ms, now) for name, raw, next_ms in sorted(found))
        return out

    # ------------------------------------------------------------------ changing
    def _cue_save(self, queue: str, name: str, change: Callable[[dict | None, int, int | None], tuple[dict, int]]) -> tuple[dict, int]:
        """Read-modify-compare-and-set one cue: ``change(old definition or None, now_ms,
        old next ms)`` returns the new definition and next fire ms (-1 = paused)."""
        k = self.keys(queue)
        for _ in range(CAS_TRIES):
            now, found = self._cue_read(queue, name)
            raw = found[0][1] if found else ""
            definition, next_ms = change(json.loads(raw) if raw else None, now, found[0][2] if found else None)
            new = json.dumps(definition, separators=(",", ":"), sort_keys=True)
            reply = self.scripts.run("cue_save", [k.cues, k.cue_next, k.meta], [name, raw, new, next_ms])
            if reply[0] == 1:
                self._send_followups(self._followups(queue, new_queue=reply[1], scheduler_at=reply[2]))
                return definition, next_ms
        raise RuntimeError(f"cue {name!r} of queue {queue!r} kept changing; gave up after {CAS_TRIES} tries")

    @reports_unreachable
    def add_cue(self, queue: str, name: str, cron: str, *, tz: str = "UTC", payload: Any = None,
                priority: int = 0, misfire: str = "skip", max_attempts: int = defaults.MAX_ATTEMPTS,
                lease: float | None = None) -> CueInfo:
        """Create or replace a cue. Replacing one keeps its paused state, and its next
        fire time when cron and tz are unchanged (so re-adding cues at every deploy
        neither skips nor repeats a fire)."""
        check_queue(queue)
        check_cue_name(name)
        schedule = Schedule(cron, check_zone(tz))  # new cues: IANA names only, never 'localtime'
        if misfire not in MISFIRE:
            raise InvalidOption(f"misfire must be one of {', '.join(MISFIRE)}, got {misfire!r}")
        definition = {
            "cron": schedule.cron, "tz": tz, "misfire": misfire,
            "payload": base64.b64encode(codec.encode(payload)).decode(),
            "priority": validate.priority(priority), "max_attempts": validate.max_attempts(max_attempts),
            "lease_ms": validate.lease_ms(lease),
        }

        def change(old: dict | None, now: int, old_next: int | None) -> tuple[dict, int]:
            new = dict(definition, paused=bool(old and old.get("paused")), last=old and old.get("last"))
            if new["paused"]:
                return new, -1
            same = old and old["cron"] == schedule.cron and old["tz"] == tz
            return new, old_next if same and old_next is not None else schedule.next_after(now)

        self._cue_save(queue, name, change)
        info = self.get_cue(queue, name)
        if info is None:  # removed by someone else in the meantime
            raise CueNotFound(f"no cue {name!r} in queue {queue!r}")
        return info

    @reports_unreachable
    def remove_cue(self, queue: str, name: str) -> None:
        """Delete a cue (jobs it fired stay); CueNotFound if there is none."""
        k = self.keys(queue)
        check_cue_name(name)
        if self.scripts.run("cue_remove", [k.cues, k.cue_next], [name]) == 0:
            raise CueNotFound(f"no cue {name!r} in queue {queue!r}")

    def _set_paused(self, queue: str, name: str, paused: bool) -> None:
        check_queue(queue)
        check_cue_name(name)

        def change(old: dict | None, now: int, old_next: int | None) -> tuple[dict, int]:
            if old is None:
                raise CueNotFound(f"no cue {name!r} in queue {queue!r}")
            if paused:
                return dict(old, paused=True), -1
            if not old.get("paused") and old_next is not None:
                return old, old_next
            return dict(old, paused=False), Schedule(old["cron"], old["tz"]).next_after(now)

        self._cue_save(queue, name, change)

    @reports_unreachable
    def pause_cue(self, queue: str, name: str) -> None:
        """Stop a cue firing until ``resume_cue``; CueNotFound if there is none."""
        self._set_paused(queue, name, True)

    @reports_unreachable
    def resume_cue(self, queue: str, name: str) -> None:
        """Fire a paused cue again from its next fire time after now (the times passed
        while it was paused are not fired)."""
        self._set_paused(queue, name, False)

    @reports_unreachable
    def run_cue(self, queue: str, name: str) -> str:
        """Enqueue one job of the cue now, without moving its schedule; returns its id."""
        check_queue(queue)
        check_cue_name(name)
        now, found = self._cue_read(queue, name)
        if not found:
            raise CueNotFound(f"no cue {name!r} in queue {queue!r}")
        d = json.loads(found[0][1])
        return self.enqueue(queue, _payload(d, queue, name), priority=d.get("priority", 0),
                            max_attempts=d.get("max_attempts", defaults.MAX_ATTEMPTS),
                            lease=d["lease_ms"] / 1000 if d.get("lease_ms") else None)

    # ------------------------------------------------------------------ firing
    @reports_unreachable
    def fire_due_cues(self, queue: str) -> int:
        """Fire every due cue of ``queue`` once (see misfire); returns the jobs created.
        Safe to call from any number of schedulers at once."""
        return self._fire_due(queue)[0]

    def _fire_due(self, queue: str) -> tuple[int, float | None]:
        """Jobs created, and seconds until the earliest next fire of the queue's cues."""
        k = self.keys(queue)
        reply = self.scripts.run("cue_due", [k.cues, k.cue_next], [defaults.CUES_DUE_MAX])
        now, earliest = int(reply[0]), int(float(reply[1]))
        created = 0
        for i in range(2, len(reply), 3):
            name, raw, due_ms = _text(reply[i]), _text(reply[i + 1]), int(float(reply[i + 2]))
            try:
                created += self._fire_cue(k, name, raw, due_ms, now)
            except (ValueError, KeyError) as exc:
                log.error("cue cannot fire queue=%s cue=%s error=%s", queue, name, exc)
        if created or len(reply) > 2:
            earliest = self._cue_earliest(k)
        return created, (max(0, earliest - now) / 1000 if earliest >= 0 else None)

    def _cue_earliest(self, k: QueueKeys) -> int:
        reply = self.scripts.run("cue_due", [k.cues, k.cue_next], [0])
        return int(float(reply[1]))

    def _fire_cue(self, k: QueueKeys, name: str, raw: str, due_ms: int, now: int) -> int:
        d = json.loads(raw)
        schedule = Schedule(d["cron"], d["tz"])
        if d.get("misfire") == "catch_up":
            fires = schedule.between(due_ms, now, defaults.CATCH_UP_MAX) or [due_ms]
            dropped = due_ms < fires[0]
            if dropped:
                log.warning("cue catch-up capped queue=%s cue=%s fired=%d (older missed times dropped)",
                            k.queue, name, len(fires))
        else:
            fires = [due_ms]
        next_ms = schedule.next_after(max(now, fires[-1]))
        new = json.dumps(dict(d, last=fires[-1]), separators=(",", ":"), sort_keys=True)
        args = [name, raw, due_ms, new, next_ms, base64.b64decode(d["payload"]), d.get("priority", 0),
                d.get("max_attempts", defaults.MAX_ATTEMPTS), d.get("lease_ms", 0), *fires]
        created = self.scripts.run("cue_fire", [k.cues, k.cue_next, k.ready, k.scheduled, k.marker,
                                                k.meta, k.unique, k.counts, k.job_prefix], args)
        if created > 0:
            log.info("cue fired queue=%s cue=%s jobs=%d fire_at=%s next_at=%s", k.queue, name, created,
                     fires[-1] / 1000, next_ms / 1000)
        return max(0, int(created))


def _payload(d: dict, queue: str, name: str) -> Any:
    try:
        return codec.decode(base64.b64decode(d["payload"]))
    except Exception as exc:
        return f"<undecodable payload of cue {queue}/{name}: {exc}>"
