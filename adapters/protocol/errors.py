"""Errors of the V2 layer: each carries its HTTP status; each edge renders them its own way (HTTP:
``{"error": msg}`` by :mod:`adapters.http.responses`; gRPC: the status of the HTTP status, by
:mod:`adapters.grpc.service`), so this module imports no web framework.

There is one error path per edge: :func:`adapters.http.routes.guarded` wraps every V2 route,
turns an :class:`OIPError` into its status and message and any other exception into a logged,
opaque 500. No Starlette exception handler is involved (the fast lane calls the router past
them).

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

from collections.abc import Mapping, Sequence


class OIPError(Exception):
    """Base of every error the V2 layer raises on purpose."""

    status_code: int = 500

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class InternalError(OIPError):
    """Any exception that is not an :class:`OIPError`: our bug, logged with its traceback."""

    def __init__(self) -> None:
        super().__init__("Internal server error")


class ModelOutputError(OIPError):
    """The model produced an output V2 cannot carry (e.g. an object array of mixed types)."""


class Unsupported(OIPError):
    """A request this server understands but does not implement (501; gRPC UNIMPLEMENTED)."""

    status_code = 501


class ClientGone(OIPError):
    """Counted as 499 (nginx's "client closed request") in the metrics; no one reads the body."""

    status_code = 499


class BadRequest(OIPError):
    """The request is wrong: the client must change it (400; gRPC INVALID_ARGUMENT)."""

    status_code = 400


class InvalidJSON(BadRequest):
    """The body is not JSON, or not a V2 request object (pydantic says where)."""


class InvalidTensor(BadRequest):
    """A tensor whose datatype, shape or data do not fit together."""


class InputMismatch(BadRequest):
    """Inputs that do not fit the model's signature (names, datatypes, feature count)."""


class UnknownOutput(BadRequest):
    """An ``outputs`` entry the model does not produce; the message lists those it does."""


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
    """A ``Content-Encoding`` other than gzip or deflate, or a content type a web page may POST
    cross-site without a preflight."""

    status_code = 415


class NotFound(OIPError):
    """No such model, version, V2 path or stored prediction (404; gRPC NOT_FOUND)."""

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
    """A ``/v2`` path no route answers."""


class MethodNotAllowed(OIPError):
    """Raised with an ``Allow`` header listing the path's methods."""

    status_code = 405


class NotReady(OIPError):
    """Not now: models still loading, a runner down or a version no longer served (503)."""

    status_code = 503


class Overloaded(NotReady):
    """Answered with ``Retry-After``: the condition passes as the queue drains."""

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class DeadlineExceeded(OIPError):
    """The request's work is abandoned where it can be (a queued predict is dropped)."""

    status_code = 504
