"""The gRPC edge's codec on its own: ``ModelInferRequest`` -> the data plane's message, and the
errors a malformed one gets, without a server (the e2e tests send the same through real clients).

In a process of its own: the KServe SDK's and tritonclient's protobuf messages of the same names
cannot be registered beside ours (tests/clients/call.py).
"""

from __future__ import annotations

import json
import sys

from .clients import printed_json

CODEC = """
import json
import numpy as np
from adapters.config.settings import Settings
from adapters.grpc.codec import read_request
from adapters.grpc.generated import grpc_service_pb2 as pb
from adapters.protocol.errors import OIPError

limits = Settings().limits
rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]])
out = {}

def raw_request(datatype="FP64", shape=(2, 4), data=rows.astype("<f8").tobytes(), buffers=1):
    request = pb.ModelInferRequest(model_name="iris", model_version="2", id="r1")
    request.inputs.add(name="input-0", datatype=datatype, shape=list(shape))
    request.outputs.add(name="predict")
    request.raw_input_contents.extend([data] * buffers)
    return request

decoded = read_request(raw_request(), limits)
(tensor,) = decoded.inputs
out["raw"] = {
    "model": [decoded.model_name, decoded.model_version, decoded.id],
    "dtype": str(tensor.data.dtype), "values": tensor.data.tolist(), "kind": tensor.datatype.value,
    "parameters": [tensor.parameters, decoded.parameters],
    "outputs": [[o.name, o.parameters] for o in decoded.outputs],
}

typed = pb.ModelInferRequest(model_name="iris")
tensor = typed.inputs.add(name="input-0", datatype="FP64", shape=[2, 4])
tensor.contents.fp64_contents.extend(rows.ravel().tolist())
tensor.parameters["content_type"].string_param = "np"
typed.parameters["sequence"].int64_param = 7
decoded = read_request(typed, limits)
out["typed"] = {
    "values": decoded.inputs[0].data.tolist(), "version": decoded.model_version,
    "outputs": decoded.outputs, "parameters": [decoded.inputs[0].parameters, decoded.parameters],
}

bad = {
    "datatype": raw_request(datatype="FP128"),
    "size": raw_request(data=b"\\0" * 7),
    "buffers": raw_request(buffers=2),
    "shape": raw_request(shape=(2, 5)),
    "elements": raw_request(shape=(limits.max_elements + 1,), data=b""),
}
for case, request in bad.items():
    try:
        read_request(request, limits)
        out[case] = None
    except OIPError as exc:
        out[case] = [exc.status_code, exc.message]
print(json.dumps(out))
"""


def test_the_codec_reads_raw_and_typed_contents_and_refuses_what_does_not_fit() -> None:
    got = printed_json([sys.executable, "-c", CODEC])
    rows = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]
    assert got["raw"] == {
        "model": ["iris", "2", "r1"],
        "dtype": "float64",
        "values": rows,
        "kind": "FP64",
        "parameters": [None, None],  # no parameters sent: none, not an empty map
        "outputs": [["predict", None]],
    }, json.dumps(got["raw"])
    assert got["typed"] == {
        "values": rows,
        "version": None,  # the default version
        "outputs": None,  # every output
        "parameters": [{"content_type": "np"}, {"sequence": 7}],
    }
    assert got["datatype"] == [400, "input 'input-0': unknown datatype 'FP128'"]
    assert got["size"][0] == 400 and "binary_data_size 7" in got["size"][1]
    assert got["buffers"] == [400, "2 raw_input_contents for 1 inputs: give one per input"]
    assert got["shape"][0] == 400 and "shape [2, 5]" in got["shape"][1]
    assert got["elements"][0] == 413 and "OIP_MAX_ELEMENTS" in got["elements"][1]
