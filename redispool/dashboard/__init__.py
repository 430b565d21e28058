"""The web dashboard of ``redispool serve`` (needs the ``http`` extra)."""
from starlette.applications import Starlette

from .app import create_dashboard

__all__ = ["create_dashboard"]


def from_env() -> Starlette:  # pragma: no cover - exercised through uvicorn in bin/screenshots and bin/bench
    """An ASGI app of the dashboard alone for ``uvicorn --factory redispool.dashboard:from_env``:
    the engine from $REDISPOOL_URL / $REDISPOOL_PREFIX, tokens from $REDISPOOL_TOKENS
    ("ROLE TOKEN" entries; none = everyone is admin), the stale mark after
    $REDISPOOL_WORKER_TIMEOUT seconds, pages without a live feed refreshed every
    $REDISPOOL_REFRESH seconds, the others every $REDISPOOL_FALLBACK besides their events."""
    import os

    from .. import connect
    from ..web.auth import parse_tokens
    raw = os.environ.get("REDISPOOL_TOKENS", "")
    return create_dashboard(connect(), tokens=parse_tokens(raw, "REDISPOOL_TOKENS") if raw.strip() else None,
                            worker_timeout=float(os.environ.get("REDISPOOL_WORKER_TIMEOUT", "60")),
                            refresh_s=float(os.environ.get("REDISPOOL_REFRESH", "3")),
                            fallback_s=float(os.environ.get("REDISPOOL_FALLBACK", "30")))
