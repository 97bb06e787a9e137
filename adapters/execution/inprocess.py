"""In-process execution: estimators loaded in the gateway process, with the runner's batching
without its hop, and one model's work never queued behind another's.

A predict known to be quick (its model's recent small calls took under ``inline_budget_s``)
runs right on the event loop: for a tiny model the hop to a worker thread costs more than the
predict. Inline calls are timed too, so a model that turns slow (a heavy version, a costly
input) leaves the loop from its next call on.

Every other call joins its model's queue, drained on a worker thread: calls that arrive while a
predict is running are merged into the next one (:func:`~adapters.execution.runtime.predict_batch`),
so concurrent requests neither fight over the GIL in many threads nor pay one predict's fixed cost
each. Each model has its own queue and drainer: a long predict of one model delays another
model's calls only by its share of the CPU (and the GIL), never by its whole duration. A lone
call of more than ``chunk_rows`` rows runs chunk by chunk, and stops between chunks once its
request is abandoned (deadline, client gone).

Batching is per model (:class:`~adapters.config.Batching`): at most ``max_batch_size`` calls in
one predict, and a call that waited ``max_latency_ms`` for its turn is refused with a 503 (retry
later) instead of running late, as the runner's batching does.

The estimators are exactly those of the served versions: ``preload`` loads them, ``forget``
drops them (so unload frees the memory), and a call still queued for a forgotten version is
answered 404 when its batch runs, alone (:class:`~adapters.execution.runtime.NotServed`). A predict
already running keeps its estimator until it ends.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from adapters.config.settings import Batching
from adapters.execution.metrics import inprocess_batch_size
from adapters.execution.runtime import (
    Call,
    PredictFailed,
    Result,
    join_outputs,
    load_estimators,
    not_served,
    predict_batch,
    predict_one,
    release_memory,
    row_chunks,
    unwrap,
)
from adapters.models.registry import ModelVersion
from adapters.protocol.codecs import Array
from adapters.protocol.errors import Overloaded

Queued = tuple[Call, "asyncio.Future[Result]", threading.Event, float]  # + when queued


class Abandoned(Exception):
    """The request of a chunked call was abandoned: the remaining chunks are not run."""


class InProcess:
    """The executor of the models placed in process (see the module docstring)."""

    placement = "inprocess"

    def __init__(
        self,
        estimators: dict[str, Any] | None = None,
        *,
        batching: Callable[[str], Batching] = lambda name: Batching(),
        inline_max_rows: int = 16,
        inline_budget_s: float = 0.0005,
        chunk_rows: int = 1024,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.estimators: dict[str, Any] = dict(estimators or {})  # by tag: the served versions
        self.clock = clock  # times small calls (the inline decision); a test's own clock
        self.batching = batching  # by model name
        self.inline_max_rows = inline_max_rows
        self.inline_budget_s = inline_budget_s
        self.chunk_rows = chunk_rows
        self.small_call_s: dict[str, float] = {}  # EWMA of lone small calls' duration, per tag
        self.queues: dict[str, list[Queued]] = {}  # by model name
        self.drainers: dict[str, asyncio.Task[None]] = {}
        self.batch_sizes = inprocess_batch_size()

    def preload_sync(self, tags: Sequence[str]) -> dict[str, str]:
        loaded, failed = load_estimators([t for t in tags if t not in self.estimators])
        self.estimators.update(loaded)
        return failed

    async def preload(self, tags: Sequence[str]) -> dict[str, str]:
        if all(tag in self.estimators for tag in tags):
            return {}
        return await anyio.to_thread.run_sync(self.preload_sync, tags)

    async def forget(self, tags: Sequence[str]) -> None:
        for tag in tags:
            self.estimators.pop(tag, None)
            self.small_call_s.pop(tag, None)
        if tags:
            release_memory()

    async def loaded(self) -> dict[str, list[str]]:
        from bentoml import server_context

        return {str(server_context.worker_index or 0): sorted(self.estimators)}

    def runs_inline(self, tag: str, rows: int) -> bool:
        return (
            rows <= self.inline_max_rows and self.small_call_s.get(tag, 1.0) < self.inline_budget_s
        )

    async def predict(
        self, version: ModelVersion, methods: tuple[str, ...], rows: Array
    ) -> dict[str, Array]:
        estimator = self.estimators.get(version.tag)
        if estimator is None:  # forgotten between resolving and here
            return unwrap(not_served(version.tag))
        if self.runs_inline(version.tag, len(rows)):
            start = self.clock()
            result = predict_one(estimator, methods, rows)
            self._timed(version.tag, self.clock() - start)
            return unwrap(result)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        abandoned = threading.Event()
        future.add_done_callback(lambda f: abandoned.set() if f.cancelled() else None)
        self.queues.setdefault(version.name, []).append(
            ((version.tag, methods, rows), future, abandoned, time.monotonic())
        )
        if version.name not in self.drainers:
            self.drainers[version.name] = loop.create_task(self._drain(version.name))
        return unwrap(await future)

    async def _drain(self, name: str) -> None:
        queue = self.queues[name]
        batching = self.batching(name)
        try:
            while queue:
                batch = queue[: batching.max_batch_size]
                del queue[: batching.max_batch_size]
                # calls whose request was abandoned (deadline, client gone) are not run
                batch = [item for item in batch if not item[1].done()]
                batch = self._within_budget(name, batch, batching.max_latency_ms / 1000)
                if not batch:
                    continue
                try:
                    results = await anyio.to_thread.run_sync(self._run, batch)
                except Exception as exc:  # a bug of ours, or abandoned: fail these calls
                    for _, future, _, _ in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future, _, _), result in zip(batch, results, strict=True):
                    if not future.done():  # the client may have gone away
                        future.set_result(result)
        finally:
            del self.drainers[name]

    @staticmethod
    def _within_budget(name: str, batch: list[Queued], budget_s: float) -> list[Queued]:
        """The calls that have not waited past the latency budget; the others fail with 503."""
        now = time.monotonic()
        late = [item for item in batch if now - item[3] > budget_s]
        for _, future, _, _ in late:
            future.set_exception(
                Overloaded(
                    f"model '{name}' is overloaded: a call waited over its batching latency "
                    f"budget ({budget_s * 1000:g} ms, OIP_MAX_LATENCY_MS), retry later"
                )
            )
        return [item for item in batch if not item[1].done()] if late else batch

    def _run(self, batch: list[Queued]) -> list[Result]:
        """In a worker thread: one merged predict, or a lone big call chunk by chunk."""
        calls = [call for call, _, _, _ in batch]
        start = self.clock()
        if len(calls) == 1 and len(calls[0][2]) > self.chunk_rows:
            results = [self._chunked(calls[0], batch[0][2])]
        else:
            results = predict_batch(self.estimators, calls)
        if len(calls) == 1 and len(calls[0][2]) <= self.inline_max_rows:
            self._timed(calls[0][0], self.clock() - start)
        self.batch_sizes.observe(len(calls))
        return results

    def _chunked(self, call: Call, abandoned: threading.Event) -> Result:
        tag, methods, rows = call
        estimator = self.estimators.get(tag)  # once: a running call keeps it to the end
        if estimator is None:
            return not_served(tag)
        parts: list[dict[str, Array]] = []
        for chunk in row_chunks(rows, self.chunk_rows):
            if abandoned.is_set():
                raise Abandoned
            part = predict_one(estimator, methods, chunk)
            if isinstance(part, PredictFailed):
                return part
            parts.append(part)
        return join_outputs(parts)

    def _timed(self, tag: str, elapsed: float) -> None:
        """Fold a lone small call's duration into its model's moving average."""
        previous = self.small_call_s.get(tag, elapsed)
        self.small_call_s[tag] = 0.8 * previous + 0.2 * elapsed

    async def ready(self) -> bool:
        return True
