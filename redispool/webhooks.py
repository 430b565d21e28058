"""Webhooks: the events of chosen queues POSTed to a URL by ``redispool deliver``.

A webhook is a definition in ``rp:webhooks`` (name -> JSON). The deliverers read every
queue's event log through one Redis consumer group and turn each event that matches a
webhook into a job of the queue ``_webhooks`` (id ``hook:<name>:<queue>:<event id>``, so
an event read twice makes one job), which a deliverer then POSTs, retrying with backoff
and ending ``dead`` after the webhook's ``max_attempts``, like any job. Each attempt's
outcome is kept in the webhook's capped log (``deliveries``). A webhook only gets events
written after it was added (its ``since``), so adding one never replays history.

A webhook can be disabled (``enabled=False``): its events are not routed and its
deliveries still waiting are dropped. With ``disable_after=N`` it disables itself after N
consecutive failed deliveries (each one a delivery that ended dead, after all its
attempts; a successful delivery resets the count, kept in ``rp:webhook:<name>:failures``).
Adding it again with ``enabled=True`` enables it and clears the count.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from . import validate
from .base import EngineBase
from .errors import InvalidOption, WebhookNotFound
from .keys import QUEUE_NAME, check_queue, webhook_failures_key, webhook_log_key, webhooks_key
from .models import EVENT_TYPES, DeliveryInfo, Event, WebhookInfo
from .signing import scheme as check_scheme

DEFAULT_EVENTS = ("completed", "dead")
MAX_ATTEMPTS = 5
LOG_MAX = 1000          # delivery attempts kept per webhook
RESPONSE_MAX = 1024     # bytes of a receiver's answer kept
URL_MAX = 2048

Definition = dict[str, Any]
log = logging.getLogger("redispool.deliver")


def check_name(name: object) -> str:
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        raise InvalidOption(f"invalid webhook name {name!r}: use 1-128 characters of A-Za-z0-9_.:-")
    return name


def check_url(url: object) -> str:
    """An absolute http(s) URL with a host that can be sent and looked up, else
    InvalidOption: http.client refuses control characters and spaces anywhere in it, and
    a host name whose IDNA form fails (an empty label, one past 63 characters) cannot be
    resolved, so such a webhook would never deliver."""
    if not isinstance(url, str) or len(url) > URL_MAX:
        raise InvalidOption(f"the URL must be text of at most {URL_MAX} characters, got {url!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise InvalidOption(f"invalid URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c <= " " or c == "\x7f" for c in url):
        raise InvalidOption(f"the URL must be an absolute http:// or https:// URL, got {url!r}")
    try:
        parts.hostname.encode("idna")
    except UnicodeError:
        raise InvalidOption(f"the URL's host {parts.hostname!r} is no host name") from None
    return url


METHODS = ("POST", "PUT", "PATCH", "GET")
HEADERS_MAX = 20
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")   # an HTTP header name
_OWN = ("content-type", "content-length", "host", "user-agent", "transfer-encoding", "connection")


def check_method(method: object) -> str:
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise InvalidOption(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return method.upper()


def check_headers(headers: object) -> dict[str, str] | None:
    """Extra request headers of a webhook cue: at most 20, names HTTP tokens (not the
    ones the deliverer sets itself), values printable text of at most 1,024 characters."""
    if headers is None or headers == {}:
        return None
    if not isinstance(headers, dict) or len(headers) > HEADERS_MAX:
        raise InvalidOption(f"headers must be an object of at most {HEADERS_MAX} names and values")
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name) or name.lower() in _OWN:
            raise InvalidOption(f"invalid header name {name!r}")
        if not isinstance(value, str) or len(value) > 1024 or any(c < " " and c != "\t" or c == "\x7f" for c in value):
            raise InvalidOption(f"the value of header {name!r} must be printable text of at most 1024 characters")
    return dict(headers)


def check_events(events: Iterable[str]) -> list[str]:
    if isinstance(events, str):
        events = [events]
    chosen = list(dict.fromkeys(events))
    unknown = [e for e in chosen if e not in EVENT_TYPES]
    if not chosen or unknown:
        raise InvalidOption(f"events must name one or more of {', '.join(EVENT_TYPES)}, got {list(events)!r}")
    return chosen


def check_secret(secret: object) -> str | None:
    if secret is None or secret == "":
        return None
    if not isinstance(secret, str) or len(secret) > 1024:
        raise InvalidOption("the secret must be text of at most 1024 characters")
    return secret


def matches(definition: Definition, event: Event) -> bool:
    """Whether ``event`` goes to the webhook of ``definition``."""
    if event.type not in definition["events"] or not definition.get("enabled", True):
        return False
    queues = definition.get("queues")
    if queues is not None and event.queue not in queues:
        return False
    return int(event.id.split("-", 1)[0]) >= int(definition["since"])


def info(name: str, d: Definition, failures: Any = 0) -> WebhookInfo:
    return WebhookInfo(name=name, url=d["url"], events=list(d["events"]), queues=d.get("queues"),
                       signed=bool(d.get("secret")), scheme=d.get("scheme", "redispool"),
                       max_attempts=d.get("max_attempts", MAX_ATTEMPTS), created_at=d["since"] / 1000,
                       enabled=d.get("enabled", True), disable_after=d.get("disable_after", 0),
                       failures=int(failures or 0),
                       auto_disabled_at=d["auto_disabled"] / 1000 if d.get("auto_disabled") else None)


class WebhooksMixin(EngineBase):
    """Webhook methods of ``Engine``."""

    def add_webhook(self, name: str, url: str, *, events: Iterable[str] = DEFAULT_EVENTS,
                    queues: Iterable[str] | None = None, secret: str | None = None,
                    scheme: str = "redispool", max_attempts: int = MAX_ATTEMPTS, enabled: bool = True,
                    disable_after: int = 0) -> WebhookInfo:
        """Create or replace webhook ``name``: POST each event of ``events`` in ``queues``
        (None: every queue) to ``url``, signed with ``secret`` when given, in the framing of
        ``scheme`` (``signing.SCHEMES``). Replacing one keeps the point from which it
        delivers, so a redeploy neither skips nor repeats events. ``enabled=False``: kept
        but not delivered to; ``disable_after``: consecutive failed deliveries after which
        the deliverer disables it (0: never). Enabling a disabled one clears its count."""
        if not isinstance(enabled, bool):
            raise InvalidOption(f"enabled must be true or false, got {enabled!r}")
        if isinstance(disable_after, bool) or not isinstance(disable_after, int) or not 0 <= disable_after <= 10**6:
            raise InvalidOption(f"disable_after must be an integer in [0, 1000000], got {disable_after!r}")
        definition: Definition = {
            "url": check_url(url), "events": check_events(events),
            "queues": None if queues is None else sorted({check_queue(q) for q in queues}),
            "secret": check_secret(secret), "scheme": check_scheme(scheme).name,
            "max_attempts": validate.max_attempts(max_attempts), "enabled": enabled, "disable_after": disable_after,
        }
        key = webhooks_key(self.prefix)
        raw = self.scripts.command("HGET", key, check_name(name))
        old = json.loads(raw) if raw else None
        seconds, micros = self.scripts.command("TIME")
        definition["since"] = old["since"] if old else int(seconds) * 1000 + int(micros) // 1000
        failures_key = webhook_failures_key(self.prefix, name)
        commands: list[tuple[Any, ...]] = [
            ("HSET", key, name, json.dumps(definition, separators=(",", ":"), sort_keys=True))]
        if enabled and old is not None and not old.get("enabled", True):
            commands.append(("DEL", failures_key))   # enabled again: a fresh count
        commands.append(("GET", failures_key))
        return info(name, definition, self.scripts.pipeline(commands)[-1])

    def remove_webhook(self, name: str) -> None:
        """Delete webhook ``name`` and its delivery log (WebhookNotFound if there is none);
        its deliveries still waiting are dropped by the deliverer."""
        removed, _, _ = self.scripts.pipeline([("HDEL", webhooks_key(self.prefix), check_name(name)),
                                               ("DEL", webhook_log_key(self.prefix, name)),
                                               ("DEL", webhook_failures_key(self.prefix, name))])
        if not removed:
            raise WebhookNotFound(f"no webhook {name!r}")

    def webhook_definitions(self) -> dict[str, Definition]:
        """Every webhook's stored definition, secret included (for the deliverer)."""
        raw = self.scripts.command("HGETALL", webhooks_key(self.prefix)) or {}
        items = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2])
        return {_str(k): json.loads(v) for k, v in items}

    def webhooks(self) -> list[WebhookInfo]:
        """Every webhook, by name."""
        hooks = sorted(self.webhook_definitions().items())
        if not hooks:
            return []
        counts = self.scripts.pipeline([("GET", webhook_failures_key(self.prefix, n)) for n, _ in hooks])
        return [info(name, d, count) for (name, d), count in zip(hooks, counts)]

    def get_webhook(self, name: str) -> WebhookInfo | None:
        raw, count = self.scripts.pipeline([("HGET", webhooks_key(self.prefix), check_name(name)),
                                            ("GET", webhook_failures_key(self.prefix, name))])
        return info(name, json.loads(raw), count) if raw else None

    def deliveries(self, name: str, *, limit: int = 100) -> list[DeliveryInfo]:
        """The latest ``limit`` delivery attempts of webhook ``name``, newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LOG_MAX:
            raise InvalidOption(f"limit must be an integer in [1, {LOG_MAX}], got {limit!r}")
        if self.get_webhook(name) is None:
            raise WebhookNotFound(f"no webhook {name!r}")
        rows = self.scripts.command("LRANGE", webhook_log_key(self.prefix, name), 0, limit - 1)
        return [DeliveryInfo(**json.loads(row)) for row in rows]

    def log_delivery(self, record: DeliveryInfo) -> None:
        """Keep one attempt's outcome in its webhook's capped log."""
        self.log_deliveries([record])

    def log_deliveries(self, records: Sequence[DeliveryInfo]) -> None:
        """Keep attempts' outcomes (oldest first) in their webhooks' capped logs: one round
        trip, one LPUSH and LTRIM per webhook."""
        rows: dict[str, list[str]] = {}
        streaks: dict[str, tuple[bool, int]] = {}   # webhook -> (a success reset it, deads after)
        for record in records:
            rows.setdefault(record.webhook, []).append(json.dumps(record.__dict__, separators=(",", ":")))
            reset, dead = streaks.get(record.webhook, (False, 0))
            if record.status == "success":
                streaks[record.webhook] = (True, 0)
            elif record.status == "dead":
                streaks[record.webhook] = (reset, dead + 1)
        commands: list[tuple[Any, ...]] = []
        grown: dict[int, str] = {}   # index of an INCRBY -> its webhook
        for name, values in rows.items():
            key = webhook_log_key(self.prefix, name)
            commands += [("LPUSH", key, *values), ("LTRIM", key, 0, LOG_MAX - 1)]
            if name in streaks:
                reset, dead = streaks[name]
                failures = webhook_failures_key(self.prefix, name)
                if reset:
                    commands.append(("SET", failures, dead))
                elif dead:
                    grown[len(commands)] = name
                    commands.append(("INCRBY", failures, dead))
        if not commands:
            return
        replies = self.scripts.pipeline(commands)
        for at, name in grown.items():
            self._disable_if_due(name, int(replies[at]))

    def _disable_if_due(self, name: str, failures: int) -> None:
        """Disable webhook ``name`` when ``failures`` reached its ``disable_after`` (a
        read-modify-write of its definition: an add_webhook at that moment may win)."""
        raw = self.scripts.command("HGET", webhooks_key(self.prefix), name)
        if not raw:
            return
        d = json.loads(raw)
        limit = d.get("disable_after", 0)
        if not limit or failures < limit or not d.get("enabled", True):
            return
        seconds, micros = self.scripts.command("TIME")
        d.update(enabled=False, auto_disabled=int(seconds) * 1000 + int(micros) // 1000)
        self.scripts.command("HSET", webhooks_key(self.prefix), name, json.dumps(d, separators=(",", ":"),
                                                                                 sort_keys=True))
        log.warning("webhook %s disabled after %d consecutive failed deliveries", name, failures)


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
