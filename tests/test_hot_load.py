"""Hot load on the real server, both placements: versions trained while it serves load by
themselves (OIP_POLL_INTERVAL_S) or through the repository API, and ``latest`` moves under
concurrent traffic without one failed request. tritonclient's repository, statistics and
classification calls read the same extensions."""

from __future__ import annotations

import time
from collections.abc import Iterator

import bentoml
import httpx
import numpy as np
import pytest
import tritonclient.http as triton

import train

from .conftest import LiveServer, Store, start_server, stop_server
from .traffic import Traffic

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["inprocess", "runner"])
def polled(
    request: pytest.FixtureRequest, store: Store, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    log = tmp_path_factory.mktemp("hot") / f"{request.param}.log"
    env = {"OIP_MODELS": "iris", "OIP_PLACEMENT": request.param, "OIP_POLL_INTERVAL_S": "0.5"}
    server = start_server(store.home, env, log)
    yield server
    stop_server(server)


def wait_for_latest(url: str, version: str, deadline_s: float = 15) -> float:
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        if (
            httpx.get(f"{url}/v2/models/iris/versions/latest")
            .json()["properties"]["bentoml_tag"]
            .endswith(version)
        ):
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"latest did not move to {version} in {deadline_s} s")


def test_new_versions_load_under_traffic_without_a_failed_request(polled: LiveServer) -> None:
    new: list[str] = []
    try:
        with Traffic(polled.url, "/v2/models/iris/versions/latest/infer") as traffic:
            time.sleep(1)
            polled_version = train.train("iris", {"C": 0.2}, seed=3, test_size=0.2)
            new.append(str(polled_version.tag))
            wait_for_latest(polled.url, polled_version.tag.version, deadline_s=60)  # by polling
            time.sleep(1)
            loaded = train.train("iris", {"C": 0.4}, seed=4, test_size=0.2)
            new.append(str(loaded.tag))
            assert httpx.post(f"{polled.url}/v2/repository/models/iris/load").json() == {}
            wait_for_latest(polled.url, loaded.tag.version, deadline_s=60)
            time.sleep(1)
        assert traffic.failures == []
        assert traffic.versions[polled_version.tag.version] > 0
        assert traffic.versions[loaded.tag.version] > 0
        assert sum(traffic.versions.values()) > 50
    finally:
        for tag in new:
            bentoml.models.delete(tag)
        httpx.post(f"{polled.url}/v2/repository/models/iris/load")


def test_tritonclient_repository_statistics_and_classification(
    polled: LiveServer, store: Store
) -> None:
    client = triton.InferenceServerClient(polled.url.removeprefix("http://"))
    try:
        index = client.get_model_repository_index()
        assert {e["name"] for e in index} == {"iris"} and {e["state"] for e in index} == {"READY"}

        x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
        tensor = triton.InferInput("input-0", list(x.shape), "FP64")
        tensor.set_data_from_numpy(x)
        wanted = [triton.InferRequestedOutput("predict_proba", class_count=3)]
        top = client.infer("iris", [tensor], outputs=wanted).as_numpy("predict_proba")
        assert top is not None and top.shape == (2, 3)
        proba = bentoml.sklearn.load_model(store.tags["iris"][-1]).predict_proba(x)
        for row, cells in zip(proba, top, strict=True):
            assert [int(c.decode().split(":")[1]) for c in cells] == np.argsort(-row).tolist()

        stats = client.get_inference_statistics("iris")["model_stats"]
        assert sum(s["inference_count"] for s in stats) >= 2

        client.unload_model("iris")
        assert not client.is_model_ready("iris")
        client.load_model("iris")
        assert client.is_model_ready("iris")
    finally:
        client.close()
