"""The cueapi cron service's one-off fires and webhook secret, on the cueapi layer's cues.

``POST /v1/cues/{id}/fire`` (what a newer ``cueapi-sdk``'s ``cues.fire(cue_id,
payload_override=, merge_strategy=, send_at=, idempotency_key=)`` sends) makes one
execution of the cue now, or at ``send_at`` (a past time: now), whatever its schedule
and even while it is paused: one job, as a scheduled fire of the cue is, in the cue's
queue (a worker cue's) or in ``_webhooks`` (a webhook cue's, which the deliverer POSTs
with the cue's URL, secret and headers). Its id is ``<the cue's fire prefix>:<ms>-f<hex>``,
so the execution routes list it with the cue's. Its payload is the cue's with
``payload_override`` merged over it (``merge_strategy: "merge"``, the default, shallow:
the override wins per key) or in its place (``"replace"``).

``idempotency_key`` (1 to 256 characters): the answer is kept for 24 h under the cue and
the key's SHA-256, with a fingerprint of the request; the same key again with the same
request gets that answer and makes nothing, with another request 409
``idempotency_key_conflict``. ``exit_criteria`` (outcome verification) is not served.

``GET /v1/auth/webhook-secret`` answers the secret every webhook cue signs with
(``whsec_`` + 64 hex, made on first use); ``POST /v1/auth/webhook-secret/regenerate``
(header ``X-Confirm-Destructive: true``) replaces it, and every webhook cue signs with the
new one from then on.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

from starlette.requests import Request

from ..keys import cueapi_fire_key
from ..web.endpoint import Refusal, call
from .common import fields, iso, parse_time

IDEMPOTENCY_S = 24 * 3600
KEY_MAX = 256
FIRE = {"payload_override": (dict, None), "merge_strategy": (str, None), "send_at": (str, None),
        "exit_criteria": (list, None), "idempotency_key": (str, None)}


class Fires:
    """The routes' handlers, over a ``cueapi.CueapiApi``."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.engine = api.engine

    async def fire(self, request: Request, body: Any) -> Any:
        record = await self.api._record(request.path_params["id"])
        b = fields(body, FIRE)
        if b["exit_criteria"] is not None:
            raise Refusal(400, "validation_error", "exit_criteria (outcome verification) is not supported by redispool")
        strategy = b["merge_strategy"] or "merge"
        if strategy not in ("merge", "replace"):
            raise Refusal(400, "validation_error", "merge_strategy must be 'merge' or 'replace'")
        key = b["idempotency_key"]
        if key is not None and not 1 <= len(key) <= KEY_MAX:
            raise Refusal(400, "validation_error", f"idempotency_key must be 1 to {KEY_MAX} characters")
        now = time.time()
        at = parse_time(b["send_at"], "send_at", "validation_error") if b["send_at"] else now
        at = max(at, now)   # a past send_at fires now
        override = b["payload_override"]
        payload = dict(record["payload"])
        if override is not None:
            payload = dict(override) if strategy == "replace" else {**payload, **override}
        queue, prefix = self.api.home(record)
        execution_id = f"{prefix}:{round(at * 1000)}-f{secrets.token_hex(6)}"
        answer = {"id": execution_id, "cue_id": record["id"], "scheduled_for": iso(at), "status": "pending",
                  "triggered_by": "manual_fire"}
        stored = None
        if key is not None:
            fingerprint = hashlib.sha256(json.dumps(
                {k: b[k] for k in ("payload_override", "merge_strategy", "send_at")}, sort_keys=True).encode()
            ).hexdigest()
            stored = cueapi_fire_key(self.engine.prefix, self.api.queue, record["id"],
                                     hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest())
            kept = json.dumps({"fingerprint": fingerprint, "response": answer})
            if not await call(self.engine.scripts.command, "SET", stored, kept, "NX", "EX", IDEMPOTENCY_S):
                earlier = await call(self.engine.scripts.command, "GET", stored)
                if earlier is not None:
                    earlier = json.loads(earlier)
                    if earlier["fingerprint"] != fingerprint:
                        raise Refusal(409, "idempotency_key_conflict",
                                      "this idempotency_key was used with another request in the last 24 h")
                    return earlier["response"]
        try:
            await call(self.engine.enqueue, queue, payload, run_at=at if at > now else None,
                       max_attempts=record["retry"]["max_attempts"], job_id=execution_id)
        except BaseException:
            if stored is not None:
                await call(self.engine.scripts.command, "DEL", stored)
            raise
        return answer

    async def webhook_secret(self, request: Request, body: Any) -> Any:
        return {"webhook_secret": await call(self.api.secret)}

    async def regenerate(self, request: Request, body: Any) -> Any:
        if request.headers.get("x-confirm-destructive", "").lower() != "true":
            raise Refusal(400, "confirmation_required",
                          "regenerating the secret breaks every receiver that checks the old one: "
                          "send X-Confirm-Destructive: true")
        return {"webhook_secret": await call(self.api.regenerate_secret),
                "previous_secret_revoked": True}
