"""Prometheus figures of the queues: per queue the jobs in each state, the wait of the
oldest ready job, whether it is paused, its limits (a series per limit it has), the
lifetime totals, and the live workers --
read from Redis at scrape time, so every process reports the same figures.

``redispool serve`` adds them to its request metrics (``redispool.web.metrics``);
``serve_metrics`` serves them alone for a worker process (``redispool worker
--metrics-port``). Needs ``prometheus_client`` (the ``http`` extra)."""
from __future__ import annotations

from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, disable_created_metrics, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from .engine import Engine
from .keys import STATES

# no ``_created`` series doubling every counter and histogram
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated


class QueueFigures:
    """A Prometheus collector of the queue figures, read at each scrape."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("redispool_queue_jobs", "Jobs per queue and state", labels=["queue", "state"])
        latency = GaugeMetricFamily("redispool_queue_latency_seconds", "Wait of the oldest ready job",
                                    labels=["queue"])
        paused = GaugeMetricFamily("redispool_queue_paused", "1 while the queue is paused", labels=["queue"])
        rate = GaugeMetricFamily("redispool_queue_rate_limit", "Claims allowed in any window of the queue's "
                                 "redispool_queue_rate_limit_window_seconds", labels=["queue"])
        window = GaugeMetricFamily("redispool_queue_rate_limit_window_seconds", "The window of the queue's rate "
                                   "limit", labels=["queue"])
        concurrency = GaugeMetricFamily("redispool_queue_concurrency_limit", "Jobs of the queue leased at once, "
                                        "at most", labels=["queue"])
        totals = CounterMetricFamily("redispool_jobs", "Lifetime totals per queue", labels=["queue", "event"])
        workers = GaugeMetricFamily("redispool_workers", "Live registered workers")
        for queue in self.engine.queues():  # read at scrape: a removed queue's series are gone
            s = self.engine.stats(queue)
            for state in STATES:
                jobs.add_metric([queue, state], s[state])
            latency.add_metric([queue], s["latency"])
            paused.add_metric([queue], 1 if s["paused"] else 0)
            limits = s["limits"]
            if limits["rate"] is not None:
                rate.add_metric([queue], limits["rate"])
                window.add_metric([queue], limits["per"])
            if limits["concurrency"] is not None:
                concurrency.add_metric([queue], limits["concurrency"])
            for event, n in s["totals"].items():
                totals.add_metric([queue, event], n)
        workers.add_metric([], len(self.engine.workers()))
        yield from (jobs, latency, paused, rate, window, concurrency, totals, workers)


def serve_metrics(engine: Engine, port: int, host: str = "127.0.0.1") -> WSGIServer:
    """Serve the queue metrics of ``engine`` in the Prometheus text format on ``host:port``
    from a daemon thread (any path answers); returns the HTTP server (``.server_port``,
    ``.shutdown()``)."""
    registry = CollectorRegistry()
    registry.register(QueueFigures(engine))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
