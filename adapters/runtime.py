"""Model execution: where ``predict`` runs, for each placement.

* :class:`InProcess` runs the estimator in the gateway process, in a worker thread so that a
  slow predict never blocks the event loop (health and metadata keep answering).
* :class:`RunnerClient` sends the call to the runner service (a BentoML dependency whose
  batchable API merges concurrent calls); the runner executes them with :func:`predict_batch`.

Both speak the same call: ``(tag, methods, rows)`` -> ``{method: array}``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any, Protocol

import anyio
import numpy as np
from bentoml.exceptions import BentoMLException

from .codecs import Array
from .errors import BadRequest, Overloaded
from .registry import ModelVersion
from .signature import run_method

Call = tuple[str, tuple[str, ...], Array]
"""One inference as the runner sees it: model tag, methods to run, input rows."""


class PredictFailed:
    """The estimator refused a call's input (a ``ValueError``): sent back, not raised, so that
    one bad request in a merged batch fails alone."""

    def __init__(self, message: str) -> None:
        self.message = message


Result = dict[str, Array] | PredictFailed


def load_estimators(tags: Iterable[str]) -> dict[str, Any]:
    """Load each stored model by tag from the current BentoML store."""
    import bentoml

    return {tag: bentoml.sklearn.load_model(tag) for tag in tags}


def predict_one(estimator: Any, methods: Sequence[str], rows: Array) -> Result:
    """Run the requested methods on one input."""
    try:
        return {method: run_method(estimator, method, rows) for method in methods}
    except ValueError as exc:
        return PredictFailed(str(exc))


def timed_predict(estimator: Any, methods: Sequence[str], rows: Array) -> tuple[Result, float]:
    """:func:`predict_one` and the seconds it took (measured where it runs)."""
    start = time.perf_counter()
    result = predict_one(estimator, methods, rows)
    return result, time.perf_counter() - start


def predict_batch(estimators: dict[str, Any], calls: Sequence[Call]) -> list[Result]:
    """Execute a batch of calls, merging calls to the same model and methods into one predict.

    Rows are concatenated along the batch dimension, predicted once, and split back in order.
    If the merged predict fails, each call is retried alone so only the faulty one fails.
    """
    results: list[Result | None] = [None] * len(calls)
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for index, (tag, methods, _) in enumerate(calls):
        groups.setdefault((tag, methods), []).append(index)
    for (tag, methods), indices in groups.items():
        estimator = estimators[tag]
        if len(indices) == 1:
            results[indices[0]] = predict_one(estimator, methods, calls[indices[0]][2])
            continue
        parts = [calls[i][2] for i in indices]
        merged = predict_one(estimator, methods, np.concatenate(parts))
        if isinstance(merged, PredictFailed):
            for i in indices:
                results[i] = predict_one(estimator, methods, calls[i][2])
            continue
        bounds = list(itertools.accumulate(len(p) for p in parts))[:-1]
        split = {m: np.split(merged[m], bounds) for m in methods}
        for position, i in enumerate(indices):
            results[i] = {m: split[m][position] for m in methods}
    return [r for r in results if r is not None]


def unwrap(result: Result) -> dict[str, Array]:
    if isinstance(result, PredictFailed):
        raise BadRequest(f"the model rejected the input: {result.message}")
    return result


class Executor(Protocol):
    """Runs predict for one placement."""

    async def predict(
        self, version: ModelVersion, methods: tuple[str, ...], rows: Array
    ) -> dict[str, Array]: ...

    async def ready(self) -> bool: ...


class InProcess:
    """Estimators loaded in this process.

    A predict known to be quick (its model's recent small calls took under ``inline_budget_s``)
    runs right on the event loop: for a tiny model the hop to a worker thread costs more than
    the predict. Anything else (large inputs, slow models, a model's first calls) runs in a
    worker thread, so a slow predict never stalls health checks and metadata.
    """

    def __init__(
        self,
        estimators: dict[str, Any],
        *,
        inline_max_rows: int = 16,
        inline_budget_s: float = 0.0005,
    ) -> None:
        self.estimators = estimators
        self.inline_max_rows = inline_max_rows
        self.inline_budget_s = inline_budget_s
        self.small_call_s: dict[str, float] = {}  # EWMA of small calls' duration, per tag

    def runs_inline(self, tag: str, rows: int) -> bool:
        return (
            rows <= self.inline_max_rows and self.small_call_s.get(tag, 1.0) < self.inline_budget_s
        )

    async def predict(
        self, version: ModelVersion, methods: tuple[str, ...], rows: Array
    ) -> dict[str, Array]:
        estimator = self.estimators[version.tag]
        if self.runs_inline(version.tag, len(rows)):
            return unwrap(predict_one(estimator, methods, rows))
        result, elapsed = await anyio.to_thread.run_sync(timed_predict, estimator, methods, rows)
        if len(rows) <= self.inline_max_rows:
            previous = self.small_call_s.get(version.tag, elapsed)
            self.small_call_s[version.tag] = 0.8 * previous + 0.2 * elapsed
        return unwrap(result)

    async def ready(self) -> bool:
        return True


class RunnerClient:
    """Calls to the runner service; ready once the runner has answered that it is."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self._ready = False

    async def predict(
        self, version: ModelVersion, methods: tuple[str, ...], rows: Array
    ) -> dict[str, Array]:
        try:
            (result,) = await self.runner.to_async.run([(version.tag, methods, rows)])
        except BentoMLException as exc:
            if exc.error_code == HTTPStatus.SERVICE_UNAVAILABLE:
                raise Overloaded(
                    f"the runner of model '{version.name}' is overloaded, retry later"
                ) from None
            raise
        return unwrap(result)

    async def ready(self) -> bool:
        if not self._ready:
            try:
                with anyio.fail_after(2):
                    self._ready = bool(await self.runner.to_async.ready())
            except Exception:  # not up yet: connection refused, timeout, 503
                return False
        return self._ready
