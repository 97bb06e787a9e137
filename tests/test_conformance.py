"""One conformance suite for every transport and stock client, at their defaults: REST JSON
(httpx, the reference), tritonclient.http and the KServe SDK's REST client (binary tensors),
tritonclient.grpc and the KServe SDK's gRPC client (raw contents), in both placements. Every
answer equals the REST JSON answer, outputs and errors alike (gRPC errors carry the status code
of the REST status)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .clients import answers
from .conftest import LiveServer

pytestmark = pytest.mark.e2e

IRIS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
CALLS: list[dict[str, Any]] = [
    {
        "model": "iris",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [2, 4], "data": IRIS}],
    },
    {
        "model": "iris",
        "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [2, 4], "data": IRIS}],
        "outputs": ["predict_proba"],
    },
    {
        "model": "diabetes",
        "inputs": [
            {"name": "input-0", "datatype": "FP64", "shape": [1, 10], "data": [[0.01] * 10]}
        ],
    },
    {
        "model": "text",
        "inputs": [
            {
                "name": "text",
                "datatype": "BYTES",
                "shape": [2],
                "data": ["deep q-learning for atari", "canary rollouts on k8s"],
            }
        ],
    },
    {
        "model": "slow",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": [IRIS[0]]}],
    },
    # errors: unknown model, wrong feature count, unknown output
    {
        "model": "nope",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": [IRIS[0]]}],
    },
    {
        "model": "iris",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 3], "data": [[1, 2, 3]]}],
    },
    {
        "model": "iris",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": [IRIS[0]]}],
        "outputs": ["logits"],
    },
]
GRPC_CODE = {400: "StatusCode.INVALID_ARGUMENT", 404: "StatusCode.NOT_FOUND"}
CLIENTS = ["triton-http", "kserve-rest", "triton-grpc", "kserve-grpc"]


def rest_answers(url: str) -> list[dict[str, Any]]:
    """The reference: plain JSON over httpx."""
    answers = []
    with httpx.Client(base_url=url, timeout=30) as c:
        for call in CALLS:
            body: dict[str, Any] = {"inputs": call["inputs"]}
            if call.get("outputs"):
                body["outputs"] = [{"name": n} for n in call["outputs"]]
            r = c.post(f"/v2/models/{call['model']}/infer", json=body)
            if r.status_code != 200:
                answers.append({"status": r.status_code, "message": r.json()["error"]})
                continue
            answers.append({o["name"]: o for o in r.json()["outputs"]})
    return answers


@pytest.mark.parametrize("client", CLIENTS)
def test_every_client_and_transport_gives_the_rest_json_answer(
    live: LiveServer, client: str
) -> None:
    address = live.grpc if client.endswith("grpc") else live.url.removeprefix("http://")
    got = answers(client, address, CALLS)
    for call, want, answer in zip(CALLS, rest_answers(live.url), got, strict=True):
        where = (client, call["model"], call.get("outputs"))
        if "status" in want:
            assert "error" in answer, (where, answer)
            assert want["message"] in answer["error"]["message"], (where, answer)
            if client.endswith("grpc"):
                assert answer["error"]["code"] == GRPC_CODE[want["status"]], (where, answer)
            continue
        outputs = answer["outputs"]
        assert list(outputs) == list(want), (where, outputs)
        for name, expected in want.items():
            assert outputs[name]["datatype"] == expected["datatype"], where
            assert outputs[name]["shape"] == expected["shape"], where
            if expected["datatype"] == "BYTES":
                assert outputs[name]["data"] == expected["data"], where
            else:
                assert outputs[name]["data"] == pytest.approx(expected["data"], rel=1e-12), where
