"""Prometheus metrics of one worker, and the HTTP server for /metrics, /healthz and /readyz.

Each ``WorkerMetrics`` owns its registry, so several workers can live in one process (tests).
Label values are low-cardinality: stage names, explainer names, error classes, partitions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class WorkerMetrics:
    """Every metric the worker exports (docs/operations.md, "Metrics")."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "recx_events_consumed", "Input events consumed", ["topic"], registry=r
        )
        self.events_out = Counter(
            "recx_explanations_published",
            "Explanations acknowledged by the broker",
            ["explainer"],
            registry=r,
        )
        self.dead_letters = Counter(
            "recx_dead_letters", "Dead letters acknowledged, by reason", ["error_class"], registry=r
        )
        self.fallbacks = Counter(
            "recx_fallbacks",
            "Chain stages that did not answer a request, by stage and reason",
            ["stage", "reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            "recx_batch_size", "Events per micro-batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.stage_latency = Histogram(
            "recx_stage_latency_seconds",
            "Time per micro-batch in each stage (validate, enrich, explain, publish, commit)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end = Histogram(
            "recx_end_to_end_latency_seconds",
            "Event timestamp to output acknowledged by the broker",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "recx_consumer_lag",
            "End offset minus the consumer's position, per partition",
            ["topic", "partition"],
            registry=r,
        )
        self.committed_lag = Gauge(
            "recx_consumer_committed_lag",
            "End offset minus the committed offset, per partition",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned = Gauge("recx_assigned_partitions", "Partitions assigned", registry=r)
        self.in_flight = Gauge(
            "recx_in_flight_events", "Consumed events not yet committed", registry=r
        )
        self.rebalances = Counter("recx_rebalances", "Partition assignments received", registry=r)
        self.commits = Counter("recx_commits", "Offset commits (or transactions)", registry=r)
        self.commit_failures = Counter(
            "recx_commit_failures", "Offset commits that failed (retried)", registry=r
        )
        self.produce_retries = Counter(
            "recx_produce_retries", "Sends retried after a failure", ["topic"], registry=r
        )
        self.ready = Gauge("recx_worker_ready", "1 when warmed up and assigned", registry=r)

    def watch_batcher(self, batcher: Any) -> None:
        """Export a ``DeadlineBatcher``'s measured stage costs and admitted batch sizes."""
        self.registry.register(_BatcherCollector(batcher))

    def set_lag(self, topic: str, rows: Iterable[tuple[int, int, int | None, int | None]]) -> None:
        """Rows of ``(partition, end_offset, position, committed)``; clears unlisted ones."""
        self.lag.clear()
        self.committed_lag.clear()
        for partition, end, position, committed in rows:
            labels = (topic, str(partition))
            if position is not None:
                self.lag.labels(*labels).set(max(end - position, 0))
            self.committed_lag.labels(*labels).set(max(end - (committed or 0), 0))


class _BatcherCollector(Collector):
    """Per stage: what deadline-aware batching measured and admitted (read at scrape time)."""

    def __init__(self, batcher: Any) -> None:
        self.batcher = batcher

    def collect(self) -> Iterable[GaugeMetricFamily]:
        families = {
            "per_request_s": GaugeMetricFamily(
                "recx_stage_seconds_per_request",
                "Measured marginal seconds per request of a chain stage",
                labels=["stage"],
            ),
            "overhead_s": GaugeMetricFamily(
                "recx_stage_overhead_seconds",
                "Measured fixed seconds per call of a chain stage",
                labels=["stage"],
            ),
            "admitted": GaugeMetricFamily(
                "recx_stage_admitted_requests",
                "Requests the last micro-batch gave a stage (the rest: deadline_skipped)",
                labels=["stage"],
            ),
        }
        for stage, values in self.batcher.snapshot().items():
            for key, family in families.items():
                family.add_metric([stage], values[key])
        return list(families.values())


class MetricsServer:
    """Serves ``/metrics``, ``/healthz`` (loop alive) and ``/readyz`` (ready to process)."""

    def __init__(
        self,
        metrics: WorkerMetrics,
        *,
        healthy: Callable[[], bool],
        ready: Callable[[], bool],
        host: str = "0.0.0.0",
        port: int = 9400,
    ) -> None:
        self._metrics_app = make_wsgi_app(metrics.registry)
        self._healthy = healthy
        self._ready = ready
        self._server = make_server(
            host, port, self._app, ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self.port: int = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="recx-metrics", daemon=True
        )

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path in ("/healthz", "/readyz"):
            ok = (self._healthy if path == "/healthz" else self._ready)()
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n" if ok else b"not ok\n"]
        body: list[bytes] = self._metrics_app(environ, start_response)
        return body

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not log events
        return None


class Heartbeat:
    """``/healthz`` is true while the poll loop has beaten within ``max_age_s``."""

    def __init__(self, max_age_s: float) -> None:
        self.max_age_s = max_age_s
        self._last = time.monotonic()

    def beat(self) -> None:
        self._last = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self._last < self.max_age_s
