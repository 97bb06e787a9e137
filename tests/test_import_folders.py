"""Model folders of other servers into the store in one command: MLServer's model-settings.json
(one folder, or a repository of them), and a KServe storageUri folder; each version saved with
its derived signature answers like its estimator; each folder that cannot be read is refused with
why, and the others are still saved."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bentoml
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from adapters.models.registry import ModelVersion
from adapters.models.repository import stored_versions
from adapters.register import main

from .conftest import Store

X = np.random.default_rng(1).normal(size=(30, 3))
FRAME = pd.DataFrame({"a": X[:, 0], "b": X[:, 1]})


def mlserver_folder(root: Path, name: str, estimator: Any, **settings: Any) -> Path:
    folder = root / name
    (folder / "files").mkdir(parents=True)
    joblib.dump(estimator, folder / "files" / "estimator.joblib")
    body = {
        "name": name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./files/estimator.joblib", "version": "v7"},
        **settings,
    }
    (folder / "model-settings.json").write_text(json.dumps(body))
    return folder


@pytest.fixture
def saved_names(store: Store) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        for model in stored_versions(name):
            bentoml.models.delete(model.tag)


def test_an_mlserver_repository_is_imported_folder_by_folder(
    tmp_path: Path, saved_names: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    clf = LogisticRegression().fit(X, np.arange(30) % 2)
    mlserver_folder(tmp_path, "imclf", clf, max_batch_size=16, max_batch_time=0.01)
    mlserver_folder(tmp_path, "imreg", Ridge().fit(FRAME, X[:, 2]))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model-settings.json").write_text('{"name": "imbroken", "parameters": {}}')
    saved_names += ["imclf", "imreg", "imbroken"]
    assert main(["--from-mlserver", str(tmp_path)]) == 2  # one of three could not be
    out, err = capsys.readouterr()
    assert "broken must hold exactly one of model.joblib" in err
    assert "max_batch_size = 16" in out and "max_batch_time" in out
    assert "OIP_MODELS=imclf make serve" in out and "/v2/models/imreg/infer" in out
    assert not stored_versions("imbroken")
    clf_version = ModelVersion.from_stored(bentoml.models.get("imclf:latest"))
    assert clf_version.properties["imported_from.version"] == "v7"
    assert clf_version.properties["saved_with.scikit-learn"]
    assert [t.to_dict() for t in clf_version.signature.inputs] == [
        {"name": "input-0", "datatype": "FP64", "shape": [-1, 3]}
    ]
    reg = ModelVersion.from_stored(bentoml.models.get("imreg:latest"))
    assert [t.name for t in reg.signature.inputs] == ["a", "b"] and reg.signature.frame
    loaded = bentoml.sklearn.load_model("imclf:latest")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_a_kserve_folder_is_a_model_file(
    tmp_path: Path, saved_names: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    saved_names.append("imkserve")
    clf = LogisticRegression().fit(X, np.arange(30) % 3)
    joblib.dump(clf, tmp_path / "model.joblib")
    assert main(["imkserve", str(tmp_path)]) == 0
    assert "saved imkserve:" in capsys.readouterr().out
    (tmp_path / "model.pkl").write_bytes(b"")
    assert main(["imkserve", str(tmp_path)]) == 2
    assert "found model.joblib, model.pkl" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ("not json", "model-settings.json"),
        ("[1, 2]", "not a JSON object"),
        ('{"parameters": {"uri": "model.bst"}}', "only joblib and pickle files"),
    ],
)
def test_a_folder_that_cannot_be_read_says_why(
    tmp_path: Path, settings: str, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "model.bst").write_text("tree")
    (tmp_path / "model-settings.json").write_text(settings)
    assert main(["--from-mlserver", str(tmp_path)]) == 2
    assert fragment in capsys.readouterr().err
    assert main(["--from-mlserver", str(tmp_path / "nowhere")]) == 2
    assert "no model-settings.json" in capsys.readouterr().err
