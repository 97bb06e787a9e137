"""Execution: merged batches give exactly the unbatched answers; bad calls fail alone; the
in-process executor's inline decision and worker thread; the runner client's retry, overload
mapping and readiness."""

from __future__ import annotations

import asyncio
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

from adapters.config import Batching
from adapters.errors import BadRequest, NotReady, Overloaded
from adapters.inprocess import InProcess
from adapters.registry import ModelVersion
from adapters.runner import RunnerClient
from adapters.runtime import PredictFailed, predict_batch, predict_one
from adapters.schemas import Datatype
from adapters.signature import Signature, TensorSpec

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
    """A real estimator whose predict can be made slow, as a heavy version or input would."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.delay_s = 0.0
        self.threads: list[str] = []

    def predict(self, rows: np.ndarray) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        if self.delay_s:
            time.sleep(self.delay_s)
        return np.asarray(self.estimator.predict(rows))


def iris_version(tag: str = "iris:a") -> ModelVersion:
    name, version = tag.split(":")
    signature = Signature((TensorSpec("input-0", Datatype.FP64, (-1, 4)),), ())
    return ModelVersion(name, version, signature, "sklearn_x", datetime(2026, 1, 1, tzinfo=UTC))


def test_quick_models_run_inline_and_a_model_that_turns_slow_leaves_the_loop() -> None:
    model = Switchable(A)
    executor = InProcess({"iris:a": model}, inline_budget_s=0.01)  # generous: CI is noisy
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
    model.delay_s = 0.2
    executor = InProcess({"iris:a": model})

    async def scenario() -> None:
        first = asyncio.ensure_future(executor.predict(iris_version(), ("predict",), X[:1]))
        await asyncio.sleep(0.05)  # the first predict is running in the worker thread
        second = asyncio.ensure_future(executor.predict(iris_version(), ("predict",), X[1:2]))
        await asyncio.sleep(0)
        second.cancel()  # e.g. its deadline passed while it was queued
        await first
        await asyncio.sleep(0.05)

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
    model.delay_s = 0.05
    executor = InProcess({"iris:a": model}, chunk_rows=10)
    whole = asyncio.run(executor.predict(iris_version(), ("predict",), X[:95]))
    assert whole["predict"].tolist() == A.predict(X[:95]).tolist()
    assert len(model.threads) == 10

    async def abandon() -> None:
        task = asyncio.ensure_future(executor.predict(iris_version(), ("predict",), X[:100]))
        await asyncio.sleep(0.12)  # two or three chunks in
        task.cancel()
        await asyncio.sleep(0.2)

    model.threads.clear()
    asyncio.run(abandon())
    assert 1 <= len(model.threads) <= 4  # stopped long before the 10 chunks


def test_one_model_does_not_wait_behind_another() -> None:
    slow, quick = Switchable(A), Switchable(B)
    slow.delay_s = 0.5
    executor = InProcess({"iris:a": slow, "iris:b": quick}, inline_budget_s=0.0)

    async def scenario() -> float:
        busy = asyncio.ensure_future(executor.predict(iris_version("iris:a"), ("predict",), X[:1]))
        await asyncio.sleep(0.05)
        other = ModelVersion("other", "b", iris_version().signature, "x", iris_version().created)
        executor.estimators["other:b"] = quick
        start = time.perf_counter()
        await executor.predict(other, ("predict",), X[:1])
        elapsed = time.perf_counter() - start
        await busy
        return elapsed

    assert asyncio.run(scenario()) < 0.3  # not the 0.45 s left of the other model's predict


def test_an_overloaded_runner_is_a_503() -> None:
    busy = BentoMLException("busy", error_code=HTTPStatus.SERVICE_UNAVAILABLE)
    runner = FakeRunner(run=[busy])
    with pytest.raises(Overloaded, match="overloaded"):
        asyncio.run(RunnerClient(runner).predict(iris_version(), ("predict",), X[:1]))


def test_a_refused_input_on_the_runner_is_a_400() -> None:
    runner = FakeRunner(run=[PredictFailed("Input contains NaN")])
    with pytest.raises(BadRequest, match="NaN"):
        asyncio.run(RunnerClient(runner).predict(iris_version(), ("predict",), X[:1]))


def test_readiness_is_refreshed_in_the_background_and_never_waits_on_the_runner() -> None:
    runner = FakeRunner(run=[], ready=[True, ConnectionRefusedError(), "hang", True])
    client = RunnerClient(
        runner, ready_ttl_s=0.1, ready_timeout_s=0.1, retry_s=0.1, retry_timeout_s=0.1
    )

    async def answer() -> tuple[bool, float]:
        start = time.perf_counter()
        state = await client.ready()
        return state, time.perf_counter() - start

    async def scenario() -> list[bool]:
        states = [(await answer())[0]]  # the first answer is awaited
        states.append((await answer())[0])  # remembered
        await asyncio.sleep(0.15)
        stale, waited = await answer()  # the last answer, while the runner is asked again
        assert waited < 0.05
        states.append(stale)
        await asyncio.sleep(0.05)
        states.append((await answer())[0])  # the runner died
        await asyncio.sleep(0.15)
        await answer()  # asks again: the runner hangs...
        await asyncio.sleep(0.15)
        states.append((await answer())[0])  # ...and the timeout said not ready
        await asyncio.sleep(0.15)
        await answer()
        await asyncio.sleep(0.05)
        states.append((await answer())[0])  # back
        return states

    assert asyncio.run(scenario()) == [True, True, True, False, False, True]
    assert runner.calls["ready"] == 4


def test_a_runner_not_yet_ready_is_asked_again_soon_and_briefly() -> None:
    """Starting up: its socket accepts and the check hangs until its worker is up; the gateway
    asks again every ``retry_s`` (not ``ready_ttl_s``), each time for ``retry_timeout_s``."""
    runner = FakeRunner(run=[], ready=["hang", ConnectionRefusedError(), True])
    client = RunnerClient(
        runner, ready_ttl_s=60, ready_timeout_s=60, retry_s=0.05, retry_timeout_s=0.1
    )

    async def scenario() -> list[bool]:
        start = time.perf_counter()
        states = [await client.ready()]  # the first answer is awaited: the hang times out
        assert time.perf_counter() - start < 0.5
        for _ in range(2):
            await asyncio.sleep(0.06)
            await client.ready()  # asks again in the background
            await asyncio.sleep(0.02)
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
    own.delay_s = shared.delay_s = 0.2
    sizes = {"iris": Batching(max_batch_size=2), "other": Batching(max_batch_size=64)}
    executor = InProcess({"iris:a": own, "other:b": shared}, batching=sizes.__getitem__)
    executor.inline_budget_s = 0.0
    other = ModelVersion("other", "b", iris_version().signature, "x", iris_version().created)

    async def scenario() -> None:
        for version in (iris_version(), other):
            first = asyncio.ensure_future(executor.predict(version, ("predict",), X[:1]))
            await asyncio.sleep(0.05)  # the first call runs; the next six queue behind it
            rest = [executor.predict(version, ("predict",), X[i : i + 1]) for i in range(6)]
            await asyncio.gather(first, *rest)

    asyncio.run(scenario())
    assert own.rows == [1, 2, 2, 2]
    assert shared.rows == [1, 6]


def test_a_call_that_waited_past_its_latency_budget_is_a_503() -> None:
    model = Switchable(A)
    model.delay_s = 0.3
    executor = InProcess({"iris:a": model}, batching=lambda name: Batching(64, max_latency_ms=50))
    executor.inline_budget_s = 0.0

    async def scenario() -> tuple[Any, Any]:
        first = asyncio.ensure_future(executor.predict(iris_version(), ("predict",), X[:1]))
        await asyncio.sleep(0.05)
        late = executor.predict(iris_version(), ("predict",), X[1:2])
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
