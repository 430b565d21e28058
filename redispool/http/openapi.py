"""The OpenAPI 3.0 document of ``redispool serve``: every route of the route table with its
request body, query parameters and responses as JSON Schema, so clients can be generated
from it and schemathesis can fuzz the server against it (tests/web/test_http_fuzz.py).

The body schemas come from the handlers' own field specs (bodies.py), so they list
exactly the fields the handlers accept (any other field is a 400), with the ranges the
Engine enforces.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..keys import STATES
from ..models import EVENT_TYPES
from ..signing import SCHEMES
from ..web.body import Spec, body_schema
from ..webhooks import LOG_MAX
from . import bodies
from .bodies import NAME, ref

ANY: dict[str, Any] = {"description": "any JSON value"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def record(properties: dict[str, Any]) -> dict[str, Any]:
    """A response object: every listed field is always present."""
    return {"type": "object", "properties": properties, "required": list(properties)}


TIME = {"type": "number", "description": "unix seconds"}
STATE = {"type": "string", "enum": list(STATES)}
TIMEOUT = nullable({"type": "number", "description": "seconds one attempt may run (null: the job has no "
                                                     "timeout of its own)"})

SCHEMAS: dict[str, Any] = {
    "Error": record({"error": {"type": "string", "enum": [
        "bad_input", "unauthorized", "forbidden", "not_found", "lease_lost", "too_large", "unavailable", "busy",
        "redis_full", "upgrade_required", "unsupported_media_type", "wrong_host", "cross_origin"]},
        "message": {"type": "string"}}),
    **{name: body_schema(spec) for name, spec in bodies.NAMED.items()},
    "Lease": record({
        "id": {"type": "string"}, "queue": {"type": "string"}, "payload": ANY,
        "attempt": {"type": "integer"}, "max_attempts": {"type": "integer"}, "token": {"type": "string"},
        "lease_expires_at": TIME, "timeout": TIMEOUT}),
    "Workflow": record({
        "id": {"type": "string"}, "name": {"type": "string"},
        "status": {"type": "string", "enum": ["running", "completed", "failed", "cancelled"]},
        "created_at": TIME, "cancelled_at": nullable(TIME),
        "jobs": {"type": "object", "description": "the nodes by key", "additionalProperties": record({
            "queue": {"type": "string"}, "id": {"type": "string"},
            "state": nullable({**STATE, "description": "null: gone (trimmed by retention) or never created"}),
            "depends_on": {"type": "array", "items": {"type": "string"}},
            "dependency_mode": {"type": "string", "enum": ["all", "any"]}})}}),
    "JobInfo": record({
        "id": {"type": "string"}, "queue": {"type": "string"}, "state": STATE, "payload": ANY,
        "attempts": {"type": "integer"}, "max_attempts": {"type": "integer"}, "priority": {"type": "integer"},
        "result": ANY, "error": nullable({"type": "string"}), "worker_id": nullable({"type": "string"}),
        "created_at": TIME, "updated_at": TIME, "unique_key": nullable({"type": "string"}),
        "run_at": nullable(TIME), "lease_expires_at": nullable(TIME), "finished_at": nullable(TIME),
        "payload_dropped": nullable({"type": "integer", "description":
                                     "bytes of the payload the queue's retention dropped when the job was done"}),
        "result_dropped": nullable({"type": "integer", "description":
                                    "bytes of the result not stored (over the queue's result_max)"}),
        "timeout": TIMEOUT, "progress": nullable(ref("Progress")),
        "errors": {"type": "array", "items": record({
            "attempt": {"type": "integer"}, "error": {"type": "string"}, "at": TIME})}}),
    "Progress": record({"value": {"type": "number", "minimum": 0, "maximum": 100},
                        "message": nullable({"type": "string"}), "at": TIME}),
    "Cue": record({
        "queue": {"type": "string"}, "name": {"type": "string"}, "cron": {"type": "string"},
        "tz": {"type": "string"}, "next_fire_at": TIME, "paused": {"type": "boolean"}, "payload": ANY,
        "priority": {"type": "integer"}, "misfire": {"type": "string", "enum": ["skip", "catch_up"]},
        "max_attempts": {"type": "integer"}, "lease": nullable({"type": "number"}),
        "last_fire_at": nullable(TIME),
        "url": nullable({"type": "string", "description": "a webhook cue's URL (null: the queue's workers get "
                                                          "its fires)"}),
        "timeout": TIMEOUT, "runs": {"type": "integer", "description": "its runs so far (fires and runs now)"}}),
    "Webhook": record({
        "name": {"type": "string"}, "url": {"type": "string"},
        "events": {"type": "array", "items": {"type": "string", "enum": list(EVENT_TYPES)}},
        "queues": nullable({"type": "array", "items": {"type": "string"}, "description": "null: every queue"}),
        "signed": {"type": "boolean", "description": "whether it has a secret (which is never sent)"},
        "scheme": {"type": "string", "enum": list(SCHEMES)}, "max_attempts": {"type": "integer"},
        "created_at": TIME, "enabled": {"type": "boolean", "description": "false: nothing is delivered to it"},
        "disable_after": {"type": "integer", "description": "consecutive failed deliveries that disable it "
                                                             "(0: never)"},
        "failures": {"type": "integer", "description": "consecutive failed (dead) deliveries so far"},
        "auto_disabled_at": nullable({**TIME, "description": "when the deliverer disabled it"})}),
    "Delivery": record({
        "id": {"type": "string"}, "webhook": {"type": "string"}, "event": {"type": "string"},
        "queue": {"type": "string"}, "job_id": nullable({"type": "string"}), "attempt": {"type": "integer"},
        "status": {"type": "string", "enum": ["success", "failed", "dead"]},
        "code": nullable({"type": "integer", "description": "the HTTP status (null: no answer)"}),
        "error": nullable({"type": "string"}),
        "response": {"type": "string", "description": "the first 1 KiB of the answer"},
        "duration_ms": {"type": "number"}, "at": TIME}),
    "Worker": record({
        "id": {"type": "string"}, "host": {"type": "string"}, "pid": {"type": "integer"},
        "queues": {"type": "array", "items": {"type": "string"}}, "started_at": TIME, "last_heartbeat": TIME,
        "jobs_in_progress": {"type": "array", "items": {"type": "string"}},
        "processed": {"type": "integer"}, "failed": {"type": "integer"}}),
    "Stats": record({
        "queue": {"type": "string"}, **{s: {"type": "integer"} for s in STATES},
        "paused": {"type": "boolean"},
        "latency": {"type": "number", "description": "seconds the oldest ready job waited"},
        "totals": record({e: {"type": "integer"} for e in ("enqueued", "completed", "failed", "retried", "dead")}),
        "limits": ref("Limits")}),
    "Limits": record({
        "rate": nullable({"type": "integer", "description": "claims allowed in any window of `per` seconds"}),
        "per": nullable({"type": "number", "description": "the rate's window in seconds (null without a rate)"}),
        "concurrency": nullable({"type": "integer", "description": "jobs leased at once, at most"})}),
}


def _body(spec: Spec) -> dict[str, Any]:
    """A request body's schema: a reference to a named one, else the schema itself."""
    for name, named in bodies.NAMED.items():
        if named is spec:
            return ref(name)
    return body_schema(spec)


