"""Prometheus exposition for the service: window metrics per model, and the server's own
request counters and latencies, in a registry owned by one app (no global state)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from tunelens.server.app import _Service

__all__ = ["Telemetry"]

#: Window metrics exported as gauges ``tunelens_<name>{model, version}``.
EXPORTED = (
    "rows",
    "labelled_rows",
    "accuracy",
    "error_rate",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "mae",
    "rmse",
    "r2",
    "latency_p50",
    "latency_p90",
    "latency_p99",
    "throughput",
    "flops_per_s",
    "cpu_percent",
    "rss_bytes",
    "gpu_util_percent",
    "gpu_memory_bytes",
)
_HELP = {
    "rows": "predictions in the latest window",
    "labelled_rows": "predictions with a label in the latest window",
    "throughput": "predictions per second in the latest window",
    "latency_p50": "median prediction latency (ms) in the latest window",
    "latency_p90": "90th percentile prediction latency (ms) in the latest window",
    "latency_p99": "99th percentile prediction latency (ms) in the latest window",
}


class _WindowCollector(Collector):
    """On each scrape, the latest window's metrics of every model."""

    def __init__(self, service: _Service) -> None:
        self.service = service

    def describe(self) -> list[Metric]:
        return []  # the metrics depend on the models: collected at scrape time

    def collect(self) -> Iterator[Metric]:
        service = self.service
        window = service.settings.metrics_window
        families = {
            name: GaugeMetricFamily(
                f"tunelens_{name}",
                _HELP.get(name, f"{name} over the latest {window} window"),
                labels=["model", "version", "window"],
            )
            for name in EXPORTED
        }
        start = GaugeMetricFamily(
            "tunelens_window_start_seconds",
            "start of the latest window (Unix time)",
            labels=["model", "version", "window"],
        )
        from tunelens.monitor._windows import parse_window

        width = parse_window(window)
        since = datetime.fromtimestamp((time.time() // width - 1) * width, UTC)
        for record in service.store.list_models():
            try:
                monitor = service.monitor(record.name, create=False)
                frame = monitor.metrics(window=window, since=since)
            except Exception:  # a model whose metrics cannot be read is left out
                continue
            if frame.empty:
                continue
            last = frame.iloc[-1]
            labels = [record.name, record.version, window]
            start.add_metric(labels, frame.index[-1].timestamp())
            for name, family in families.items():
                if name in last.index:
                    value = _float(last[name])
                    if value is not None:
                        family.add_metric(labels, value)
        yield start
        yield from families.values()


def _float(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class Telemetry:
    """The app's registry: request counters, latencies, ingested rows, window gauges."""

    def __init__(self, service: _Service) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "tunelens_http_requests",
            "HTTP requests served",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tunelens_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.ingested = Counter(
            "tunelens_ingested_rows",
            "rows accepted by the ingestion routes",
            ["model", "kind"],
            registry=self.registry,
        )
        self.registry.register(_WindowCollector(service))

    def observe(self, method: str, route: str, status: int, started: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(time.perf_counter() - started)

    def rows(self, model: str, kind: str, n: int) -> None:
        self.ingested.labels(model, kind).inc(n)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
