"""Checks of user-supplied options; each returns the value in the unit Lua wants (ms)."""
from __future__ import annotations

import json
import math
import re
from datetime import datetime

from . import defaults
from .errors import InvalidOption

MAX_SECONDS = 1e11   # ~3,000 years: any duration or unix time beyond is a mistake (and overflows ms)
_ID = re.compile(r"[^\s\x00-\x1f\x7f]{1,256}")
MAX_MS = 2 ** 53                  # the largest count of milliseconds a double holds exactly


def seconds_to_ms(value: float | None, name: str, *, minimum: float = 0.0,
                  maximum: float = math.inf, allow_zero: bool = True) -> int:
    """Validate a duration in seconds and return it in whole milliseconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or abs(value) > MAX_SECONDS:
        raise InvalidOption(f"{name} must be a number of seconds (at most {MAX_SECONDS:g}), got {value!r}")
    if value < minimum or value > maximum or (not allow_zero and value <= 0):
        low = f"> {minimum}" if not allow_zero else f">= {minimum}"
        raise InvalidOption(f"{name} must be {low} and <= {maximum} seconds, got {value!r}")
    if value * 1000 > MAX_MS:  # Lua numbers are doubles: larger milliseconds are not exact
        raise InvalidOption(f"{name} is out of range (at most {MAX_MS // 1000} seconds), got {value!r}")
    return max(1, round(value * 1000)) if value > 0 else 0


def lease_ms(lease: float | None) -> int:
    """A lease in (0, 12 h]; 0 for None (use the worker's or engine's)."""
    if lease is None:
        return 0
    return seconds_to_ms(lease, "lease", maximum=defaults.LEASE_MAX_S, allow_zero=False)


def timeout_ms(timeout: float | None) -> int:
    """A job's timeout (the longest one attempt may run) in (0, 7 days]; 0 for None (the
    worker's)."""
    if timeout is None:
        return 0
    return seconds_to_ms(timeout, "timeout", maximum=defaults.TIMEOUT_MAX_S, allow_zero=False)


def progress(value: float, message: str | None) -> tuple[str, str]:
    """A progress report as progress.lua takes it: the value (a number in [0, 100]) as
    text, and the message ('' for None, at most PROGRESS_MESSAGE_MAX characters)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= 100:
        raise InvalidOption(f"progress value must be a number in [0, 100], got {value!r}")
    if message is not None and (not isinstance(message, str) or len(message) > defaults.PROGRESS_MESSAGE_MAX
                                or not _utf8(message)):
        raise InvalidOption(f"progress message must be text of at most {defaults.PROGRESS_MESSAGE_MAX} "
                            f"characters, got {message!r:.80}")
    return (str(value) if isinstance(value, int) else repr(float(value))), message or ""


def _utf8(text: str) -> bool:
    """Whether ``text`` can be stored as UTF-8 (a lone surrogate, which JSON's ``\\ud800``
    decodes to, cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def priority(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > defaults.PRIORITY_MAX:
        raise InvalidOption(f"priority must be an integer in [-{defaults.PRIORITY_MAX}, "
                         f"{defaults.PRIORITY_MAX}], got {value!r}")
    return value


def max_attempts(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise InvalidOption(f"max_attempts must be an integer >= 1, got {value!r}")
    return value


def run_at_ms(value: datetime | float | None) -> int:
    """Absolute run time as unix ms (-1 for None). A naive datetime is local time, as
    Python's own ``datetime.timestamp()`` reads it (``datetime.now() + timedelta(hours=1)``
    is an hour from now on any host); give an aware datetime to mean another zone."""
    if value is None:
        return -1
    if isinstance(value, datetime):
        try:
            seconds = value.timestamp()
        except (OverflowError, OSError, ValueError) as exc:  # outside what the platform's clock can convert
            raise InvalidOption(f"run_at is out of range: {value!r} ({exc})") from None
        return round(seconds * 1000)
    return seconds_to_ms(value, "run_at")


def delay_ms(value: float | None) -> int:
    """Relative delay in ms (-1 for None)."""
    return -1 if value is None else seconds_to_ms(value, "delay")


def identifier(value: str | None, name: str) -> str:
    """A unique key: 1-256 printable characters without spaces ('' for None)."""
    if value is None:
        return ""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidOption(f"{name} must be 1-256 printable characters without spaces, got {value!r}")
    return value


def worker_id(value: object) -> str:
    """The one rule for a worker id, wherever one comes in (``Worker``, ``Engine.claim``,
    the registry, the HTTP faces): 1-256 printable characters without spaces, never None,
    so any id a claim accepts is one the registry can register."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidOption(f"worker_id must be 1-256 printable characters without spaces, got {value!r}")
    return value


def job_id(value: str | None) -> str:
    """A custom job id: like a unique key, but never all digits (generated ids are)."""
    value = identifier(value, "job_id")
    if value.isascii() and value.isdigit():   # ('²'.isdigit() is true, and no generated id)
        raise InvalidOption(f"a custom job_id cannot be all digits (those are generated ids), got {value!r}")
    return value


TAGS_MAX_CHARS = 8192   # a job's tags as JSON


def tags(value: object) -> str:
    """A job's tags: a list of strings or a JSON object (a dict with string keys), stored
    as compact JSON ('' for None); at most TAGS_MAX_CHARS of it."""
    if value is None:
        return ""
    ok = (isinstance(value, (list, tuple)) and all(isinstance(t, str) for t in value)) or \
        (isinstance(value, dict) and all(isinstance(k, str) for k in value))
    if not ok:
        raise InvalidOption(f"tags must be a list of strings or an object with string keys, got {value!r:.80}")
    try:
        text = json.dumps(list(value) if isinstance(value, tuple) else value, separators=(",", ":"),
                          allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidOption(f"tags must be JSON values: {exc}") from None
    if len(text) > TAGS_MAX_CHARS:
        raise InvalidOption(f"tags take at most {TAGS_MAX_CHARS} characters as JSON, got {len(text)}")
    return text
