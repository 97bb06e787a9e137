"""Errors of the V2 layer: each carries its HTTP status; one handler writes ``{"error": msg}``.

The tree (registering the base with Starlette covers every subclass, its lookup walks the MRO)::

    OIPError (500: our own bug; the message sent is opaque, the detail is logged)
    ├── InternalError (500)        any other exception, wrapped by the routes
    ├── BadRequest (400)
    │   ├── InvalidJSON            body is not JSON / not a V2 request object
    │   ├── InvalidTensor          unknown datatype, shape/data mismatch, wrong element types
    │   ├── InputMismatch          inputs that do not fit the model's signature
    │   └── UnknownOutput          an ``outputs`` entry the model does not produce
    ├── NotFound (404)
    │   ├── ModelNotFound
    │   ├── VersionNotFound
    │   └── RouteNotFound          no such V2 path
    ├── MethodNotAllowed (405)
    ├── NotReady (503)
    │   └── Overloaded             the runner refused: its batching latency budget is spent
    └── Unsupported (501)
"""

from __future__ import annotations

import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

logger = logging.getLogger(__name__)


class OIPError(Exception):
    """Base of every error the V2 layer raises on purpose."""

    status_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InternalError(OIPError):
    def __init__(self) -> None:
        super().__init__("Internal server error")


class BadRequest(OIPError):
    status_code = 400


class InvalidJSON(BadRequest):
    pass


class InvalidTensor(BadRequest):
    pass


class InputMismatch(BadRequest):
    pass


class UnknownOutput(BadRequest):
    pass


class NotFound(OIPError):
    status_code = 404


class ModelNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"Model '{name}' not found")


class VersionNotFound(NotFound):
    def __init__(self, name: str, version: str) -> None:
        super().__init__(f"Version '{version}' of model '{name}' not found")


class RouteNotFound(NotFound):
    pass


class MethodNotAllowed(OIPError):
    status_code = 405


class NotReady(OIPError):
    status_code = 503


class Overloaded(NotReady):
    pass


class Unsupported(OIPError):
    status_code = 501


def error_response(message: str, status_code: int) -> Response:
    """The one shape every failure takes on the wire."""
    return Response(
        orjson.dumps({"error": message}),
        status_code=status_code,
        media_type="application/json",
    )


def oip_error_response(request: Request, exc: OIPError) -> Response:
    """``{"error": ...}`` with the error's status; our own 500s are logged and kept opaque."""
    if exc.status_code == 500 and not isinstance(exc, InternalError):
        logger.error("internal error on %s %s: %s", request.method, request.url.path, exc)
        return error_response("Internal server error", exc.status_code)
    return error_response(exc.message, exc.status_code)


async def handle_oip_error(request: Request, exc: Exception) -> Response:
    """Starlette's handler for any :class:`OIPError` that reaches the app."""
    assert isinstance(exc, OIPError)
    return oip_error_response(request, exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown route, wrong verb) in the V2 error shape."""
    assert isinstance(exc, HTTPException)
    return error_response(str(exc.detail), exc.status_code)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """A bug of ours: logged with its traceback, answered with an opaque 500."""
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response("Internal server error", 500)


EXCEPTION_HANDLERS = {
    OIPError: handle_oip_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
