"""Under concurrency: the runner really merges calls, and a slow predict never stalls the server.

Expected answers come from the stored estimators, loaded here.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time

import bentoml
import httpx
import numpy as np
import pytest
from sklearn.datasets import load_iris, make_classification

from .conftest import LiveServer, Store

pytestmark = pytest.mark.e2e


def batch_histogram(metrics: str) -> tuple[float, float]:
    """(number of merged calls, number of requests in them) of the runner's ``run`` API."""

    def value(kind: str) -> float:
        pattern = (
            rf'^bentoml_service_adaptive_batch_size_{kind}\{{[^}}]*method_name="run"[^}}]*\}} (\S+)'
        )
        return sum(float(m) for m in re.findall(pattern, metrics, flags=re.M))

    return value("count"), value("sum")


def test_runner_merges_concurrent_requests_into_batches(live: LiveServer, store: Store) -> None:
    if live.placement != "runner":
        pytest.skip("adaptive batching happens on the runner placement only")
    X = load_iris().data
    tag = store.tags["iris"][-1]
    bodies = [
        {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": row.tolist()}]}
        for row in X
    ]

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=live.url, limits=limits, timeout=60) as client:
            return await asyncio.gather(
                *[client.post("/v2/models/iris/infer", json=b) for b in bodies * 2]
            )

    before = batch_histogram(httpx.get(f"{live.url}/metrics").text)
    responses = asyncio.run(fire())
    after = batch_histogram(httpx.get(f"{live.url}/metrics").text)
    batches, requests = after[0] - before[0], after[1] - before[1]
    assert requests == len(responses)
    assert batches < requests, f"no call was merged: {batches} batches for {requests} requests"

    estimator = bentoml.sklearn.load_model(tag)
    expected_labels = np.tile(estimator.predict(X), 2)
    expected_proba = np.tile(estimator.predict_proba(X), (2, 1))
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
        assert outputs["predict"] == [expected_labels[i]]
        np.testing.assert_allclose(outputs["predict_proba"], expected_proba[i], rtol=1e-12)


def test_a_slow_predict_does_not_stall_health_or_metadata(live: LiveServer) -> None:
    X, _ = make_classification(n_samples=40000, n_features=20, random_state=1)
    body = {
        "inputs": [
            {"name": "input-0", "shape": list(X.shape), "datatype": "FP64", "data": X.tolist()}
        ]
    }
    done = threading.Event()
    result: dict[str, object] = {}

    def slow() -> None:
        start = time.monotonic()
        response = httpx.post(f"{live.url}/v2/models/forest/infer", json=body, timeout=120)
        result["status"], result["seconds"] = response.status_code, time.monotonic() - start
        result["body"] = response.text[:300]
        done.set()

    worker = threading.Thread(target=slow)
    worker.start()
    waits: list[float] = []
    with httpx.Client(base_url=live.url, timeout=30) as client:
        while not done.is_set():
            start = time.monotonic()
            assert client.get("/v2/health/ready").status_code == 200
            assert client.get("/v2/models/iris").status_code == 200
            waits.append(time.monotonic() - start)
            time.sleep(0.01)
    worker.join()
    assert result["status"] == 200, result
    seconds = float(result["seconds"])  # type: ignore[arg-type]
    print(f"big request {seconds:.2f}s, health+metadata max {max(waits):.3f}s over {len(waits)}")
    # If predict held the event loop, one health+metadata round trip would have waited for most
    # of the big request; off the loop, every round trip is a small fraction of it.
    assert max(waits) < 0.25 * seconds, (max(waits), seconds)
