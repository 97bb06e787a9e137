"""Execution: merged batches give exactly the unbatched answers; bad calls fail alone; the
in-process executor's inline decision and worker thread; the runner client's retry, overload
mapping and readiness."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import aiohttp
import numpy as np
import pytest
from bentoml.exceptions import BentoMLException
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from adapters.config.settings import Batching
from adapters.execution.inprocess import InProcess
from adapters.execution.runner import RunnerClient
from adapters.execution.runtime import PredictFailed, predict_batch, predict_one
from adapters.models.registry import ModelVersion
from adapters.models.signature import Signature, TensorSpec
from adapters.protocol.errors import BadRequest, NotReady, Overloaded
from adapters.protocol.schemas import Datatype

X, y = load_iris(return_X_y=True)
A = LogisticRegression(max_iter=500).fit(X, y)
B = LogisticRegression(C=0.01, max_iter=500).fit(X, y)
ESTIMATORS = {"iris:a": A, "iris:b": B}
BOTH = ("predict", "predict_proba")


def test_merged_batch_equals_one_call_at_a_time() -> None:
    calls = [
        ("iris:a", BOTH, X[0:3]),
        ("iris:b", BOTH, X[3:4]),
        ("iris:a", BOTH, X[50:51]),
        ("iris:a", ("predict",), X[100:102]),
        ("iris:a", BOTH, X[140:150]),
    ]
    results = predict_batch(ESTIMATORS, calls)
    assert len(results) == len(calls)
    for (tag, methods, rows), result in zip(calls, results, strict=True):
        alone = predict_one(ESTIMATORS[tag], methods, rows)
        assert isinstance(result, dict) and isinstance(alone, dict)
        assert list(result) == list(methods)
        for m in methods:
            np.testing.assert_allclose(result[m], alone[m], rtol=1e-12, atol=1e-15)
            assert len(result[m]) == len(rows)


def test_one_bad_call_in_a_merged_batch_fails_alone() -> None:
    bad = X[0:2].copy()
    bad[0, 0] = np.inf
    results = predict_batch(ESTIMATORS, [("iris:a", BOTH, X[0:2]), ("iris:a", BOTH, bad)])
    assert isinstance(results[0], dict)
    assert isinstance(results[1], PredictFailed)
    assert "infinity" in results[1].message


# --- InProcess: the inline decision, the worker thread, abandoned calls -----------------------


class Switchable:
    """A real estimator whose predict can be made slow, as a heavy version or input would, or be
    held at a gate the test opens (no sleep stands in for "the predict is running")."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.delay_s = 0.0
        self.threads: list[str] = []
        self.clock: FakeClock | None = None  # advanced by delay_s instead of sleeping
        self.hold_at: int | None = None  # the call (1-based) that waits at the gate
        self.entered = threading.Event()  # that call has started
        self.gate = threading.Event()  # ... and goes on once this is set

    def predict(self, rows: np.ndarray) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        if len(self.threads) == self.hold_at:
            self.entered.set()
            assert self.gate.wait(timeout=60), "the test never opened the gate"
        if self.clock is not None:
            self.clock.now += self.delay_s
        elif self.delay_s:
            time.sleep(self.delay_s)
        return np.asarray(self.estimator.predict(rows))


