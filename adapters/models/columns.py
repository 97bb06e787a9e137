"""A request of columns (MLServer's ``content_type: "pd"``) fitted to what the model takes.

Every input is one column, ``[N]`` or ``[N, 1]``, named as the column; BYTES columns are text.
Where they go depends on what the version knows of its features:

* a DataFrame model (signature ``frame``) takes the columns by name, in any order, as it takes
  any request of columns (:func:`~adapters.models.inputs.frame_input`);
* a model that knows its feature names (``feature_names`` in its metadata: fitted on a
  DataFrame, saved with an array signature) takes them by name, stacked in its feature order;
* a model fitted on a plain array takes them in the order sent when there are as many as its
  features (``n_features_in_``, the width of its input), as MLServer does;
* a text model (one ``[-1]`` input) takes one column, whatever its name.

Anything else is a 400 that names the expected count, or the missing and extra columns.
"""

from __future__ import annotations

from dataclasses import replace

from adapters.models.registry import ModelVersion
from adapters.models.signature import TensorSpec
from adapters.protocol.errors import InputMismatch, InvalidTensor
from adapters.protocol.messages import Tensor


def as_columns(resolved: ModelVersion, inputs: list[Tensor]) -> list[Tensor]:
    """Each input as a ``[N]`` column, all of one length, no name twice.

    Raises:
        InvalidTensor: an input that is not one column, or columns of different lengths.
        InputMismatch: a column given twice.
    """
    columns = []
    for tensor in inputs:
        shape = list(tensor.shape)
        if len(shape) == 2 and shape[1] == 1:
            tensor = replace(tensor, data=tensor.data.reshape(-1))
        elif len(shape) != 1:
            raise InvalidTensor(
                f"input '{tensor.name}': with content_type 'pd' every input is one column, "
                f"shape [N] or [N, 1], got {shape}"
            )
        columns.append(tensor)
    names = [c.name for c in columns]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputMismatch(f"model '{resolved.name}': columns {twice} are given twice")
    if len({len(c.data) for c in columns}) > 1:
        raise InvalidTensor(f"the columns sent to model '{resolved.name}' differ in length")
    return columns


def placed(resolved: ModelVersion, spec: TensorSpec, columns: list[Tensor]) -> list[Tensor]:
    """The columns a single-input model takes, in its feature order: a text model's one
    column (renamed as its input), else by name when it knows its feature names, else as sent,
    when there are exactly as many as its features.

    Raises:
        InputMismatch: the wrong count of columns, missing and extra names, or an input that
            columns cannot make (rank 3 and more).
    """
    if len(spec.shape) == 1:
        if len(columns) != 1:
            raise InputMismatch(
                f"model '{resolved.name}' takes one column ('{spec.name}'), got "
                f"{[c.name for c in columns]}"
            )
        return [replace(columns[0], name=spec.name)]
    if len(spec.shape) != 2 or spec.shape[1] < 0:
        raise InputMismatch(
            f"model '{resolved.name}' takes '{spec.name}' of shape {list(spec.shape)}, "
            "which columns cannot make"
        )
    width = spec.shape[1]
    names = [c.name for c in columns]
    if resolved.features:
        missing = [f for f in resolved.features if f not in names]
        extra = [n for n in names if n not in resolved.features]
        if missing or extra:
            raise InputMismatch(
                f"model '{resolved.name}' takes the columns {list(resolved.features)}; "
                f"missing {missing}, extra {extra}"
            )
        by_name = {c.name: c for c in columns}
        return [by_name[f] for f in resolved.features]
    if len(columns) != width:
        raise InputMismatch(
            f"model '{resolved.name}' was fitted on an array of {width} features: send "
            f"{width} columns in its feature order, got {len(columns)} ({names})"
        )
    return columns
