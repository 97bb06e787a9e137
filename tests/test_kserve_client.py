"""The KServe SDK's V2 REST client (``InferenceRESTClient(RESTConfig(protocol="v2"))`` with an
``InferRequest``), against the real server: binary tensors (the SDK's default for
``set_data_from_numpy``) and JSON, every served model incl. BYTES, both placements. Every answer
must equal the plain JSON answer over httpx."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

from .conftest import LiveServer
from .test_tritonclient import INPUTS, json_answer

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("model", sorted(INPUTS))
def test_kserve_sdk_equals_the_json_answer(live: LiveServer, model: str, binary: bool) -> None:
    x = INPUTS[model]
    datatype = (
        "BYTES" if x.dtype == object else {"float64": "FP64", "float32": "FP32"}[str(x.dtype)]
    )
    name = "text" if model == "text" else "input-0"

    async def call() -> object:
        client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))
        tensor = InferInput(name, list(x.shape), datatype)
        tensor.set_data_from_numpy(x, binary_data=binary)
        request = InferRequest(model_name=model, infer_inputs=[tensor], request_id="k1")
        try:
            return await client.infer(live.url, request, model_name=model)
        finally:
            await client.close()

    response = asyncio.run(call())
    expected = json_answer(live.url, model, x, datatype)
    assert response.model_name == model and response.id == "k1"  # type: ignore[attr-defined]
    outputs = {o.name: o for o in response.outputs}  # type: ignore[attr-defined]
    assert list(outputs) == list(expected)
    for output_name, want in expected.items():
        got = outputs[output_name].as_numpy()
        assert (outputs[output_name].datatype, list(got.shape)) == (want["datatype"], want["shape"])
        if want["datatype"] == "BYTES":
            assert [v.decode() if isinstance(v, bytes) else v for v in got.ravel()] == want["data"]
        else:
            np.testing.assert_array_equal(got.ravel(), np.asarray(want["data"]))