class FakeClock:
    """A clock that moves only when told: timing decisions without timing."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def entered(model: Switchable) -> None:
    """Until the held call of ``model`` has started (in its worker thread)."""
    assert await asyncio.to_thread(model.entered.wait, 60), "the held call never started"


def iris_version(tag: str = "iris:a") -> ModelVersion:
    name, version = tag.split(":")
    signature = Signature((TensorSpec("input-0", Datatype.FP64, (-1, 4)),), ())
    return ModelVersion(name, version, signature, "sklearn_x", datetime(2026, 1, 1, tzinfo=UTC))


def test_quick_models_run_inline_and_a_model_that_turns_slow_leaves_the_loop() -> None:
    model = Switchable(A)
    model.clock = clock = FakeClock()  # a call costs exactly its delay_s
    executor = InProcess({"iris:a": model}, inline_budget_s=0.01, clock=clock)
    version = iris_version()
    main = threading.current_thread().name

    async def scenario() -> None:
        await executor.predict(version, ("predict",), X[:1])  # unknown cost: worker thread
        assert model.threads[-1] != main
        for _ in range(20):
            await executor.predict(version, ("predict",), X[:1])
        assert model.threads[-1] == main  # measured quick: inline
        model.delay_s = 0.2
        await executor.predict(version, ("predict",), X[:1])  # inline, and timed
        await executor.predict(version, ("predict",), X[:1])
        assert model.threads[-1] != main  # slow now: off the event loop again

    asyncio.run(scenario())


def test_big_inputs_never_run_inline() -> None:
    model = Switchable(A)
    executor = InProcess({"iris:a": model}, inline_max_rows=4)
    executor.small_call_s["iris:a"] = 0.0  # known quick
    asyncio.run(executor.predict(iris_version(), ("predict",), X[:50]))
    assert model.threads[-1] != threading.current_thread().name


def test_a_failing_drain_fails_its_calls_and_keeps_serving() -> None:
    class Broken:
        def predict(self, rows: np.ndarray) -> np.ndarray:
            raise RuntimeError("a bug")

    executor = InProcess({"iris:a": Broken(), "iris:b": B})

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="a bug"):
            await executor.predict(iris_version("iris:a"), ("predict",), X[:1])
        out = await executor.predict(iris_version("iris:b"), ("predict",), X[:1])
        assert out["predict"].tolist() == B.predict(X[:1]).tolist()

    asyncio.run(scenario())


def test_an_estimator_refusing_the_input_is_a_400() -> None:
    bad = X[:1].copy()
    bad[0, 0] = np.nan
    with pytest.raises(BadRequest, match="rejected the input"):
        asyncio.run(InProcess({"iris:a": A}).predict(iris_version(), ("predict",), bad))


def test_an_abandoned_call_is_not_run() -> None:
    model = Switchable(A)
    model.hold_at = 1
    executor = InProcess({"iris:a": model})

    async def scenario() -> None:
        first = asyncio.ensure_future(executor.predict(iris_version(), ("predict",), X[:1]))
        await entered(model)  # the first predict is running in the worker thread
        second = asyncio.ensure_future(executor.predict(iris_version(), ("predict",), X[1:2]))
        await asyncio.sleep(0)  # queued behind it
        second.cancel()  # e.g. its deadline passed while it was queued
        model.gate.set()
        await first
        while executor.drainers:  # the drainer has gone past the abandoned call
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert len(model.threads) == 1


# --- RunnerClient: retry, overload, readiness ------------------------------------------------


class FakeRunner:
    """Stands in for the ``bentoml.depends`` client: ``to_async.run`` / ``to_async.ready``
    answer from scripted outcomes (an exception is raised, anything else returned)."""

    def __init__(self, run: list[Any], ready: list[Any] | None = None) -> None:
        self.outcomes = {"run": run, "ready": ready or []}
        self.calls = {"run": 0, "ready": 0}
        self.to_async = self

    async def _next(self, kind: str) -> Any:
        self.calls[kind] += 1
        outcome = self.outcomes[kind].pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome == "hang":
            await asyncio.sleep(3600)
        return outcome

    async def run(self, calls: list[Any]) -> list[Any]:
        return [await self._next("run")]  # type: ignore[no-any-return]

    async def ready(self) -> bool:
        return bool(await self._next("ready"))


OK = {"predict": np.array([0])}


def test_a_call_racing_a_closed_connection_is_sent_once_more() -> None:
    runner = FakeRunner(run=[aiohttp.ServerDisconnectedError(), OK])
    out = asyncio.run(RunnerClient(runner).predict(iris_version(), ("predict",), X[:1]))
    assert out["predict"].tolist() == [0]
    assert runner.calls["run"] == 2


def test_a_runner_that_cannot_be_reached_is_a_503_after_one_retry() -> None:
    runner = FakeRunner(run=[aiohttp.ServerDisconnectedError(), aiohttp.ServerDisconnectedError()])
    with pytest.raises(NotReady, match="cannot be reached") as caught:
        asyncio.run(RunnerClient(runner).predict(iris_version(), ("predict",), X[:1]))
    assert runner.calls["run"] == 2
    assert caught.value.headers == {"Retry-After": "1"}


def test_a_runner_that_dies_while_it_answers_is_a_503() -> None:
    """The runner killed mid-answer: aiohttp's payload error, not a connection error."""
    cut = aiohttp.ClientPayloadError("Response payload is not completed")
    runner = FakeRunner(run=[cut, cut])
    with pytest.raises(NotReady, match="cannot be reached"):
        asyncio.run(RunnerClient(runner).predict(iris_version(), ("predict",), X[:1]))
    assert runner.calls["run"] == 2


def test_big_calls_go_to_the_runner_in_chunks() -> None:
    chunks = [{"predict": np.full(n, i)} for i, n in enumerate([4, 4, 2])]
    runner = FakeRunner(run=list(chunks))
    out = asyncio.run(
        RunnerClient(runner, chunk_rows=4).predict(iris_version(), ("predict",), X[:10])
    )
    assert out["predict"].tolist() == [0] * 4 + [1] * 4 + [2] * 2
    assert runner.calls["run"] == 3


