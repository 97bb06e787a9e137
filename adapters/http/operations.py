"""What the OpenAPI document says, operation by operation: one table, :data:`OPERATIONS`, with
each operation's path, answer, examples (real answers: :mod:`adapters.http.examples`) and
errors, and the few small answers no V2 schema describes. :mod:`adapters.http.openapi` renders
it; ``tests/test_openapi.py`` checks that every registered route is in it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, RootModel

from adapters.http.examples import (
    INFER_REQUESTS,
    INFER_RESPONSES,
    IRIS_METADATA,
    IRIS_STATS,
    IRIS_VERSION,
    REPOSITORY_INDEX,
    SERVER_METADATA,
    TEXT_METADATA,
    TEXT_VERSION,
)
from adapters.protocol import schemas as s


class LiveResponse(s.V2Model):
    """``GET /v2/health/live``: the process answers."""

    live: bool


class ReadyResponse(s.V2Model):
    """``GET /v2/health/ready``: every served model can run inference."""

    ready: bool


class ModelReadyResponse(s.V2Model):
    """``GET /v2/models/{model_name}/ready``."""

    name: str
    ready: bool


class EmptyResponse(s.V2Model):
    """``{}``: the repository action is done."""


class LoadedResponse(RootModel[dict[str, dict[str, list[str]]]]):
    """``GET /v2/repository/loaded`` (not V2): the model tags whose estimators are held, by
    placement, then by process: the gateway worker that answered, every runner worker."""


MODELS: dict[str, type[BaseModel]] = {
    m.__name__: m
    for m in (
        *(s.InferenceRequest, s.InferenceResponse, s.ModelMetadata, s.ServerMetadata),
        *(s.ErrorResponse, s.RepositoryIndexRequest, s.RepositoryModel, s.StatisticsResponse),
        *(LiveResponse, ReadyResponse, ModelReadyResponse, EmptyResponse, LoadedResponse),
    )
}
"""Every model a request or response body is documented with, by component name."""

ERRORS = {  # status -> (when, a real message)
    400: ("Bad request: an invalid body or tensor, or (load) a model that cannot be loaded.",
          "invalid inference request: inputs.0.shape: Field required"),
    404: ("No such model or version.", "Model 'nope' not found; served: iris, text"),
    413: ("The body (or its decompressed size) is over OIP_MAX_BODY_BYTES.",
          "the body is larger than the limit of 67108864 bytes (OIP_MAX_BODY_BYTES)"),
    415: ("A Content-Encoding other than gzip or deflate.",
          "Content-Encoding 'br' is not supported; use gzip, deflate or none"),
    500: ("The model produced an output V2 cannot carry (logged; the message is opaque).",
          "Internal server error"),
    501: ("A model whose signature declares several inputs without being a DataFrame model "
          "(frame): only a hand-written signature can say that.",
          "model 'm' declares 2 inputs but is not a DataFrame model (signature frame): only a "
          "DataFrame model takes more than one input tensor"),
    503: ("Not ready: the server is still loading its models (infer: also the runner over its "
          "latency budget, with Retry-After).", "the server is still loading its models"),
    504: ("The request ran past OIP_REQUEST_TIMEOUT_S; its queued predict is dropped.",
          "the request did not complete in 60 s (OIP_REQUEST_TIMEOUT_S)"),
}  # fmt: skip

EXTENSIONS = """

**Binary tensor data** (Triton's `binary_tensor_data` extension, what `tritonclient` and the
KServe SDK send by default): the body may be `application/octet-stream` with an
`Inference-Header-Content-Length: N` header; its first N bytes are the JSON request, and each
input with a `parameters.binary_data_size` carries no `data`: its raw bytes follow the JSON, in
input order (little-endian, row-major; BOOL one byte each; BYTES a 4-byte little-endian length
then the bytes of each element). The response is written the same way, with the same header,
for the outputs requested with `parameters.binary_data: true`, or every output when the request
has `parameters.binary_data_output: true`.

**Compression**: a request body may be sent with `Content-Encoding: gzip` or `deflate`; a
response of 1 KiB or more is compressed when `Accept-Encoding` allows gzip or deflate.

