"""Warm-up: the request a version answers before it is served, so that the first client's call
does not pay for what a first call costs (pages of the estimator touched, caches filled, lazy
imports done).

Its input is the version's stored sample (``metadata["sample"]``: the first row of the sample
given at save time, by input name, written by :func:`~adapters.models.signature.encode_sample`
for :func:`~adapters.models.register.save_estimator`, hence ``train.py`` and ``python -m
adapters.register``), or, where none is stored or it no longer fits the signature, one derived
from the signature: zeros for numbers, the first known category of a fitted encoder for a
categorical column, a short text for other BYTES inputs. Either goes through the same checks as
a request (:func:`~adapters.models.inputs.model_input`). Every output method runs on it
(:func:`warm_up`) right after the estimator is loaded, in the process that will serve it
(:func:`~adapters.execution.runtime.load_estimators`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adapters.models.inputs import model_input
from adapters.models.introspect import column_values
from adapters.models.registry import ModelVersion
from adapters.models.signature import SAMPLE_ROWS, Signature, run_method
from adapters.protocol.codecs import DATATYPE_TO_DTYPE
from adapters.protocol.errors import OIPError
from adapters.protocol.messages import Tensor
from adapters.protocol.schemas import Datatype

TEXT = "a sample text"


def warmup_input(version: ModelVersion, estimator: Any = None) -> Any:
    """What the version's methods take for its warm-up: its stored sample when that fits the
    signature, else one derived from the signature (and ``estimator``'s fitted categories).

    Raises:
        OIPError: not even a derived sample fits the signature (a bad configured one).
    """
    if version.sample:
        try:
            return model_input(version, _stored(version.signature, version.sample))
        except (OIPError, KeyError, TypeError, ValueError):
            pass  # saved under another signature (e.g. a configured one): derive one
    return model_input(version, _derived(version.signature, estimator))


def _stored(signature: Signature, sample: dict[str, Any]) -> list[Tensor]:
    tensors = []
    for spec in signature.inputs:
        if spec.datatype is Datatype.BYTES:
            array = np.array(sample[spec.name], dtype=np.object_)
        else:
            array = np.asarray(sample[spec.name], dtype=DATATYPE_TO_DTYPE[spec.datatype])
        tensors.append(Tensor(spec.name, spec.datatype, array))
    return tensors


def _derived(signature: Signature, estimator: Any) -> list[Tensor]:
    names = [spec.name for spec in signature.inputs]
    known = column_values(estimator, names) if signature.frame and estimator is not None else {}
    tensors = []
    for spec in signature.inputs:
        shape = tuple(SAMPLE_ROWS if d < 0 else d for d in spec.shape)
        if spec.datatype is Datatype.BYTES:
            value = known.get(spec.name)
            text = TEXT if value is None or value == "text" else str(value)
            array = np.full(shape, text, dtype=np.object_)
        else:
            array = np.zeros(shape, dtype=DATATYPE_TO_DTYPE[spec.datatype])
        tensors.append(Tensor(spec.name, spec.datatype, array))
    return tensors


def warm_up(version: ModelVersion, estimator: Any) -> None:
    """Run every output method of the version on its warm-up input.

    Raises:
        Exception: whatever the model (or the input check) raised.
    """
    rows = warmup_input(version, estimator)
    for method in version.signature.output_names:
        run_method(estimator, method, rows)
