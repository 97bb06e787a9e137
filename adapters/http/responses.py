"""The one shape every failure takes over HTTP: ``{"error": "<message>"}`` with the error's
status and headers (:mod:`adapters.protocol.errors` holds the errors themselves)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import orjson
from starlette.requests import Request
from starlette.responses import Response

from adapters.protocol.errors import InternalError, OIPError

logger = logging.getLogger(__name__)


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
