"""The classification extension (Triton's): an output requested with
``parameters.classification: N`` answers, instead of the raw scores, a BYTES tensor
``[batch, N]`` of ``"<score>:<index>:<label>"``, highest score first.

It applies to score outputs (one score per class: ``predict_proba``, ``decision_function``);
labels come from the estimator's ``classes_`` as stored with the version (the index when a
version has none). ``tritonclient``'s ``InferRequestedOutput(name, class_count=N)`` sends it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from adapters.protocol.codecs import Array
from adapters.protocol.errors import InvalidTensor

SCORE_OUTPUTS = ("predict_proba", "decision_function")
PARAMETER = "classification"


def class_count(name: str, parameters: dict[str, Any] | None) -> int | None:
    """The ``classification`` parameter of a requested output, checked; ``None`` if absent."""
    if not parameters or PARAMETER not in parameters:
        return None
    count = parameters[PARAMETER]
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidTensor(f"output '{name}': classification must be a positive integer")
    if name not in SCORE_OUTPUTS:
        raise InvalidTensor(
            f"output '{name}': classification applies to score outputs {list(SCORE_OUTPUTS)}"
        )
    return count


def classify(name: str, scores: Array, count: int, classes: Sequence[str]) -> Array:
    """The top ``count`` classes of each row of ``scores`` as ``"score:index:label"`` strings."""
    if scores.ndim != 2:
        raise InvalidTensor(
            f"output '{name}': classification needs one score per class, got shape "
            f"{list(scores.shape)}"
        )
    count = min(count, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :count]
    rows = [
        [f"{float(row[i])}:{i}:{classes[i] if i < len(classes) else i}" for i in order]
        for row, order in zip(scores, top, strict=True)
    ]
    return np.array(rows, dtype=np.object_).reshape(len(rows), count)
