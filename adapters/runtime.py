"""Model execution, whatever the placement: the :class:`Executor` protocol, the estimators by
tag, and :func:`predict_batch`, which merges calls into one predict per model.

* :class:`~adapters.inprocess.InProcess` runs the estimator in the gateway process: quick small
  calls inline, the rest merged per model and run on worker threads.
* :class:`~adapters.runner.RunnerClient` sends the call to the runner service (a BentoML
  dependency whose batchable API merges concurrent calls and runs :func:`predict_batch`).

Both implement :class:`Executor`: ``await predict(version, methods, rows)`` -> ``{method:
array}``; the runner's wire call is a list of :data:`Call` tuples ``(tag, methods, rows)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from .codecs import Array
from .errors import BadRequest
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


class Estimators(dict[str, Any]):
    """Estimators by tag, loading a missing one from the BentoML store on first use.

    The runner relies on it for versions loaded into the gateway's registry after start-up
    (repository load, polling): each runner worker loads such a version when it first sees it.
    """

    def __missing__(self, tag: str) -> Any:
        import bentoml

        estimator = self[tag] = bentoml.sklearn.load_model(tag)
        return estimator


def load_estimators(tags: Iterable[str]) -> Estimators:
    """Load each stored model by tag from the current BentoML store."""
    estimators = Estimators()
    for tag in tags:
        estimators[tag]  # loaded by __missing__
    return estimators


def predict_one(estimator: Any, methods: Sequence[str], rows: Array) -> Result:
    """Run the requested methods on one input."""
    try:
        return {method: run_method(estimator, method, rows) for method in methods}
    except ValueError as exc:
        return PredictFailed(str(exc))


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
        merged = predict_one(estimator, methods, concat_rows(parts))
        if isinstance(merged, PredictFailed):
            for i in indices:
                results[i] = predict_one(estimator, methods, calls[i][2])
            continue
        bounds = list(itertools.accumulate(len(p) for p in parts))[:-1]
        split = {m: np.split(merged[m], bounds) for m in methods}
        for position, i in enumerate(indices):
            results[i] = {m: split[m][position] for m in methods}
    assert all(r is not None for r in results)  # every call belongs to exactly one group
    return results  # type: ignore[return-value]


def concat_rows(parts: Sequence[Any]) -> Any:
    """Inputs of several calls as one: arrays stacked, DataFrames (column models) concatenated."""
    if hasattr(parts[0], "iloc"):
        import pandas as pd

        return pd.concat(parts, ignore_index=True)
    return np.concatenate(parts)


def row_chunks(rows: Any, size: int) -> Iterator[Any]:
    """Consecutive pieces of at most ``size`` rows of an array or a DataFrame (by position)."""
    for begin in range(0, len(rows), size):
        yield (
            rows.iloc[begin : begin + size] if hasattr(rows, "iloc") else rows[begin : begin + size]
        )


def join_outputs(parts: Sequence[dict[str, Array]]) -> dict[str, Array]:
    """The outputs of consecutive chunks as the outputs of the whole."""
    return {method: np.concatenate([part[method] for part in parts]) for method in parts[0]}


def unwrap(result: Result) -> dict[str, Array]:
    if isinstance(result, PredictFailed):
        raise BadRequest(f"the model rejected the input: {result.message}")
    return result


class Executor(Protocol):
    """Runs predict for one placement, and has the versions it may be asked for ready."""

    async def predict(
        self, version: ModelVersion, methods: tuple[str, ...], rows: Array
    ) -> dict[str, Array]: ...

    async def ready(self) -> bool: ...

    def preload_sync(self, tags: Sequence[str]) -> None:
        """Make these versions ready before they are served (at start-up)."""

    async def preload(self, tags: Sequence[str]) -> None:
        """The same, off the event loop (repository load, polling)."""

    def forget(self, tags: Sequence[str]) -> None:
        """These versions are no longer served: free what they hold."""
