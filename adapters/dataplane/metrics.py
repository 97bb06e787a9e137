"""The rollout's Prometheus metrics: shadow runs and their agreement with the default's answers,
and the inference log's rows.

Created on first use (:func:`functools.cache`), as :mod:`adapters.http.metrics` explains. All are
counters, which BentoML's multiprocess collector sums over the gateway workers; the agreement is
a ratio of two of them:

* share of equal ``predict`` (classifiers): ``oip_shadow_equal_rows_total /
  oip_shadow_compared_rows_total``;
* mean absolute difference of ``predict`` (regressors): ``oip_shadow_absolute_difference_total /
  oip_shadow_compared_rows_total``.

Labels are bounded: the model and its versions come from the registry.
"""

from __future__ import annotations

import functools
from typing import Any

import prometheus_client

PAIR = ["model", "primary", "shadow"]


@functools.cache
def shadow_runs() -> Any:
    return prometheus_client.Counter(
        "oip_shadow_runs",
        "Shadow runs of requests the model's default answered, by outcome (ok, failed)",
        [*PAIR, "outcome"],
    )


@functools.cache
def shadow_dropped() -> Any:
    return prometheus_client.Counter(
        "oip_shadow_dropped", "Shadow runs dropped: the shadow queue was full", ["model"]
    )


@functools.cache
def shadow_compared() -> Any:
    return prometheus_client.Counter(
        "oip_shadow_compared_rows",
        "Rows whose predict the default and its shadow both answered",
        PAIR,
    )


@functools.cache
def shadow_equal() -> Any:
    return prometheus_client.Counter(
        "oip_shadow_equal_rows", "Compared rows with an equal predict (classifiers)", PAIR
    )


@functools.cache
def shadow_difference() -> Any:
    return prometheus_client.Counter(
        "oip_shadow_absolute_difference",
        "Sum over compared rows of |default's predict - shadow's predict| (regressors)",
        PAIR,
    )


@functools.cache
def logged_rows() -> Any:
    return prometheus_client.Counter(
        "oip_inference_log_rows",
        "Inference log rows, by outcome: written, dropped (queue full), failed (database error)",
        ["outcome"],
    )
