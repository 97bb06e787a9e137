"""Unload and delete under traffic, in process: calls queued across the change are answered 404
alone and the rest of their batch runs; unload frees the estimators and nothing is loaded at
predict time; every runner worker follows the gateway's view (adapters/execution/worker.py); a
version that failed to load is tried again by the next load."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import bentoml
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import FunctionTransformer
from starlette.testclient import TestClient

from adapters.bento.wiring import build_dataplane
from adapters.config.settings import Settings
from adapters.execution.inprocess import InProcess
from adapters.execution.runner import RunnerClient
from adapters.execution.runtime import NotServed
from adapters.execution.worker import RunnerWorker, View
from adapters.http.routes import build_app
from adapters.models.registry import ModelVersion
from adapters.models.signature import Signature, TensorSpec
from adapters.protocol.errors import NotFound, NotReady
from adapters.protocol.messages import InferRequest, InferResponse, Tensor
from adapters.protocol.schemas import Datatype

from .conftest import Store
from .controlled import ROW, broken, delete, save, save_held

X, y = load_iris(return_X_y=True)
A = LogisticRegression(max_iter=500).fit(X, y)
B = LogisticRegression(C=0.01, max_iter=500).fit(X, y)


def version(tag: str) -> ModelVersion:
    name, number = tag.split(":")
    signature = Signature((TensorSpec("input-0", Datatype.FP64, (-1, 4)),), ())
    return ModelVersion(name, number, signature, "sklearn_x", datetime(2026, 1, 1, tzinfo=UTC))


async def until(condition: Callable[[], bool], deadline_s: float = 30) -> None:
    """Wait for something another thread does (a file, a queue), failing past the deadline."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, "the awaited condition never came"
        await asyncio.sleep(0.01)