def test_big_in_process_calls_run_in_chunks_and_stop_when_abandoned() -> None:
    model = Switchable(A)
    executor = InProcess({"iris:a": model}, chunk_rows=10)
    whole = asyncio.run(executor.predict(iris_version(), ("predict",), X[:95]))
    assert whole["predict"].tolist() == A.predict(X[:95]).tolist()
    assert len(model.threads) == 10

    async def abandon() -> None:
        task = asyncio.ensure_future(executor.predict(iris_version(), ("predict",), X[:100]))
        await entered(model)  # the third chunk is running
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # cancelled: its call is marked abandoned (a callback of its future)
        model.gate.set()
        while executor.drainers:
            await asyncio.sleep(0.01)

    model.threads.clear()
    model.hold_at = 3
    asyncio.run(abandon())
    assert len(model.threads) == 3  # the chunk running when abandoned finished; no other began


def test_one_model_does_not_wait_behind_another() -> None:
    slow, quick = Switchable(A), Switchable(B)
    slow.hold_at = 1  # busy until the test opens the gate
    executor = InProcess({"iris:a": slow, "iris:b": quick}, inline_budget_s=0.0)

    async def scenario() -> None:
        busy = asyncio.ensure_future(executor.predict(iris_version("iris:a"), ("predict",), X[:1]))
        await entered(slow)
        other = ModelVersion("other", "b", iris_version().signature, "x", iris_version().created)
        executor.estimators["other:b"] = quick
        # answered while the other model's predict still holds its worker (60 s: "no hang")
        out = await asyncio.wait_for(executor.predict(other, ("predict",), X[:1]), 60)
        assert out["predict"].tolist() == B.predict(X[:1]).tolist()
        assert not busy.done()
        slow.gate.set()
        await busy

    asyncio.run(scenario())


def test_an_overloaded_runner_is_a_503() -> None:
    busy = BentoMLException("busy", error_code=HTTPStatus.SERVICE_UNAVAILABLE)
    runner = FakeRunner(run=[busy])
    with pytest.raises(Overloaded, match="overloaded"):
        asyncio.run(RunnerClient(runner).predict(iris_version(), ("predict",), X[:1]))


def test_a_refused_input_on_the_runner_is_a_400() -> None:
    runner = FakeRunner(run=[PredictFailed("Input contains NaN")])
    with pytest.raises(BadRequest, match="NaN"):
        asyncio.run(RunnerClient(runner).predict(iris_version(), ("predict",), X[:1]))


class Hanging(FakeRunner):
    """Its readiness check hangs until the test lets it answer."""

    def __init__(self) -> None:
        super().__init__(run=[])
        self.answer: asyncio.Future[bool] | None = None

    async def ready(self) -> bool:
        self.calls["ready"] += 1
        self.answer = asyncio.get_running_loop().create_future()
        return await self.answer


def test_readiness_is_refreshed_in_the_background_and_never_waits_on_the_runner() -> None:
    runner = FakeRunner(run=[], ready=[True, ConnectionRefusedError(), "hang", True])
    clock = FakeClock()
    client = RunnerClient(
        runner, ready_ttl_s=1, ready_timeout_s=0.1, retry_s=1, retry_timeout_s=0.1, clock=clock
    )

    async def settle() -> None:
        """Let the background check (if any) finish: answer, refusal or its 0.1 s timeout."""
        while client._checking is not None:
            await asyncio.sleep(0.01)

    async def scenario() -> list[bool]:
        states = [await client.ready()]  # the first answer is awaited
        states.append(await client.ready())  # remembered: the runner is not asked
        clock.now += 2
        states.append(await client.ready())  # stale: the last answer, while asked again
        await settle()
        states.append(await client.ready())  # the runner died
        clock.now += 2
        await client.ready()  # asks again: the runner hangs...
        await settle()
        states.append(await client.ready())  # ...and the timeout said not ready
        clock.now += 2
        await client.ready()
        await settle()
        states.append(await client.ready())  # back
        return states

    assert asyncio.run(scenario()) == [True, True, True, False, False, True]
    assert runner.calls["ready"] == 4


def test_a_probe_never_waits_on_a_hanging_runner() -> None:
    runner = Hanging()
    clock = FakeClock()
    client = RunnerClient(runner, ready_ttl_s=1, ready_timeout_s=3600, clock=clock)

    async def scenario() -> None:
        first = asyncio.ensure_future(client.ready())
        while runner.answer is None:
            await asyncio.sleep(0)
        runner.answer.set_result(True)
        assert await first
        clock.now += 2
        # the check now hangs (for up to an hour): the answer is the last one, at once
        assert await asyncio.wait_for(client.ready(), 60) is True
        assert runner.calls["ready"] == 2 and not runner.answer.done()
        assert client._checking is not None
        client._checking.cancel()

    asyncio.run(scenario())


