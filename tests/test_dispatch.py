"""The runner's batching decision (``adapters/bento/dispatch.py``), on BentoML's own dispatcher
machinery, in process: a call that finds the API idle leaves at once, whatever the clock says;
calls that arrive during a batch leave together in the next; a call queued past the latency
budget gets BentoML's overload answer. The clock is frozen (``time.time``), so nothing here
depends on how fast the machine is: a dispatcher that waited for company would wait forever.
(BentoML's own sends its first calls one by one to train its estimate, and would fail the
merge below; after a burst it holds a lone call until the clock moves, which is the case the
first test ends with.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest
from bentoml._internal.marshal.dispatcher import CorkDispatcher

from adapters.bento import runners
from adapters.bento.dispatch import EagerDispatcher

HANG_S = 30.0  # only a guard against a hang: every wait below ends on an event
OVERLOADED = "overloaded"
TRAINING_CALLS = 20


class Batches:
    """The API behind a dispatcher: records each batch, and holds it until released."""

    def __init__(self) -> None:
        self.seen: list[list[int]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, calls: Sequence[int]) -> list[int]:
        self.seen.append(list(calls))
        self.started.set()
        await self.release.wait()
        return [c * 10 for c in calls]

    async def next_batch(self) -> list[int]:
        await asyncio.wait_for(self.started.wait(), HANG_S)
        self.started.clear()
        return self.seen[-1]


def api(dispatcher_class: type[CorkDispatcher], batches: Batches, latency_ms: int = 10_000) -> Any:
    dispatcher = dispatcher_class(
        max_latency_in_ms=latency_ms,
        max_batch_size=16,
        fallback=lambda: OVERLOADED,
        get_batch_size=lambda call: 1,
    )
    return dispatcher, dispatcher(batches)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """``time.time`` frozen at ``clock[0]`` (BentoML's dispatcher and ours read it)."""
    now = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    return now


def test_a_lone_call_leaves_at_once_and_calls_during_a_batch_leave_together(
    clock: list[float],
) -> None:
    async def scenario() -> None:
        batches = Batches()
        dispatcher, call = api(EagerDispatcher, batches)
        first = asyncio.ensure_future(call(1))
        assert await batches.next_batch() == [1]  # alone, at once: nothing else was queued
        later = [asyncio.ensure_future(call(n)) for n in (2, 3, 4)]
        await asyncio.sleep(0)  # queued while the first batch runs
        batches.release.set()
        assert await batches.next_batch() == [2, 3, 4]  # merged into the next batch
        assert await asyncio.wait_for(asyncio.gather(first, *later), HANG_S) == [10, 20, 30, 40]
        await after_a_burst(dispatcher, call, batches)
        lone = asyncio.ensure_future(call(5))  # still alone, still at once
        assert await batches.next_batch() == [5]
        assert await asyncio.wait_for(lone, HANG_S) == 50
        dispatcher.shutdown()

    asyncio.run(scenario())


async def after_a_burst(dispatcher: Any, call: Any, batches: Batches) -> None:
    """Past BentoML's training calls (its first dozen go one by one), with the estimate a burst
    of load leaves behind: batches have waited a second on average (BentoML's dispatcher then
    holds a lone call until its wait comes near that)."""
    for n in range(TRAINING_CALLS):
        await asyncio.wait_for(call(100 + n), HANG_S)
    batches.started.clear()
    dispatcher.optimizer.wait = 1.0


def test_a_call_queued_past_the_latency_budget_is_answered_overloaded(
    clock: list[float],
) -> None:
    async def scenario() -> None:
        batches = Batches()
        dispatcher, call = api(EagerDispatcher, batches, latency_ms=200)
        first = asyncio.ensure_future(call(1))
        assert await batches.next_batch() == [1]
        late = asyncio.ensure_future(call(2))
        await asyncio.sleep(0)
        clock[0] += 0.25  # the queued call has waited past its budget
        batches.release.set()
        assert await asyncio.wait_for(asyncio.gather(first, late), HANG_S) == [10, OVERLOADED]
        assert batches.seen == [[1]]  # the late call never ran
        dispatcher.shutdown()

    asyncio.run(scenario())


def test_a_media_type_is_worked_out_once_per_io_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """BentoML builds a root model's JSON schema to answer its media type; cached, that is
    done once per model, and the answers are BentoML's."""
    from _bentoml_sdk.io_models import IOMixin, ensure_io_descriptor

    installed = vars(IOMixin)["mime_type"].__func__  # BentoML's, or cached by an earlier test
    upstream = getattr(installed, "__wrapped__", installed)
    monkeypatch.setattr(IOMixin, "mime_type", classmethod(upstream))  # put back after
    text, mapping = ensure_io_descriptor(str), ensure_io_descriptor(dict)
    expected = [text.mime_type(), mapping.mime_type()]
    assert expected == ["text/plain", "application/json"]
    runners.mime_types_cached()
    runners.mime_types_cached()  # a second install keeps the first
    built = []
    upstream = text.model_json_schema

    def counted(*args: Any, **kwargs: Any) -> Any:
        built.append(1)
        return upstream(*args, **kwargs)

    monkeypatch.setattr(text, "model_json_schema", counted)
    for _ in range(3):
        assert [text.mime_type(), mapping.mime_type()] == expected
    assert len(built) == 1
