"""In-process execution: estimators loaded in the gateway process, with the runner's batching
without its hop, and one model's work never queued behind another's.

A predict known to be quick (its model's recent small calls took under ``inline_budget_s``)
runs right on the event loop: for a tiny model the hop to a worker thread costs more than the
predict. Inline calls are timed too, so a model that turns slow (a heavy version, a costly
input) leaves the loop from its next call on. A call is timed by the CPU time of the thread that
runs it (:func:`time.thread_time`), not by the wall clock: on a busy machine the wall clock also
counts the time the process was descheduled and, in a worker thread, the time spent waiting for
the GIL the event loop holds, so a quick model measured in a thread under load would look slow
and never come back to the loop.

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

The estimators are those of the served versions: ``preload`` loads (and warms up) them,
``forget`` drops them (so unload frees the memory), and a call still queued for a forgotten
version is answered 404 when its batch runs, alone (:class:`~adapters.execution.runtime.NotServed`).
A predict already running keeps its estimator until it ends. Under a memory budget the least
recently used idle ones are evicted (:mod:`adapters.execution.residency`). Shadow calls have a
queue of their own per model and never run inline: they never wait in front of a served call.
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
from adapters.execution.residency import Reloads, Residency
from adapters.execution.runtime import (
    Call,
    Describe,
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
from adapters.protocol.errors import NotFound, NotReady, Overloaded

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
        clock: Callable[[], float] = time.thread_time,
        budget: int = 0,
        describe: Describe | None = None,
    ) -> None:
        self.estimators: dict[str, Any] = dict(estimators or {})  # by tag: those loaded
        self.served: set[str] = set(self.estimators)  # loaded, or evicted under the budget
        self.residency = Residency(budget)
        self.describe = describe  # a tag's version: its warm-up input
        self.reloads = Reloads()
        self.clock = clock  # times small calls (the inline decision): CPU time; a test's own clock
        self.batching = batching  # by model name
        self.inline_max_rows = inline_max_rows
        self.inline_budget_s = inline_budget_s
        self.chunk_rows = chunk_rows
        self.small_call_s: dict[str, float] = {}  # EWMA of lone small calls' duration, per tag
        self.queues: dict[str, list[Queued]] = {}  # by model name
        self.drainers: dict[str, asyncio.Task[None]] = {}
        self.batch_sizes = inprocess_batch_size()

    def preload_sync(self, tags: Sequence[str]) -> dict[str, str]:
        failed: dict[str, str] = {}
        for tag in [t for t in tags if t not in self.served]:  # one at a time: within budget
            loaded, problems = load_estimators([tag], self.describe)
            failed.update(problems)
            self._hold(loaded)
        return failed

    async def preload(self, tags: Sequence[str]) -> dict[str, str]:
        failed: dict[str, str] = {}
        for tag in [t for t in tags if t not in self.served]:
            loaded, problems = await anyio.to_thread.run_sync(load_estimators, [tag], self.describe)
            failed.update(problems)
            self._hold(loaded)
        return failed

    def _hold(self, loaded: dict[str, Any]) -> None:
        """On the loop: these are served and loaded now; evict past the budget."""
        for tag, estimator in loaded.items():
            self.estimators[tag] = estimator
            self.served.add(tag)
            self.residency.touch(tag)
        self._trim()

    def _trim(self) -> None:
        evicted = self.residency.surplus(self.estimators)
        for tag in evicted:
            self.estimators.pop(tag, None)
            self.small_call_s.pop(tag, None)
        if evicted:
            release_memory()

    async def forget(self, tags: Sequence[str]) -> None:
        for tag in tags:
            self.served.discard(tag)
            self.estimators.pop(tag, None)
            self.small_call_s.pop(tag, None)
            self.residency.forget(tag)
        if tags:
            release_memory()

    def resident(self) -> set[str]:
        return set(self.estimators)

    async def loaded(self) -> dict[str, list[str]]:
        from bentoml import server_context

        return {str(server_context.worker_index or 0): sorted(self.estimators)}

    def runs_inline(self, tag: str, rows: int) -> bool:
        return (
            rows <= self.inline_max_rows and self.small_call_s.get(tag, 1.0) < self.inline_budget_s
        )

    async def predict(
        self, version: ModelVersion, methods: tuple[str, ...], rows: Array, *, shadow: bool = False
    ) -> dict[str, Array]:
        tag = version.tag
        self.residency.begin(tag)  # not evicted while in flight or queued
        try:
            estimator = self.estimators.get(tag)
            if estimator is None:
                if tag not in self.served:  # forgotten between resolving and here
                    return unwrap(not_served(tag))
                estimator = await self._reload(version)
            return await self._predict(version, estimator, methods, rows, shadow)
        finally:
            self.residency.end(tag)
            if self.residency.over(self.estimators):
                self._trim()

    async def _reload(self, version: ModelVersion) -> Any:
        """An evicted version's estimator, loaded again, waited for at most the model's
        batching latency budget."""
        wait_s = self.batching(version.name).max_latency_ms / 1000
        return await self.reloads.wait(version.tag, lambda: self._load_again(version.tag), wait_s)

    async def _load_again(self, tag: str) -> Any:
        loaded, failed = await anyio.to_thread.run_sync(load_estimators, [tag], self.describe)
        if tag in failed:
            raise NotReady(f"version '{tag}' could not be loaded again: {failed[tag]}")
        if tag not in self.served:  # unloaded while it loaded
            raise NotFound(not_served(tag).message)
        self._hold(loaded)  # it is busy: the others are evicted, if any must be
        return loaded[tag]

    async def _predict(
        self,
        version: ModelVersion,
        estimator: Any,
        methods: tuple[str, ...],
        rows: Array,
        shadow: bool,
    ) -> dict[str, Array]:
        if not shadow and self.runs_inline(version.tag, len(rows)):
            start = self.clock()
            result = predict_one(estimator, methods, rows)
            self._timed(version.tag, self.clock() - start)
            return unwrap(result)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        abandoned = threading.Event()
        future.add_done_callback(lambda f: abandoned.set() if f.cancelled() else None)
        lane = f"{version.name}\0shadow" if shadow else version.name
        self.queues.setdefault(lane, []).append(
            ((version.tag, methods, rows), future, abandoned, time.monotonic())
        )
        if lane not in self.drainers:
            self.drainers[lane] = loop.create_task(self._drain(lane, version.name))
        return unwrap(await future)

    async def _drain(self, lane: str, name: str) -> None:
        queue = self.queues[lane]
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
            del self.drainers[lane]

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
        if len(calls) == 1 and len(calls[0][2]) > self.chunk_rows:
            results = [self._chunked(calls[0], batch[0][2])]
        else:
            # NOTE: a merged predict of small calls costs at least what one of them would alone:
            # timing it too lets a model that left the loop (one slow call) come back even when
            # concurrent calls never leave it a lone one
            results = predict_batch(self.estimators, calls, timed=self)
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

    def took(self, tag: str, largest_call_rows: int, seconds: float) -> None:
        """A predict on a worker thread (:func:`predict_batch`): timed when its calls are small."""
        if largest_call_rows <= self.inline_max_rows:
            self._timed(tag, seconds)

    def _timed(self, tag: str, elapsed: float) -> None:
        """Fold a small call's duration into its model's moving average."""
        previous = self.small_call_s.get(tag, elapsed)
        self.small_call_s[tag] = 0.8 * previous + 0.2 * elapsed

    async def ready(self) -> bool:
        return True
