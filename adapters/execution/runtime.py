"""Model execution, whatever the placement: the :class:`Executor` protocol, the estimators by
tag, and :func:`predict_batch`, which merges calls into one predict per model.

* :class:`~adapters.execution.inprocess.InProcess` runs the estimator in the gateway process: quick
  small calls inline, the rest merged per model and run on worker threads.
* :class:`~adapters.execution.runner.RunnerClient` sends the call to the runner service (a BentoML
  dependency whose batchable API merges concurrent calls and runs :func:`predict_batch`).

Both implement :class:`Executor`: ``await predict(version, methods, rows)`` -> ``{method:
array}``. Estimators are loaded, and warmed up, only when a version is made ready (``preload``:
start-up, repository load, polling) or, evicted under a memory budget
(:mod:`adapters.execution.residency`), called again; they are freed when the version stops being
served (``forget``) or is evicted; a call that finds no estimator for its version when its batch
runs is answered alone (:class:`NotServed`).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from adapters.execution.warmup import warm_up
from adapters.models.registry import ModelVersion
from adapters.models.repository import Holder
from adapters.models.signature import run_method
from adapters.protocol.codecs import Array
from adapters.protocol.errors import BadRequest, NotFound, NotReady

Call = tuple[str, tuple[str, ...], Array]
"""One inference as a batch sees it: model tag, methods to run, input rows."""
Describe = Callable[[str], ModelVersion | None]
"""A tag's stored version (signature, sample): what its warm-up request is built from."""


class PredictFailed:
    """The estimator refused a call's input (a ``ValueError``): sent back, not raised, so that
    one bad request in a merged batch fails alone."""

    def __init__(self, message: str) -> None:
        self.message = message


class NotServed:
    """The call's version had no estimator when its batch ran: unloaded, or deleted and
    reloaded away, while the call waited (404); or, on the runner, a served version this worker
    could not load (``retry``: 503). Sent back, not raised: the other calls of the batch run."""

    def __init__(self, message: str, *, retry: bool = False) -> None:
        self.message = message
        self.retry = retry


Result = dict[str, Array] | PredictFailed | NotServed


def not_served(tag: str) -> NotServed:
    return NotServed(
        f"version '{tag}' is no longer served (unloaded, or removed from the store, while the "
        "call waited for its batch)"
    )


def load_estimator(tag: str) -> Any:
    """One stored model, by tag, from the current BentoML store."""
    import bentoml

    return bentoml.sklearn.load_model(tag)


def load_estimators(
    tags: Iterable[str], describe: Describe | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Load each stored model by tag and have it answer its warm-up request:
    ``(estimators, {tag: why it could not be loaded or warmed up})``.

    Loading happens only here, when a version is made ready (start-up, repository load,
    polling) or, evicted under a memory budget, called again; never for a version that is no
    longer served. ``describe`` reads a tag's version (its signature and stored sample) for the
    warm-up (:mod:`adapters.execution.warmup`); without it, or for a tag it cannot describe, there
    is none.
    """
    estimators: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for tag in tags:
        try:
            estimator = load_estimator(tag)
        except Exception as exc:  # a broken or vanished file: that version only
            failed[tag] = f"its estimator could not be loaded ({type(exc).__name__}: {exc})"
            continue
        version = describe(tag) if describe is not None else None
        try:
            if version is not None:
                warm_up(version, estimator)
        except Exception as exc:  # the user's model, on its own sample: that version only
            failed[tag] = f"its warm-up request failed ({type(exc).__name__}: {_text(exc)})"
            continue
        estimators[tag] = estimator
    return estimators, failed


def _text(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc)


def release_memory() -> None:
    """Hand the memory of freed estimators back to the system.

    NOTE: glibc keeps freed blocks in its arenas (a large array freed after its first reuse is
    no longer unmapped), so without this a process's RSS stays at the most it ever held, not at
    what it holds. ``malloc_trim`` walks the arenas once (milliseconds); elsewhere, nothing.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL(None).malloc_trim(0)


def predict_one(
    estimator: Any, methods: Sequence[str], rows: Array
) -> dict[str, Array] | PredictFailed:
    """Run the requested methods on one input."""
    try:
        return {method: run_method(estimator, method, rows) for method in methods}
    except ValueError as exc:
        return PredictFailed(str(exc))


class Timed(Protocol):
    """What times the predicts of :func:`predict_batch` (the in-process inline decision)."""

    def clock(self) -> float: ...

    def took(self, tag: str, largest_call_rows: int, seconds: float) -> None: ...


def predict_batch(
    estimators: Mapping[str, Any],
    calls: Sequence[Call],
    *,
    unserved: Callable[[str], Result] = not_served,
    timed: Timed | None = None,
) -> list[Result]:
    """Execute a batch of calls, merging calls to the same model and methods into one predict.

    Rows are concatenated along the batch dimension, predicted once, and split back in order.
    If the merged predict fails, each call is retried alone so only the faulty one fails. A
    call whose tag has no estimator gets ``unserved(tag)``; the others run. With ``timed``,
    each predict (merged or lone) is timed by its clock and reported with its largest call's
    rows: the concatenation and the split are not the model's cost.
    """
    results: list[Result | None] = [None] * len(calls)
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for index, (tag, methods, _) in enumerate(calls):
        groups.setdefault((tag, methods), []).append(index)
    for (tag, methods), indices in groups.items():
        estimator = estimators.get(tag)
        if estimator is None:
            for i in indices:
                results[i] = unserved(tag)
            continue
        parts = [calls[i][2] for i in indices]
        rows = parts[0] if len(parts) == 1 else concat_rows(parts)
        start = 0.0 if timed is None else timed.clock()
        merged = predict_one(estimator, methods, rows)
        if timed is not None:
            timed.took(tag, max(len(p) for p in parts), timed.clock() - start)
        if len(indices) == 1:
            results[indices[0]] = merged
            continue
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
    if isinstance(result, NotServed):
        if result.retry:
            raise NotReady(result.message, headers={"Retry-After": "1"})
        raise NotFound(result.message)
    return result


class Executor(Holder, Protocol):
    """Runs predict for one placement, and holds the estimators of exactly the versions it is
    told to have ready (:class:`~adapters.models.repository.Holder`: ``preload_sync``,
    ``preload``, ``forget``; a call still queued for a forgotten one is answered
    :class:`NotServed`): nothing is loaded at predict time."""

    placement: str  # "inprocess" or "runner"

    async def predict(
        self, version: ModelVersion, methods: tuple[str, ...], rows: Array, *, shadow: bool = False
    ) -> dict[str, Array]:
        """Run ``methods`` on ``rows``; a ``shadow`` call never delays the served ones more
        than the placement must (in process: a queue of its own, never inline)."""
        ...

    async def ready(self) -> bool: ...

    async def loaded(self) -> dict[str, list[str]]:
        """The tags whose estimators are held, by process (worker index)."""
        ...