class Gated:
    """A real estimator whose predict waits until the test releases it."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.entered, self.release = threading.Event(), threading.Event()
        self.rows: list[int] = []

    def predict(self, rows: np.ndarray) -> np.ndarray:
        self.entered.set()
        assert self.release.wait(30)
        self.rows.append(len(rows))
        return np.asarray(self.estimator.predict(rows))


def test_a_call_queued_for_a_forgotten_version_is_a_404_and_its_batch_runs() -> None:
    a, b = Gated(A), Gated(B)
    executor = InProcess({"iris:a": a, "iris:b": b})

    async def scenario() -> list[Any]:
        running = asyncio.ensure_future(executor.predict(version("iris:b"), ("predict",), X[:1]))
        await asyncio.to_thread(b.entered.wait, 30)
        tags = ["iris:a", "iris:b", "iris:a", "iris:b"]
        queued = [
            executor.predict(version(t), ("predict",), X[i : i + 1]) for i, t in enumerate(tags)
        ]
        calls = [asyncio.ensure_future(c) for c in queued]
        await until(lambda: len(executor.queues.get("iris", [])) == 4)  # behind the running one
        await executor.forget(["iris:a"])
        b.release.set()
        return await asyncio.gather(running, *calls, return_exceptions=True)

    running, *queued = asyncio.run(scenario())
    assert running["predict"].tolist() == B.predict(X[:1]).tolist()
    for i in (0, 2):
        assert isinstance(queued[i], NotFound) and "no longer served" in queued[i].message
    for i in (1, 3):
        assert queued[i]["predict"].tolist() == B.predict(X[i : i + 1]).tolist()
    assert b.rows == [1, 2]  # the two calls for iris:b still ran merged
    assert not a.entered.is_set() and "iris:a" not in executor.estimators  # never reloaded


@pytest.fixture
def held(store: Store, tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    """Two versions of ``held`` (older, newer) whose predict waits while ``gate`` exists."""
    gate = tmp_path / "gate"
    tags = save_held("held", gate, C=0.01), save_held("held", gate)
    yield gate, *tags
    delete(*tags)


@pytest.mark.parametrize("change", ["unload", "delete"])
def test_calls_queued_across_a_change_are_404_and_the_rest_of_the_batch_200(
    held: tuple[Path, str, str], change: str
) -> None:
    """The newer version's predict is held; calls for both versions queue behind it; the model
    is unloaded, or the older version deleted and the model reloaded; then the predict goes on."""
    gate, old, new = held
    dataplane = build_dataplane(Settings(models=("held",)))
    executor = dataplane.executors["held"]
    assert isinstance(executor, InProcess)

    def request(tag: str, i: int) -> InferRequest:
        rows = Tensor("input-0", Datatype.FP64, X[i : i + 1])
        return InferRequest("held", tag.split(":")[1], [rows])

    async def scenario() -> list[Any]:
        gate.touch()
        running = asyncio.ensure_future(dataplane.infer(request(new, 0)))
        await until(Path(f"{gate}.entered").exists)
        tags = [old, new, old, new]
        calls = [asyncio.ensure_future(dataplane.infer(request(t, i))) for i, t in enumerate(tags)]
        await until(lambda: len(executor.queues.get("held", [])) == 4)
        if change == "unload":
            await dataplane.repository.unload("held")
        else:
            delete(old)
            await dataplane.repository.load("held")
        gate.unlink()
        return await asyncio.gather(running, *calls, return_exceptions=True)

    running, *queued = asyncio.run(scenario())
    served = bentoml.sklearn.load_model(new)
    assert isinstance(running, InferResponse)  # it was running: it ends as it began
    for i, answer in enumerate(queued):
        gone = change == "unload" or i in (0, 2)
        if gone:
            assert isinstance(answer, NotFound), answer
        else:
            assert isinstance(answer, InferResponse), answer
            outputs = {o.name: o.data for o in answer.outputs}
            assert outputs["predict"].tolist() == served.predict(X[i : i + 1]).tolist()
    assert old not in executor.estimators  # freed, and not loaded again by the calls
    assert (new in executor.estimators) is (change == "delete")


def test_unload_frees_the_estimators_and_no_call_loads_one(store: Store) -> None:
    app = build_app()
    app.state.dataplane = dataplane = build_dataplane(Settings(models=("iris", "diabetes")))
    executor = dataplane.executors["iris"]
    served = dataplane.registry.resolve("iris", None)
    everything = sorted([*store.tags["iris"], *store.tags["diabetes"]])
    with TestClient(app) as client:
        assert client.get("/v2/repository/loaded").json() == {"inprocess": {"0": everything}}
        assert client.post("/v2/repository/models/iris/unload").json() == {}
        assert client.get("/v2/repository/loaded").json() == {
            "inprocess": {"0": store.tags["diabetes"]}
        }
        gone = client.post("/v2/models/iris/infer", json=ROW)
        assert (gone.status_code, list(gone.json())) == (404, ["error"])
        # a call that resolved the version before the unload reaches the executor after it
        with pytest.raises(NotFound, match="no longer served"):
            asyncio.run(executor.predict(served, ("predict",), X[:1]))
        assert client.get("/v2/repository/loaded").json() == {
            "inprocess": {"0": store.tags["diabetes"]}
        }
        assert client.post("/v2/repository/models/iris/load").json() == {}
        assert client.get("/v2/repository/loaded").json() == {"inprocess": {"0": everything}}
        assert client.post("/v2/models/iris/infer", json=ROW).status_code == 200


@pytest.mark.parametrize("signature", [True, False], ids=["stored signature", "derived"])
def test_a_version_that_failed_to_load_is_tried_again(
    store: Store, caplog: pytest.LogCaptureFixture, signature: bool
) -> None:
    """Broken, a version is UNAVAILABLE with why (its estimator cannot be loaded; or, without a
    stored signature, not even described) and the failure is logged once however often the model
    is loaded; fixed, the next load serves it."""
    good = save("fragile", FunctionTransformer())
    fragile = save("fragile", FunctionTransformer(), C=0.01, signature=signature)
    app = build_app()
    try:
        with broken(fragile), caplog.at_level(logging.WARNING, logger="adapters.models.repository"):
            app.state.dataplane = build_dataplane(Settings(models=("fragile",)))
            with TestClient(app) as client:
                for _ in range(3):
                    assert client.post("/v2/repository/models/fragile/load").json() == {}
                index = client.post("/v2/repository/index").json()
                states = {e["version"]: (e["state"], e["reason"]) for e in index}
                assert states[good.split(":")[1]] == ("READY", "")
                state, reason = states[fragile.split(":")[1]]
                assert state == "UNAVAILABLE" and reason  # what loading it raised
                assert ("could not be loaded" in reason) is signature
                latest = client.post("/v2/models/fragile/infer", json=ROW).json()
                assert latest["model_version"] == good.split(":")[1]
        logged = [r for r in caplog.records if r.name == "adapters.models.repository"]
        assert sum(fragile in r.getMessage() for r in logged) == 1
        with TestClient(app) as client:
            assert client.post("/v2/repository/models/fragile/load").json() == {}
            answer = client.post("/v2/models/fragile/infer", json=ROW).json()
            assert answer["model_version"] == fragile.split(":")[1]
            assert fragile in client.get("/v2/repository/loaded").json()["inprocess"]["0"]
    finally:
        delete(good, fragile)


# --- every runner worker follows the gateway's view ------------------------------------------


@pytest.fixture
def runner_workers(store: Store, tmp_path: Path) -> Iterator[list[RunnerWorker]]:
    """Two workers of one runner (one process here), sharing their directory, each started
    with both iris versions."""
    workers = [
        RunnerWorker(store.tags["iris"], index=i, workers=2, directory=tmp_path, watch_s=0.02)
        for i in (1, 2)
    ]
    yield workers
    for worker in workers:
        worker.stop()


def test_every_runner_worker_frees_what_the_gateway_stopped_serving(
    runner_workers: list[RunnerWorker], store: Store, tmp_path: Path
) -> None:
    one, two = runner_workers
    a, b = store.tags["iris"]
    assert one.loaded() == {1: sorted([a, b]), 2: sorted([a, b])}
    now = time.time_ns()
    assert one.sync(View(1, now, frozenset({b}))) == {}  # e.g. a deleted and reloaded away
    # two received nothing: it applied the view from the directory before the sync answered
    assert set(two.estimators) == {b} and one.loaded() == {1: [b], 2: [b]}

    # a call sent before the change reaches two after it, in a batch with a served version's
    before = View(1, now - 1, frozenset({a, b}))
    results = two.run([(a, ("predict",), X[:1], before), (b, ("predict",), X[:2], before)])
    assert isinstance(results[0], NotServed) and not results[0].retry  # 404
    estimator_b = bentoml.sklearn.load_model(b)
    assert isinstance(results[1], dict)
    assert results[1]["predict"].tolist() == estimator_b.predict(X[:2]).tolist()
    assert set(two.estimators) == {b}  # the older view brought nothing back

    assert two.sync(View(1, now + 1, frozenset({a, b}))) == {}  # loaded again: in both
    assert one.loaded() == {1: sorted([a, b]), 2: sorted([a, b])}
    assert one.sync(View(1, now + 2, frozenset())) == {}  # unloaded
    assert one.loaded() == {1: [], 2: []}
    restarted = RunnerWorker([a, b], index=2, workers=1, directory=tmp_path)
    assert restarted.estimators == {}  # what is served now, not what the store holds


def test_a_view_carried_by_a_call_brings_a_worker_up_to_date(
    runner_workers: list[RunnerWorker], store: Store
) -> None:
    """A worker that missed a sync (the runner could not be reached) follows its next call."""
    _, two = runner_workers
    a = store.tags["iris"][0]
    later = View(7, time.time_ns(), frozenset({a}))  # another gateway worker's first word
    (result,) = two.run([(a, ("predict",), X[:1], later)])
    assert isinstance(result, dict)
    assert set(two.estimators) == {a}  # only what the views say is served now


def test_a_runner_worker_that_cannot_load_a_version_says_why_and_tries_again(
    runner_workers: list[RunnerWorker], store: Store
) -> None:
    one, two = runner_workers
    a = store.tags["iris"][0]
    fragile = save("fragile", FunctionTransformer())
    try:
        now = time.time_ns()
        with broken(fragile):
            failed = one.sync(View(1, now, frozenset({a, fragile})))
            assert list(failed) == [fragile] and "could not be loaded" in failed[fragile]
            (result,) = two.run([(fragile, ("predict",), X[:1], View(1, now, frozenset()))])
            assert isinstance(result, NotServed) and result.retry  # 503: served, not loadable
        assert one.sync(View(1, now + 1, frozenset({a, fragile}))) == {}
        assert one.loaded() == {1: sorted([a, fragile]), 2: sorted([a, fragile])}
    finally:
        delete(fragile)


class Runner:
    """Stands in for the runner's ``bentoml.depends`` client: records the views it is sent and
    those the calls carry; ``failed`` tags cannot be loaded; ``down`` cannot be reached."""

    def __init__(self, failed: dict[str, str] | None = None) -> None:
        self.failed, self.down = failed or {}, False
        self.views: list[View] = []
        self.carried: list[View] = []
        self.to_async = self

    async def served(self, view: View) -> dict[str, str]:
        if self.down:
            raise aiohttp.ClientConnectionError("refused")
        self.views.append(view)
        return {t: r for t, r in self.failed.items() if t in view.tags}

    async def ready(self) -> bool:
        return not self.down

    async def run(self, calls: list[Any]) -> list[Any]:
        self.carried += [call[3] for call in calls]
        return [{"predict": np.array([0])} for _ in calls]


def test_the_runner_client_sends_each_change_and_every_call_carries_it() -> None:
    runner = Runner(failed={"iris:bad": "UnpicklingError: no"})
    client = RunnerClient(runner, gateway=1)
    assert client.preload_sync(["iris:a"]) == {} and runner.views == []  # start-up: noted only

    async def scenario() -> None:
        assert await client.preload(["iris:a", "iris:b", "iris:bad"]) == {
            "iris:bad": "UnpicklingError: no"
        }
        assert [v.tags for v in runner.views] == [
            {"iris:a", "iris:b", "iris:bad"},
            {"iris:a", "iris:b"},  # what failed is dropped again at once
        ]
        assert await client.preload(["iris:a"]) == {} and len(runner.views) == 2  # no change
        await client.forget(["iris:a"])
        assert runner.views[-1].tags == {"iris:b"}
        runner.down = True
        await client.forget(["iris:b"])  # not raised: the unload happens all the same
        with pytest.raises(NotReady, match="cannot be reached"):
            await client.preload(["iris:c"])
        assert client.view.tags == frozenset()
        runner.down = False
        for _ in range(1000):  # readiness, asked again in the background once it failed
            if await client.ready():
                break
            await asyncio.sleep(0.01)
        await client.predict(version("iris:b"), ("predict",), X[:1])
        assert runner.carried[-1] is client.view  # the missed changes go with the next call

    asyncio.run(scenario())
    generations = [v.generation for v in runner.views] + [client.view.generation]
    assert generations == sorted(set(generations))  # only ever grows
