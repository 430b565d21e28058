"""The web dashboard of ``redispool serve`` (needs the ``http`` extra)."""
from .app import create_dashboard

__all__ = ["create_dashboard"]


def from_env():  # pragma: no cover - exercised through uvicorn in the browser tests
    """An ASGI app for ``uvicorn --factory redispool.dashboard:from_env``: the engine from
    $REDISPOOL_URL / $REDISPOOL_PREFIX, tokens from $REDISPOOL_TOKENS (``role:token``,
    comma-separated; none = everyone is admin), stale mark after
    $REDISPOOL_WORKER_TIMEOUT seconds."""
    import os

    from .. import connect
    tokens = {}
    for item in filter(None, os.environ.get("REDISPOOL_TOKENS", "").split(",")):
        role, _, token = item.partition(":")
        tokens[token] = role
    return create_dashboard(connect(), tokens=tokens or None,
                            worker_timeout=float(os.environ.get("REDISPOOL_WORKER_TIMEOUT", "60")),
                            refresh_s=float(os.environ.get("REDISPOOL_REFRESH", "3")))
