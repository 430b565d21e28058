"""JSON on the wire: request bodies checked field by field, and records turned into JSON.

What JSON cannot carry in a payload or result (bytes, NaN/Infinity from a Python
producer) is sent in the tagged forms of ``redispool.tojson``, shared with the CLI.

Nesting is capped at ``MAX_DEPTH`` levels: a payload or result nested deeper is refused
at enqueue (400, nothing written), so every stored job can be handed back as JSON (the
encoder, and many clients' decoders -- serde_json, Ruby's JSON -- stop not far above).
"""
from __future__ import annotations

import json
import math
from typing import Any

from ..errors import RedispoolError
from ..tojson import jsonable as _json  # recursive: see deliverable()


class BadInput(RedispoolError, ValueError):
    """A request body or parameter is malformed; answered 400."""


MISSING = object()
MAX_DEPTH = 100   # levels of lists/objects in one payload or result


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deep ``value`` nests lists and dicts (a scalar is 0), counting no further than
    ``limit + 1``; iterative, so no input can exhaust the stack."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def check_depth(value: Any, what: str = "payload") -> Any:
    """``value`` itself, or BadInput when it nests deeper than MAX_DEPTH."""
    if depth(value) > MAX_DEPTH:
        raise BadInput(f"{what} nests lists/objects deeper than {MAX_DEPTH} levels")
    return value


def not_json(constant: str) -> Any:
    """``parse_constant`` of every JSON read here: NaN and Infinity are not JSON (Python's
    json takes them; a Go or Node worker would then get a string or fail)."""
    raise BadInput(f"the body holds {constant}, which is not JSON (send numbers, or null)")


def loads(raw: bytes | str) -> Any:
    """Strict JSON: NaN/Infinity refused (BadInput)."""
    return json.loads(raw, parse_constant=not_json)


def parse(raw: bytes, fields: dict[str, tuple[Any, ...]], required: bool = False) -> dict[str, Any]:
    """Decode a JSON object body; ``fields`` maps name -> (allowed types..., default) with
    default ``MISSING`` for a required field. Unknown fields are bad input. ``required``:
    an empty body is bad input too (else it reads as ``{}``)."""
    if required and not raw.strip():
        raise BadInput("the body is empty: send a JSON object")
    try:
        body = loads(raw or b"{}")
    except BadInput:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadInput(f"the body nests deeper than JSON can be read here (keep payloads within "
                       f"{MAX_DEPTH} levels)") from None
    return check(body, fields)


def check(body: Any, fields: dict[str, tuple[Any, ...]], where: str = "the body") -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadInput(f"{where} must be a JSON object")
    unknown = set(body) - set(fields)
    if unknown:
        raise BadInput(f"unknown field(s) in {where}: {', '.join(sorted(unknown))}")
    out = {}
    for name, spec in fields.items():
        *types, default = spec
        if name not in body:
            if default is MISSING:
                raise BadInput(f"{where} needs the field {name!r}")
            out[name] = default
            continue
        value = body[name]
        if types and not _is(value, types):
            names = "/".join(t.__name__ if isinstance(t, type) else repr(t) for t in types)
            raise BadInput(f"{name} must be {names}, got {json.dumps(value)[:80]}")
        out[name] = value
    return out


def _is(value: Any, types: list[Any]) -> bool:
    for t in types:
        if t is None and value is None:
            return True
        if t is Any:
            return True
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return math.isfinite(value)
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if isinstance(t, type) and t not in (int, float) and isinstance(value, t) and not isinstance(value, bool):
            return True
        if t is bool and isinstance(value, bool):
            return True
    return False


class Undeliverable(RedispoolError, ValueError):
    """A stored payload or result that cannot be sent as JSON (nested too deep)."""


def deliverable(value: Any, what: str = "payload") -> Any:
    """The JSON form of ``value``, or Undeliverable when it nests deeper than MAX_DEPTH (a
    job stored by a Python producer can): checked before anything recurses into it."""
    if depth(value) > MAX_DEPTH:
        raise Undeliverable(f"{what} nests deeper than {MAX_DEPTH} levels: it cannot be sent as JSON")
    return _json(value)


def jsonable(value: Any) -> Any:
    """A decoded payload or result as JSON can carry it, for reading: one nested too deep
    to send shows as ``{"$undeliverable": "<why>"}`` instead."""
    try:
        return deliverable(value, "value")
    except Undeliverable as exc:
        return {"$undeliverable": str(exc)}


def job(j: Any) -> dict[str, Any]:
    """A leased job as the claim routes send it (Undeliverable: see ``deliverable``)."""
    return {"id": j.id, "queue": j.queue, "payload": deliverable(j.payload), "attempt": j.attempt,
            "max_attempts": j.max_attempts, "token": j.token, "lease_expires_at": j.lease_expires_at}


def info(i: Any) -> dict[str, Any]:
    return {"id": i.id, "queue": i.queue, "state": i.state, "payload": jsonable(i.payload),
            "attempts": i.attempts, "max_attempts": i.max_attempts, "priority": i.priority,
            "result": jsonable(i.result), "error": i.error, "worker_id": i.worker_id,
            "created_at": i.created_at, "updated_at": i.updated_at, "unique_key": i.unique_key,
            "run_at": i.run_at, "lease_expires_at": i.lease_expires_at, "finished_at": i.finished_at,
            "payload_dropped": i.payload_dropped, "result_dropped": i.result_dropped,
            "errors": [{"attempt": a, "error": e, "at": at} for a, e, at in i.errors]}


def cue(c: Any) -> dict[str, Any]:
    return {"queue": c.queue, "name": c.name, "cron": c.cron, "tz": c.tz, "next_fire_at": c.next_fire_at,
            "paused": c.paused, "payload": jsonable(c.payload), "priority": c.priority, "misfire": c.misfire,
            "max_attempts": c.max_attempts, "lease": c.lease, "last_fire_at": c.last_fire_at}


def worker(w: Any) -> dict[str, Any]:
    return {"id": w.id, "host": w.host, "pid": w.pid, "queues": w.queues, "started_at": w.started_at,
            "last_heartbeat": w.last_heartbeat, "jobs_in_progress": w.jobs_in_progress,
            "processed": w.processed, "failed": w.failed}
