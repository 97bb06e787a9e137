"""The error tree and its one path: :func:`adapters.http.routes.guarded` writes ``{"error":
...}``."""

from __future__ import annotations

import logging

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from adapters.http.metrics import RequestMetrics
from adapters.http.routes import guarded
from adapters.protocol import errors
from adapters.protocol.errors import OIPError


def all_subclasses(cls: type) -> list[type]:
    return [c for s in cls.__subclasses__() for c in (s, *all_subclasses(s))]


EXPECTED = {
    errors.BadRequest: 400,
    errors.InvalidJSON: 400,
    errors.InvalidTensor: 400,
    errors.InputMismatch: 400,
    errors.UnknownOutput: 400,
    errors.NotFound: 404,
    errors.RouteNotFound: 404,
    errors.MethodNotAllowed: 405,
    errors.NotReady: 503,
    errors.Overloaded: 503,
    errors.DeadlineExceeded: 504,
    errors.PayloadTooLarge: 413,
    errors.ResponseTooLarge: 413,
    errors.RequestTimeout: 408,
    errors.UnsupportedMediaType: 415,
    errors.Unsupported: 501,
}


def test_every_error_class_has_its_status() -> None:
    classes = set(all_subclasses(OIPError))
    assert classes == set(EXPECTED) | {
        errors.ModelNotFound,
        errors.VersionNotFound,
        errors.InternalError,
        errors.ModelOutputError,
        errors.ClientGone,
    }
    for cls, status in EXPECTED.items():
        assert cls("x").status_code == status
    assert errors.ModelNotFound("m").status_code == 404
    assert errors.VersionNotFound("m", "v").status_code == 404
    assert errors.ModelOutputError("x").status_code == 500


def test_every_error_class_is_drawn_in_the_tree() -> None:
    for cls in all_subclasses(OIPError):
        assert cls.__name__ in (errors.__doc__ or "")


def test_not_found_lists_what_exists_and_never_echoes_a_huge_name() -> None:
    message = errors.ModelNotFound("irs", served=["diabetes", "iris"]).message
    assert message == "Model 'irs' not found; served: diabetes, iris"
    assert len(errors.ModelNotFound("x" * 100_000).message) < 200


def _client(exc: Exception) -> TestClient:
    async def boom(request: Request) -> Response:
        raise exc

    app = Starlette(routes=[Route("/", guarded(boom, "test", RequestMetrics()))])
    # raise_server_exceptions=True: the test fails if anything escapes to the server
    return TestClient(app)


@pytest.mark.parametrize("cls", sorted(EXPECTED, key=lambda c: c.__name__))
def test_the_route_wrapper_writes_the_message_with_the_status(cls: type[OIPError]) -> None:
    response = _client(cls("what went wrong")).get("/")
    assert response.status_code == EXPECTED[cls]
    assert response.json() == {"error": "what went wrong"}
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "exc",
    [
        OIPError("secret detail"),
        errors.ModelOutputError("secret detail"),
        RuntimeError("secret detail"),
        KeyError("secret detail"),
    ],
)
def test_our_bugs_are_opaque_logged_500s(exc: Exception, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="adapters"):
        response = _client(exc).get("/")
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error"}
    assert "secret detail" in caplog.text


def test_error_headers_are_sent() -> None:
    exc = errors.MethodNotAllowed("no", headers={"Allow": "GET"})
    response = _client(exc).get("/")
    assert (response.status_code, response.headers["allow"]) == (405, "GET")
