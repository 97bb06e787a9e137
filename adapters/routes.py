"""HTTP routes of the Open Inference Protocol, as one Starlette app.

Each model route is declared once in :data:`MODEL_ROUTES`; :func:`build_app` registers it both
unversioned (``/v2/models/{name}/...``) and versioned (``/v2/models/{name}/versions/{v}/...``).
Routes only do HTTP: the :class:`~adapters.dataplane.DataPlane` does the work.

The app is built at import time but its data plane is attached later (``app.state.dataplane``),
when the serving process has loaded the models; until then every route but liveness answers
503.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .dataplane import DataPlane
from .errors import (
    EXCEPTION_HANDLERS,
    InternalError,
    MethodNotAllowed,
    NotReady,
    OIPError,
    RouteNotFound,
    oip_error_response,
)

logger = logging.getLogger(__name__)
Endpoint = Callable[[Request], Awaitable[Response]]
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
CATCH_ALL = "/v2/{path:path}"
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def json_response(content: Any, status_code: int = 200) -> Response:
    """orjson straight to bytes; numpy arrays in ``data`` are written without a list copy."""
    return Response(
        orjson.dumps(content, option=_JSON_OPTIONS),
        status_code=status_code,
        media_type="application/json",
    )


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
    body = await request.body()
    return json_response(await _dataplane(request).infer(*_model(request), body))


async def unknown_route(request: Request) -> Response:
    """Any other ``/v2/...`` request: 405 if the path exists with another verb, else 404.

    NOTE: BentoML mounts ASGI apps "passively" (a path none of our routes match falls through to
    BentoML's plain-text 404), so the V2 namespace is claimed explicitly by this last route.
    """
    path = request.url.path
    routes = [r for r in request.app.routes if isinstance(r, Route) and r.path != CATCH_ALL]
    if any(r.path_regex.match(path) for r in routes):
        raise MethodNotAllowed(f"method {request.method} is not allowed on {path}")
    raise RouteNotFound(f"no V2 route {path}")


SERVER_ROUTES: list[tuple[str, str, Endpoint]] = [
    ("/v2", "GET", server_metadata),
    ("/v2/", "GET", server_metadata),
    ("/v2/health/live", "GET", server_live),
    ("/v2/health/ready", "GET", server_ready),
]
MODEL_ROUTES: list[tuple[str, str, Endpoint]] = [  # inference first: matched in order
    ("/infer", "POST", model_infer),
    ("", "GET", model_metadata),
    ("/ready", "GET", model_ready),
]
MODEL_PREFIXES = (
    "/v2/models/{model_name}",
    "/v2/models/{model_name}/versions/{model_version}",
)


def guarded(endpoint: Endpoint) -> Endpoint:
    """Answer every error of a route right here, in the V2 shape.

    :class:`OIPError` becomes its status and message; any other exception is logged with its
    traceback and answered with an opaque 500.

    NOTE: answering here rather than in Starlette's app-level middlewares keeps two things true:
    an exception that reached Starlette's outermost error middleware would be re-raised to the
    server, which closes the keep-alive connection; and the fast lane
    (:mod:`adapters.gateway`) calls the router directly, past those middlewares.
    """

    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except OIPError as exc:
            return oip_error_response(request, exc)
        except HTTPException:
            raise
        except Exception:
            logger.exception("unhandled error on %s %s", request.method, request.url.path)
            return oip_error_response(request, InternalError())

    return run


def build_app() -> Starlette:
    """The V2 app: every server route, and every model route with and without a version."""
    routes = [
        Route(prefix + suffix, guarded(endpoint), methods=[verb])
        for prefix in MODEL_PREFIXES
        for suffix, verb, endpoint in MODEL_ROUTES
    ]
    routes += [
        Route(path, guarded(endpoint), methods=[verb]) for path, verb, endpoint in SERVER_ROUTES
    ]
    routes.append(Route(CATCH_ALL, guarded(unknown_route), methods=ALL_METHODS))
    return Starlette(routes=routes, exception_handlers=dict(EXCEPTION_HANDLERS))
