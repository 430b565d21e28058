"""Prometheus metrics of ``redispool serve``: requests by route and status, their
latency, and per queue the jobs in each state and the lifetime totals (read from Redis
at scrape time, so every server process reports the same queue figures).
``serve_metrics`` serves the queue figures alone for a worker process
(``redispool worker --metrics-port``)."""
from __future__ import annotations

from typing import Any

from prometheus_client import (CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest,
                               start_http_server)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..keys import STATES

# no ``_created`` series doubling every counter and histogram
disable_created_metrics()  # type: ignore[no-untyped-call]


class _Queues:
    """Collects queue figures on scrape."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def collect(self) -> Any:
        jobs = GaugeMetricFamily("redispool_queue_jobs", "Jobs per queue and state", labels=["queue", "state"])
        latency = GaugeMetricFamily("redispool_queue_latency_seconds", "Wait of the oldest ready job",
                                    labels=["queue"])
        paused = GaugeMetricFamily("redispool_queue_paused", "1 while the queue is paused", labels=["queue"])
        totals = CounterMetricFamily("redispool_jobs", "Lifetime totals per queue", labels=["queue", "event"])
        workers = GaugeMetricFamily("redispool_workers", "Live registered workers")
        for queue in self.engine.queues():  # read at scrape: a removed queue's series are gone
            s = self.engine.stats(queue)
            for state in STATES:
                jobs.add_metric([queue, state], s[state])
            latency.add_metric([queue], s["latency"])
            paused.add_metric([queue], 1 if s["paused"] else 0)
            for event, n in s["totals"].items():
                totals.add_metric([queue, event], n)
        workers.add_metric([], len(self.engine.workers()))
        yield from (jobs, latency, paused, totals, workers)


class Metrics:
    def __init__(self, engine: Any) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("redispool_http_requests", "HTTP API requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("redispool_http_request_seconds", "HTTP API request latency", ["method", "route"],
                                 registry=self.registry,
                                 buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30))
        self.registry.register(_Queues(engine))

        self.long_polls = Histogram("redispool_http_long_poll_seconds",
                                    "Duration of claims that waited for jobs (wait > 0), kept out of "
                                    "redispool_http_request_seconds", ["method", "route"], registry=self.registry,
                                    buckets=(0.01, 0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60))

    def observe(self, method: str, route: str, status: int, seconds: float, long_poll: bool = False) -> None:
        self.requests.labels(method, route, str(status)).inc()
        (self.long_polls if long_poll else self.latency).labels(method, route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def serve_metrics(engine: Any, port: int, host: str = "127.0.0.1") -> Any:
    """Serve the queue metrics of ``engine`` in the Prometheus text format on ``host:port``
    from a daemon thread (any path answers); returns the HTTP server (``.server_port``,
    ``.shutdown()``)."""
    registry = CollectorRegistry()
    registry.register(_Queues(engine))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
