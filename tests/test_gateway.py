"""The BentoML seam in process: ``Gateway.to_asgi()``, BentoML's own app, with the lane on and
off; both must answer the V2 routes the same way, errors and metrics included."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import prometheus_client
import pytest
from starlette.testclient import TestClient

from adapters.http.lane import V2FastLane

from .conftest import Store

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def lane(store: Store) -> Iterator[TestClient]:
    """``service.Gateway.to_asgi()``, imported once the test store has models (the service lists
    them at import), started once: BentoML registers its metrics when it builds its app, so
    one process builds it once. No gRPC server here: its stubs would clash with the KServe
    SDK's copy of the ``inference`` messages in this process (gRPC is tested end to end)."""
    os.environ["OIP_GRPC_PORT"] = "0"
    try:
        import service
    finally:
        del os.environ["OIP_GRPC_PORT"]

    app = service.Gateway.to_asgi()
    assert isinstance(app, V2FastLane)
    with TestClient(app) as c:  # raise_server_exceptions: nothing may escape to the server
        yield c


@pytest.fixture(params=["lane", "no-lane"])
def client(request: pytest.FixtureRequest, lane: TestClient) -> TestClient:
    """The lane, or what ``to_asgi`` returns with the lane off: BentoML's app, whose full
    middleware stack reaches the V2 app as a mounted app."""
    if request.param == "lane":
        return lane
    fallback = lane.app.fallback  # type: ignore[attr-defined]
    return TestClient(fallback)


def test_v2_routes_answer_through_bentoml_app(client: TestClient) -> None:
    assert client.get("/v2/health/ready").json() == {"ready": True}
    golden = json.loads((DATA / "iris_request.json").read_text())
    response = client.post("/v2/models/iris/infer", json=golden)
    assert response.status_code == 200
    assert response.json()["model_name"] == "iris"


@pytest.mark.parametrize("path", ["/v2", "/v2/", "/v2/models/iris", "/v2/health/live"])
@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "DELETE", "PATCH"])
def test_any_method_on_a_v2_path_is_a_v2_405(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert list(response.json()) == ["error"]
    assert response.headers["allow"] == "GET, HEAD"


def test_bentoml_routes_stay_beside_v2(client: TestClient) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/v2/nothing").status_code == 404


def test_metrics_labels_come_from_the_registry(client: TestClient) -> None:
    for i in range(5):
        client.get(f"/v2/models/invented-{i}/infer")  # 405 on a name nobody serves
        client.get(f"/v2/models/invented-{i}")  # 404
    client.get("/v2/models/iris/versions/best")
    # in process, BentoML has no multiprocess metrics directory: read this process's registry
    metrics = prometheus_client.generate_latest().decode()
    ours = [m for m in metrics.splitlines() if m.startswith("oip_")]
    assert ours and not [m for m in ours if "invented-" in m]
    series = [m for m in ours if m.startswith("oip_request_duration_seconds_count")]
    assert any('model="iris"' in s and 'endpoint="metadata"' in s for s in series), series
    models = {m.split('model="')[1].split('"')[0] for m in series}
    assert models <= {"", "iris", "diabetes", "text"}, models  # served names only
