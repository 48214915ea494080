"""The service's Prometheus metrics, made in the worker that scores, once per process.

BentoML's workers export ``PROMETHEUS_MULTIPROC_DIR`` when they start, and prometheus_client
picks its storage when first imported: so it is imported, and the metrics registered, only
when a worker builds the service, never when a module is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram


@dataclass(frozen=True)
class ServiceMetrics:
    latency: Histogram
    probability: Histogram
    stale: Counter
    rejected: Counter
    shed: Counter
    model_version: Gauge


@cache
def service_metrics() -> ServiceMetrics:
    """This process's metrics, registered in the default registry on the first call."""
    from prometheus_client import Counter, Gauge, Histogram

    return ServiceMetrics(
        latency=Histogram(
            "closedloop_score_seconds",
            "time to score one request, by model and source",
            labelnames=["model", "source"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        ),
        probability=Histogram(
            "closedloop_score_probability",
            "distribution of the scores given, by model",
            labelnames=["model"],
            buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0),
        ),
        stale=Counter(
            "closedloop_stale_scores",
            "scores made with stale or missing features, by model",
            labelnames=["model"],
        ),
        rejected=Counter(
            "closedloop_rejected_requests",
            "requests answered with an error, by model and error code",
            labelnames=["model", "code"],
        ),
        shed=Counter(
            "closedloop_shed_requests",
            "requests refused with 503 because the worker's intake was full, by kind",
            labelnames=["kind"],
        ),
        model_version=Gauge(
            "closedloop_model_version",
            "the model version being served (1 for the version served)",
            labelnames=["model", "version"],
        ),
    )
