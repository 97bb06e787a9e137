"""The REST edge: an inference body -> :class:`InferRequest`, :class:`InferResponse` -> body.

Parsing and writing the wire format live here and only here, so the data plane never sees it.
The envelope is validated by pydantic straight from the bytes; each tensor is decoded from JSON
``data`` by :func:`~adapters.protocol.codecs.decode_tensor` or from binary data by
:func:`~adapters.protocol.binary.decode_raw` (numpy either way, never element by element).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from adapters.config.settings import Limits
from adapters.protocol.binary import HEADER, SIZE, BinaryReader, decode_raw, encode_raw, split_body
from adapters.protocol.codecs import check_elements, decode_tensor, encode_tensor
from adapters.protocol.errors import InputMismatch, InvalidJSON, InvalidTensor
from adapters.protocol.messages import InferRequest, InferResponse, RequestedOutput, Tensor
from adapters.protocol.schemas import InferenceRequest, RequestInput, describe_validation_error

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
M = TypeVar("M", bound=BaseModel)
DEFAULT_LIMITS = Limits()


def read_infer_request(
    name: str,
    version: str | None,
    body: bytes,
    *,
    header_length: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> InferRequest:
    """Parse and decode a JSON ``$inference_request`` for model ``name`` (``version`` or default),
    with tensors as JSON ``data`` or as binary data after a header of ``header_length`` bytes.

    Raises:
        InvalidJSON: the body is not JSON or not a V2 request object.
        InvalidTensor: a tensor's data does not match its datatype or shape, or the binary
            part does not add up.
        InputMismatch: ``model_name``/``model_version`` in the body disagree with the path.
    """
    start = time.perf_counter_ns()
    header, binary = split_body(body, header_length)
    envelope = parse_envelope(header)
    _check_path(envelope, name, version)
    check_elements(((t.name, t.shape) for t in envelope.inputs), limits.max_elements)
    reader = BinaryReader(binary)
    inputs = [_input(tensor, reader, limits.max_bytes_element) for tensor in envelope.inputs]
    reader.finish()
    outputs = (
        None
        if envelope.outputs is None
        else [RequestedOutput(o.name, o.parameters) for o in envelope.outputs]
    )
    decode_ns = time.perf_counter_ns() - start
    return InferRequest(
        name, version, inputs, outputs, envelope.id, envelope.parameters, decode_ns=decode_ns
    )


def _check_path(envelope: InferenceRequest, name: str, version: str | None) -> None:
    if envelope.model_name is not None and envelope.model_name != name:
        raise InputMismatch(
            f"model_name '{envelope.model_name[:100]}' in the body is not '{name}' of the path"
        )
    if envelope.model_version and version is not None and envelope.model_version != version:
        raise InputMismatch(
            f"model_version '{envelope.model_version[:100]}' in the body is not '{version}' "
            "of the path"
        )


def _input(tensor: RequestInput, reader: BinaryReader, max_bytes_element: int) -> Tensor:
    size = (tensor.parameters or {}).get(SIZE)
    if size is None:
        if tensor.data is None:
            raise InvalidTensor(f"input '{tensor.name}': no data and no binary_data_size")
        data = decode_tensor(
            tensor.name, tensor.datatype, tensor.shape, tensor.data, max_bytes=max_bytes_element
        )
    elif tensor.data is not None:
        raise InvalidTensor(f"input '{tensor.name}': both data and binary_data_size are given")
    else:
        raw = reader.take(tensor.name, size)
        data = decode_raw(
            tensor.name, tensor.datatype, tensor.shape, raw, max_bytes=max_bytes_element
        )
    return Tensor(tensor.name, tensor.datatype, data, tensor.parameters)


def write_infer_response(
    request: InferRequest, response: InferResponse
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers: JSON, or a JSON header followed by the outputs the
    client asked for as binary data (``binary_data`` per output, ``binary_data_output`` for
    all), with ``Inference-Header-Content-Length``."""
    binary = _binary_outputs(request)
    body: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
    }
    outputs, raw = [], []
    for tensor in response.outputs:
        if binary(tensor.name):
            data = encode_raw(tensor.datatype, tensor.data)
            raw.append(data)
            params = {**(tensor.parameters or {}), SIZE: len(data)}
            outputs.append(
                {
                    "name": tensor.name,
                    "shape": list(tensor.shape),
                    "datatype": tensor.datatype.value,
                    "parameters": params,
                }
            )
        else:
            outputs.append(
                encode_tensor(tensor.name, tensor.datatype, tensor.data, tensor.parameters)
            )
    body["outputs"] = outputs
    if response.id is not None:
        body["id"] = response.id
    if response.parameters:
        body["parameters"] = response.parameters
    header = dump_json(body)
    if not raw:
        return header, {"content-type": "application/json"}
    headers = {"content-type": "application/octet-stream", HEADER: str(len(header))}
    return b"".join([header, *raw]), headers


def _binary_outputs(request: InferRequest) -> Callable[[str], bool]:
    """Whether each output goes as binary: its own ``binary_data``, else the request's
    ``binary_data_output``, else JSON."""
    default = bool((request.parameters or {}).get("binary_data_output", False))
    per_output = {
        o.name: bool(o.parameters["binary_data"])
        for o in request.outputs or ()
        if o.parameters and "binary_data" in o.parameters
    }
    return lambda name: per_output.get(name, default)


def dump_json(content: Any) -> bytes:
    """orjson straight to bytes; numpy arrays are written without a list copy."""
    return orjson.dumps(content, option=JSON_OPTIONS)


def parse_envelope(body: bytes) -> InferenceRequest:
    """Validate the envelope straight from the bytes; tensor data is left to numpy."""
    return parse_model(InferenceRequest, body, what="inference request")


def parse_model(model: type[M], body: bytes, *, what: str = "request") -> M:
    """A V2 message from JSON bytes; a body that is not one is a 400 saying why."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidJSON(f"invalid {what}: {describe_validation_error(exc)}") from None
