"""The native API's request bodies, each declared once: the handlers check bodies with
these specs (``web.body.fields``, strict: an unknown field is a 400) and the OpenAPI
document shows them as JSON Schema (``web.body.body_schema``), bounds and patterns
included. The bounds themselves are enforced by the Engine (``validate.py``,
``keys.QUEUE_NAME``); the patterns here say the same rules for client generators and
the fuzzer.
"""
from __future__ import annotations

from typing import Any

from .. import defaults, limits, validate
from ..models import EVENT_TYPES
from ..signing import SCHEMES
from ..web.body import REQUIRED, Field, Spec, body_schema
from ..webhooks import DEFAULT_EVENTS, MAX_ATTEMPTS, URL_MAX

NAME = r"^[A-Za-z0-9_.:-]{1,128}$"             # queue, cue and webhook names (keys.QUEUE_NAME)
IDENT = r"^[^\s\x00-\x1f\x7f]{1,256}$"         # unique keys, worker ids (validate.identifier)
JOB_ID = r"^[^\s\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f0-9][^\s\x00-\x1f\x7f]*$"  # not all digits
MAX_ITEMS = 1000   # jobs per batch, items per ack, jobs per claim (defaults.BATCH_MAX)
MAX_WAIT_S = 30.0  # the longest long-poll
MAX_REPLAY = 100_000   # ids per replay


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


PAYLOAD = {"description": "any JSON value nested at most 100 levels deep (deeper is a 400)"}
SECONDS = {"minimum": 0, "maximum": validate.MAX_SECONDS}
LEASE = Field((float, None), None, {"exclusiveMinimum": True, "minimum": 0, "maximum": defaults.LEASE_MAX_S,
                                    "description": "seconds, at most 12 hours"})
TIMEOUT = Field((float, None), None, {"exclusiveMinimum": True, "minimum": 0, "maximum": defaults.TIMEOUT_MAX_S,
                                      "description": "seconds one attempt may run (null: the worker's)"})
WORKER_ID = {"pattern": IDENT, "maxLength": 256, "description": "your worker's id: registers it in the worker registry"}
TOKEN = Field((str,), REQUIRED, {"minLength": 1, "description": "the lease token the claim returned"})
OWN_WORKER_ID = Field((str, None), None, WORKER_ID)
PRIORITY = {"minimum": -defaults.PRIORITY_MAX, "maximum": defaults.PRIORITY_MAX}
ATTEMPTS = {"minimum": 1, "maximum": 1_000_000}

NEW_JOB: Spec = {
    "payload": Field((Any,), None, PAYLOAD),
    "priority": Field((int,), 0, PRIORITY),
    "delay": Field((float, None), None, {**SECONDS, "description": "seconds before it becomes ready"}),
    "run_at": Field((float, None), None, {**SECONDS, "description": "unix seconds when it becomes ready "
                                                                    "(not with delay)"}),
    "max_attempts": Field((int,), defaults.MAX_ATTEMPTS, ATTEMPTS),
    "lease": LEASE,
    "unique_key": Field((str, None), None, {"pattern": IDENT, "maxLength": 256}),
    "job_id": Field((str, None), None, {"pattern": JOB_ID, "maxLength": 256, "description":
                                        "your own id (not all digits); an existing id returns that job"}),
    "timeout": TIMEOUT,
    "depends_on": Field((list, None), None, {"maxItems": MAX_ITEMS, "description":
                                             "parents: job ids of this queue or [queue, id] pairs; the job "
                                             "waits until they are done"}),
    "dependency_mode": Field((str,), "all", {"enum": ["all", "any"], "description":
                                             "all: every parent done; any: the first one"}),
}
BATCH: Spec = {"jobs": Field((list,), REQUIRED, {"minItems": 1, "maxItems": MAX_ITEMS, "items": ref("NewJob")})}
CLAIM: Spec = {
    "worker_id": Field((str,), REQUIRED, WORKER_ID),
    "limit": Field((int,), 1, {"minimum": 1, "maximum": MAX_ITEMS}),
    "lease": LEASE,
    "wait": Field((float,), 0, {"minimum": 0, "maximum": MAX_WAIT_S,
                                "description": "seconds to hold the request until a job is ready (long-poll)"}),
}
ACK_DONE: Spec = {"id": Field((str,), REQUIRED, {"minLength": 1}), "token": TOKEN,
                  "result": Field((Any,), None, PAYLOAD)}
