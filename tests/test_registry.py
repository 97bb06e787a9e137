"""Name/version/alias resolution, and reading versions back from the BentoML store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import bentoml
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from adapters.bento.wiring import build_dataplane
from adapters.config.settings import Settings
from adapters.models.registry import ModelVersion, Registry, ServedModel
from adapters.models.repository import Repository
from adapters.models.signature import Signature, TensorSpec
from adapters.protocol.errors import ModelNotFound, VersionNotFound
from adapters.protocol.schemas import Datatype

from .conftest import Store

SIG = Signature(
    (TensorSpec("input-0", Datatype.FP64, (-1, 2)),),
    (TensorSpec("predict", Datatype.FP64, (-1,)),),
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def version(name: str, v: str, minutes: int, score: float | None) -> ModelVersion:
    return ModelVersion(name, v, SIG, "sklearn_x", T0 + timedelta(minutes=minutes), score)


def test_latest_best_and_default() -> None:
    model = ServedModel(
        "m", [version("m", "a", 0, 0.9), version("m", "b", 2, 0.5), version("m", "c", 1, 0.7)]
    )
    assert model.resolve("latest").version == "b"
    assert model.resolve("best").version == "a"
    assert model.resolve(None).version == "b"
    assert model.resolve("c").version == "c"
    assert list(model.versions) == ["b", "c", "a"]  # newest first
    assert model.aliases_of(model.resolve("a")) == ["best"]


def test_lower_is_better_metrics_are_negated_scores() -> None:
    # scores are oriented (rmse 3.0 -> -3.0), so max() still picks the best
    model = ServedModel("m", [version("m", "a", 0, -3.0), version("m", "b", 1, -5.0)])
    assert model.resolve("best").version == "a"


def test_best_without_metrics_is_latest_and_default_is_configurable() -> None:
    model = ServedModel("m", [version("m", "a", 0, None), version("m", "b", 1, None)], default="a")
    assert model.resolve("best").version == "b"
    assert model.resolve(None).version == "a"


def test_unknown_names_and_versions() -> None:
    registry = Registry([ServedModel("m", [version("m", "a", 0, None)])])
    with pytest.raises(ModelNotFound):
        registry.resolve("x", None)
    with pytest.raises(VersionNotFound):
        registry.resolve("m", "zzz")
    with pytest.raises(VersionNotFound):
        ServedModel("m", [version("m", "a", 0, None)], default="nope")
    with pytest.raises(ValueError, match="no version"):
        ServedModel("m", [])


def opened(names: list[str], settings: Settings) -> Registry:
    """A registry read from the test store, as the server reads it (no executors needed)."""
    repository = Repository(names, settings.default_version, {})
    for name in names:
        repository.registry.models[name] = repository.open(name)
    return repository.registry


def test_from_store_reads_metrics_and_signature(store: Store) -> None:
    settings = Settings.from_env({"OIP_DEFAULT_VERSION": "diabetes=best"})
    registry = opened(["iris", "diabetes"], settings)
    iris = registry.model("iris")
    assert sorted(iris.versions) == sorted(t.split(":")[1] for t in store.tags["iris"])
    accuracy = {v.version: float(v.properties["metrics.accuracy"]) for v in iris.versions.values()}
    assert accuracy[iris.resolve("best").version] == max(accuracy.values())
    diabetes = registry.model("diabetes").resolve(None)
    assert diabetes.properties["selection_metric.goal"] == "min"
    assert diabetes.score == -float(diabetes.properties["metrics.rmse"])
    assert diabetes.signature.inputs[0].shape == (-1, 10)
    assert registry.model("iris").resolve("latest").classes == ("0", "1", "2")
    with pytest.raises(ValueError, match="train it first"):
        opened(["never-trained"], Settings())


def test_a_model_saved_without_metadata_still_gets_a_signature(store: Store) -> None:
    X = np.arange(12, dtype=np.float64).reshape(6, 2)
    bentoml.sklearn.save_model("plain", LinearRegression().fit(X, X.sum(axis=1)))
    try:
        plain = opened(["plain"], Settings()).resolve("plain", None)
        assert plain.signature.inputs == (TensorSpec("input-0", Datatype.FP64, (-1, 2)),)
        assert plain.signature.output_names == ("predict",)
        assert plain.score is None
    finally:
        bentoml.models.delete("plain")


@pytest.mark.parametrize("value", ["best", "*=best", "iris=best"])
def test_default_version_for_all_models_reaches_the_data_plane(store: Store, value: str) -> None:
    """``OIP_DEFAULT_VERSION=best`` (every model) as well as ``iris=best``, through the wiring
    the server uses; the test store's latest iris is the weaker one, so best != latest."""
    settings = Settings.from_env({"OIP_MODELS": "iris", "OIP_DEFAULT_VERSION": value})
    registry = build_dataplane(settings).registry
    best, latest = registry.resolve("iris", "best"), registry.resolve("iris", "latest")
    assert best is not latest
    assert registry.resolve("iris", None) is best


def test_metric_labels_are_bounded_by_the_registry() -> None:
    registry = Registry([ServedModel("m", [version("m", "a", 0, None)])])
    assert registry.labels("m", None) == ("m", "a")
    assert registry.labels("m", "latest") == ("m", "a")
    assert registry.labels("m", "invented") == ("m", "")
    assert registry.labels("invented", "a") == ("", "")
