"""Model execution: where ``predict`` runs, for each placement.

* :class:`InProcess` runs the estimator in the gateway process: quick small calls inline, the
  rest merged and run by one worker thread, so a slow predict never blocks the event loop.
* :class:`RunnerClient` sends the call to the runner service (a BentoML dependency whose
  batchable API merges concurrent calls); the runner executes them with :func:`predict_batch`.

Both implement :class:`Executor`: ``await predict(version, methods, rows)`` -> ``{method:
array}``; the runner's wire call is a list of :data:`Call` tuples ``(tag, methods, rows)``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any, Protocol

import aiohttp
import anyio
import numpy as np
from bentoml.exceptions import BentoMLException

from .codecs import Array
from .errors import BadRequest, Overloaded
from .metrics import inprocess_batch_size
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
        merged = predict_one(estimator, methods, np.concatenate(parts))
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


class InProcess:
    """Estimators loaded in this process, with the runner's batching without its hop.

    A predict known to be quick (its model's recent small calls took under ``inline_budget_s``)
    runs right on the event loop: for a tiny model the hop to a worker thread costs more than the
    predict. Inline calls are timed too, so a model that turns slow (a heavy version, a costly
    input) leaves the loop from its next call on. Every other call joins a queue drained by one
    worker thread at a time: calls that arrive while a predict is running are merged into the
    next one (:func:`predict_batch`), so concurrent requests neither fight over the GIL in many
    threads nor pay one predict's fixed cost each, and a slow predict never blocks health checks
    and metadata on the event loop.
    """

    def __init__(
        self,
        estimators: dict[str, Any] | None = None,
        *,
        max_batch_size: int = 64,
        inline_max_rows: int = 16,
        inline_budget_s: float = 0.0005,
    ) -> None:
        self.estimators = Estimators(estimators or {})
        self.max_batch_size = max_batch_size
        self.inline_max_rows = inline_max_rows
        self.inline_budget_s = inline_budget_s
        self.small_call_s: dict[str, float] = {}  # EWMA of lone small calls' duration, per tag
        self.queue: list[tuple[Call, asyncio.Future[Result]]] = []
        self.drainer: asyncio.Task[None] | None = None
        self.batch_sizes = inprocess_batch_size()

    def preload_sync(self, tags: Sequence[str]) -> None:
        for tag in tags:
            self.estimators[tag]  # loaded by Estimators.__missing__

    async def preload(self, tags: Sequence[str]) -> None:
        await anyio.to_thread.run_sync(self.preload_sync, tags)

    def forget(self, tags: Sequence[str]) -> None:
        for tag in tags:
            self.estimators.pop(tag, None)
            self.small_call_s.pop(tag, None)

    def runs_inline(self, tag: str, rows: int) -> bool:
        return (
            rows <= self.inline_max_rows and self.small_call_s.get(tag, 1.0) < self.inline_budget_s
        )

    async def predict(
        self, version: ModelVersion, methods: tuple[str, ...], rows: Array
    ) -> dict[str, Array]:
        if self.runs_inline(version.tag, len(rows)):
            start = time.perf_counter()
            result = predict_one(self.estimators[version.tag], methods, rows)
            self._timed(version.tag, time.perf_counter() - start)
            return unwrap(result)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self.queue.append(((version.tag, methods, rows), future))
        if self.drainer is None:
            self.drainer = loop.create_task(self._drain())
        return unwrap(await future)

    async def _drain(self) -> None:
        try:
            while self.queue:
                batch = self.queue[: self.max_batch_size]
                del self.queue[: self.max_batch_size]
                # calls whose request was abandoned (deadline, client gone) are not run
                batch = [(call, future) for call, future in batch if not future.done()]
                if not batch:
                    continue
                calls = [call for call, _ in batch]
                try:
                    results = await anyio.to_thread.run_sync(self._run, calls)
                except Exception as exc:  # a bug of ours: fail these calls, keep serving
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():  # the client may have gone away
                        future.set_result(result)
        finally:
            self.drainer = None

    def _run(self, calls: list[Call]) -> list[Result]:
        """In the worker thread: one merged predict, timed when it was a lone small call."""
        start = time.perf_counter()
        results = predict_batch(self.estimators, calls)
        if len(calls) == 1 and len(calls[0][2]) <= self.inline_max_rows:
            self._timed(calls[0][0], time.perf_counter() - start)
        self.batch_sizes.observe(len(calls))
        return results

    def _timed(self, tag: str, elapsed: float) -> None:
        """Fold a lone small call's duration into its model's moving average."""
        previous = self.small_call_s.get(tag, elapsed)
        self.small_call_s[tag] = 0.8 * previous + 0.2 * elapsed

    async def ready(self) -> bool:
        return True


class RunnerClient:
    """Calls to the runner service (its ``bentoml.depends`` client).

    Readiness asks the runner, bounded by ``ready_timeout_s``, and remembers a success for
    ``ready_ttl_s`` only: a runner that dies or hangs stops being ready within seconds.
    """

    def __init__(self, runner: Any, *, ready_ttl_s: float = 1.0, ready_timeout_s: float = 2.0):
        self.runner = runner
        self.ready_ttl_s = ready_ttl_s
        self.ready_timeout_s = ready_timeout_s
        self._ready_until = 0.0

    def preload_sync(self, tags: Sequence[str]) -> None:
        """Nothing to do here: each runner worker loads a version it lacks on first use."""

    async def preload(self, tags: Sequence[str]) -> None:
        """Nothing to do here: each runner worker loads a version it lacks on first use."""

    def forget(self, tags: Sequence[str]) -> None:
        """The runner keeps what it loaded (a call may still be on its way)."""

    async def predict(
        self, version: ModelVersion, methods: tuple[str, ...], rows: Array
    ) -> dict[str, Array]:
        call = [(version.tag, methods, rows)]
        try:
            try:
                (result,) = await self.runner.to_async.run(call)
            except aiohttp.ClientConnectionError:
                # NOTE: the runner's server closes idle keep-alive connections; a call racing
                # that close fails before it is read, so it is sent once more (predict has no
                # side effects).
                (result,) = await self.runner.to_async.run(call)
        except BentoMLException as exc:
            if exc.error_code == HTTPStatus.SERVICE_UNAVAILABLE:
                raise Overloaded(
                    f"the runner of model '{version.name}' is overloaded, retry later"
                ) from None
            raise
        return unwrap(result)

    async def ready(self) -> bool:
        if time.monotonic() < self._ready_until:
            return True
        try:
            with anyio.fail_after(self.ready_timeout_s):
                ready = bool(await self.runner.to_async.ready())
        except Exception:  # not up, gone or hung: connection refused, timeout, 503
            return False
        if ready:
            self._ready_until = time.monotonic() + self.ready_ttl_s
        return ready
