"""The gRPC "ceiling": the least ``inference.GRPCInferenceService`` on ``grpc.aio`` that answers.

``ModelInfer`` does the work every server must do, and nothing else: parse the
``ModelInferRequest`` (protobuf), read ``raw_input_contents[0]`` with ``np.frombuffer`` (the
datatype's little-endian dtype, the request's shape), ``predict`` on the model's estimator
inline, and answer ``predict`` as ``raw_output_contents``, serialised per call. No validation,
no batching, no metrics, no logging: what a real server adds shows up as the gap to this one, as
for the HTTP ceiling (ceiling.py). Without ``--models-dir`` (or for a model it does not have) it
answers INT64 zeros, one per row: gRPC in Python and the load generator alone.

    python bench/grpc_ceiling.py --port N [--models-dir DIR]   # ceiling.py --grpc-port N starts it
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_load import stubs  # the project's generated messages, without adapters/__init__

pb, _ = stubs()

SERVICE = "inference.GRPCInferenceService"
MODELS: dict[str, Any] = {}
_DTYPES = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8", "INT32": "<i4"}
_DATATYPES = {"int64": "INT64", "int32": "INT32", "float64": "FP64", "float32": "FP32"}


async def model_infer(request: Any, context: grpc.aio.ServicerContext) -> bytes:
    tensor = request.inputs[0]
    shape = list(tensor.shape)
    model = MODELS.get(request.model_name)
    if model is None or not request.raw_input_contents:
        y = np.zeros(shape[0] if shape else 1, dtype=np.int64)
    else:
        dtype = _DTYPES.get(tensor.datatype, "<f8")
        x = np.frombuffer(request.raw_input_contents[0], dtype=dtype).reshape(shape)
        y = np.asarray(model.predict(x))
    response = pb.ModelInferResponse(model_name=request.model_name, model_version="1")
    response.outputs.add(
        name="predict", datatype=_DATATYPES.get(y.dtype.name, "BYTES"), shape=list(y.shape)
    )
    response.raw_output_contents.append(y.astype(y.dtype.newbyteorder("<")).tobytes())
    return bytes(response.SerializeToString())


async def server_ready(request: Any, context: grpc.aio.ServicerContext) -> Any:
    return pb.ServerReadyResponse(ready=True)


async def server_live(request: Any, context: grpc.aio.ServicerContext) -> Any:
    return pb.ServerLiveResponse(live=True)


async def model_ready(request: Any, context: grpc.aio.ServicerContext) -> Any:
    return pb.ModelReadyResponse(ready=True)


async def model_metadata(request: Any, context: grpc.aio.ServicerContext) -> Any:
    return pb.ModelMetadataResponse(name=request.name, platform="none")  # no inputs declared


def _unary(handler: Any, request_type: Any, serialize: bool = True) -> Any:
    return grpc.unary_unary_rpc_method_handler(
        handler,
        request_deserializer=request_type.FromString,
        response_serializer=(lambda m: m.SerializeToString()) if serialize else None,
    )


async def serve(host: str, port: int) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", -1)])
    handlers = {
        "ModelInfer": _unary(model_infer, pb.ModelInferRequest, serialize=False),
        "ServerReady": _unary(server_ready, pb.ServerReadyRequest),
        "ServerLive": _unary(server_live, pb.ServerLiveRequest),
        "ModelReady": _unary(model_ready, pb.ModelReadyRequest),
        "ModelMetadata": _unary(model_metadata, pb.ModelMetadataRequest),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--models-dir", type=Path, help="serves DIR/*.joblib (ceiling.py's)")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    args = parser.parse_args()
    if args.models_dir is not None:
        import joblib

        for path in sorted(args.models_dir.glob("*.joblib")):
            MODELS[path.stem] = joblib.load(path)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(serve(args.host, args.port))
    else:
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
