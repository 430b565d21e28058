"""How a webhook request is framed and signed: one ``Scheme`` per service, in a table.

A delivery (an event, or a webhook cue's fire) becomes a JSON body, a few headers and,
when the webhook has a secret, an HMAC-SHA256 signature over ``"<timestamp>.<raw body>"``.
The services we speak for differ only in header names, the signature's prefix, the body's
shape and how it is serialised, so each is an entry of ``SCHEMES`` and the deliverer has
one code path. ``verify`` is the receiving side, for receivers written in Python.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import tojson
from .errors import InvalidOption

TOLERANCE_S = 300   # verify(): a timestamp further than this from now is refused (replays)


@dataclass(frozen=True)
class Delivery:
    """What one request delivers, whatever the scheme: ``id`` is the delivery's (its job's)
    id, ``event`` the event type (``cue`` for a cue's fire), ``at`` unix seconds."""

    id: str
    event: str
    queue: str
    job_id: str
    at: float
    data: Mapping[str, Any]
    attempt: int = 1


def _compact(envelope: Any) -> bytes:
    return tojson.dumps(envelope).encode()


def _python_sorted(envelope: Any) -> bytes:
    """``json.dumps(sort_keys=True, default=str)`` with Python's default separators: the
    cron service signs and sends exactly this (its SDK's verifier re-serialises so)."""
    return json.dumps(envelope, sort_keys=True, default=str).encode()


def _native(d: Delivery) -> dict[str, Any]:
    return {"id": d.id, "event": d.event, "queue": d.queue, "job_id": d.job_id, "at": d.at, "data": dict(d.data)}


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


# the job service's names of our event types, and the job status each one reports
SPOOLED_EVENTS = {"enqueued": "job.created", "waiting": "job.created", "claimed": "job.started",
                  "completed": "job.completed", "failed": "job.failed", "dead": "job.failed",
                  "cancelled": "job.cancelled", "replayed": "job.retried", "paused": "queue.paused",
                  "resumed": "queue.resumed"}
SPOOLED_STATUS = {"waiting": "pending", "scheduled": "scheduled", "ready": "pending", "leased": "processing",
                  "done": "completed", "dead": "deadletter", "cancelled": "cancelled"}


def _spooled(d: Delivery) -> dict[str, Any]:
    """The job service's ``{id, event, created_at, data}``: its event names, its job ids
    (``<queue>~<id>``, as its compat API hands them out) and its data fields."""
    data: dict[str, Any] = {"queue_name": d.queue}
    if d.job_id and d.event != "cue":
        data["job_id"] = f"{d.queue}~{d.job_id}"
    elif d.job_id:
        data["job_id"] = d.job_id
    given = dict(d.data)
    if d.event in ("enqueued", "waiting"):
        data.update(status=SPOOLED_STATUS.get(given.get("state", d.event), "pending"),
                    priority=given.get("priority", 0))
    elif d.event == "claimed":
        data.update(status="processing", worker_id=given.get("worker_id"))
    elif d.event == "completed":
        data.update(status="completed")
    elif d.event in ("failed", "dead"):
        data.update(status="failed" if d.event == "failed" else "deadletter", error=given.get("error"))
    elif d.event == "cancelled":
        data.update(status="cancelled", old_status=SPOOLED_STATUS.get(given.get("previous", ""), given.get("previous")))
    elif d.event == "replayed":
        data.update(status="pending")
    else:
        data.update(given)
    return {"id": d.id, "event": SPOOLED_EVENTS.get(d.event, d.event), "created_at": _iso(d.at), "data": data}


def _cueapi(d: Delivery) -> dict[str, Any]:
    return {"attempt": d.attempt, "cue_id": d.data.get("cue", ""), "execution_id": d.job_id,
            "name": d.data.get("name") or d.data.get("cue", ""), "payload": d.data.get("payload"),
            "scheduled_for": _iso(d.at)}


def _cueapi_headers(d: Delivery) -> dict[str, str]:
    return {"X-CueAPI-Cue-Id": str(d.data.get("cue", "")), "X-CueAPI-Scheduled-For": _iso(d.at)}


@dataclass(frozen=True)
class Scheme:
    """One service's webhook framing. Header names of None are not sent."""

    name: str
    signature: str                      # header carrying "<prefix><hex>"
    prefix: str                         # e.g. "sha256=" or "v1="
    timestamp: str                      # header carrying unix seconds
    event: str | None
    delivery: str | None
    attempt: str | None
    user_agent: str
    envelope: Callable[[Delivery], Any]
    serialise: Callable[[Any], bytes]
    extra: Callable[[Delivery], dict[str, str]] | None = None   # more headers of the delivery
    names: Mapping[str, str] | None = None   # our event types as this service names them

    def event_name(self, event: str) -> str:
        return self.names.get(event, event) if self.names else event

    def request(self, delivery: Delivery, secret: str | None, now: float | None = None
                ) -> tuple[bytes, dict[str, str]]:
        """The body and headers of ``delivery``, signed with ``secret`` when there is one."""
        body = self.serialise(self.envelope(delivery))
        stamp = str(int(time.time() if now is None else now))
        headers = {"Content-Type": "application/json", "User-Agent": self.user_agent, self.timestamp: stamp}
        for header, value in ((self.event, self.event_name(delivery.event)), (self.delivery, delivery.id),
                              (self.attempt, str(delivery.attempt))):
            if header:
                headers[header] = value
        if self.extra is not None:
            headers.update(self.extra(delivery))
        if secret:
            headers[self.signature] = self.prefix + sign(secret, stamp, body)
        return body, headers


SCHEMES: dict[str, Scheme] = {s.name: s for s in (
    Scheme("redispool", "X-Redispool-Signature", "sha256=", "X-Redispool-Timestamp", "X-Redispool-Event",
           "X-Redispool-Delivery", "X-Redispool-Attempt", "redispool-webhook/1", _native, _compact),
    Scheme("spooled", "X-Spooled-Signature", "sha256=", "X-Spooled-Timestamp", "X-Spooled-Event",
           None, "X-Spooled-Delivery-Attempt", "Spooled-OutgoingWebhook/1.0", _spooled, _compact,
           names=SPOOLED_EVENTS),
    Scheme("cueapi", "X-CueAPI-Signature", "v1=", "X-CueAPI-Timestamp", None, "X-CueAPI-Execution-Id",
           "X-CueAPI-Attempt", "CueAPI/1.0", _cueapi, _python_sorted, _cueapi_headers),
)}


def scheme(name: str) -> Scheme:
    """The scheme called ``name``, else InvalidOption."""
    try:
        return SCHEMES[name]
    except (KeyError, TypeError):
        raise InvalidOption(f"unknown signing scheme {name!r}: one of {', '.join(SCHEMES)}") from None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"`` keyed by ``secret``."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, scheme_name: str = "redispool",
           tolerance: float = TOLERANCE_S, now: float | None = None) -> bool:
    """True when ``body`` and ``headers`` (any case) carry a valid signature by ``secret``
    made within ``tolerance`` seconds of now: what a receiver checks before trusting a POST."""
    s = scheme(scheme_name)
    lower = {k.lower(): v for k, v in headers.items()}
    stamp, given = lower.get(s.timestamp.lower(), ""), lower.get(s.signature.lower(), "")
    if not stamp.isdigit() or not given.startswith(s.prefix):
        return False
    if abs((time.time() if now is None else now) - int(stamp)) > tolerance:
        return False
    return hmac.compare_digest(given[len(s.prefix):], sign(secret, stamp, body))
