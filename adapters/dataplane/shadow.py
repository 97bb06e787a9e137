"""Shadow runs: every request the model's default answered also runs on the model's shadow version
(``shadow`` in its section), off the request path, and the two answers are compared.

A run is queued only after the default's answer exists, on a bounded queue; when the queue is
full it is dropped and counted (``oip_shadow_dropped_total``), so the shadow never slows or fails
the default's answer. A few tasks drain the queue, each run under the request deadline; in
process the shadow's predicts have a queue of their own (never in front of a served call). A
shadow that resolves to the version that answered (a weighted default, 10 % on the shadow's
version) is not run again.

Compared is ``predict``, when the default answered it (a request that names its outputs and
leaves ``predict`` out is run, and logged, but not compared): for a classifier (class labels, or
a ``predict`` that is not floating point) the rows with an equal answer, for a regressor the sum
of absolute differences (:mod:`adapters.dataplane.metrics`). The shadow's answers go to the
inference log, tagged ``shadow``, when the model logs its inferences. Shadow runs are not counted
in the V2 statistics, which describe what clients were answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from adapters.dataplane.journal import Entry, failure
from adapters.dataplane.metrics import (
    shadow_compared,
    shadow_difference,
    shadow_dropped,
    shadow_equal,
    shadow_runs,
)
from adapters.execution.runtime import Executor
from adapters.models.inputs import model_input
from adapters.models.registry import ModelVersion, ServedModel
from adapters.protocol.codecs import Array, datatype_of
from adapters.protocol.messages import InferRequest, Tensor

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    """A request the default answered, to run on the shadow."""

    model: ServedModel
    primary: ModelVersion  # the version that answered
    request: InferRequest
    request_id: str
    methods: tuple[str, ...]  # what the default computed
    answers: Mapping[str, Array]  # its raw results, by method
    key: str | None  # the routing key, for a weighted shadow
    logged: bool  # whether the shadow's answer goes to the inference log


class Shadows:
    """The queue of shadow runs of one process, and the tasks that drain it.

    Args:
        executors: each model's executor.
        record: where a logged run's :class:`~adapters.dataplane.journal.Entry` goes.
        timeout_s: the most one run may take (the request deadline).
        capacity: runs waiting at most; past it, new ones are dropped and counted.
        concurrency: runs at once (calls of one model merge into one predict).
    """

    def __init__(
        self,
        executors: Mapping[str, Executor],
        record: Callable[[Entry], None],
        *,
        timeout_s: float,
        capacity: int = 1000,
        concurrency: int = 4,
    ) -> None:
        self.executors = executors
        self.record = record
        self.timeout_s = timeout_s
        self.capacity = capacity
        self.concurrency = concurrency
        self.pending: deque[Job] = deque()
        self.tasks: set[asyncio.Task[None]] = set()
        self.dropped = 0

    def submit(self, job: Job) -> None:
        """Queue a run (or drop it, counted); a task drains the queue while it is not empty."""
        if len(self.pending) >= self.capacity:
            self.dropped += 1
            shadow_dropped().labels(job.model.name).inc()
            return
        self.pending.append(job)
        if len(self.tasks) < self.concurrency:
            task = asyncio.get_running_loop().create_task(self._drain())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def idle(self) -> None:
        """Until every queued run has ended (tests, shutdown)."""
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _drain(self) -> None:
        while self.pending:
            job = self.pending.popleft()
            try:
                await self._run(job)
            except Exception:  # a bug of ours: never let it reach the served request
                logger.exception("a shadow run of model '%s' failed", job.model.name)

    async def _run(self, job: Job) -> None:
        model = job.model
        start = time.perf_counter_ns()
        shadow = model.resolve(model.rollout.shadow, job.key)
        if shadow.version == job.primary.version:
            return
        labels = (model.name, job.primary.version, shadow.version)
        try:
            rows = model_input(shadow, job.request.inputs, job.request.parameters)
            offered = shadow.signature.output_names
            methods = tuple(m for m in job.methods if m in offered) or offered
            async with asyncio.timeout(self.timeout_s):
                results = await self.executors[model.name].predict(
                    shadow, methods, rows, shadow=True
                )
        except Exception as exc:
            shadow_runs().labels(*labels, "failed").inc()
            status, error = failure(exc)
            self._log(job, shadow, start, status, [], error)
            return
        shadow_runs().labels(*labels, "ok").inc()
        if "predict" in job.answers and "predict" in results:
            compare(job.primary, job.answers["predict"], results["predict"], labels)
        outputs = [Tensor(m, datatype_of(a), a) for m, a in results.items()]
        self._log(job, shadow, start, 200, outputs, None)

    def _log(
        self,
        job: Job,
        shadow: ModelVersion,
        start: int,
        status: int,
        outputs: list[Tensor],
        error: str | None,
    ) -> None:
        if job.logged:
            latency_ms = (time.perf_counter_ns() - start) / 1e6
            self.record(
                Entry(
                    job.request_id,
                    shadow.name,
                    shadow.version,
                    status,
                    latency_ms,
                    job.request.inputs,
                    outputs,
                    error,
                    shadow=True,
                )
            )


def compare(primary: ModelVersion, ours: Array, theirs: Array, labels: tuple[str, ...]) -> None:
    """Count the agreement of two ``predict`` answers to the same rows (module docstring)."""
    rows = len(ours)
    if bool(primary.classes) or ours.dtype.kind not in "fc":
        equal = 0
        if ours.shape == theirs.shape:
            same = ours.reshape(rows, -1) == theirs.reshape(rows, -1)
            equal = int(np.asarray(same).all(axis=1).sum())
        shadow_compared().labels(*labels).inc(rows)
        shadow_equal().labels(*labels).inc(equal)
    elif ours.shape == theirs.shape:
        difference = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
        shadow_compared().labels(*labels).inc(ours.size)
        shadow_difference().labels(*labels).inc(float(difference.sum()))
