"""Execution's Prometheus metric: how many requests each in-process predict merged.

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
