"""Errors of the V2 layer: each carries its HTTP status; :func:`oip_error_response` writes
``{"error": msg}`` for every one of them.

There is one error path: :func:`adapters.http.routes.guarded` wraps every V2 route, turns an
:class:`OIPError` into its status and message and any other exception into a logged, opaque 500.
No Starlette exception handler is involved (the fast lane calls the router past them).

NOTE: an answer too large to send is a 413 too (:class:`ResponseTooLarge`), though RFC 9110's
413 speaks of request content. It is the request that is too large for this server: its rows
times the outputs it asks for, refused before the work, as ``OIP_MAX_ELEMENTS`` refuses its
inputs; the remedy is the client's and the same (fewer rows per request, fewer outputs), and
clients that split batches on 413 do the right thing. A 5xx would invite retrying the same
request, 400 would hide that a limit was met, and gRPC maps it, like every size limit, to
RESOURCE_EXHAUSTED.

The tree::

    OIPError (500: our own bug; the message sent is opaque, the detail is logged)
    ├── InternalError (500)        any other exception, wrapped by the routes
    ├── ModelOutputError (500)     the model produced an output V2 cannot carry
    ├── BadRequest (400)
    │   ├── InvalidJSON            body is not JSON / not a V2 request object
    │   ├── InvalidTensor          unknown datatype, shape/data mismatch, wrong element types
    │   ├── InputMismatch          inputs that do not fit the model's signature
    │   └── UnknownOutput          an ``outputs`` entry the model does not produce
    ├── RequestTimeout (408)       the client stopped sending its body (OIP_READ_TIMEOUT_S)
    ├── PayloadTooLarge (413)      over a size limit: body, decompressed body, elements
    │   └── ResponseTooLarge       the answer asked for is over OIP_MAX_RESPONSE_BYTES
    ├── UnsupportedMediaType (415) a Content-Encoding other than gzip or deflate, or a
    │                              content type any web page may POST cross-site
    ├── NotFound (404)
    │   ├── ModelNotFound
    │   ├── VersionNotFound
    │   └── RouteNotFound          no such V2 path
    ├── MethodNotAllowed (405)
    ├── NotReady (503)
    │   └── Overloaded             the runner refused: its batching latency budget is spent
    ├── DeadlineExceeded (504)     the request ran past OIP_REQUEST_TIMEOUT_S
    ├── Unsupported (501)
    └── ClientGone (499)           the client went away mid-request; nothing is sent
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import orjson
from starlette.requests import Request
from starlette.responses import Response

logger = logging.getLogger(__name__)


class OIPError(Exception):
    """Base of every error the V2 layer raises on purpose."""

    status_code: int = 500

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class InternalError(OIPError):
    def __init__(self) -> None:
        super().__init__("Internal server error")


class ModelOutputError(OIPError):
    pass


class Unsupported(OIPError):
    status_code = 501


class ClientGone(OIPError):
    """Counted as 499 (nginx's "client closed request") in the metrics; no one reads the body."""

    status_code = 499


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


class RequestTimeout(OIPError):
    """The client stopped sending its body mid-way: the answer closes the connection."""

    status_code = 408

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Connection": "close"})


class PayloadTooLarge(OIPError):
    """Its message names the limit that was passed and the variable that raises it."""

    status_code = 413


class ResponseTooLarge(PayloadTooLarge):
    """The answer would be larger than ``OIP_MAX_RESPONSE_BYTES``; refused before it is built."""


class UnsupportedMediaType(OIPError):
    status_code = 415


class NotFound(OIPError):
    status_code = 404


class ModelNotFound(NotFound):
    def __init__(self, name: str, *, served: Sequence[str] = (), why: str = "") -> None:
        reason = f" ({why})" if why else ""
        super().__init__(f"Model '{_short(name)}' not found{reason}; served: {', '.join(served)}")


class VersionNotFound(NotFound):
    def __init__(self, name: str, version: str, *, served: Sequence[str] = ()) -> None:
        super().__init__(
            f"Version '{_short(version)}' of model '{name}' not found; "
            f"versions: {', '.join(served)}"
        )


def _short(text: str, limit: int = 100) -> str:
    """A client-supplied name, cut so that an error never echoes a huge string back."""
    return text if len(text) <= limit else text[:limit] + "..."


class RouteNotFound(NotFound):
    pass


class MethodNotAllowed(OIPError):
    """Raised with an ``Allow`` header listing the path's methods."""

    status_code = 405


class NotReady(OIPError):
    status_code = 503


class Overloaded(NotReady):
    """Answered with ``Retry-After``: the condition passes as the queue drains."""

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class DeadlineExceeded(OIPError):
    """The request's work is abandoned where it can be (a queued predict is dropped)."""

    status_code = 504


def error_response(
    message: str, status_code: int, headers: Mapping[str, str] | None = None
) -> Response:
    """The one shape every failure takes on the wire."""
    return Response(
        orjson.dumps({"error": message}),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def oip_error_response(request: Request, exc: OIPError) -> Response:
    """``{"error": ...}`` with the error's status; our own 500s are logged and kept opaque."""
    if exc.status_code == 500 and not isinstance(exc, InternalError):
        logger.error("internal error on %s %s: %s", request.method, request.url.path, exc)
        return error_response("Internal server error", exc.status_code)
    return error_response(exc.message, exc.status_code, exc.headers)