# every request body, from its one declaration (bodies.py)
BODIES: dict[tuple[str, str], dict[str, Any]] = {key: _body(spec) for key, spec in bodies.BODIES.items()}


def array_of(name: str) -> dict[str, Any]:
    """An array of the named schema."""
    return {"type": "array", "items": ref(name)}


RESPONSES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/queues/{queue}/jobs"): record({"id": {"type": "string"}, "created": {"type": "boolean"}}),
    ("POST", "/v1/queues/{queue}/jobs/batch"): record({"ids": {"type": "array", "items": {"type": "string"}}}),
    ("POST", "/v1/queues/{queue}/claim"): record({"jobs": array_of("Lease")}),
    ("POST", "/v1/queues/{queue}/ack"): {
        "type": "object", "required": ["results"], "properties": {
            "results": {"type": "array", "items": {
                "type": "object", "required": ["id", "ok"], "properties": {
                    "id": {"type": "string"}, "ok": {"type": "boolean"}, "state": STATE,
                    "error": {"type": "string", "enum": ["lease_lost"]}}}},
            "jobs": {**array_of("Lease"), "description": "the next batch, when `claim` was given"},
            "claim_error": {**ref("Error"), "description":
                            "why the claim part failed (nothing was leased); the results above stand"}}},
    ("POST", "/v1/queues/{queue}/jobs/{id}/complete"): record({"state": {"type": "string", "enum": ["done"]}}),
    ("POST", "/v1/queues/{queue}/jobs/{id}/fail"): record({"state": {"type": "string",
                                                                    "enum": ["scheduled", "dead"]}}),
    ("POST", "/v1/queues/{queue}/jobs/{id}/heartbeat"): record({"lease_expires_at": TIME}),
    ("POST", "/v1/queues/{queue}/jobs/{id}/release"): record({"state": {"type": "string", "enum": ["ready"]}}),
    ("POST", "/v1/queues/{queue}/jobs/{id}/progress"): ref("Progress"),
    ("GET", "/v1/queues"): {"type": "array", "items": record({
        "name": {"type": "string"}, "paused": {"type": "boolean"},
        "counts": record({s: {"type": "integer"} for s in STATES})})},
    ("GET", "/v1/queues/{queue}"): ref("Stats"),
    ("GET", "/v1/queues/{queue}/jobs"): record({"jobs": array_of("JobInfo"), "cursor": nullable(
        {"type": "string", "description": "pass as ?cursor= for the next page; null on the last"})}),
    ("DELETE", "/v1/queues/{queue}/jobs"): record({"purged": {"type": "integer"}}),
    ("GET", "/v1/queues/{queue}/jobs/{id}"): ref("JobInfo"),
    ("DELETE", "/v1/queues/{queue}/jobs/{id}"): record({"cancelled": {"type": "boolean"}}),
    ("POST", "/v1/queues/{queue}/pause"): record({"changed": {"type": "boolean"}}),
    ("POST", "/v1/queues/{queue}/resume"): record({"changed": {"type": "boolean"}}),
    ("POST", "/v1/queues/{queue}/replay"): record({"replayed": {"type": "integer"}}),
    ("GET", "/v1/queues/{queue}/limits"): ref("Limits"),
    ("PUT", "/v1/queues/{queue}/limits"): ref("Limits"),
    ("GET", "/v1/cues"): array_of("Cue"),
    ("PUT", "/v1/queues/{queue}/cues/{name}"): ref("Cue"),
    ("DELETE", "/v1/queues/{queue}/cues/{name}"): record({"removed": {"type": "boolean"}}),
    ("POST", "/v1/queues/{queue}/cues/{name}/pause"): record({"ok": {"type": "boolean"}}),
    ("POST", "/v1/queues/{queue}/cues/{name}/resume"): record({"ok": {"type": "boolean"}}),
    ("POST", "/v1/queues/{queue}/cues/{name}/run"): record({"job_id": {"type": "string"}}),
    ("GET", "/v1/webhooks"): array_of("Webhook"),
    ("PUT", "/v1/webhooks/{name}"): ref("Webhook"),
    ("GET", "/v1/webhooks/{name}"): ref("Webhook"),
    ("DELETE", "/v1/webhooks/{name}"): record({"removed": {"type": "boolean"}}),
    ("GET", "/v1/webhooks/{name}/deliveries"): {**array_of("Delivery"), "description": "newest first"},
    ("GET", "/v1/workers"): array_of("Worker"),
    ("POST", "/v1/workflows"): ref("Workflow"),
    ("GET", "/v1/workflows"): array_of("Workflow"),
    ("GET", "/v1/workflows/{id}"): ref("Workflow"),
    ("POST", "/v1/workflows/{id}/cancel"): record({"cancelled": {"type": "integer", "description":
                                                                 "nodes cancelled by this call"}}),
}

