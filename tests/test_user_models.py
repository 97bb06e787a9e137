"""Users' own models, saved with a plain ``bentoml.sklearn.save_model`` (no metadata at all) or
with :func:`adapters.register.save_estimator`, served by name in both placements; every answer
equals the estimator's own prediction on the same rows."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bentoml
import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris, make_classification
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from adapters.register import save_estimator

from .conftest import ROOT, Store, start_server, stop_server

TEXTS = ["cheap pills online", "meeting at noon", "win money now", "lunch tomorrow?"] * 5
SPAM = [1, 0, 1, 0] * 5
PEOPLE = pd.DataFrame(
    {
        "age": [25.0, 32.0, 47.0, 51.0, 62.0, 23.0, 44.0, 36.0],
        "income": [30.0, 52.0, 71.0, 80.0, 40.0, 28.0, 90.0, 61.0],
        "city": ["paris", "lyon", "paris", "nice", "lyon", "nice", "paris", "lyon"],
        "plan": ["basic", "pro", "pro", "basic", "basic", "pro", "pro", "basic"],
    }
)
CHURN = [0, 1, 1, 0, 0, 1, 1, 0]


def user_models() -> dict[str, tuple[Any, Any]]:
    """name -> (fitted estimator, rows to ask about)."""
    X, y = make_classification(n_samples=200, n_features=6, random_state=0)
    gbc = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(X, y)
    spam = make_pipeline(CountVectorizer(), MultinomialNB()).fit(TEXTS, SPAM)
    mixed = make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), ["age", "income"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
            ]
        ),
        LogisticRegression(),
    ).fit(PEOPLE, CHURN)
    numeric = Ridge().fit(PEOPLE[["age", "income"]], [1.0, 2, 3, 4, 5, 6, 7, 8])
    return {
        "gbc": (gbc, X[:5]),
        "spam": (spam, np.array(["win cheap money", "see you at lunch"], dtype=object)),
        "churn": (mixed, PEOPLE.iloc[:3]),
        "spend": (numeric, PEOPLE[["age", "income"]].iloc[:3]),
    }


@pytest.fixture(scope="module")
def saved(store: Store) -> Iterator[dict[str, Any]]:
    models = user_models()
    tags = [str(bentoml.sklearn.save_model(name, est).tag) for name, (est, _) in models.items()]
    yield models
    for tag in tags:
        bentoml.models.delete(tag)


def v2_inputs(name: str, rows: Any) -> list[dict[str, Any]]:
    """The request a client writes from the model's metadata: a tensor, or one per column."""
    if isinstance(rows, pd.DataFrame):
        return [
            {
                "name": column,
                "shape": [len(rows)],
                "datatype": "BYTES" if rows[column].dtype == object else "FP64",
                "data": rows[column].tolist(),
            }
            for column in reversed(rows.columns)  # any order: the server puts them back
        ]
    if rows.dtype == object:
        return [{"name": "input-0", "shape": [len(rows)], "datatype": "BYTES", "data": list(rows)}]
    return [
        {"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": rows.tolist()}
    ]


@pytest.mark.e2e
@pytest.mark.parametrize("placement", ["inprocess", "runner"])
def test_plain_saved_models_serve_and_answer_like_the_estimator(
    saved: dict[str, Any], store: Store, tmp_path: Path, placement: str
) -> None:
    env = {"OIP_MODELS": ",".join(saved), "OIP_PLACEMENT": placement}
    server = start_server(store.home, env, tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            meta = {name: c.get(f"/v2/models/{name}").json() for name in saved}
            assert meta["gbc"]["platform"] == "sklearn_gradientboostingclassifier"
            assert meta["gbc"]["properties"]["classes"] == "0,1"
            assert meta["spam"]["inputs"] == [
                {"name": "input-0", "datatype": "BYTES", "shape": [-1]}
            ]
            assert [i["name"] for i in meta["churn"]["inputs"]] == list(PEOPLE.columns)
            assert [i["datatype"] for i in meta["churn"]["inputs"]] == ["FP64"] * 2 + ["BYTES"] * 2
            for name, (estimator, rows) in saved.items():
                body = {"inputs": v2_inputs(name, rows), "outputs": [{"name": "predict"}]}
                answer = c.post(f"/v2/models/{name}/infer", json=body)
                assert answer.status_code == 200, (name, answer.text)
                got = answer.json()["outputs"][0]["data"]
                np.testing.assert_allclose(got, estimator.predict(rows).tolist(), rtol=1e-9)
        assert "does not have valid feature names" not in server.log.read_text()
    finally:
        stop_server(server)


def test_save_estimator_with_a_sample_metrics_and_best(store: Store) -> None:
    X, y = load_iris(return_X_y=True)
    weak, strong, newest = (  # saved in this order: newest is latest, strong is best
        save_estimator(
            "mine",
            LogisticRegression(C=c, max_iter=1000).fit(X, y),
            sample=X[:2],
            metrics={"accuracy": accuracy},
            select="accuracy",
        )
        for c, accuracy in ((0.01, 0.7), (1, 0.95), (0.1, 0.9))
    )
    try:
        from adapters.bento.wiring import build_dataplane
        from adapters.config.settings import Settings

        registry = build_dataplane(Settings(models=("mine",))).registry
        assert registry.resolve("mine", "best").version == strong.tag.version
        assert registry.resolve("mine", "latest").version == newest.tag.version
        assert registry.resolve("mine", None).properties["selection_metric.goal"] == "max"
        assert weak.info.metadata["estimator"] == "LogisticRegression"
    finally:
        for model in (weak, strong, newest):
            bentoml.models.delete(str(model.tag))


def test_register_cli_saves_a_joblib_file_and_says_what_it_saved(
    store: Store, tmp_path: Path
) -> None:
    estimator, rows = user_models()["churn"]
    joblib.dump(estimator, tmp_path / "churn.joblib")
    rows.to_csv(tmp_path / "sample.csv", index=False)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "adapters.register",
            "churn-cli",
            str(tmp_path / "churn.joblib"),
            "--sample",
            str(tmp_path / "sample.csv"),
            "--metric",
            "auc=0.8",
            "--select",
            "auc",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "inputs age FP64 [-1], income FP64 [-1], city BYTES [-1], plan BYTES [-1]" in done.stdout
    tag = done.stdout.split()[1].rstrip(":")
    try:
        assert bentoml.models.get(tag).info.metadata["selection_metric"] == {
            "name": "auc",
            "goal": "max",
        }
    finally:
        bentoml.models.delete(tag)
    bad = subprocess.run(
        [sys.executable, "-m", "adapters.register", "x", str(tmp_path / "missing.joblib")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and "register: x:" in bad.stderr


def test_a_numeric_dataframe_model_gets_no_feature_name_warning(saved: dict[str, Any]) -> None:
    from starlette.testclient import TestClient

    from adapters.bento.wiring import build_dataplane
    from adapters.config.settings import Settings
    from adapters.http.routes import build_app

    app = build_app()
    app.state.dataplane = build_dataplane(Settings(models=("spend",)))
    _, rows = saved["spend"]
    with TestClient(app) as c, warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn's feature-name UserWarning would fail this
        answer = c.post("/v2/models/spend/infer", json={"inputs": v2_inputs("spend", rows)})
    assert answer.status_code == 200, answer.text
    missing = c.post("/v2/models/spend/infer", json={"inputs": v2_inputs("spend", rows)[:1]})
    assert missing.status_code == 400 and "missing ['age']" in missing.json()["error"]
