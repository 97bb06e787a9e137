"""The memory budget (OIP_MAX_LOADED_VERSIONS), in process and on the runner's client: the least
recently used idle versions are evicted and still served (loaded again, warm-up included, on
their next call); a version with calls in flight or queued is never evicted; a reload that takes
too long is a 503 with Retry-After; the index says what is loaded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import load_iris
from sklearn.preprocessing import FunctionTransformer
from starlette.testclient import TestClient

from adapters.bento.wiring import build_dataplane
from adapters.config.settings import Batching, Settings
from adapters.execution.inprocess import InProcess
from adapters.execution.residency import Residency
from adapters.execution.runner import RunnerClient
from adapters.http.routes import build_app
from adapters.protocol.errors import NotReady

from .conftest import Store
from .controlled import ROW, delete, save
from .test_unload import Gated, Runner, held, until, version  # noqa: F401 (held: a fixture)

X, y = load_iris(return_X_y=True)


def test_the_least_recently_used_idle_tags_are_evicted() -> None:
    residency = Residency(2)
    for tag in ("a", "b", "c"):
        residency.touch(tag)
    assert residency.surplus({"a", "b", "c"}) == ["a"]
    residency.begin("a")  # in flight: never evicted
    assert residency.surplus({"a", "b", "c"}) == ["b"]
    residency.begin("b")
    assert residency.surplus({"a", "b", "c"}) == ["c"]
    residency.begin("c")
    assert residency.surplus({"a", "b", "c"}) == []  # over budget until a call ends
    residency.end("a")
    assert residency.surplus({"a", "b", "c"}) == ["a"]
    assert Residency(0).surplus({"a", "b", "c"}) == []  # no limit


@pytest.fixture(scope="module")
def three(store: Store) -> Iterator[list[str]]:
    """Three versions of ``budget``, oldest first."""
    tags = [save("budget", FunctionTransformer(), C=c) for c in (1.0, 0.1, 0.01)]
    yield tags
    delete(*tags)


def test_alternating_over_three_versions_with_two_loaded(three: list[str]) -> None:
    settings = Settings(models=("budget",), max_loaded_versions=2)
    app = build_app()
    app.state.dataplane = dataplane = build_dataplane(settings)
    executor = dataplane.executors["budget"]
    assert isinstance(executor, InProcess)
    assert executor.resident() == set(three[1:])  # the newest, at start-up
    with TestClient(app) as client:
        index = client.post("/v2/repository/index").json()
        assert {e["version"]: e["loaded"] for e in index} == {
            t.split(":")[1]: t != three[0] for t in three
        }
        assert "evicted" in next(e["reason"] for e in index if not e["loaded"])
        for i in range(30):
            number = three[i % 3].split(":")[1]
            answer = client.post(f"/v2/models/budget/versions/{number}/infer", json=ROW)
            assert (answer.status_code, answer.json()["model_version"]) == (200, number)
            assert len(executor.resident()) <= 2
        loaded = client.get("/v2/repository/loaded").json()["inprocess"]["0"]
        assert loaded == sorted(three[i % 3] for i in (28, 29))  # the two used last
        stats = client.get("/v2/models/budget/stats").json()["model_stats"]
        assert all(s["execution_count"] == 1 + 10 for s in stats)  # start-up warm-up + calls


def test_a_version_in_flight_is_never_evicted(three: list[str], store: Store) -> None:
    """Budget 1: an iris call is held in its predict while calls of two other versions (another
    model: its own queue) each load their version again; iris stays loaded throughout."""
    import bentoml

    a, (_, b, c) = store.tags["iris"][0], three
    gated = Gated(bentoml.sklearn.load_model(a))
    executor = InProcess({a: gated}, budget=1)
    executor.served |= {b, c}  # served, evicted

    async def scenario() -> None:
        running = asyncio.ensure_future(executor.predict(version(a), ("predict",), X[:1]))
        await asyncio.to_thread(gated.entered.wait, 30)
        for tag in (b, c, b):
            answer = await executor.predict(version(tag), ("predict",), X[:2])
            expected = bentoml.sklearn.load_model(tag).predict(X[:2])
            assert answer["predict"].tolist() == expected.tolist()
            assert executor.resident() == {a}  # the other evicted once its call ended
        gated.release.set()
        assert (await running)["predict"].tolist() == gated.estimator.predict(X[:1]).tolist()

    asyncio.run(scenario())
    assert executor.resident() == {a}


def test_a_reload_that_takes_too_long_is_a_503_and_then_serves(
    held: tuple[Path, str, str],  # noqa: F811
) -> None:
    """The older version is evicted; its reload's warm-up is held on the gate: the call waits
    its model's batching latency budget, is refused with Retry-After, and the load goes on."""
    gate, old, new = held
    budget = Batching(max_latency_ms=300)
    settings = Settings(models=("held",), max_loaded_versions=1, batchings={"held": budget})
    dataplane = build_dataplane(settings)
    executor = dataplane.executors["held"]
    assert executor.resident() == {new}
    served = dataplane.registry.resolve("held", old.split(":")[1])

    async def scenario() -> None:
        gate.touch()
        with pytest.raises(NotReady) as refused:
            await executor.predict(served, ("predict",), X[:1])
        assert refused.value.headers == {"Retry-After": "1"}
        assert "OIP_MAX_LATENCY_MS" in refused.value.message
        await until(Path(f"{gate}.entered").exists)
        gate.unlink()
        await until(lambda: old in executor.resident())  # the load went on
        answer = await executor.predict(served, ("predict",), X[:1])
        assert answer["predict"].shape == (1,)

    asyncio.run(scenario())
    assert executor.resident() == {old}


