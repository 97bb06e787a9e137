"""The gRPC edge's codec:
``ModelInferRequest`` -> :class:`~adapters.protocol.messages.InferRequest`,
:class:`~adapters.protocol.messages.InferResponse` -> ``ModelInferResponse``.

Inputs come as ``raw_input_contents`` (the clients' default: the binary extension's layout, one
buffer per input, decoded by :func:`~adapters.protocol.binary.decode_raw` without a copy) or as
typed ``contents``; outputs always go back as ``raw_output_contents``, which both tritonclient and
the KServe SDK read. Validation, resolution and execution are the data plane's, as for REST.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from adapters.config.settings import Limits
from adapters.grpc.generated import grpc_service_pb2 as pb
from adapters.protocol.binary import decode_raw, encode_raw
from adapters.protocol.codecs import DATATYPE_TO_DTYPE, cast_exact, check_elements
from adapters.protocol.errors import InvalidTensor
from adapters.protocol.messages import InferRequest, InferResponse, RequestedOutput, Tensor
from adapters.protocol.schemas import Datatype

# NOTE: the typed ``contents`` field each datatype travels in (the spec's table); small integers
# share int_contents / uint_contents, FP16 has no typed field (raw only).
CONTENTS = {
    Datatype.BOOL: "bool_contents",
    Datatype.UINT8: "uint_contents",
    Datatype.UINT16: "uint_contents",
    Datatype.UINT32: "uint_contents",
    Datatype.UINT64: "uint64_contents",
    Datatype.INT8: "int_contents",
    Datatype.INT16: "int_contents",
    Datatype.INT32: "int_contents",
    Datatype.INT64: "int64_contents",
    Datatype.FP32: "fp32_contents",
    Datatype.FP64: "fp64_contents",
    Datatype.BYTES: "bytes_contents",
}


def parameters(message: Any) -> dict[str, Any] | None:
    """A protobuf ``map<string, InferParameter>`` as plain Python values; None when empty (the
    usual case, and the cheap one: no iteration)."""
    if not message:
        return None
    return {
        key: getattr(value, value.WhichOneof("parameter_choice")) for key, value in message.items()
    }


def set_parameters(target: Any, values: dict[str, Any] | None) -> None:
    """Plain Python values into a protobuf ``map<string, InferParameter>`` (what MLServer's
    converters write: bool, int64, double or string)."""
    for key, value in (values or {}).items():
        if isinstance(value, bool):
            target[key].bool_param = value
        elif isinstance(value, int):
            target[key].int64_param = value
        elif isinstance(value, float):
            target[key].double_param = value
        else:
            target[key].string_param = str(value)


DATATYPES = {kind.value: kind for kind in Datatype}  # a dict lookup, not the enum's call


def datatype(name: str, value: str) -> Datatype:
    kind = DATATYPES.get(value)
    if kind is None:
        raise InvalidTensor(f"input '{name}': unknown datatype {value[:20]!r}")
    return kind


def read_request(request: pb.ModelInferRequest, limits: Limits) -> InferRequest:
    """Decode a ``ModelInferRequest`` (raw or typed contents) into the data plane's message.

    Raises:
        InvalidTensor: sizes, shapes, datatypes or contents that do not fit.
        PayloadTooLarge: more elements than ``OIP_MAX_ELEMENTS``.
    """
    start = time.perf_counter_ns()
    # NOTE: each access to a protobuf field builds a Python object: every field is read once
    tensors = request.inputs
    raw = request.raw_input_contents
    if raw and len(raw) != len(tensors):
        raise InvalidTensor(
            f"{len(raw)} raw_input_contents for {len(tensors)} inputs: give one per input"
        )
    shapes = [(t.name, list(t.shape)) for t in tensors]
    check_elements(shapes, limits.max_elements)
    inputs = []
    for index, tensor in enumerate(tensors):
        name, shape = shapes[index]
        kind = datatype(name, tensor.datatype)
        if raw:
            data = decode_raw(
                name, kind, shape, memoryview(raw[index]), max_bytes=limits.max_bytes_element
            )
        else:
            data = _typed(name, kind, shape, tensor.contents)
        inputs.append(Tensor(name, kind, data, parameters(tensor.parameters)))
    outputs = [RequestedOutput(o.name, parameters(o.parameters)) for o in request.outputs]
    return InferRequest(
        request.model_name,
        request.model_version or None,
        inputs,
        outputs or None,
        request.id or None,
        parameters(request.parameters),
        decode_ns=time.perf_counter_ns() - start,
    )


def _typed(name: str, kind: Datatype, shape: list[int], contents: Any) -> Any:
    field = CONTENTS.get(kind)
    if field is None:
        raise InvalidTensor(f"input '{name}': {kind.value} travels in raw_input_contents only")
    values = getattr(contents, field)
    expected = math.prod(shape)
    if len(values) != expected:
        raise InvalidTensor(
            f"input '{name}': shape {shape} needs {expected} elements, contents has {len(values)}"
        )
    if kind is Datatype.BYTES:
        try:
            text = [bytes(v).decode("utf-8") for v in values]
        except UnicodeDecodeError:
            raise InvalidTensor(f"input '{name}': BYTES elements must be UTF-8 text") from None
        return np.array(text, dtype=np.object_).reshape(shape)
    wide = np.asarray(values)  # int32 contents for INT8..INT32: narrowed only if values fit
    return cast_exact(name, wide, DATATYPE_TO_DTYPE[kind]).reshape(shape)


def write_response(response: InferResponse) -> pb.ModelInferResponse:
    """Outputs as ``raw_output_contents`` (little-endian; BYTES length-prefixed), with their
    parameters (``content_type``)."""
    message = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version,
        id=response.id or "",
    )
    for tensor in response.outputs:
        output = message.outputs.add(
            name=tensor.name, datatype=tensor.datatype.value, shape=tensor.shape
        )
        set_parameters(output.parameters, tensor.parameters)
        message.raw_output_contents.append(encode_raw(tensor.datatype, tensor.data))
    return message