ACK_FAILED: Spec = {"id": Field((str,), REQUIRED, {"minLength": 1}), "token": TOKEN, "error": (str, REQUIRED),
                    "retry": (bool, True), "delay": Field((float, None), None, SECONDS)}
ACK: Spec = {
    "complete": Field((list,), [], {"maxItems": MAX_ITEMS, "items": body_schema(ACK_DONE),
                                    "description": f"at most {MAX_ITEMS} items in complete and fail together"}),
    "fail": Field((list,), [], {"maxItems": MAX_ITEMS, "items": body_schema(ACK_FAILED),
                                "description": f"at most {MAX_ITEMS} items in complete and fail together"}),
    "claim": Field((dict, None), None, ref("Claim")),
}
COMPLETE: Spec = {"token": TOKEN, "result": Field((Any,), None, PAYLOAD), "worker_id": OWN_WORKER_ID}
FAIL: Spec = {"token": TOKEN, "error": (str, REQUIRED), "retry": (bool, True),
              "delay": Field((float, None), None, {**SECONDS, "description":
                                                   "retry after this many seconds (else backoff)"}),
              "worker_id": OWN_WORKER_ID}
HEARTBEAT: Spec = {"token": TOKEN, "lease": LEASE, "worker_id": OWN_WORKER_ID}
RELEASE: Spec = {"token": TOKEN, "worker_id": Field((str, None), None, {
    "description": "your worker's id, to take the job off its list; not checked: the job goes back whatever"})}
PROGRESS: Spec = {"token": TOKEN,
                  "value": Field((float,), REQUIRED, {"minimum": 0, "maximum": 100, "description":
                                                      "how far the attempt has got, 0 to 100"}),
                  "message": Field((str, None), None, {"maxLength": defaults.PROGRESS_MESSAGE_MAX}),
                  "worker_id": OWN_WORKER_ID}
REPLAY: Spec = {"ids": Field((list, None), None, {"items": {"type": "string", "pattern": IDENT},
                                                  "maxItems": MAX_REPLAY})}
URL = {"maxLength": URL_MAX, "description": "an absolute http:// or https:// URL"}
SECRET = Field((str, None), None, {"maxLength": 1024, "description":
                                   "signs every request (HMAC-SHA256); never shown again"})
