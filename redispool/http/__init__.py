"""The native HTTP API, ``/v1`` (needs the ``http`` extra: ``pip install 'redispool[http]'``).

``create_app`` (the whole ``redispool serve`` app: this API, the compat protocols and
the dashboard) lives in ``redispool.server``, above the faces; it is named here too, as
it always was, and loaded on first use so that this package imports no other face.
"""
from typing import Any

from ..web.auth import load_tokens, parse_tokens

__all__ = ["create_app", "load_tokens", "parse_tokens"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from ..server import create_app
        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
