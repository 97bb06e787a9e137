"""Open Inference Protocol (V2 REST) message schemas.

The request envelope is validated by pydantic (one pass, straight from the JSON bytes with
``model_validate_json``); tensor ``data`` is deliberately typed ``Any`` so that pydantic never
walks it element by element: numpy decodes it in :mod:`adapters.protocol.codecs`.

Responses are built as plain dicts and written with orjson; the response models below document
the wire format, and the tests validate real responses against them (``tests/test_routes.py``);
they never re-validate an answer on the hot path.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_TENSORS = 4096
"""Most inputs (and requested outputs) in one request: checked while the list is validated, so a
body of a million empty inputs is refused before a million objects are built."""

Parameters = dict[str, Any]
"""``$parameters``: name -> string | number | boolean (servers may define their own)."""


class Datatype(enum.StrEnum):
    """The tensor datatypes of the spec's "Tensor Data Types" table."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"


class V2Model(BaseModel):
    """Base of every V2 message: unknown fields are an error, so typos fail loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RequestInput(V2Model):
    """``$request_input``: one input tensor; ``data`` is flat row-major or nested, or absent
    when the tensor is sent as binary data (``parameters.binary_data_size``)."""

    name: str
    shape: list[int] = Field(description="Each dimension a non-negative integer.")
    datatype: Datatype
    parameters: Parameters | None = None
    data: Any = None


class RequestOutput(V2Model):
    """``$request_output``: the name of an output the client wants back."""

    name: str
    parameters: Parameters | None = None


class InferenceRequest(V2Model):
    """``$inference_request``: ``id`` is echoed; ``outputs`` restricts what is returned.

    ``model_name`` and ``model_version`` are accepted (the KServe SDK sends them) and must agree
    with the path. Unknown top-level fields are ignored, so a client that adds its own does not
    break; unknown fields inside a tensor are still an error, as they indicate a mistake.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    model_name: str | None = None
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[RequestInput] = Field(max_length=MAX_TENSORS)
    outputs: list[RequestOutput] | None = Field(default=None, max_length=MAX_TENSORS)


class MetadataTensor(V2Model):
    """``$metadata_tensor``: variable-size dimensions are -1."""

    name: str
    datatype: Datatype
    shape: list[int]


class ResponseOutput(V2Model):
    """``$response_output``."""

    name: str
    shape: list[int]
    datatype: Datatype
    parameters: Parameters | None = None
    data: list[Any]


class InferenceResponse(V2Model):
    """``$inference_response``; ``model_version`` is always the concrete version used."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class ModelMetadata(V2Model):
    """``$metadata_model_response`` plus the OpenAPI document's string->string ``properties``."""

    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    properties: dict[str, str] | None = None


class ServerMetadata(V2Model):
    """``$metadata_server_response``."""

    name: str
    version: str
    extensions: list[str]


class ErrorResponse(V2Model):
    """Every failure, on every route: ``{"error": "<message>"}``."""

    error: str


class RepositoryIndexRequest(V2Model):
    """Body of ``POST /v2/repository/index`` (optional): ``ready`` lists only READY versions."""

    ready: bool = False


class RepositoryModel(V2Model):
    """One model version in the repository index; ``state`` is READY, UNAVAILABLE or UNLOADED,
    ``reason`` says why a version is not READY (or, READY, that it was evicted); ``loaded``
    (not V2) whether its estimator is held now."""

    name: str
    version: str
    state: str
    reason: str
    loaded: bool | None = None


class StatDuration(V2Model):
    """A count and the total nanoseconds they took."""

    count: int
    ns: int


class InferStats(V2Model):
    """Per-stage totals: ``success``/``fail`` whole requests, ``queue`` waiting for an executor,
    ``compute_input`` decoding and checking, ``compute_infer`` predict, ``compute_output``
    encoding."""

    success: StatDuration
    fail: StatDuration
    queue: StatDuration
    compute_input: StatDuration
    compute_infer: StatDuration
    compute_output: StatDuration


class ModelStats(V2Model):
    """Statistics of one model version (Triton's statistics extension)."""

    name: str
    version: str
    last_inference: int = Field(description="Milliseconds since the epoch; 0 if never.")
    inference_count: int = Field(description="Inferences (batch rows) run.")
    execution_count: int = Field(description="Inference requests executed.")
    inference_stats: InferStats
    batch_stats: list[dict[str, Any]]


class StatisticsResponse(V2Model):
    """``GET /v2/models/stats`` and the per-model/version variants."""

    model_stats: list[ModelStats]


MAX_PROBLEMS = 10
"""Validation problems listed in one error at most; the rest are counted (``and N more``)."""
MAX_PROBLEM_CHARS = 300
"""Each problem is cut at this many characters: a pathological body never makes a huge answer."""


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
    problems = [
        p if len(p) <= MAX_PROBLEM_CHARS else p[: MAX_PROBLEM_CHARS - 3] + "..." for p in problems
    ]
    more = exc.error_count() - len(problems)
    if more > 0:
        problems.append(f"and {more} more")
    return "; ".join(problems)
