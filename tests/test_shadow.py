"""Shadow runs in process: every request the default answered also runs on the shadow, off the
request path; the default's answers are unchanged; the agreement is counted exactly; a shadow
that fails never fails the default; a full queue drops and counts; logged answers carry the
request's id, the shadow's tagged."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import prometheus_client
import pytest
from sklearn.datasets import load_iris
from starlette.testclient import TestClient

from adapters.batch.inferences import read_inferences
from adapters.batch.predictions import connect
from adapters.bento.wiring import build_dataplane
from adapters.config.settings import Settings
from adapters.dataplane.plane import DataPlane
from adapters.dataplane.shadow import Job, Shadows, compare
from adapters.http.routes import build_app
from adapters.models.registry import ModelVersion
from adapters.protocol.messages import InferRequest, Tensor
from adapters.protocol.schemas import Datatype

from .conftest import Store

X, y = load_iris(return_X_y=True)


def sample(name: str, labels: dict[str, str]) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


def body(rows: np.ndarray, request_id: str | None = None) -> dict[str, Any]:
    tensor = {"name": "input-0", "shape": list(rows.shape), "datatype": "FP64"}
    payload: dict[str, Any] = {"inputs": [{**tensor, "data": rows.ravel().tolist()}]}
    return payload | ({"id": request_id} if request_id else {})


def shadowing(name: str, default: str, shadow: str, folder: Path) -> Settings:
    """``name`` served by ``default``, shadowed by ``shadow``, its inferences logged."""
    return Settings(
        models=(name,),
        default_versions={"*": default},
        shadows={name: shadow},
        logged={name: True},
        predictions_db=f"sqlite:///{folder / 'predictions.db'}",
    )


@pytest.fixture
def shadowed(store: Store, tmp_path: Path) -> Iterator[tuple[TestClient, DataPlane, str, str]]:
    """iris: the default is the older version, the shadow the newer (a much weaker C)."""
    old, new = (t.split(":")[1] for t in store.tags["iris"])
    app = build_app()
    app.state.dataplane = dataplane = build_dataplane(shadowing("iris", old, new, tmp_path))
    with TestClient(app) as client:
        yield client, dataplane, old, new


def test_the_shadow_answers_what_the_default_answered(
    shadowed: tuple[TestClient, DataPlane, str, str], store: Store
) -> None:
    client, dataplane, old, new = shadowed
    pair = {"model": "iris", "primary": old, "shadow": new}
    before = {
        m: sample(m, pair)
        for m in ("oip_shadow_compared_rows_total", "oip_shadow_equal_rows_total")
    }
    primary, shadow = (bentoml.sklearn.load_model(t) for t in store.tags["iris"])
    rng = np.random.default_rng(0)
    equal = 0
    for i in range(40):
        rows = X[rng.choice(len(X), 3)]
        answer = client.post("/v2/models/iris/infer", json=body(rows, f"shadow-{i}")).json()
        assert answer["model_version"] == old and answer["id"] == f"shadow-{i}"
        predict = next(o for o in answer["outputs"] if o["name"] == "predict")
        assert predict["data"] == primary.predict(rows).tolist()  # unchanged by the shadow
        equal += int((primary.predict(rows) == shadow.predict(rows)).sum())
    versioned = client.post(f"/v2/models/iris/versions/{new}/infer", json=body(X[:1], "direct"))
    assert versioned.status_code == 200  # answered by another version: no shadow run
    client.portal.call(dataplane.shadows.idle)
    assert (
        sample("oip_shadow_compared_rows_total", pair) - before["oip_shadow_compared_rows_total"]
        == 120
    )
    assert (
        sample("oip_shadow_equal_rows_total", pair) - before["oip_shadow_equal_rows_total"] == equal
    )
    assert 0 < equal < 120  # C=1.0 and C=0.001 disagree on some rows
    assert sample("oip_shadow_runs_total", {**pair, "outcome": "ok"}) >= 40
    assert dataplane.journal is not None and dataplane.journal.flush(30)
    engine = connect(dataplane.predictions_db)
    logged = read_inferences(engine, "iris")
    ids = {(r["request_id"], r["version"], r["shadow"]) for r in logged}
    assert {(f"shadow-{i}", old, False) for i in range(40)} <= ids
    assert {(f"shadow-{i}", new, True) for i in range(40)} <= ids
    assert ("direct", new, False) in ids and ("direct", new, True) not in ids


def test_a_request_without_an_id_gets_one_when_its_model_logs(
    shadowed: tuple[TestClient, DataPlane, str, str],
) -> None:
    client, dataplane, _, _ = shadowed
    answer = client.post("/v2/models/iris/infer", json=body(X[:1])).json()
    assert len(answer["id"]) == 32  # a uuid4, echoed: the row's request_id
    bad = client.post("/v2/models/iris/infer", json=body(X[:1, :3], "bad"))
    assert bad.status_code == 400
    assert dataplane.journal is not None and dataplane.journal.flush(30)
    rows = read_inferences(connect(dataplane.predictions_db), "iris", shadow=False)
    found = {r["request_id"]: r for r in rows}
    assert found[answer["id"]]["status"] == 200
    assert found["bad"]["status"] == 400 and "shape" in found["bad"]["error"]
    assert found["bad"]["outputs"] == "[]"


def test_without_logging_nothing_changes(store: Store) -> None:
    app = build_app()
    app.state.dataplane = build_dataplane(Settings(models=("iris",)))
    with TestClient(app) as client:
        assert "id" not in client.post("/v2/models/iris/infer", json=body(X[:1])).json()


def job(model: Any, primary: ModelVersion) -> Job:
    request = InferRequest("iris", None, [Tensor("input-0", Datatype.FP64, X[:1])])
    return Job(model, primary, request, "r", ("predict",), {}, None, False)


def test_a_full_queue_drops_and_counts(store: Store) -> None:
    dataplane = build_dataplane(Settings(models=("iris",), shadows={"iris": "best"}))
    model = dataplane.registry.model("iris")
    shadows = Shadows(dataplane.executors, lambda entry: None, timeout_s=10, capacity=2)
    before = sample("oip_shadow_dropped_total", {"model": "iris"})

    async def scenario() -> None:
        for _ in range(5):  # nothing runs before the loop gets control back
            shadows.submit(job(model, model.resolve("latest")))
        assert shadows.dropped == 3
        await shadows.idle()

    asyncio.run(scenario())
    assert sample("oip_shadow_dropped_total", {"model": "iris"}) - before == 3


def test_regressors_compare_by_absolute_difference() -> None:
    regressor = ModelVersion("d", "v", None, "x", datetime.now(UTC))  # type: ignore[arg-type]
    labels = ("d", "v1", "v2")
    before = sample(
        "oip_shadow_absolute_difference_total",
        dict(zip(["model", "primary", "shadow"], labels, strict=True)),
    )
    compare(regressor, np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.0, 1.0]), labels)
    after = sample(
        "oip_shadow_absolute_difference_total",
        dict(zip(["model", "primary", "shadow"], labels, strict=True)),
    )
    assert after - before == pytest.approx(2.5)


def test_a_failing_shadow_never_fails_the_default(store: Store, tmp_path: Path) -> None:
    """The shadow takes three features, the default four: every shadow run fails its input
    check, is counted and logged as failed; every request is answered by the default."""
    from sklearn.linear_model import LogisticRegression

    from adapters.register import save_estimator

    four = save_estimator("narrowing", LogisticRegression(max_iter=500).fit(X, y), sample=X[:2])
    three = save_estimator("narrowing", LogisticRegression().fit(X[:, :3], y), sample=X[:2, :3])
    old, new = four.tag.version, three.tag.version
    try:
        app = build_app()
        app.state.dataplane = dataplane = build_dataplane(
            shadowing("narrowing", old, new, tmp_path)
        )
        with TestClient(app) as client:
            for i in range(5):
                answer = client.post("/v2/models/narrowing/infer", json=body(X[:2], f"n{i}"))
                assert (answer.status_code, answer.json()["model_version"]) == (200, old)
            client.portal.call(dataplane.shadows.idle)
        failed = {"model": "narrowing", "primary": old, "shadow": new, "outcome": "failed"}
        assert sample("oip_shadow_runs_total", failed) == 5
        assert dataplane.journal is not None and dataplane.journal.flush(30)
        shadows = read_inferences(connect(dataplane.predictions_db), "narrowing", shadow=True)
        assert {(r["status"], r["version"]) for r in shadows} == {(400, new)}
        assert all("3" in r["error"] for r in shadows)  # the shadow's own input check
    finally:
        bentoml.models.delete(str(four.tag))
        bentoml.models.delete(str(three.tag))
