"""train.py: every run is a new version with metrics, parameters and the V2 signature."""

from __future__ import annotations

import bentoml
import pytest

import train
from adapters.models.repository import stored_versions
from adapters.models.signature import Signature

from .conftest import Store


def test_cli_saves_a_new_version_with_the_override(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {str(m.tag) for m in stored_versions("diabetes")}
    code = train.main(["--model", "diabetes", "--param", "alpha=5.0"])
    new = {str(m.tag) for m in stored_versions("diabetes")} - before
    try:  # the session store is shared: never leave this version behind for later tests
        assert code == 0
        assert len(new) == 1
        (tag,) = new
        assert tag in capsys.readouterr().out
        meta = bentoml.models.get(tag).info.metadata
        assert meta["params"]["alpha"] == 5.0
        assert meta["overrides"] == {"alpha": "5.0"}
        assert set(meta["metrics"]) == {"r2", "rmse", "mae"}
        assert meta["selection_metric"] == {"name": "rmse", "goal": "min"}
        dataset = meta["dataset"]
        assert dataset["n_train"] + dataset["n_test"] == dataset["n_samples"]
        signature = Signature.from_dict(meta["signature"])
        assert signature.inputs[0].shape == (-1, 10)
        assert bentoml.models.get(tag).info.labels["task"] == "regression"
    finally:
        for created in new:
            bentoml.models.delete(created)


def test_text_model_signature_is_bytes(store: Store) -> None:
    meta = bentoml.models.get(store.tags["text"][-1]).info.metadata
    signature = Signature.from_dict(meta["signature"])
    assert signature.to_dict()["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert signature.to_dict()["outputs"][0] == {
        "name": "predict",
        "datatype": "BYTES",
        "shape": [-1],
    }
    assert len(meta["classes"].split(",")) == 5


def test_if_empty_skips_trained_models(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    before = len(stored_versions("iris"))
    assert train.main(["--model", "iris", "--if-empty"]) == 0
    assert len(stored_versions("iris")) == before
    assert "skipped" in capsys.readouterr().out


@pytest.mark.parametrize("param", ["C=-1", "no_such_param=1"])
def test_bad_parameters_fail_cleanly(store: Store, param: str) -> None:
    before = len(stored_versions("iris"))
    assert train.main(["--model", "iris", "--param", param]) == 2
    assert len(stored_versions("iris")) == before


def test_param_parsing() -> None:
    assert train.parse_param("C=0.1") == ("C", 0.1)
    assert train.parse_param("penalty=l2") == ("penalty", "l2")
    assert train.parse_param("class_weight=None") == ("class_weight", None)
