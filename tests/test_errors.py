"""The error tree: each error carries its status, one handler writes ``{"error": ...}``."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from adapters import errors
from adapters.errors import EXCEPTION_HANDLERS, OIPError


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
    errors.Unsupported: 501,
}


def test_every_error_class_has_its_status() -> None:
    classes = set(all_subclasses(OIPError))
    assert classes == set(EXPECTED) | {
        errors.ModelNotFound,
        errors.VersionNotFound,
        errors.InternalError,
    }
    for cls, status in EXPECTED.items():
        assert cls("x").status_code == status
    assert errors.ModelNotFound("m").status_code == 404
    assert errors.VersionNotFound("m", "v").status_code == 404


def test_every_error_class_is_drawn_in_the_tree() -> None:
    for cls in all_subclasses(OIPError):
        assert cls.__name__ in (errors.__doc__ or "")


def _app(exc: Exception) -> TestClient:
    async def boom(request: object) -> None:
        raise exc

    app = Starlette(routes=[Route("/", boom)], exception_handlers=dict(EXCEPTION_HANDLERS))
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("cls", sorted(EXPECTED, key=lambda c: c.__name__))
def test_handler_writes_the_message_with_the_status(cls: type[OIPError]) -> None:
    response = _app(cls("what went wrong")).get("/")
    assert response.status_code == EXPECTED[cls]
    assert response.json() == {"error": "what went wrong"}


@pytest.mark.parametrize("exc", [OIPError("secret detail"), RuntimeError("secret detail")])
def test_our_bugs_are_opaque_500s(exc: Exception) -> None:
    response = _app(exc).get("/")
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error"}


def test_an_unexpected_error_in_a_route_is_an_opaque_500_that_keeps_the_connection() -> None:
    from adapters.routes import guarded

    async def broken(request: object) -> None:
        raise KeyError("secret detail")

    app = Starlette(
        routes=[Route("/", guarded(broken))],  # type: ignore[arg-type]
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    # raise_server_exceptions=True: the test fails if anything escapes to the server
    response = TestClient(app).get("/")
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error"}
