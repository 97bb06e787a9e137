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
import orjson
import pytest
from sklearn.datasets import load_iris

from .conftest import LiveServer, Store
from .traffic import Recorded, join_all

pytestmark = pytest.mark.e2e


def histogram(metrics: str, name: str) -> tuple[float, float]:
    """(observations, sum) of a Prometheus histogram, over all its label sets."""

    def value(kind: str) -> float:
        pattern = rf"^{name}_{kind}(?:\{{[^}}]*\}})? (\S+)"
        return sum(float(m) for m in re.findall(pattern, metrics, flags=re.M))

    return value("count"), value("sum")


# The runner batches with BentoML's dispatcher; in process, calls that arrive while a predict is
# running are merged (iris runs inline there, so the CPU-bound `slow` model is used).
BATCHING = {
    "runner": ("iris", "bentoml_service_adaptive_batch_size"),
    "inprocess": ("slow", "oip_inprocess_batch_size"),
}


def test_concurrent_requests_are_merged_into_batches(live: LiveServer, store: Store) -> None:
    model, metric = BATCHING[live.placement]
    X = load_iris().data
    bodies = [
        {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": row.tolist()}]}
        for row in X
    ]

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=live.url, limits=limits, timeout=60) as client:
            return await asyncio.gather(
                *[client.post(f"/v2/models/{model}/infer", json=b) for b in bodies * 2]
            )

    before = histogram(httpx.get(f"{live.url}/metrics").text, metric)
    responses = asyncio.run(fire())
    after = histogram(httpx.get(f"{live.url}/metrics").text, metric)
    batches, requests = after[0] - before[0], after[1] - before[1]
    assert requests == len(responses)
    assert batches < requests, f"no call was merged: {batches} batches for {requests} requests"

    estimator = bentoml.sklearn.load_model(store.tags[model][-1])
    expected_labels = np.tile(estimator.predict(X), 2)
    expected_proba = np.tile(estimator.predict_proba(X), (2, 1))
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
        assert outputs["predict"] == [expected_labels[i]]
        np.testing.assert_allclose(outputs["predict_proba"], expected_proba[i], rtol=1e-12)


def test_a_slow_predict_does_not_stall_health_or_metadata(live: LiveServer) -> None:
    rows = np.tile(load_iris().data, (3, 1))  # 450 rows: ~0.9 s of CPU in the `slow` model
    tensor = {
        "name": "input-0",
        "shape": list(rows.shape),
        "datatype": "FP64",
        "data": rows.tolist(),
    }
    body = orjson.dumps({"inputs": [tensor], "outputs": [{"name": "predict"}]})
    done = threading.Event()
    result: dict[str, float] = {}

    def slow() -> None:
        try:
            start = time.monotonic()
            response = httpx.post(
                f"{live.url}/v2/models/slow/infer",
                content=body,
                headers={"content-type": "application/json"},
                timeout=120,
            )
            result["status"], result["seconds"] = response.status_code, time.monotonic() - start
        finally:
            done.set()

    worker = Recorded(slow, name="slow-request")
    worker.start()
    waits: list[float] = []
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=live.url, timeout=30) as client:
        while not done.is_set() and time.monotonic() < deadline:
            start = time.monotonic()
            assert client.get("/v2/health/ready").status_code == 200
            assert client.get("/v2/models/iris").status_code == 200
            waits.append(time.monotonic() - start)
            time.sleep(0.01)
    join_all([worker], timeout_s=120)
    assert result.get("status") == 200, result
    seconds = result["seconds"]
    print(f"big request {seconds:.2f}s, health+metadata max {max(waits):.3f}s over {len(waits)}")
    # Had the predict run on the event loop, no health+metadata round trip could have been
    # answered during its ~0.9 s (a blocked loop answers them after it: one or two, not five); in
    # a worker thread (or the runner) the loop keeps answering between GIL turns. A count, not a
    # latency: how fast each answer is depends on the machine's load (8 seen in a full CI run,
    # the first one waiting 0.7 s for a core; dozens on an idle machine).
    assert len(waits) >= 5, len(waits)
