"""A spooled job's options as both spooled faces take them (the REST layer,
compat/spooled.py, and the gRPC one, grpc/spooled.py): the service's defaults, its
whole-second timeouts and its ranges, with a queue's own job defaults in between. Here,
in the core, because the faces may not import each other."""
from __future__ import annotations

from typing import Any

from .errors import InvalidOption

DEFAULT_TIMEOUT_S = 300            # the service's timeout_seconds when a job names none
DEFAULT_MAX_RETRIES = 3            # the service's max_retries when neither the job nor its queue names one


def timeout_seconds(timeout: float | None) -> int:
    """A job's timeout as this protocol's whole seconds (0: none)."""
    return max(1, round(timeout)) if timeout else 0


def job_options(stored: dict[str, Any] | None, max_retries: int | None, timeout: int | None) -> tuple[int, int]:
    """(max_retries, timeout_seconds) of a job: those it names, else its queue's job
    defaults (``stored``: ``Engine.job_defaults``, set by PUT /queues/{name}/config), else
    the service's 3 and 300; InvalidOption out of the service's ranges."""
    if max_retries is None:
        attempts = stored["max_attempts"] if stored else None
        max_retries = min(attempts - 1, 100) if attempts is not None else DEFAULT_MAX_RETRIES
    if timeout is None:
        timeout = timeout_seconds(stored["timeout"]) if stored and stored["timeout"] is not None else DEFAULT_TIMEOUT_S
    if not 0 <= max_retries <= 100:
        raise InvalidOption(f"max_retries must be in [0, 100], got {max_retries}")
    if not 1 <= timeout <= 86400:
        raise InvalidOption(f"timeout_seconds must be in [1, 86400], got {timeout}")
    return max_retries, timeout
