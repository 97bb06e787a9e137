"""The gRPC "ceiling": a do-nothing ``inference.GRPCInferenceService`` on ``grpc.aio``.

``ModelInfer`` parses the request (protobuf) and answers a response built once per (model,
rows) and kept serialised: ``predict``, INT64 zeros, one per row, as ``raw_output_contents``.
No model, no validation, no logging: what it measures is gRPC itself and the load generator
(bench/grpc_load.py) on this machine, the most any Python gRPC server could answer here. Unlike
the HTTP ceiling (ceiling.py), it does not predict.

    python bench/grpc_ceiling.py --port N     # ceiling.py --grpc-port N starts it
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import grpc
from grpc_load import stubs  # the project's generated messages, without adapters/__init__

pb, _ = stubs()

SERVICE = "inference.GRPCInferenceService"
_ANSWERS: dict[tuple[str, int], bytes] = {}


def _answer(model: str, rows: int) -> bytes:
    response = pb.ModelInferResponse(model_name=model, model_version="1")
    response.outputs.add(name="predict", datatype="INT64", shape=[rows])
    response.raw_output_contents.append(bytes(8 * rows))
    return bytes(response.SerializeToString())


async def model_infer(request: Any, context: grpc.aio.ServicerContext) -> bytes:
    rows = request.inputs[0].shape[0] if request.inputs and request.inputs[0].shape else 1
    key = (request.model_name, rows)
    answer = _ANSWERS.get(key)
    if answer is None:
        answer = _ANSWERS[key] = _answer(*key)
    return answer


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
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
