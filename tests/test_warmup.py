"""Warm-up: a sample stored at save time, one derived where none is, every version answering its
warm-up request before it is served (its statistics show it), and a version whose warm-up fails
UNAVAILABLE with the error while the others serve."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import bentoml
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder
from starlette.testclient import TestClient

from adapters.bento.wiring import build_dataplane
from adapters.config.settings import Settings
from adapters.execution.warmup import TEXT, warmup_input
from adapters.http.routes import build_app
from adapters.models.registry import ModelVersion
from adapters.models.repository import Repository

from .conftest import Store
from .controlled import ROW, delete, save
from .slow_model import picky, tally

X, y = load_iris(return_X_y=True)


def described(tag: str) -> ModelVersion:
    found = Repository([tag.split(":")[0]], "latest", {}).describe(tag)
    assert found is not None
    return found


def test_a_saved_version_keeps_the_first_row_of_its_sample(store: Store) -> None:
    tag = store.tags["iris"][0]
    stored = bentoml.models.get(tag).info.metadata["sample"]
    assert list(stored) == ["input-0"] and np.asarray(stored["input-0"]).shape == (1, 4)
    version = described(tag)
    assert version.sample == stored
    assert not any(p.startswith("sample") for p in version.properties)
    rows = warmup_input(version)
    assert rows.dtype == np.float64 and rows.tolist() == stored["input-0"]
    text = described(store.tags["text"][0])
    assert warmup_input(text).tolist() == text.sample["text"]  # type: ignore[index]


def test_saved_without_a_sample_a_version_keeps_the_one_its_signature_came_from(
    store: Store,
) -> None:
    """What the importers save (python -m adapters.register --from-mlserver, a KServe folder)."""
    from adapters.register import save_estimator

    saved = save_estimator("imported", LogisticRegression(max_iter=500).fit(X, y))
    try:
        assert saved.info.metadata["sample"] == {"input-0": [[0.0, 0.0, 0.0, 0.0]]}
    finally:
        delete(str(saved.tag))


def test_without_a_sample_one_is_derived(store: Store) -> None:
    """Zeros for numbers, a short text for BYTES, the first category of a fitted encoder."""
    plain = LogisticRegression(max_iter=500).fit(X, y)
    frame = pd.DataFrame({"size": [1.0, 2.0, 3.0, 4.0], "city": ["Oslo", "Lima", "Oslo", "Rome"]})
    encoder = ColumnTransformer([("city", OneHotEncoder(), ["city"])], remainder="passthrough")
    columns = Pipeline([("encode", encoder), ("clf", LogisticRegression())])
    columns.fit(frame, [0, 1, 0, 1])
    tags = [
        str(bentoml.sklearn.save_model("derived", plain).tag),
        str(bentoml.sklearn.save_model("derived", columns).tag),
    ]
    try:
        numbers, cities = (described(t) for t in tags)
        assert numbers.sample is None
        assert warmup_input(numbers, plain).tolist() == [[0.0, 0.0, 0.0, 0.0]]
        rows = warmup_input(cities, columns)
        assert rows.to_dict("list") == {"size": [0.0], "city": ["Lima"]}  # sorted categories
        text = described(store.tags["text"][0])
        unsampled = ModelVersion(text.name, text.version, text.signature, "x", text.created)
        assert warmup_input(unsampled).tolist() == [TEXT]
    finally:
        delete(*tags)


@pytest.fixture
def tallied(store: Store, tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    calls = tmp_path / "calls"
    step = FunctionTransformer(tally, kw_args={"path": str(calls)})
    tags = [save("tallied", step, sample=True), save("tallied", step, sample=True, C=0.1)]
    calls.unlink()  # what fitting and saving ran
    yield calls, tags
    delete(*tags)


def test_every_version_answers_its_warm_up_before_it_is_served(
    tallied: tuple[Path, list[str]],
) -> None:
    calls, tags = tallied
    app = build_app()
    app.state.dataplane = build_dataplane(Settings(models=("tallied",)))
    methods = len(described(tags[0]).signature.output_names)  # each runs the pipeline's step
    assert calls.read_text().split() == ["1"] * 2 * methods  # a warm-up row each, nothing else
    with TestClient(app) as client:

        def executions() -> dict[str, int]:
            stats = client.get("/v2/models/tallied/stats").json()["model_stats"]
            return {s["version"]: s["execution_count"] for s in stats}

        versions = [t.split(":")[1] for t in tags]
        assert executions() == dict.fromkeys(versions, 1)
        assert client.post("/v2/models/tallied/infer", json=ROW).status_code == 200
        assert executions() == {versions[0]: 1, versions[1]: 2}
        assert client.post("/v2/repository/models/tallied/unload").json() == {}
        assert client.post("/v2/repository/models/tallied/load").json() == {}
        assert executions() == {versions[0]: 2, versions[1]: 3}  # warmed up again
    assert calls.read_text().split() == ["1"] * 5 * methods  # 4 warm-ups, 1 request


def test_a_version_whose_warm_up_fails_is_unavailable_and_the_others_serve(
    store: Store,
) -> None:
    good = save("picky", FunctionTransformer(picky), sample=True)
    bad = save("picky", FunctionTransformer(picky), sample=False, C=0.1)  # warms up on zeros
    try:
        app = build_app()
        app.state.dataplane = dataplane = build_dataplane(Settings(models=("picky",)))
        with TestClient(app) as client:
            index = {e["version"]: e for e in client.post("/v2/repository/index").json()}
            entry = index[bad.split(":")[1]]
            assert entry["state"] == "UNAVAILABLE" and not entry["loaded"]
            assert "warm-up request failed" in entry["reason"] and "zeros" in entry["reason"]
            assert index[good.split(":")[1]]["state"] == "READY"
            answer = client.post("/v2/models/picky/infer", json=ROW).json()
            assert answer["model_version"] == good.split(":")[1]  # latest is not servable
        assert bad not in dataplane.executors["picky"].resident()
    finally:
        delete(good, bad)