def test_the_runner_client_keeps_its_view_within_the_budget() -> None:
    """On the runner, evicting is a view without the version; its next call sends one with it."""
    runner = Runner()
    client = RunnerClient(runner, gateway=1, budget=2, batching=lambda name: Batching())
    assert client.preload_sync(["iris:a", "iris:b", "iris:c"]) == {}
    assert client.view.tags == {"iris:b", "iris:c"}  # the newest, as the runner's workers hold

    async def scenario() -> None:
        for tag in ["iris:a", "iris:b", "iris:c"] * 3:
            await client.predict(version(tag), ("predict",), X[:1])
            assert tag in runner.carried[-1].tags and len(client.view.tags) <= 2
        assert await client.preload(["iris:d"]) == {}  # a new version: loaded, then the LRU out
        assert client.view.tags == {"iris:c", "iris:d"} and "iris:d" in runner.views[-2].tags
        await client.forget(["iris:a"])
        assert client.served == {"iris:b", "iris:c", "iris:d"}

    asyncio.run(scenario())


class Slow(Runner):
    """The fake runner of test_unload, holding every call of ``iris:a`` until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.holding = False

    async def run(self, calls: list[Any]) -> list[Any]:
        if any(call[0] == "iris:a" for call in calls):
            self.holding = True
            await self.release.wait()
        return await super().run(calls)


def test_a_version_on_its_way_to_the_runner_stays_in_the_view() -> None:
    runner = Slow()
    client = RunnerClient(runner, gateway=1, budget=1, batching=lambda name: Batching())
    client.preload_sync(["iris:a", "iris:b"])
    assert client.view.tags == {"iris:b"}

    async def scenario() -> None:
        running = asyncio.ensure_future(client.predict(version("iris:a"), ("predict",), X[:1]))
        await until(lambda: runner.holding)  # brought back into the view, and held there
        for _ in range(3):
            await client.predict(version("iris:b"), ("predict",), X[:1])
            assert client.view.tags == {"iris:a", "iris:b"}  # a in flight: over budget
        runner.release.set()
        await running
        await until(lambda: len(client.view.tags) == 1)  # evicted once its call ended

    asyncio.run(scenario())


def test_a_runner_worker_starts_with_the_newest_within_the_budget(
    three: list[str], tmp_path: Path
) -> None:
    from adapters.execution.worker import RunnerWorker
    from adapters.models.repository import Repository

    describe = Repository(["budget"], "latest", {}).describe
    worker = RunnerWorker(
        three, index=1, workers=1, directory=tmp_path, budget=2, describe=describe
    )
    assert set(worker.estimators) == set(three[1:]) and worker.loaded() == {1: sorted(three[1:])}


def test_a_call_carrying_a_view_still_being_applied_waits_for_its_load(
    held: tuple[Path, str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    """A version brought back into the view (a reload) is loading in the sync's thread, its
    warm-up held on the gate; a call carrying that view reaches the worker meanwhile: it finds
    the view applied and waits for the load instead of answering 404."""
    from adapters.execution.worker import RunnerWorker, View
    from adapters.models.repository import Repository

    from .traffic import Recorded

    gate, _, new = held
    describe = Repository(["held"], "latest", {}).describe
    worker = RunnerWorker([], index=1, workers=1, directory=tmp_path / "runner", describe=describe)
    view = View(1, 1, frozenset({new}))
    gate.touch()
    syncing = Recorded(lambda: worker.sync(view))
    syncing.start()
    assert asyncio.run(until_file(Path(f"{gate}.entered")))
    results: list[Any] = []
    calling = Recorded(lambda: results.extend(worker.run([(new, ("predict",), X[:1], view)])))
    calling.start()
    calling.join(0.5)
    assert calling.is_alive()  # waiting for the load (and answered by it below), not a 404
    gate.unlink()
    for thread in (syncing, calling):
        thread.join(60)
        assert thread.error is None, thread.error
    assert isinstance(results[0], dict) and results[0]["predict"].shape == (1,)


async def until_file(path: Path) -> bool:
    await until(path.exists)
    return True