QUERY: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("GET", "/v1/queues/{queue}/jobs"): [
        {"name": "state", "in": "query", "schema": {**STATE, "default": "ready"}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
        {"name": "cursor", "in": "query", "schema": {"type": "string", "pattern": r"^[0-9]{1,12}$"}}],
    ("DELETE", "/v1/queues/{queue}/jobs"): [
        {"name": "state", "in": "query", "required": True, "schema": STATE}],
    ("GET", "/v1/workflows"): [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20}}],
    ("GET", "/v1/webhooks/{name}/deliveries"): [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": LOG_MAX,
                                                    "default": 100}}],
}

PATH_PARAMS = {"queue": {"type": "string", "pattern": NAME}, "name": {"type": "string", "pattern": NAME},
               "id": {"type": "string", "minLength": 1, "maxLength": 256}}
# with the refusals of the guard in front of every route (web/guard.py): 415, 421, and 403 cross_origin
ERRORS = {"400": "bad input (nothing was written)", "401": "no or unknown token",
          "403": "the token's role may not use this route; cross_origin: without tokens, a request from "
                 "another web page", "404": "unknown job, cue, webhook, workflow or route",
          "409": "lease_lost: the token is stale (nothing was changed)", "413": "body over the limit",
          "415": "unsupported_media_type: a body not declared Content-Type: application/json",
          "421": "wrong_host: without tokens, a Host header that does not name this server (see --allow-host)",
          "503": "unavailable: Redis unreachable; busy: no Redis connection came free in time",
          "507": "redis_full: Redis is at maxmemory (nothing was written; retry once memory is freed)"}
