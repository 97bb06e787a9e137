"""The REST edge: a JSON inference body -> :class:`InferRequest`, :class:`InferResponse` -> JSON.

Parsing and writing JSON live here and only here, so the data plane never sees a transport's
wire format. The envelope is validated by pydantic straight from the bytes; each tensor's ``data``
is decoded by :func:`~adapters.codecs.decode_tensor` (numpy, never element by element).
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from .codecs import decode_tensor, encode_tensor
from .errors import InvalidJSON
from .messages import InferRequest, InferResponse, RequestedOutput, Tensor
from .schemas import InferenceRequest

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
MAX_PROBLEMS = 10


def read_infer_request(name: str, version: str | None, body: bytes) -> InferRequest:
    """Parse and decode a JSON ``$inference_request`` for model ``name`` (``version`` or default).

    Raises:
        InvalidJSON: the body is not JSON or not a V2 request object.
        InvalidTensor: a tensor's data does not match its datatype or shape.
    """
    envelope = parse_envelope(body)
    inputs = [
        Tensor(i.name, i.datatype, decode_tensor(i.name, i.datatype, i.shape, i.data), i.parameters)
        for i in envelope.inputs
    ]
    outputs = (
        None
        if envelope.outputs is None
        else [RequestedOutput(o.name, o.parameters) for o in envelope.outputs]
    )
    return InferRequest(name, version, inputs, outputs, envelope.id, envelope.parameters)


def response_body(response: InferResponse) -> dict[str, Any]:
    """The JSON ``$inference_response`` object (numeric data left as numpy arrays for orjson)."""
    body: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": [encode_tensor(t.name, t.datatype, t.data) for t in response.outputs],
    }
    if response.id is not None:
        body["id"] = response.id
    if response.parameters:
        body["parameters"] = response.parameters
    return body


def dump_json(content: Any) -> bytes:
    """orjson straight to bytes; numpy arrays are written without a list copy."""
    return orjson.dumps(content, option=JSON_OPTIONS)


def parse_envelope(body: bytes) -> InferenceRequest:
    """Validate the envelope straight from the bytes; tensor data is left to numpy."""
    try:
        return InferenceRequest.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidJSON(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """One readable sentence per problem, e.g. ``inputs.0.shape: Field required``; at most
    :data:`MAX_PROBLEMS` of them, so a pathological body cannot make a huge answer."""
    problems = []
    for error in exc.errors(include_url=False)[:MAX_PROBLEMS]:
        where = ".".join(str(p) for p in error["loc"])
        if error["type"] == "json_invalid":
            problems.append(f"the body is not valid JSON ({error['msg']})")
        elif error["type"] == "enum" and where.endswith("datatype"):
            problems.append(f"{where}: unknown datatype {error['input']!r}")
        elif error["type"] == "model_type" and not where:
            problems.append("the body must be a JSON object")
        else:
            problems.append(f"{where}: {error['msg']}" if where else error["msg"])
    problems = [p if len(p) <= 300 else p[:297] + "..." for p in problems]
    more = exc.error_count() - len(problems)
    if more > 0:
        problems.append(f"and {more} more")
    return "invalid inference request: " + "; ".join(problems)
