"""One V2 call with a stock client at its defaults, in a process of its own, answering JSON.

tritonclient.grpc and the KServe SDK each register the ``inference.*`` protobuf messages, so they
cannot be imported in one process (nor beside each other in pytest's): each call runs here.

    python -m tests.clients.call CLIENT ADDRESS CALLS_JSON
    CLIENT: triton-grpc | kserve-grpc | triton-http | kserve-rest
    CALLS_JSON: [{"model", "inputs": [{"name", "datatype", "shape", "data"}], "outputs": [...]}]
Prints, per call, {"outputs": {name: {"datatype", "shape", "data"}}} or {"error": {"code",
"message"}}, as one JSON list.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np

DTYPES = {"FP64": np.float64, "FP32": np.float32, "INT64": np.int64, "BYTES": np.object_}


def arrays(request: dict[str, Any]) -> list[tuple[str, str, np.ndarray]]:
    tensors = []
    for spec in request["inputs"]:
        data = spec["data"]
        if spec["datatype"] == "BYTES":
            data = [d.encode() for d in data]
        array = np.array(data, dtype=DTYPES[spec["datatype"]]).reshape(spec["shape"])
        tensors.append((spec["name"], spec["datatype"], array))
    return tensors


def plain(array: np.ndarray, datatype: str) -> dict[str, Any]:
    values = array.ravel().tolist()
    if datatype == "BYTES":
        values = [v.decode() if isinstance(v, bytes) else v for v in values]
    return {"datatype": datatype, "shape": list(array.shape), "data": values}


def triton(kind: str, address: str, model: str, request: dict[str, Any]) -> dict[str, Any]:
    if kind == "grpc":
        import tritonclient.grpc as client
    else:
        import tritonclient.http as client  # type: ignore[no-redef]
    from tritonclient.utils import InferenceServerException

    connection = client.InferenceServerClient(address)
    inputs = []
    for name, datatype, array in arrays(request):
        tensor = client.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)  # the default: binary / raw contents
        inputs.append(tensor)
    outputs = [client.InferRequestedOutput(n) for n in request.get("outputs") or []] or None
    try:
        result = connection.infer(model, inputs, outputs=outputs)
    except InferenceServerException as exc:
        return {"error": {"code": str(exc.status()), "message": exc.message()}}
    answer = result.get_response(as_json=True) if kind == "grpc" else result.get_response()
    return {
        "outputs": {
            o["name"]: plain(result.as_numpy(o["name"]), o["datatype"]) for o in answer["outputs"]
        }
    }


def kserve(kind: str, address: str, model: str, request: dict[str, Any]) -> dict[str, Any]:
    from kserve import InferInput, InferRequest
    from kserve.protocol.infer_type import RequestedOutput

    inputs = []
    for name, datatype, array in arrays(request):
        tensor = InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)  # the default: binary
        inputs.append(tensor)
    wanted = [RequestedOutput(n) for n in request.get("outputs") or []] or None
    infer = InferRequest(model_name=model, infer_inputs=inputs, request_outputs=wanted)

    async def call() -> Any:
        if kind == "grpc":
            from kserve import InferenceGRPCClient

            client: Any = InferenceGRPCClient(address, retries=0)
            try:
                return await client.infer(infer)
            finally:
                await client.close()
        from kserve import InferenceRESTClient, RESTConfig

        client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
        try:
            return await client.infer(f"http://{address}", infer, model_name=model)
        finally:
            await client.close()

    try:
        response = asyncio.run(call())
    except Exception as exc:  # grpc.aio.AioRpcError or httpx.HTTPStatusError
        code = getattr(exc, "code", None)
        message = exc.details() if hasattr(exc, "details") else str(exc)
        status = str(code()) if callable(code) else type(exc).__name__
        return {"error": {"code": status, "message": message}}
    return {"outputs": {o.name: plain(o.as_numpy(), o.datatype) for o in response.outputs}}


def main() -> None:
    client, address, calls = sys.argv[1:4]
    family, _, kind = client.partition("-")
    call = triton if family == "triton" else kserve
    print(json.dumps([call(kind, address, c["model"], c) for c in json.loads(calls)]))


if __name__ == "__main__":
    main()