BODY_ONLY = ("415",)   # the guard checks the media type of POST, PUT, PATCH and DELETE


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def document(routes: Iterable[tuple[str, str, str, int, str]], *, title: str = "redispool",
             version: str = "1") -> dict[str, Any]:
    """The document for ``routes``: (method, path, role, success status, summary) each."""
    paths: dict[str, Any] = {}
    for method, path, role, status, summary in routes:
        key = (method, path)
        op: dict[str, Any] = {
            "summary": summary, "description": f"Role: {role} or admin." if role != "admin" else "Role: admin.",
            "operationId": f"{method.lower()}_{path.replace('/v1/', '').replace('/', '_').strip('_')}"
                           .replace("{", "").replace("}", ""),
            "parameters": [{"name": p, "in": "path", "required": True, "schema": s}
                           for p, s in PATH_PARAMS.items() if "{" + p + "}" in path] + QUERY.get(key, []),
            "security": [{"bearer": []}],
            "responses": {str(status): _json(RESPONSES.get(key, {"type": "object"}), "success"),
                          **{code: _json(ref("Error"), text) for code, text in ERRORS.items()
                             if method != "GET" or code not in BODY_ONLY}},
        }
        if key == ("GET", "/v1/events"):  # a stream, not one JSON document
            op["responses"]["200"] = {"description": "Server-Sent Events: `id:`, `event:` and one `data:` line "
                                                     "of JSON per event, a comment line at least every 15 s",
                                      "content": {"text/event-stream": {"schema": {"type": "string"}}}}
        if key == ("POST", "/v1/queues/{queue}/jobs"):  # an existing job_id / unique_key: 200, same shape
            op["responses"]["200"] = _json(RESPONSES[key], "the job existed already (job_id or unique_key)")
        if key in BODIES:
            op["requestBody"] = {"required": False, "content": {"application/json": {"schema": BODIES[key]}}}
        paths.setdefault(path, {})[method.lower()] = op
    paths["/v1/ws"] = {"get": {
        "summary": "Queues' events over a WebSocket", "operationId": "get_ws", "security": [{"bearer": []}],
        "description": "Role: read or above. A WebSocket (the upgrade handshake): send "
                       '`{"subscribe": {"queues": [...]}}` or `{"subscribe": {"job": [queue, id]}}` (with '
                       '`"after": cursor` to resume), get `{"event": Event, "cursor": token}` per event; '
                       "see the README's Events section.",
        "responses": {"101": {"description": "switching to the WebSocket protocol"},
                      "401": _json(ref("Error"), ERRORS["401"]),
                      "426": _json(ref("Error"), "upgrade_required: a plain GET, not a WebSocket handshake")}}}
    paths["/healthz"] = {"get": {"summary": "200 while Redis answers, else 503", "operationId": "healthz",
                                 "responses": {"200": _json(record({"status": {"type": "string"}}), "Redis answers"),
                                               "503": _json(ref("Error"), "unavailable: Redis unreachable; "
                                                            "busy: no Redis connection came free in time")}}}
    paths["/metrics"] = {"get": {"summary": "Prometheus metrics (text format)", "operationId": "metrics",
                                 "responses": {"200": {"description": "metrics",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}},
                                               "503": _json(ref("Error"), "Redis unreachable")}}}
    return {"openapi": "3.0.3",
            "info": {"title": title, "version": version,
                     "description": "JSON over HTTP on the redispool Engine. Errors are "
                                    '{"error": CODE, "message": TEXT}. Times are unix seconds.'},
            "paths": paths,
            "components": {"schemas": SCHEMAS,
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}