SCHEME = Field((str,), "redispool", {"enum": list(SCHEMES), "description": "the requests' headers and body"})
CUE: Spec = {
    "cron": Field((str,), REQUIRED, {"description": "5 fields, or 6 with seconds first"}),
    "tz": (str, "UTC"),
    "payload": Field((Any,), None, PAYLOAD),
    "priority": Field((int,), 0, PRIORITY),
    "misfire": Field((str,), "skip", {"enum": ["skip", "catch_up"]}),
    "max_attempts": Field((int,), defaults.MAX_ATTEMPTS, ATTEMPTS),
    "lease": LEASE,
    "url": Field((str, None), None, {**URL, "description": "a webhook cue: each fire is POSTed here by "
                                                           "`redispool deliver` instead of going to the workers"}),
    "secret": SECRET,
    "scheme": SCHEME,
    "timeout": TIMEOUT,
}
WEBHOOK: Spec = {
    "url": Field((str,), REQUIRED, URL),
    "events": Field((list,), list(DEFAULT_EVENTS), {"minItems": 1, "items": {"type": "string",
                                                                              "enum": list(EVENT_TYPES)}}),
    "queues": Field((list, None), None, {"minItems": 1, "items": {"type": "string", "pattern": NAME},
                                         "description": "deliver these queues' events only (null: every queue)"}),
    "secret": SECRET,
    "scheme": SCHEME,
    "max_attempts": Field((int,), MAX_ATTEMPTS, ATTEMPTS),
    "enabled": Field((bool,), True, {"description": "false: kept, but nothing is delivered to it"}),
    "disable_after": Field((int,), 0, {"minimum": 0, "maximum": 1_000_000,
                                       "description": "disable it after this many consecutive failed "
                                                      "deliveries (0: never)"}),
}
LIMITS: Spec = {
    "rate": Field((int, None), None, {"minimum": 1, "maximum": limits.RATE_MAX,
                                      "description": "at most this many claims in any window of `per` seconds "
                                                     "(null: no rate limit)"}),
    "per": Field((float,), 1.0, {"exclusiveMinimum": True, "minimum": 0, "maximum": validate.MAX_SECONDS,
                                 "description": "the rate's window in seconds"}),
    "concurrency": Field((int, None), None, {"minimum": 1, "maximum": limits.CONCURRENCY_MAX,
                                             "description": "at most this many jobs leased at once, across every "
                                                            "worker (null: no cap)"}),
}

WORKFLOW_MAX = 1000   # nodes per workflow over HTTP (a body stays within its 1 MB; Python takes 10,000)
WORKFLOW_NODE: Spec = {
    "key": Field((str,), REQUIRED, {"pattern": IDENT, "maxLength": 256, "description":
                                    "the node's name in the workflow, used by depends_on"}),
    "queue": Field((str,), REQUIRED, {"pattern": NAME, "maxLength": 128}),
    "payload": Field((Any,), None, PAYLOAD),
    "depends_on": Field((list,), [], {"maxItems": WORKFLOW_MAX, "items": {"type": "string"},
                                      "description": "keys of other nodes of the workflow"}),
    "dependency_mode": NEW_JOB["dependency_mode"],
    "priority": NEW_JOB["priority"],
    "delay": NEW_JOB["delay"],
    "run_at": NEW_JOB["run_at"],
    "max_attempts": NEW_JOB["max_attempts"],
    "lease": LEASE,
    "timeout": TIMEOUT,
}
WORKFLOW: Spec = {
    "name": Field((str,), REQUIRED, {"minLength": 1, "maxLength": 256}),
    "jobs": Field((list,), REQUIRED, {"minItems": 1, "maxItems": WORKFLOW_MAX, "items": ref("WorkflowNode")}),
    "workflow_id": Field((str, None), None, {"pattern": JOB_ID, "maxLength": 200, "description":
                                             "your own id: the same id again finishes a creation that failed "
                                             "half way (a different workflow under it is a 400)"}),
}

# bodies the document names (components/schemas), as the routes refer to them
NAMED: dict[str, Spec] = {"NewJob": NEW_JOB, "Claim": CLAIM, "WorkflowNode": WORKFLOW_NODE}

Q = "/v1/queues/{queue}"
J = Q + "/jobs/{id}"
BODIES: dict[tuple[str, str], Spec] = {
    ("POST", Q + "/jobs"): NEW_JOB,
    ("POST", Q + "/jobs/batch"): BATCH,
    ("POST", Q + "/claim"): CLAIM,
    ("POST", Q + "/ack"): ACK,
    ("POST", J + "/complete"): COMPLETE,
    ("POST", J + "/fail"): FAIL,
    ("POST", J + "/heartbeat"): HEARTBEAT,
    ("POST", J + "/release"): RELEASE,
    ("POST", J + "/progress"): PROGRESS,
    ("POST", Q + "/replay"): REPLAY,
    ("PUT", Q + "/cues/{name}"): CUE,
    ("PUT", "/v1/webhooks/{name}"): WEBHOOK,
    ("POST", "/v1/workflows"): WORKFLOW,
    ("PUT", Q + "/limits"): LIMITS,
}
