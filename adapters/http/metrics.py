"""The HTTP edge's Prometheus metrics (the batch sizes of in-process execution are
:mod:`adapters.execution.metrics`').

BentoML serves ``/metrics`` from the prometheus_client multiprocess directory it sets up for its
workers, so a plain prometheus_client metric created in a worker shows up there. Each metric is
created on first use (:func:`functools.cache`): prometheus_client refuses a second registration
of a name, and creating them at import time would run before BentoML has configured the
multiprocess mode in a worker.

Every label is bounded: ``model`` and ``version`` come from the registry (an unknown name or
version is ``""``), never from the URL as the client wrote it.
"""

from __future__ import annotations

import functools
from typing import Any

import prometheus_client

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


@functools.cache
def request_duration() -> Any:
    """``oip_request_duration_seconds``: V2 request latency by endpoint, model, version, status."""
    return prometheus_client.Histogram(
        name="oip_request_duration_seconds",
        documentation="V2 request latency, by endpoint, model, resolved version and status",
        labelnames=["endpoint", "model", "version", "status"],
        buckets=LATENCY_BUCKETS,
    )


class RequestMetrics:
    """Observes V2 requests, with the labelled series cached (``labels()`` is the costly part)."""

    def __init__(self) -> None:
        self.children: dict[tuple[str, str, str, int], Any] = {}

    def observe(self, endpoint: str, model: str, version: str, status: int, seconds: float) -> None:
        key = (endpoint, model, version, status)
        child = self.children.get(key)
        if child is None:
            child = request_duration().labels(
                endpoint=endpoint, model=model, version=version, status=str(status)
            )
            self.children[key] = child  # bounded: every label is
        child.observe(seconds)
