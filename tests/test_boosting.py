"""XGBoost and LightGBM with the scikit-learn API (XGBClassifier, XGBRegressor, LGBMClassifier,
LGBMRegressor), saved with plain ``bentoml.sklearn.save_model``: their signatures introspected,
served by name in both placements, scored in batch; every answer equals the estimator's own. The
library versions a version was saved with are in its properties; a difference is logged and
shown; a version whose library is missing is refused naming the package."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bentoml
import httpx
import lightgbm
import numpy as np
import pandas as pd
import pytest
import sklearn
import xgboost
from sklearn.datasets import make_classification, make_regression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import score
from adapters.models.libraries import MissingLibrary, saved_with
from adapters.models.registry import ModelVersion
from adapters.register import save_estimator

from .conftest import ROOT, Store, start_server, stop_server

X, Y = make_classification(
    n_samples=300, n_features=6, n_classes=3, n_informative=4, random_state=0
)
XR, YR = make_regression(n_samples=300, n_features=5, random_state=0)
FLOAT32 = 1e-6  # relative tolerance of float32 outputs computed in another process


def boosted() -> dict[str, tuple[Any, Any]]:
    """name -> (fitted estimator, rows to ask about)."""
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    return {
        "xgbc": (xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(X, Y), X[:7]),
        "xgbr": (xgboost.XGBRegressor(n_estimators=20, max_depth=3).fit(XR, YR), XR[:7]),
        "lgbmc": (lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(frame, Y), frame[:7]),
        "lgbmr": (lightgbm.LGBMRegressor(n_estimators=20, verbose=-1).fit(XR, YR), XR[:7]),
    }


@pytest.fixture(scope="module")
def saved(store: Store) -> Iterator[dict[str, tuple[Any, Any]]]:
    models = boosted()
    tags = [str(bentoml.sklearn.save_model(name, est).tag) for name, (est, _) in models.items()]
    yield models
    for tag in tags:
        bentoml.models.delete(tag)


def inputs(rows: Any) -> list[dict[str, Any]]:
    if isinstance(rows, pd.DataFrame):
        return [
            {"name": c, "shape": [len(rows)], "datatype": "FP64", "data": rows[c].tolist()}
            for c in rows.columns
        ]
    return [
        {"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": rows.tolist()}
    ]


def test_signatures_are_introspected(saved: dict[str, tuple[Any, Any]]) -> None:
    versions = {name: ModelVersion.from_stored(bentoml.models.get(name)) for name in saved}
    assert versions["xgbc"].platform == "sklearn_xgbclassifier"
    assert versions["xgbc"].signature.output_names == ("predict", "predict_proba")
    assert versions["xgbc"].classes == ("0", "1", "2")
    assert [t.name for t in versions["lgbmc"].signature.inputs] == [f"f{i}" for i in range(6)]
    assert versions["xgbr"].signature.inputs[0].shape == (-1, 5)
    assert versions["lgbmr"].platform == "sklearn_lgbmregressor"


@pytest.mark.e2e
@pytest.mark.parametrize("placement", ["inprocess", "runner"])
def test_boosted_models_answer_like_their_estimator(
    saved: dict[str, tuple[Any, Any]], store: Store, tmp_path: Path, placement: str
) -> None:
    env = {"OIP_MODELS": ",".join(saved), "OIP_PLACEMENT": placement}
    server = start_server(store.home, env, tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for name, (estimator, rows) in saved.items():
                answer = c.post(f"/v2/models/{name}/infer", json={"inputs": inputs(rows)})
                assert answer.status_code == 200, (name, answer.text)
                outputs = {o["name"]: o for o in answer.json()["outputs"]}
                assert outputs["predict"]["data"] == pytest.approx(
                    estimator.predict(rows).tolist(), rel=FLOAT32
                )
                if hasattr(estimator, "predict_proba"):
                    proba = np.reshape(outputs["predict_proba"]["data"], (len(rows), -1))
                    np.testing.assert_allclose(proba, estimator.predict_proba(rows), rtol=FLOAT32)
    finally:
        stop_server(server)


def test_batch_scoring_equals_the_estimator(
    saved: dict[str, tuple[Any, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    estimator, _ = saved["xgbc"]
    path = tmp_path / "rows.csv"
    rows = pd.DataFrame(X[:50], columns=[f"x{i}" for i in range(6)])
    rows.insert(0, "id", range(50))
    rows.to_csv(path, index=False)
    db = f"sqlite:///{tmp_path / 'p.db'}"
    code = score.main(["--model", "xgbc", "--input", str(path), "--db", db, "--quiet"])
    assert code == 0, capsys.readouterr()
    rows = pd.read_sql_table("xgbc_predictions", db).sort_values("key", key=lambda k: k.astype(int))
    np.testing.assert_array_equal(rows["predict"], estimator.predict(X[:50]))


def test_save_records_the_libraries_and_a_difference_is_logged(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = make_pipeline(StandardScaler(), xgboost.XGBRegressor(n_estimators=5)).fit(XR, YR)
    assert saved_with(pipeline) == {
        "scikit-learn": sklearn.__version__,
        "xgboost": xgboost.__version__,
    }
    now = save_estimator("xgbpipe", pipeline)
    old = save_estimator("xgbpipe", pipeline, metadata={"saved_with": {"xgboost": "1.7.6"}})
    try:
        properties = ModelVersion.from_stored(bentoml.models.get(now.tag)).properties
        assert properties["saved_with.xgboost"] == xgboost.__version__
        assert properties["served_with.xgboost"] == xgboost.__version__
        assert properties["saved_with.scikit-learn"] == sklearn.__version__
        assert "library_mismatch" not in properties
        with caplog.at_level(logging.WARNING, logger="adapters.models.libraries"):
            mismatched = ModelVersion.from_stored(bentoml.models.get(old.tag)).properties
        difference = f"xgboost saved 1.7.6, served {xgboost.__version__}"
        assert mismatched["library_mismatch"] == difference
        assert difference in caplog.text and str(old.tag) in caplog.text
    finally:
        for model in (now, old):
            bentoml.models.delete(model.tag)


MISSING = """
import sys
sys.modules["xgboost"] = None  # as where it is not installed
import bentoml
from adapters.models.registry import ModelVersion
try:
    ModelVersion.from_stored(bentoml.models.get(sys.argv[1]))
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_a_version_whose_library_is_missing_is_refused_naming_the_package(
    saved: dict[str, tuple[Any, Any]], store: Store
) -> None:
    assert "xgboost-cpu" in str(MissingLibrary("xgboost", "3.2.0"))
    done = subprocess.run(
        [sys.executable, "-c", MISSING, "xgbc:latest"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "MissingLibrary it needs xgboost, which is not installed where it is served" in (
        done.stdout
    ), done.stdout + done.stderr
    assert "pip install xgboost-cpu" in done.stdout
