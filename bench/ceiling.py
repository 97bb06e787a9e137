"""The "ceiling": the least V2 (Open Inference Protocol) server that can answer.

Bare Starlette on uvicorn (uvloop + httptools) with orjson; it decodes
inputs[0].data with numpy, calls predict() inline on the event loop, and
returns the predictions. No validation beyond what is needed, no batching, no
logging: whatever a real server adds shows up as the gap to this one.

Triton's binary tensor data too, minimally: with `Inference-Header-Content-Length`,
inputs[0] is read from the raw bytes after the JSON header (`np.frombuffer`), and
`parameters.binary_data_output` sends `predict` back as raw bytes after the header.

    python bench/ceiling.py --models-dir DIR --port N   # serves DIR/*.joblib

With ``--grpc-port M`` it also starts grpc_ceiling.py on M (``grpc.aio``: parse, ``np.frombuffer``,
``predict``, answer; the same models) as a child process: the benchmark's gRPC ceiling lives and
dies with this one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_DATATYPES = {"int64": "INT64", "int32": "INT32", "float64": "FP64", "float32": "FP32"}
_DTYPES = {v: np.dtype(k).newbyteorder("<") for k, v in _DATATYPES.items()}
HEADER_LENGTH = "Inference-Header-Content-Length"
MODELS: dict[str, Any] = {}


def _json(obj: object, status: int = 200) -> Response:
    body = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status, media_type="application/json")


async def ready(_: Request) -> Response:
    return _json({"ready": True})


async def metadata(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in MODELS:
        return _json({"error": f"model {name} not found"}, 404)
    return _json({"name": name, "platform": "sklearn", "inputs": [], "outputs": []})


async def infer(request: Request) -> Response:
    name = request.path_params["name"]
    model = MODELS.get(name)
    if model is None:
        return _json({"error": f"model {name} not found"}, 404)
    body = await request.body()
    header_length = request.headers.get(HEADER_LENGTH)
    size = len(body) if header_length is None else int(header_length)
    payload = orjson.loads(body[:size])
    tensor = payload["inputs"][0]
    dtype = _DTYPES.get(tensor.get("datatype"), np.dtype(np.float64))
    if "binary_data_size" in (tensor.get("parameters") or {}):
        raw = memoryview(body)[size : size + tensor["parameters"]["binary_data_size"]]
        x = np.frombuffer(raw, dtype=dtype).reshape(tensor["shape"])
    else:
        x = np.asarray(tensor["data"], dtype=dtype).reshape(tensor["shape"])
    y = np.asarray(model.predict(x))
    output: dict[str, object] = {
        "name": "predict",
        "shape": list(y.shape),
        "datatype": _DATATYPES.get(y.dtype.name, "BYTES"),
    }
    response: dict[str, object] = {"model_name": name, "outputs": [output]}
    if "id" in payload:
        response["id"] = payload["id"]
    if not (payload.get("parameters") or {}).get("binary_data_output"):
        output["data"] = y
        return _json(response)
    data = y.astype(y.dtype.newbyteorder("<")).tobytes()
    output["parameters"] = {"binary_data_size": len(data)}
    header = orjson.dumps(response)
    return Response(
        header + data,
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )


app = Starlette(
    routes=[
        Route("/v2/health/ready", ready),
        Route("/v2/health/live", ready),
        Route("/v2/models/{name}", metadata),
        Route("/v2/models/{name}/ready", ready),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, help="also start grpc_ceiling.py on this port")
    args = parser.parse_args()
    grpc_server = None
    if args.grpc_port:
        script = Path(__file__).with_name("grpc_ceiling.py")
        argv = [sys.executable, str(script), "--host", args.host, "--port", str(args.grpc_port)]
        argv += ["--models-dir", str(args.models_dir)]
        grpc_server = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    for path in sorted(args.models_dir.glob("*.joblib")):
        MODELS[path.stem] = joblib.load(path)
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_level="warning",
        )
    finally:
        if grpc_server is not None:
            grpc_server.terminate()
            grpc_server.wait(timeout=10)


if __name__ == "__main__":
    main()
