"""V2 signatures of scikit-learn estimators: which tensors go in, which come out.

The signature is introspected once, by running the estimator on a sample, and stored with the
model (``metadata["signature"]``) by ``train.py``; the registry reads it back and never needs a
hand-written description of a model. For a model saved without one, the registry derives it from
``n_features_in_`` the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .codecs import Array, datatype_of
from .schemas import Datatype

OUTPUT_METHODS = ("predict", "predict_proba", "transform")
"""Estimator methods exposed as output tensors, each named after its method."""

DEFAULT_INPUT_NAME = "input-0"


@dataclass(frozen=True)
class TensorSpec:
    """Name, datatype and shape of one tensor; -1 marks the batch (variable) dimension."""

    name: str
    datatype: Datatype
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype.value, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(
            str(data["name"]), Datatype(data["datatype"]), tuple(int(d) for d in data["shape"])
        )


@dataclass(frozen=True)
class Signature:
    """The inputs a model takes and the outputs it can produce."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        return cls(
            tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
            tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
        )

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)


def run_method(estimator: Any, method: str, x: Array) -> Array:
    """Call one estimator method and return a dense numpy array."""
    result = getattr(estimator, method)(x)
    if hasattr(result, "toarray"):  # scipy sparse, e.g. from a vectoriser's transform
        result = result.toarray()
    return np.asarray(result)


def infer_signature(
    estimator: Any, sample: Array, *, input_name: str = DEFAULT_INPUT_NAME
) -> Signature:
    """Introspect the signature by running every exposed method on ``sample``.

    Args:
        estimator: a fitted scikit-learn estimator or pipeline.
        sample: a few rows of valid input; its dtype and trailing dimensions become the input
            spec, the leading dimension becomes -1.
        input_name: the name clients use for the input tensor.
    """
    inputs = (TensorSpec(input_name, datatype_of(sample), (-1, *sample.shape[1:])),)
    outputs = []
    for method in OUTPUT_METHODS:
        if hasattr(estimator, method):
            out = run_method(estimator, method, sample)
            outputs.append(TensorSpec(method, datatype_of(out), (-1, *out.shape[1:])))
    return Signature(inputs, tuple(outputs))


def signature_without_metadata(estimator: Any) -> Signature:
    """Derive the signature of a numeric-input model saved without one."""
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is None:
        raise ValueError(
            "the model has no V2 signature in its metadata and no n_features_in_ to derive one"
        )
    return infer_signature(estimator, np.zeros((2, int(n_features)), dtype=np.float64))
