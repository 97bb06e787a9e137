"""A stock V2 client, tritonclient.http with JSON tensors, against the real server."""

from __future__ import annotations

import bentoml
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from .conftest import LiveServer, Store

pytestmark = pytest.mark.e2e


def test_tritonclient_health_metadata_infer(live: LiveServer, store: Store) -> None:
    client = triton.InferenceServerClient(live.url.removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    assert client.get_server_metadata()["version"]

    meta = client.get_model_metadata("iris")
    spec = meta["inputs"][0]
    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]], dtype=np.float64)
    tensor = triton.InferInput(spec["name"], list(x.shape), spec["datatype"])
    tensor.set_data_from_numpy(x, binary_data=False)
    wanted = [triton.InferRequestedOutput("predict", binary_data=False)]
    result = client.infer("iris", [tensor], outputs=wanted, request_id="t1")
    expected = bentoml.sklearn.load_model(store.tags["iris"][-1]).predict(x)
    np.testing.assert_array_equal(result.as_numpy("predict"), expected)
    assert result.get_response()["id"] == "t1"

    text = triton.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(
        np.array(["image segmentation of road scenes"], dtype=object), binary_data=False
    )
    labels = client.infer("text", [text]).as_numpy("predict")
    assert labels is not None and labels.shape == (1,)

    with pytest.raises(InferenceServerException, match="not found"):
        client.get_model_metadata("nope")
    client.close()
