"""The OpenAPI 3.1 document of every V2 route, served at ``/v2/docs/openapi.json`` and rendered
by Swagger UI at ``/v2/docs`` (:mod:`adapters.http.docs`).

The routes are plain Starlette, so nothing derives this document from them as FastAPI would;
instead one table, :data:`~adapters.http.operations.OPERATIONS`, declares each operation once,
and model operations are expanded to the unversioned and the ``/versions/{model_version}`` prefix as
:func:`~adapters.http.routes.build_app` does. The schemas are not hand-written: the components are
generated from the pydantic models of :mod:`adapters.protocol.schemas` (and the four tiny answers
below). The examples (:mod:`adapters.http.examples`) are real answers of this server.
``tests/test_openapi.py`` keeps the document honest: it validates, every registered route is in it,
every example fits its model.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from pydantic.json_schema import models_json_schema

from adapters.http.operations import (
    ERRORS,
    EXTENSIONS,
    INFER_HEADERS,
    MODELS,
    OPERATIONS,
    PATH_PARAMETERS,
    Operation,
)

REF = "#/components/schemas/{model}"
PREFIXES = ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{model_version}")


def _schema(name: str) -> dict[str, Any]:
    if name.startswith("["):
        return {"type": "array", "items": _schema(name[1:-1])}
    return {"$ref": REF.format(model=name)}


def _json(schema: dict[str, Any], examples: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"schema": schema}
    if examples:
        body["examples"] = {k: {"value": copy.deepcopy(v)} for k, v in examples.items()}
    return {"application/json": body}


def _error(op: Operation, status: int) -> dict[str, Any]:
    """``{"error"}`` with a real message; readiness answers its own body with 503."""
    when, message = ERRORS[status]
    schema = _schema("ErrorResponse")
    examples: dict[str, Any] = {"error": {"error": message}}
    if status == 503 and op.answer == "ReadyResponse":
        schema, examples = _schema(op.answer), {"not ready": {"ready": False}}
    elif status == 503 and op.answer == "ModelReadyResponse":
        schema = {"oneOf": [_schema(op.answer), schema]}
        examples["not ready"] = {"name": "iris", "ready": False}
    return {"description": when, "content": _json(schema, examples)}


def _responses(op: Operation) -> dict[str, Any]:
    if op.answer is None:
        kind = "application/json" if op.path.endswith(".json") else "text/html"
        return {"200": {"description": op.summary, "content": {kind: {}}}}
    ok: dict[str, Any] = {"description": "OK", "content": _json(_schema(op.answer), op.examples)}
    if op.path == "/infer":
        ok["content"]["application/octet-stream"] = {"schema": {}}
        ok["headers"] = {k: {"description": d, "schema": v} for k, (d, v) in INFER_HEADERS.items()}
    return {"200": ok} | {str(status): _error(op, status) for status in op.errors}


def _operation(op: Operation, path: str) -> dict[str, Any]:
    versioned = "{model_version}" in path
    spec: dict[str, Any] = {
        "tags": [op.tag],
        "summary": op.summary + (" (of one version)" if versioned else ""),
        "operationId": op.ident + ("_version" if versioned else ""),
        "responses": _responses(op),
    }
    if op.description:
        spec["description"] = op.description
    parameters = [
        {"name": name, "in": "path", "required": True, "description": description,
         "schema": {"type": "string"}, "example": example}
        for name, (description, example) in PATH_PARAMETERS.items()
        if "{" + name + "}" in path
    ]  # fmt: skip
    if op.path == "/infer":
        parameters += [
            {"name": name, "in": "header", "description": description, "schema": schema}
            for name, (description, schema) in INFER_HEADERS.items()
        ]
        parameters.append(
            {"name": "Accept-Encoding", "in": "header", "schema": {"type": "string"},
             "description": "gzip or deflate: responses of 1 KiB or more are compressed."}
        )  # fmt: skip
    if parameters:
        spec["parameters"] = parameters
    if op.request is not None:
        content = _json(_schema(op.request), op.request_examples)
        if op.path == "/infer":
            content["application/octet-stream"] = {"schema": {}}
        spec["requestBody"] = {"required": op.path == "/infer", "content": content}
    return spec


@functools.cache
def _components() -> dict[str, Any]:
    """The pydantic models' JSON Schemas (2020-12, OpenAPI 3.1's dialect), built once."""
    _, top = models_json_schema([(m, "validation") for m in MODELS.values()], ref_template=REF)
    return dict(top["$defs"])


def openapi_document(*, server_version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every V2 route, as a fresh dict the caller may change.

    Args:
        server_version: ``info.version`` and the server metadata example's version
            (``adapters.__version__``).
    """
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        for path in [p + op.path for p in PREFIXES] if op.per_version else [op.path]:
            paths.setdefault(path, {})[op.method] = _operation(op, path)
    for path in ("/v2", "/v2/"):
        content = paths[path]["get"]["responses"]["200"]["content"]["application/json"]
        content["examples"]["server"]["value"]["version"] = server_version
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Open Inference Protocol (KServe V2 REST) for scikit-learn models",
            "version": server_version,
            "description": 'Every failure answers `{"error": "..."}` with its status; any '
            "other method on a V2 path answers 405 with `Allow`, any other `/v2` path 404."
            + EXTENSIONS,
        },
        "paths": paths,
        "components": {"schemas": copy.deepcopy(_components())},
    }
