"""A request's inputs and outputs checked against a model version's signature: what its methods
take (one array, or the DataFrame of a column model) and which outputs to compute. The data plane
checks every inference with them, and batch scoring every chunk, so a row is accepted or refused
the same way whether it came in a request or from a file. MLServer's content types (a request of
columns, base64 inputs) are read here too (:mod:`adapters.protocol.content`,
:mod:`adapters.models.columns`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from adapters.models.columns import as_columns, placed
from adapters.models.registry import ModelVersion
from adapters.models.signature import TensorSpec
from adapters.protocol.classification import class_count
from adapters.protocol.codecs import DATATYPE_TO_DTYPE, Array, cast_exact
from adapters.protocol.content import PANDAS, decoded, request_content_type
from adapters.protocol.errors import InputMismatch, InvalidTensor, UnknownOutput, Unsupported
from adapters.protocol.messages import Parameters, RequestedOutput, Tensor
from adapters.protocol.schemas import Datatype


def model_input(
    resolved: ModelVersion, inputs: list[Tensor], parameters: Parameters | None = None
) -> Any:
    """Match the request's inputs to the signature: what the model's methods take, one array
    (or, for a model fitted on a DataFrame, a DataFrame of its columns). ``parameters``, the
    request's, may say the inputs are columns (``content_type: "pd"``)."""
    if any(t.parameters for t in inputs):
        inputs = [decoded(t) for t in inputs]
    if request_content_type(parameters) == PANDAS:
        return columns_input(resolved, inputs)
    if resolved.signature.frame:
        return frame_input(resolved, inputs)
    spec = single_input(resolved)
    names = [i.name for i in inputs]
    if names != [spec.name]:
        raise InputMismatch(
            f"model '{resolved.name}' takes one input named '{spec.name}', got {names}"
        )
    return check_tensor(spec, inputs[0])


def single_input(resolved: ModelVersion) -> TensorSpec:
    """The one input of a model that is not a DataFrame model."""
    specs = resolved.signature.inputs
    if len(specs) != 1:
        raise Unsupported(
            f"model '{resolved.name}' declares {len(specs)} inputs but is not a DataFrame model "
            "(signature frame): only a DataFrame model takes more than one input tensor"
        )
    return specs[0]


def columns_input(resolved: ModelVersion, inputs: list[Tensor]) -> Any:
    """What the model takes from a request of columns (:mod:`adapters.models.columns`): a
    DataFrame model's DataFrame, else its one input, stacked from the columns."""
    columns = as_columns(resolved, inputs)
    if resolved.signature.frame:
        return frame_input(resolved, columns)
    spec = single_input(resolved)
    ordered = placed(resolved, spec, columns)
    if len(spec.shape) == 1:
        return check_tensor(spec, ordered[0])
    column = TensorSpec(spec.name, spec.datatype, (-1,))
    stacked = [check_tensor(replace(column, name=c.name), c) for c in ordered]
    return np.column_stack(stacked)


def frame_input(resolved: ModelVersion, inputs: list[Tensor]) -> Any:
    """The DataFrame a column model takes: one input per fitted column, any order, each
    ``[N]`` or ``[N, 1]``, rebuilt with the fitted names and order (no feature-name warning)."""
    import pandas as pd

    specs = {spec.name: spec for spec in resolved.signature.inputs}
    given = {tensor.name: tensor for tensor in inputs}
    missing = [name for name in specs if name not in given]
    unknown = [name for name in given if name not in specs]
    if missing or unknown or len(given) != len(inputs):
        raise InputMismatch(
            f"model '{resolved.name}' takes one input per column {list(specs)}; "
            f"missing {missing}, unknown {unknown}"
            + (", some given twice" if len(given) != len(inputs) else "")
        )
    columns = {name: check_tensor(spec, given[name]) for name, spec in specs.items()}
    lengths = {len(column) for column in columns.values()}
    if len(lengths) > 1:
        raise InvalidTensor(f"the columns of model '{resolved.name}' have different lengths")
    return pd.DataFrame(columns, columns=list(specs))


def check_tensor(spec: TensorSpec, tensor: Tensor) -> Array:
    """Check a decoded input against its spec (datatype family, rank, fixed dimensions) and
    return it in the dtype the model takes.

    Numeric tensors of any numeric datatype are accepted and cast to the spec's dtype (clients
    often send FP32 to an FP64 model) unless the cast would change a value; BYTES and numbers
    never mix. A text model declared ``[-1]`` also accepts ``[N, 1]``, the shape many V2 clients
    use for strings.
    """
    datatype, array = tensor.datatype, tensor.data
    if (datatype is Datatype.BYTES) != (spec.datatype is Datatype.BYTES):
        raise InputMismatch(
            f"input '{spec.name}' must be {spec.datatype.value}, got {datatype.value}"
        )
    if len(spec.shape) == 1 and array.ndim == 2 and array.shape[1] == 1:
        array = array.reshape(-1)
    expected = tuple(None if d < 0 else d for d in spec.shape)
    actual = array.shape
    if len(actual) != len(expected) or any(
        e not in (None, a) for e, a in zip(expected, actual, strict=True)
    ):
        shape = list(spec.shape)
        if len(expected) == 2 and len(actual) == 2 and expected[1] is not None:
            raise InvalidTensor(
                f"input '{spec.name}' must have shape {shape}: "
                f"expected {expected[1]} features, got {actual[1]}"
            )
        raise InvalidTensor(f"input '{spec.name}' must have shape {shape}, got {list(actual)}")
    if spec.datatype is not Datatype.BYTES:
        array = cast_exact(spec.name, array, DATATYPE_TO_DTYPE[spec.datatype])
    return array


def requested_outputs(
    resolved: ModelVersion, outputs: list[RequestedOutput] | None
) -> list[tuple[str, int | None]]:
    """The outputs to compute, in request order (all of the signature when none is asked for),
    each with its classification count, if any."""
    available = resolved.signature.output_names
    if not outputs:
        return [(name, None) for name in resolved.signature.default_outputs]
    unknown = [o.name for o in outputs if o.name not in available]
    if unknown:
        raise UnknownOutput(
            f"unknown output {unknown} for model '{resolved.name}'; available: {list(available)}"
        )
    wanted = {o.name: class_count(o.name, o.parameters) for o in outputs}
    return list(wanted.items())