**Classification** (Triton's extension): an output `predict_proba` requested with
`parameters.classification: N` answers the top N classes of each row as BYTES
`"<score>:<index>:<label>"`."""


@dataclass(frozen=True)
class Operation:
    """One documented operation. With ``per_version`` its ``path`` is a suffix, documented under
    each of :data:`PREFIXES`; ``answer`` names the 200 body's component (``[Name]``: an array)."""

    method: str
    path: str
    ident: str
    summary: str
    tag: str
    answer: str | None
    examples: dict[str, Any] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    request: str | None = None
    request_examples: dict[str, Any] = field(default_factory=dict)
    per_version: bool = False
    description: str = ""


LOADED = {
    "inprocess": {"1": [f"iris:{IRIS_VERSION}"]},
    "runner": {"1": [f"text:{TEXT_VERSION}"], "2": [f"text:{TEXT_VERSION}"]},
}

STORED_PREDICTION = {
    "model_name": "iris",
    "model_version": "latest",
    "id": "row-1",
    "parameters": {"scored_at": "2026-11-26T07:00:00+00:00"},
    "outputs": [{"name": "predict", "datatype": "INT64", "shape": [1], "data": [0]}],
}

OPERATIONS = [
    Operation("get", "/v2", "server_metadata", "Server metadata", "server", "ServerMetadata",
              {"server": SERVER_METADATA}, (503,)),
    Operation("get", "/v2/", "server_metadata_slash", "Server metadata (as GET /v2)", "server",
              "ServerMetadata", {"server": SERVER_METADATA}, (503,)),
    Operation("get", "/v2/health/live", "server_live", "Liveness", "health", "LiveResponse",
              {"live": {"live": True}}),
    Operation("get", "/v2/health/ready", "server_ready", "Readiness of every served model",
              "health", "ReadyResponse", {"ready": {"ready": True}}, (503,),
              description="503 with `{\"ready\": false}` while any model cannot run inference."),
    Operation("get", "", "model_metadata", "Model metadata: versions, signature, properties",
              "model", "ModelMetadata", {"iris": IRIS_METADATA, "text": TEXT_METADATA},
              (404, 503), per_version=True),
    Operation("get", "/ready", "model_ready", "Model readiness", "model", "ModelReadyResponse",
              {"iris": {"name": "iris", "ready": True}}, (404, 503), per_version=True),
    Operation("post", "/infer", "model_infer", "Inference", "inference", "InferenceResponse",
              INFER_RESPONSES, (400, 404, 413, 415, 500, 501, 503, 504), "InferenceRequest",
              INFER_REQUESTS, per_version=True, description=EXTENSIONS.strip()),
    Operation("get", "/stats", "model_statistics", "Model statistics",
              "statistics", "StatisticsResponse", {"iris": {"model_stats": [IRIS_STATS]}},
              (404, 503), per_version=True),
    Operation("get", "/predictions/{key}", "stored_prediction",
              "A batch prediction stored by score.py (OIP_PREDICTIONS_DB)", "inference",
              "InferenceResponse", {"iris": STORED_PREDICTION}, (404, 503), per_version=True),
    Operation("get", "/v2/models/stats", "statistics", "Statistics of every loaded version",
              "statistics", "StatisticsResponse", {"iris": {"model_stats": [IRIS_STATS]}}, (503,)),
    Operation("post", "/v2/repository/index", "repository_index", "The model repository's index",
              "repository", "[RepositoryModel]", {"all": REPOSITORY_INDEX}, (400, 413, 415, 503),
              "RepositoryIndexRequest", {"ready only": {"ready": True}},
              description="The body is optional; `ready: true` lists only READY versions."),
    Operation("post", "/v2/repository/models/{model_name}/load", "repository_load",
              "Load a model's versions", "repository", "EmptyResponse", {"done": {}},
              (400, 404, 503), description="404 for a model not in OIP_MODELS."),
    Operation("post", "/v2/repository/models/{model_name}/unload", "repository_unload",
              "Unload a model", "repository", "EmptyResponse", {"done": {}}, (404, 503)),
    Operation("get", "/v2/repository/loaded", "repository_loaded",
              "The estimators each process holds (not V2)", "repository", "LoadedResponse",
              {"both placements": LOADED}, (503,),
              description="What load fills and unload frees, for operators and tests."),
    Operation("get", "/v2/docs", "docs", "This documentation (Swagger UI, offline)", "docs", None),
    Operation("get", "/v2/docs/openapi.json", "openapi", "This OpenAPI document", "docs", None),
]  # fmt: skip

PATH_PARAMETERS = {  # name -> (description, example)
    "model_name": ("A model the server serves (OIP_MODELS).", "iris"),
    "model_version": ("A version string, `latest`, or `best` (best held-out metric).", "latest"),
    "key": ("The row's key in score.py's table (its id column, or its content hash).", "row-1"),
}
INFER_HEADERS = {  # name -> (description, schema)
    "Inference-Header-Content-Length": ("Length of the JSON part of a binary body.",
                                        {"type": "integer", "minimum": 0}),
    "Content-Encoding": ("Compression of the body.",
                         {"type": "string", "enum": ["gzip", "deflate", "identity"]}),
}  # fmt: skip
