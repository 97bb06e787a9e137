"""HTTP routes of the Open Inference Protocol, as one Starlette app.

Each model route is declared once in :data:`MODEL_ROUTES`; :func:`build_app` registers it both
unversioned (``/v2/models/{name}/...``) and versioned (``/v2/models/{name}/versions/{v}/...``).
Routes only do HTTP: the :mod:`~adapters.http.rest` edge turns bodies into messages and back, the
:class:`~adapters.dataplane.DataPlane` does the work.

The app is built at import time but its data plane is attached later (``app.state.dataplane``),
when the serving process has loaded the models; until then every route but liveness answers
503.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from adapters.dataplane.plane import DataPlane
from adapters.http.bodies import MIN_COMPRESSED_RESPONSE, choose_encoding, compress, read_body
from adapters.http.docs import DOCS_ROUTES
from adapters.http.metrics import RequestMetrics
from adapters.http.responses import oip_error_response
from adapters.http.rest import dump_json, parse_model, read_infer_request, write_infer_response
from adapters.protocol.binary import HEADER
from adapters.protocol.errors import (
    ClientGone,
    InternalError,
    MethodNotAllowed,
    NotReady,
    OIPError,
    RouteNotFound,
    UnsupportedMediaType,
)
from adapters.protocol.schemas import RepositoryIndexRequest

logger = logging.getLogger(__name__)
Endpoint = Callable[[Request], Awaitable[Response]]
CATCH_ALL = "/v2/{path:path}"
NOSNIFF = (b"x-content-type-options", b"nosniff")
INDEX_BODY_BYTES = 64 * 1024  # the repository index takes one flag: any larger body is a 413


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(dump_json(content), status_code=status_code, media_type="application/json")


def _dataplane(request: Request) -> DataPlane:
    dataplane: DataPlane | None = getattr(request.app.state, "dataplane", None)
    if dataplane is None:
        raise NotReady("the server is still loading its models")
    return dataplane


def _model(request: Request) -> tuple[str, str | None]:
    return request.path_params["model_name"], request.path_params.get("model_version")


async def server_metadata(request: Request) -> Response:
    return json_response(_dataplane(request).server_metadata())


async def server_live(request: Request) -> Response:
    return json_response({"live": True})


async def server_ready(request: Request) -> Response:
    dataplane = getattr(request.app.state, "dataplane", None)
    ready = dataplane is not None and await dataplane.ready()
    return json_response({"ready": ready}, 200 if ready else 503)


async def model_metadata(request: Request) -> Response:
    return json_response(_dataplane(request).model_metadata(*_model(request)))


async def model_ready(request: Request) -> Response:
    state = await _dataplane(request).model_ready(*_model(request))
    return json_response(state, 200 if state["ready"] else 503)


async def model_infer(request: Request) -> Response:
    """Body, decoding and predict all run under the request deadline (``OIP_REQUEST_TIMEOUT_S``);
    past it the request is abandoned (its queued predict is dropped) and answered 504."""
    dataplane = _dataplane(request)
    limits = dataplane.limits
    name, version = _model(request)
    async with dataplane.deadline(name):
        body = await read_body(request, limits)
        header_length = request.headers.get(HEADER)
        infer = read_infer_request(name, version, body, header_length=header_length, limits=limits)
        response = await dataplane.infer(infer)
    encoding_start = time.perf_counter_ns()
    content, headers = write_infer_response(infer, response)
    dataplane.encoded(response, time.perf_counter_ns() - encoding_start)
    if len(content) >= MIN_COMPRESSED_RESPONSE:
        encoding = choose_encoding(request.headers.get("accept-encoding"))
        if encoding is not None:
            content = compress(content, encoding)
            headers["content-encoding"] = encoding
    return Response(content, headers=headers)


async def stored_prediction(request: Request) -> Response:
    """A batch prediction ``score.py`` stored, read back at serving latency."""
    name, version = _model(request)
    key = request.path_params["key"]
    return json_response(await _dataplane(request).stored_prediction(name, version, key))


async def model_statistics(request: Request) -> Response:
    name = request.path_params.get("model_name")
    version = request.path_params.get("model_version")
    return json_response(_dataplane(request).model_statistics(name, version))


async def repository_index(request: Request) -> Response:
    """``POST /v2/repository/index``; the body (``{"ready": true}``) is optional, small, and read
    under the server's read timeout like any other."""
    dataplane = _dataplane(request)
    limits = replace(
        dataplane.limits, max_body_bytes=min(INDEX_BODY_BYTES, dataplane.limits.max_body_bytes)
    )
    body = await read_body(request, limits)
    options = (
        parse_model(RepositoryIndexRequest, body) if body.strip() else RepositoryIndexRequest()
    )
    return json_response(dataplane.repository.index(ready_only=options.ready))


async def repository_load(request: Request) -> Response:
    await _dataplane(request).repository.load(request.path_params["model_name"])
    return json_response({})


async def repository_unload(request: Request) -> Response:
    await _dataplane(request).repository.unload(request.path_params["model_name"])
    return json_response({})


async def repository_loaded(request: Request) -> Response:
    """``GET /v2/repository/loaded``: not V2; which estimators each process holds."""
    return json_response(await _dataplane(request).loaded())


