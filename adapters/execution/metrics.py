"""Execution's Prometheus metrics: how many requests each in-process predict merged, and the
calls the runner's workers took from the direct lane (:mod:`adapters.execution.lane`).

Created on first use (:func:`functools.cache`), as :mod:`adapters.http.metrics` explains: a
prometheus_client metric may be registered once per process, and only after BentoML has set up
the multiprocess mode in its worker.
"""

from __future__ import annotations

import functools
from typing import Any

import prometheus_client


@functools.cache
def inprocess_batch_size() -> Any:
    """``oip_inprocess_batch_size``: requests merged per in-process predict (the runner's
    counterpart is BentoML's ``bentoml_service_adaptive_batch_size``)."""
    return prometheus_client.Histogram(
        name="oip_inprocess_batch_size",
        documentation="Requests merged into one in-process predict call",
        buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    )


@functools.cache
def lane_calls() -> tuple[Any, Any]:
    """``oip_runner_lane_calls_total`` (calls a runner worker took from the direct lane) and
    ``oip_runner_lane_calls_in_progress`` (those not answered yet, summed over the live
    workers): the lane's counterparts of BentoML's request metrics of the ``run`` APIs."""
    total = prometheus_client.Counter(
        name="oip_runner_lane_calls",
        documentation="Calls a runner worker took from the gateways' direct lane",
    )
    in_progress = prometheus_client.Gauge(
        name="oip_runner_lane_calls_in_progress",
        documentation="Direct-lane calls a runner worker has not answered yet",
        multiprocess_mode="livesum",
    )
    return total, in_progress
