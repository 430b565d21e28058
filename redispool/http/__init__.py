"""``redispool serve``: the HTTP API, Prometheus metrics and the web dashboard
(needs the ``http`` extra: ``pip install 'redispool[http]'``)."""
from .app import create_app
from .auth import load_tokens, parse_tokens

__all__ = ["create_app", "load_tokens", "parse_tokens"]