async def unknown_route(request: Request) -> Response:
    """Any other ``/v2/...`` request: 405 with ``Allow`` if the path exists, else 404.

    NOTE: BentoML mounts ASGI apps "passively" (a path none of our routes match falls through to
    BentoML's plain-text 404), so the V2 namespace is claimed explicitly by this last route,
    which takes every method (``TRACE``, ``PROPFIND``, ... included).
    """
    path = request.url.path
    allowed = sorted(
        {
            method
            for route in request.app.routes
            if isinstance(route, Route)
            and not isinstance(route.endpoint, AnyMethod)
            and route.path_regex.match(path)
            for method in route.methods or ()
        }
    )
    if allowed:
        raise MethodNotAllowed(
            f"method {request.method} is not allowed on {path}; allowed: {', '.join(allowed)}",
            headers={"Allow": ", ".join(allowed)},
        )
    raise RouteNotFound(f"no V2 route {path}")


SERVER_ROUTES: list[tuple[str, str, Endpoint, str]] = [  # path, verb, endpoint, metric label
    ("/v2", "GET", server_metadata, "server"),
    ("/v2/", "GET", server_metadata, "server"),
    ("/v2/health/live", "GET", server_live, "health"),
    ("/v2/health/ready", "GET", server_ready, "health"),
    # before the model routes: a model named "stats" would otherwise shadow it
    ("/v2/models/stats", "GET", model_statistics, "statistics"),
    ("/v2/repository/index", "POST", repository_index, "repository"),
    ("/v2/repository/models/{model_name}/load", "POST", repository_load, "repository"),
    ("/v2/repository/models/{model_name}/unload", "POST", repository_unload, "repository"),
    ("/v2/repository/loaded", "GET", repository_loaded, "repository"),
]
MODEL_ROUTES: list[tuple[str, str, Endpoint, str]] = [  # inference first: matched in order
    ("/infer", "POST", model_infer, "infer"),
    ("", "GET", model_metadata, "metadata"),
    ("/ready", "GET", model_ready, "ready"),
    ("/stats", "GET", model_statistics, "statistics"),
    ("/predictions/{key}", "GET", stored_prediction, "predictions"),
]
MODEL_PREFIXES = (
    "/v2/models/{model_name}",
    "/v2/models/{model_name}/versions/{model_version}",
)


def guarded(endpoint: Endpoint, label: str, metrics: RequestMetrics) -> Endpoint:
    """The one error path of every V2 route, and its request metric.

    :class:`OIPError` becomes its status and message; any other exception is logged with its
    traceback and answered with an opaque 500; a client that left mid-body is counted as 499,
    not logged. The latency is observed with bounded labels (:meth:`Registry.labels`).

    NOTE: answering here rather than in Starlette's app-level middlewares keeps two things true:
    an exception that reached Starlette's outermost error middleware would be re-raised to the
    server, which closes the keep-alive connection; and the fast lane
    (:mod:`adapters.http.lane`) calls the router directly, past those middlewares.
    """

    async def run(request: Request) -> Response:
        start = time.perf_counter()
        try:
            if request.method == "POST":
                refuse_simple_content_types(request)
            response = await endpoint(request)
        except ClientDisconnect:
            response = oip_error_response(request, ClientGone("the client went away"))
        except OIPError as exc:
            response = oip_error_response(request, exc)
        except Exception:
            logger.exception("unhandled error on %s %s", request.method, request.url.path)
            response = oip_error_response(request, InternalError())
        response.raw_headers.append(NOSNIFF)  # raw: MutableHeaders would scan the list
        model, version = _labels(request)
        metrics.observe(label, model, version, response.status_code, time.perf_counter() - start)
        return response

    return run


SIMPLE_CONTENT_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")


def refuse_simple_content_types(request: Request) -> None:
    """415 for the content types any web page can POST cross-site without a CORS preflight.

    NOTE: without this, a page open in a browser could send inference or repository calls to a
    server on the user's machine or network (``text/plain`` bodies are read as JSON here). The
    binary extension's header already forces a preflight, so such requests pass.
    """
    content_type = request.headers.get("content-type")
    if content_type is None or HEADER in request.headers:
        return
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type in SIMPLE_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {media_type} is not accepted: send application/json "
            "(or application/octet-stream with the binary extension)"
        )


def _labels(request: Request) -> tuple[str, str]:
    name = request.path_params.get("model_name")
    dataplane: DataPlane | None = getattr(request.app.state, "dataplane", None)
    if name is None or dataplane is None:
        return "", ""
    return dataplane.registry.labels(name, request.path_params.get("model_version"))


def build_app() -> Starlette:
    """The V2 app: every server route, and every model route with and without a version."""
    metrics = RequestMetrics()
    routes = [
        Route(path, guarded(endpoint, label, metrics), methods=[verb])
        for path, verb, endpoint, label in [*SERVER_ROUTES, *DOCS_ROUTES]
    ]
    routes += [
        Route(prefix + suffix, guarded(endpoint, label, metrics), methods=[verb])
        for prefix in MODEL_PREFIXES
        for suffix, verb, endpoint, label in MODEL_ROUTES
    ]
    catch_all = AnyMethod(guarded(unknown_route, "other", metrics))
    routes += [Route("/v2", catch_all), Route(CATCH_ALL, catch_all)]  # "/v2" itself too
    app = Starlette(routes=routes)
    # the fast lane's shortcut to inference, past the router (adapters/http/lane.py)
    app.state.infer = AnyMethod(guarded(model_infer, "infer", metrics))
    return app


class AnyMethod:
    """An endpoint as a plain ASGI app: Starlette gives a function endpoint with no ``methods``
    just ``GET``, an ASGI app every method (``TRACE``, ``PROPFIND``, ...)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.endpoint(Request(scope, receive, send))
        await response(scope, receive, send)