def test_a_runner_not_yet_ready_is_asked_again_soon_and_briefly() -> None:
    """Starting up: its socket accepts and the check hangs until its worker is up; the gateway
    asks again every ``retry_s`` (not ``ready_ttl_s``), each time for ``retry_timeout_s``."""
    runner = FakeRunner(run=[], ready=["hang", ConnectionRefusedError(), True])
    clock = FakeClock()
    client = RunnerClient(
        runner, ready_ttl_s=60, ready_timeout_s=60, retry_s=0.05, retry_timeout_s=0.1, clock=clock
    )

    async def scenario() -> list[bool]:
        # the first answer is awaited: the hang ends at retry_timeout_s (0.1 s), not at
        # ready_timeout_s (60 s); the 30 s bound only says "not the long timeout"
        states = [await asyncio.wait_for(client.ready(), 30)]
        for _ in range(2):
            clock.now += 0.06  # past retry_s, far from ready_ttl_s
            await client.ready()  # asks again in the background
            while client._checking is not None:
                await asyncio.sleep(0.01)
            states.append(await client.ready())
        return states

    assert asyncio.run(scenario()) == [False, False, True]
    assert runner.calls["ready"] == 3


class Counting(Switchable):
    """Records the rows of each predict: a merged batch is one predict of all its calls' rows."""

    def __init__(self, estimator: Any) -> None:
        super().__init__(estimator)
        self.rows: list[int] = []

    def predict(self, rows: np.ndarray) -> np.ndarray:
        self.rows.append(len(rows))
        return super().predict(rows)


def test_each_model_merges_at_most_its_own_max_batch_size() -> None:
    own, shared = Counting(A), Counting(B)
    own.hold_at = shared.hold_at = 1  # the first call runs; the next six queue behind it
    sizes = {"iris": Batching(max_batch_size=2), "other": Batching(max_batch_size=64)}
    executor = InProcess({"iris:a": own, "other:b": shared}, batching=sizes.__getitem__)
    executor.inline_budget_s = 0.0
    other = ModelVersion("other", "b", iris_version().signature, "x", iris_version().created)

    async def scenario() -> None:
        for version, model in ((iris_version(), own), (other, shared)):
            first = asyncio.ensure_future(executor.predict(version, ("predict",), X[:1]))
            await entered(model)
            rest = [
                asyncio.ensure_future(executor.predict(version, ("predict",), X[i : i + 1]))
                for i in range(6)
            ]
            await asyncio.sleep(0)  # all six queued
            model.gate.set()
            await asyncio.gather(first, *rest)

    asyncio.run(scenario())
    assert own.rows == [1, 2, 2, 2]
    assert shared.rows == [1, 6]


def test_a_call_that_waited_past_its_latency_budget_is_a_503() -> None:
    model = Switchable(A)
    model.hold_at = 1
    executor = InProcess({"iris:a": model}, batching=lambda name: Batching(64, max_latency_ms=50))
    executor.inline_budget_s = 0.0

    async def scenario() -> tuple[Any, Any]:
        first = asyncio.ensure_future(executor.predict(iris_version(), ("predict",), X[:1]))
        await entered(model)
        late = asyncio.ensure_future(executor.predict(iris_version(), ("predict",), X[1:2]))
        await asyncio.sleep(0.2)  # queued behind the first for at least 4x its 50 ms budget
        model.gate.set()
        return tuple(await asyncio.gather(first, late, return_exceptions=True))

    first, late = asyncio.run(scenario())
    assert isinstance(first, dict) and list(first["predict"]) == list(A.predict(X[:1]))
    assert isinstance(late, Overloaded) and late.status_code == 503
    assert "OIP_MAX_LATENCY_MS" in late.message and late.headers == {"Retry-After": "1"}


class TwoApiRunner(FakeRunner):
    """A runner with ``run_iris``, the API of a model with batching of its own, beside ``run``."""

    def __init__(self) -> None:
        super().__init__(run=[OK])
        self.outcomes["run_iris"], self.calls["run_iris"] = [OK], 0

    async def run_iris(self, calls: list[Any]) -> list[Any]:
        return [await self._next("run_iris")]  # type: ignore[no-any-return]


def test_the_runner_client_calls_a_models_own_batching_api() -> None:
    runner = TwoApiRunner()
    client = RunnerClient(runner, apis={"iris": "run_iris"})
    asyncio.run(client.predict(iris_version(), ("predict",), X[:1]))
    assert runner.calls == {"run": 0, "ready": 0, "run_iris": 1}
    asyncio.run(client.predict(iris_version("other:b"), ("predict",), X[:1]))
    assert runner.calls == {"run": 1, "ready": 0, "run_iris": 1}
