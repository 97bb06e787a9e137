"""``oip_requests_in_flight``: the inference requests a server holds right now, per model, for an
autoscaler.

BentoML's own in-progress gauge sits in a middleware the fast lane bypasses
(:mod:`adapters.bento.gateway`) and never sees gRPC; this one is counted where every transport's
inference request starts and ends, under its deadline (:class:`~adapters.dataplane.Deadline`):
REST with the lane on or off, and gRPC ``ModelInfer``. Summed over a pod's gateway workers
(``livesum``: the files of stopped workers drop out), it is what a HorizontalPodAutoscaler
averages per pod (``deploy/kubernetes.yaml``, ``docs/scaling.md``).

The ``model`` label is a servable model's name (``OIP_MODELS``), ``""`` for any other: clients
cannot invent series. The gauge is created on first use, as :mod:`adapters.http.metrics` explains.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import Any

import prometheus_client


@functools.cache
def requests_in_flight() -> Any:
    """The gauge, registered once per process (after BentoML set up its multiprocess mode)."""
    return prometheus_client.Gauge(
        name="oip_requests_in_flight",
        documentation="V2 inference requests being handled (REST and gRPC), by model",
        labelnames=["model"],
        multiprocess_mode="livesum",
    )


class InFlight:
    """The gauge's series of each served model, cached (``labels()`` is the costly part)."""

    def __init__(self, names: Collection[str]) -> None:
        self.names = frozenset(names)  # what may be served (OIP_MODELS), loaded yet or not
        self.children: dict[str, Any] = {}
        for name in self.names:  # at 0 from the start: an autoscaler sees every pod
            self.of(name)

    def of(self, model: str) -> Any:
        """The series of ``model`` (``""`` when it is not served): ``inc()`` and ``dec()``."""
        label = model if model in self.names else ""
        child = self.children.get(label)
        if child is None:
            child = self.children[label] = requests_in_flight().labels(model=label)
        return child
