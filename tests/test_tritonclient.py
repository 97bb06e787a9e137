"""A stock V2 client, tritonclient.http, against the real server, at its DEFAULT settings:
``set_data_from_numpy`` sends binary tensors and the outputs come back as binary data; then
with gzip and deflate compression both ways. Every answer must equal the plain JSON answer."""

from __future__ import annotations

from typing import Any

import bentoml
import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from sklearn.datasets import load_diabetes, load_iris
from tritonclient.utils import InferenceServerException

from .conftest import LiveServer, Store

pytestmark = pytest.mark.e2e

TEXTS = np.array(
    ["image segmentation of road scenes", "Canary rollouts for model deployments"], dtype=object
)
INPUTS: dict[str, np.ndarray] = {
    "iris": load_iris().data[::30],
    "diabetes": load_diabetes().data[:3],
    "text": TEXTS,
    "slow": load_iris().data[:2].astype(np.float32),  # FP32 to an FP64 model, binary
}


def json_answer(url: str, model: str, x: np.ndarray, datatype: str) -> dict[str, Any]:
    data = x.tolist()
    body = {"inputs": [{"name": "", "shape": list(x.shape), "datatype": datatype, "data": data}]}
    body["inputs"][0]["name"] = httpx.get(f"{url}/v2/models/{model}").json()["inputs"][0]["name"]
    response = httpx.post(f"{url}/v2/models/{model}/infer", json=body)
    assert response.status_code == 200, response.text
    return {o["name"]: o for o in response.json()["outputs"]}


@pytest.mark.parametrize("compression", [None, "gzip", "deflate"])
@pytest.mark.parametrize("model", sorted(INPUTS))
def test_tritonclient_defaults_equal_the_json_answer(
    live: LiveServer, model: str, compression: str | None
) -> None:
    client = triton.InferenceServerClient(live.url.removeprefix("http://"))
    try:
        spec = client.get_model_metadata(model)["inputs"][0]
        x = INPUTS[model]
        datatype = "BYTES" if x.dtype == object else triton.np_to_triton_dtype(x.dtype)
        tensor = triton.InferInput(spec["name"], list(x.shape), datatype)
        tensor.set_data_from_numpy(x)  # binary_data=True, the default
        result = client.infer(
            model,
            [tensor],
            request_compression_algorithm=compression,
            response_compression_algorithm=compression,
        )
        expected = json_answer(live.url, model, x, datatype)
        response = result.get_response()
        assert [o["name"] for o in response["outputs"]] == list(expected)
        for output in response["outputs"]:
            assert "binary_data_size" in output["parameters"]  # it really came back binary
            got = result.as_numpy(output["name"])
            want = expected[output["name"]]
            assert (output["datatype"], output["shape"]) == (want["datatype"], want["shape"])
            if want["datatype"] == "BYTES":
                assert [b.decode() for b in got.ravel()] == want["data"]
            else:
                np.testing.assert_array_equal(got.ravel(), np.asarray(want["data"]))
    finally:
        client.close()


def test_tritonclient_json_tensors_health_and_metadata(live: LiveServer, store: Store) -> None:
    client = triton.InferenceServerClient(live.url.removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    assert client.get_server_metadata()["version"]

    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]], dtype=np.float64)
    tensor = triton.InferInput("input-0", list(x.shape), "FP64")
    tensor.set_data_from_numpy(x, binary_data=False)
    wanted = [
        triton.InferRequestedOutput("predict", binary_data=False),
        triton.InferRequestedOutput("predict_proba"),  # binary beside JSON in one response
    ]
    result = client.infer("iris", [tensor], outputs=wanted, request_id="t1")
    estimator = bentoml.sklearn.load_model(store.tags["iris"][-1])
    np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(x))
    np.testing.assert_allclose(result.as_numpy("predict_proba"), estimator.predict_proba(x))
    assert result.get_response()["id"] == "t1"

    with pytest.raises(InferenceServerException, match="not found"):
        client.get_model_metadata("nope")
    client.close()
