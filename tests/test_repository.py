"""The repository extension in process: index, load (new versions, moved aliases), unload,
versions that cannot be served; statistics and classification over the same data plane."""

from __future__ import annotations

from collections.abc import Iterator

import bentoml
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from starlette.testclient import TestClient

import train
from adapters.bento.wiring import build_dataplane
from adapters.config.settings import Settings
from adapters.http.routes import build_app
from adapters.protocol.schemas import RepositoryModel, StatisticsResponse

from .conftest import Store

ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    app = build_app()
    app.state.dataplane = build_dataplane(Settings(models=("iris", "diabetes")))
    with TestClient(app) as c:
        yield c


def versions(store: Store, name: str) -> set[str]:
    return {t.split(":")[1] for t in store.tags[name]}


def test_index_lists_every_servable_version(client: TestClient, store: Store) -> None:
    index = client.post("/v2/repository/index").json()
    for entry in index:
        RepositoryModel.model_validate(entry)
    assert {(e["name"], e["version"]) for e in index} == {
        ("iris", v) for v in versions(store, "iris")
    } | {("diabetes", v) for v in versions(store, "diabetes")}
    assert {e["state"] for e in index} == {"READY"}
    assert client.post("/v2/repository/index", json={"ready": True}).json() == index
    bad = client.post("/v2/repository/index", json={"ready": "maybe"})
    assert (bad.status_code, list(bad.json())) == (400, ["error"])


def test_load_serves_a_new_version_and_moves_latest(client: TestClient, store: Store) -> None:
    before = client.get("/v2/models/iris").json()["versions"]
    newer = train.train("iris", {"C": 0.3}, seed=2, test_size=0.2)
    try:
        assert client.get(f"/v2/models/iris/versions/{newer.tag.version}").status_code == 404
        assert client.post("/v2/repository/models/iris/load").json() == {}
        meta = client.get("/v2/models/iris").json()
        assert meta["versions"][0] == newer.tag.version
        assert sorted(meta["versions"]) == sorted([*before, newer.tag.version])
        answer = client.post("/v2/models/iris/infer", json=ROW).json()
        assert answer["model_version"] == newer.tag.version
    finally:
        bentoml.models.delete(str(newer.tag))
    client.post("/v2/repository/models/iris/load")  # the store no longer has it
    assert client.get("/v2/models/iris").json()["versions"] == before


def test_unload_then_load(client: TestClient) -> None:
    assert client.post("/v2/repository/models/iris/unload").json() == {}
    gone = client.post("/v2/models/iris/infer", json=ROW)
    assert gone.status_code == 404 and "unloaded" in gone.json()["error"]
    assert client.get("/v2/models/iris/ready").status_code == 404
    states = {e["state"] for e in client.post("/v2/repository/index").json() if e["name"] == "iris"}
    assert states == {"UNLOADED"}
    assert client.get("/v2/models/diabetes/ready").json()["ready"] is True  # others unharmed
    client.post("/v2/repository/models/iris/load")
    assert client.post("/v2/models/iris/infer", json=ROW).status_code == 200


def test_only_servable_names_can_be_loaded(client: TestClient) -> None:
    response = client.post("/v2/repository/models/text/load")
    assert response.status_code == 404
    assert "not in OIP_MODELS" in response.json()["error"]


@pytest.mark.filterwarnings("ignore:divide by zero")
def test_a_version_that_cannot_be_served_is_unavailable_not_fatal(
    client: TestClient, store: Store
) -> None:
    """A pipeline saved with plain save_model that fails on the sample its signature is derived
    from (log of zero): that version is UNAVAILABLE with the reason; the others keep serving."""
    X, y = load_iris(return_X_y=True)
    pipeline = make_pipeline(FunctionTransformer(np.log), LogisticRegression(max_iter=500))
    pipeline.fit(X, y)
    odd = bentoml.sklearn.save_model("iris", pipeline)
    try:
        assert client.post("/v2/repository/models/iris/load").json() == {}
        index = client.post("/v2/repository/index").json()
        entry = next(e for e in index if e["version"] == odd.tag.version)
        assert entry["state"] == "UNAVAILABLE" and "derived sample" in entry["reason"]
        ready = client.post("/v2/repository/index", json={"ready": True}).json()
        assert odd.tag.version not in {e["version"] for e in ready}
        assert client.post("/v2/models/iris/infer", json=ROW).status_code == 200
    finally:
        bentoml.models.delete(str(odd.tag))
        client.post("/v2/repository/models/iris/load")


