"""Request metrics of ``redispool serve``: requests by method, route and status, their
latency, and the duration of long-polls (kept apart, so that waiting for jobs does not
read as slow answers), alongside the queue figures (``redispool.metrics``). The access
middleware (access.py) observes every response; a stream's (Server-Sent Events, a
WebSocket) is counted but not timed: how long a client follows events is no latency."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..engine import Engine
from ..metrics import QueueFigures


class Metrics:
    """The server's registry: request metrics and the queue figures of ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("redispool_http_requests", "HTTP API requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("redispool_http_request_seconds", "HTTP API request latency", ["method", "route"],
                                 registry=self.registry,
                                 buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30))
        self.registry.register(QueueFigures(engine))

        self.long_polls = Histogram("redispool_http_long_poll_seconds",
                                    "Duration of claims that waited for jobs (wait > 0), kept out of "
                                    "redispool_http_request_seconds", ["method", "route"], registry=self.registry,
                                    buckets=(0.01, 0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60))

    def observe(self, method: str, route: str, status: int, seconds: float, long_poll: bool = False,
                stream: bool = False) -> None:
        self.requests.labels(method, route, str(status)).inc()
        if not stream:
            (self.long_polls if long_poll else self.latency).labels(method, route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
