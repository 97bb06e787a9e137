"""The fast lane: V2 requests go straight to the V2 app, the rest to BentoML's app."""

from __future__ import annotations

import logging

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from adapters.http.lane import V2FastLane, is_v2


def tagged(name: str) -> Starlette:
    async def endpoint(request: Request) -> PlainTextResponse:
        status = 404 if request.url.path.endswith("missing") else 200
        return PlainTextResponse(name, status_code=status)

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2", True),
        ("/v2/", True),
        ("/v2/models/x/infer", True),
        ("/v2x", False),
        ("/metrics", False),
        ("/livez", False),
        ("/", False),
    ],
)
def test_is_v2(path: str, expected: bool) -> None:
    assert is_v2(path) is expected


def test_v2_requests_take_the_lane_and_the_rest_goes_to_bentoml(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lane = V2FastLane(tagged("v2"), tagged("bentoml"), log_access=True)
    with TestClient(lane) as client, caplog.at_level(logging.INFO, logger="bentoml.access"):
        assert client.get("/v2/models/iris").text == "v2"
        assert client.post("/v2/models/iris/missing").status_code == 404
        assert client.get("/metrics").text == "bentoml"
        assert client.get("/livez").text == "bentoml"
    lines = [r.getMessage() for r in caplog.records if r.name == "bentoml.access"]
    assert len(lines) == 2  # the lane logs its own requests only
    assert "method=GET,path=/v2/models/iris) (status=200)" in lines[0]
    assert "method=POST,path=/v2/models/iris/missing) (status=404)" in lines[1]


def test_access_log_off(caplog: pytest.LogCaptureFixture) -> None:
    lane = V2FastLane(tagged("v2"), tagged("bentoml"), log_access=False)
    with TestClient(lane) as client, caplog.at_level(logging.INFO, logger="bentoml.access"):
        assert client.get("/v2").text == "v2"
    assert not [r for r in caplog.records if r.name == "bentoml.access"]


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/iris/infer",
        "/v2/models/iris/versions/3/infer",
        "/v2/models/stats/infer",
        "/v2/models//infer",
        "/v2/models/iris/versions//infer",
        "/v2/models/a/b/infer",
        "/v2/models/iris/versions/3/extra/infer",
        "/v2/models/iris/inferx",
        "/v2/models/infer",
    ],
)
def test_the_lanes_shortcut_to_inference_matches_what_the_router_would(path: str) -> None:
    """``POST .../infer`` skips the router: it must pick the same paths and parameters."""
    from starlette.routing import Match

    from adapters.http.lane import infer_path_params
    from adapters.http.routes import build_app

    scope = {"type": "http", "method": "POST", "path": path, "root_path": ""}
    infer = {
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}/infer",
    }
    expected = None
    for route in build_app().routes:  # the router's order: the first full match answers
        match, child = route.matches(scope)
        if match is Match.FULL:
            expected = child["path_params"] if getattr(route, "path", "") in infer else None
            break
    assert infer_path_params(path) == expected
