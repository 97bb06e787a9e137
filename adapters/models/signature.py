"""V2 signatures of scikit-learn estimators: which tensors go in, which come out.

The signature is introspected once, by running the estimator on a sample, and stored with the
model (``metadata["signature"]``) by :mod:`adapters.register` (which ``train.py`` uses); the
registry reads it back and never needs a hand-written description of a model. For a model saved
without one, :mod:`adapters.models.introspect` derives it the same way.

A model fitted on a pandas DataFrame (``frame``) takes one input per column, in column order;
every other model takes one tensor whose rows are the samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from adapters.protocol.codecs import Array, datatype_of
from adapters.protocol.schemas import Datatype

OUTPUT_METHODS = ("predict", "predict_proba", "decision_function", "transform")
"""Estimator methods exposed as output tensors, each named after its method. A request that
names no output gets every one the signature declares, as the V2 spec says ("If not
specified all outputs produced by the model will be returned"), so the metadata and the answer
agree."""

DEFAULT_INPUT_NAME = "input-0"
SAMPLE_ROWS = 1
"""Rows of a sample stored with a version (``metadata["sample"]``): its warm-up request's input."""


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
    frame: bool = False  # inputs are the columns of a pandas DataFrame

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }
        if self.frame:
            data["frame"] = True
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        return cls(
            tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
            tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
            bool(data.get("frame", False)),
        )

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    @property
    def default_outputs(self) -> tuple[str, ...]:
        """What a request that names no output gets: every declared output (the V2 spec)."""
        return self.output_names


def run_method(estimator: Any, method: str, x: Array) -> Array:
    """Call one estimator method and return a dense numpy array."""
    result = getattr(estimator, method)(x)
    if hasattr(result, "toarray"):  # scipy sparse, e.g. from a vectoriser's transform
        result = result.toarray()
    return np.asarray(result)


def infer_signature(
    estimator: Any, sample: Any, *, input_name: str = DEFAULT_INPUT_NAME
) -> Signature:
    """Introspect the signature by running every exposed method on ``sample``.

    Args:
        estimator: a fitted scikit-learn estimator or pipeline.
        sample: a few rows of valid input; its dtype and trailing dimensions become the input
            spec, the leading dimension becomes -1. A pandas DataFrame gives one input per
            column (BYTES for text columns).
        input_name: the name clients use for the input tensor (not for a DataFrame).
    """
    frame = hasattr(sample, "columns") and hasattr(sample, "iloc")
    if frame:
        inputs = tuple(
            TensorSpec(str(name), _column_datatype(sample[name]), (-1,)) for name in sample.columns
        )
    else:
        inputs = (TensorSpec(input_name, datatype_of(sample), (-1, *sample.shape[1:])),)
    outputs = []
    for method in OUTPUT_METHODS:
        if hasattr(estimator, method):
            out = run_method(estimator, method, sample)
            outputs.append(TensorSpec(method, datatype_of(out), (-1, *out.shape[1:])))
    return Signature(inputs, tuple(outputs), frame)


def _column_datatype(column: Any) -> Datatype:
    values = np.asarray(column)
    return Datatype.BYTES if values.dtype.kind in "OUS" else datatype_of(values)


def encode_sample(signature: Signature, sample: Any) -> dict[str, list[Any]] | None:
    """The first row of ``sample`` by input name, as lists a model's metadata can hold;
    ``None`` when it cannot be written so (the warm-up then derives one)."""
    try:
        if signature.frame:
            columns = {spec.name: sample[spec.name] for spec in signature.inputs}
        else:
            (spec,) = signature.inputs
            columns = {spec.name: sample}
        encoded = {
            name: np.asarray(values)[:SAMPLE_ROWS].tolist() for name, values in columns.items()
        }
    except (KeyError, TypeError, ValueError):
        return None
    plain = all(_plain(v) for values in encoded.values() for v in np.ravel(values).tolist())
    return encoded if plain else None


def _plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)
