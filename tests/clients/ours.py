"""A gRPC call with this project's generated stubs, in a process of its own, answering JSON.

The stubs register the ``inference.*`` protobuf messages, as the KServe SDK and tritonclient do,
so no test module imports them beside those (tests/clients/call.py): each call runs here.

    python -m tests.clients.ours infer ADDRESS MODEL ROW_JSON   # {"model_name": ...}
    python -m tests.clients.ours health ADDRESS                  # {"status": "SERVING"}
Either prints {"error": {"code", "details"}} when the call fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent


def run(*args: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """This module's answer to ``args`` (from a test)."""
    argv = [sys.executable, "-m", "tests.clients.ours", *args]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def main(argv: list[str]) -> dict[str, Any]:
    import grpc
    import numpy as np

    from adapters.grpc.generated import grpc_service_pb2 as pb
    from adapters.grpc.generated import grpc_service_pb2_grpc as pb_grpc
    from adapters.grpc.generated import health_pb2, health_pb2_grpc

    command, address, *rest = argv
    with grpc.insecure_channel(address) as channel:
        try:
            if command == "health":
                stub = health_pb2_grpc.HealthStub(channel)
                status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
                return {"status": health_pb2.HealthCheckResponse.ServingStatus.Name(status)}
            model, row = rest
            data = np.asarray(json.loads(row), dtype=np.float64).reshape(1, -1)  # one row
            tensor = pb.ModelInferRequest.InferInputTensor(
                name="input-0", datatype="FP64", shape=list(data.shape)
            )
            request = pb.ModelInferRequest(
                model_name=model, inputs=[tensor], raw_input_contents=[data.tobytes()]
            )
            answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=90)
            return {"model_name": answer.model_name}
        except grpc.RpcError as err:
            return {"error": {"code": err.code().name, "details": err.details()}}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