def test_statistics_count_what_ran(client: TestClient, store: Store) -> None:
    """Three requests of two rows and a bad one, after the warm-up (one execution of one row)."""
    version = store.tags["iris"][0].split(":")[1]
    (warm,) = client.get(f"/v2/models/iris/versions/{version}/stats").json()["model_stats"]
    assert (warm["inference_count"], warm["execution_count"]) == (1, 1)
    two = {"inputs": [{**ROW["inputs"][0], "shape": [2, 4], "data": [1, 2, 3, 4] * 2}]}
    for _ in range(3):
        assert client.post(f"/v2/models/iris/versions/{version}/infer", json=two).status_code == 200
    bad = {"inputs": [{**ROW["inputs"][0], "shape": [1, 3], "data": [1, 2, 3]}]}
    assert client.post(f"/v2/models/iris/versions/{version}/infer", json=bad).status_code == 400
    stats = client.get(f"/v2/models/iris/versions/{version}/stats").json()
    StatisticsResponse.model_validate(stats)
    (entry,) = stats["model_stats"]
    assert (entry["name"], entry["version"]) == ("iris", version)
    assert entry["inference_count"] == 1 + 6 and entry["execution_count"] == 1 + 3
    inference = entry["inference_stats"]
    assert inference["success"]["count"] == 1 + 3 and inference["fail"]["count"] == 1
    assert inference["compute_input"]["count"] == 3  # the warm-up is no request
    assert all(inference[s]["ns"] > 0 for s in ("success", "compute_infer", "compute_output"))
    assert entry["last_inference"] > 0
    everything = client.get("/v2/models/stats").json()["model_stats"]
    assert {(e["name"], e["version"]) for e in everything} >= {("iris", version)}
    assert len(client.get("/v2/models/iris/stats").json()["model_stats"]) == len(store.tags["iris"])
    assert client.get("/v2/models/nope/stats").status_code == 404


def test_classification_extension(client: TestClient, store: Store) -> None:
    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
    body = {
        "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": x.tolist()}],
        "outputs": [{"name": "predict_proba", "parameters": {"classification": 2}}],
    }
    out = client.post("/v2/models/iris/infer", json=body).json()["outputs"][0]
    assert (out["datatype"], out["shape"]) == ("BYTES", [2, 2])
    estimator = bentoml.sklearn.load_model(store.tags["iris"][-1])
    proba = estimator.predict_proba(x)
    for row, cells in zip(proba, np.reshape(out["data"], (2, 2)), strict=True):
        top = np.argsort(-row)[:2]
        assert [c.split(":")[1:] for c in cells] == [[str(i), str(i)] for i in top]
        assert [float(c.split(":")[0]) for c in cells] == pytest.approx(row[top].tolist())
    for parameters, fragment in [({"classification": 0}, "positive integer")]:
        body["outputs"] = [{"name": "predict_proba", "parameters": parameters}]
        assert fragment in client.post("/v2/models/iris/infer", json=body).json()["error"]
    body["outputs"] = [{"name": "predict", "parameters": {"classification": 1}}]
    assert "score outputs" in client.post("/v2/models/iris/infer", json=body).json()["error"]


def test_server_metadata_lists_the_extensions(client: TestClient) -> None:
    assert client.get("/v2").json()["extensions"] == [
        "binary_tensor_data",
        "model_repository",
        "statistics",
        "classification",
    ]
