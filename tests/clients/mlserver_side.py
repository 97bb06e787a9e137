"""MLServer's own client side, run by MLServer's interpreter (bench/.venv-mlserver), never by the
project's: its pins clash with ours (starlette, uvloop), so it runs in a process of its own.

    bench/.venv-mlserver/bin/python tests/clients/mlserver_side.py SPEC_JSON

SPEC_JSON: {"servers": {label: {"http": URL, "grpc": HOST:PORT, "models": {case: model}}},
"cases": {case: {"codec": "pd" | "str", "columns": {name: [values]}, "input": NAME}}}.

Each case's request is built with MLServer's codecs (``PandasCodec.encode_request`` for a
DataFrame of the columns, whose pandas dtypes give the datatypes and whose text columns get
``content_type: "str"``; ``StringCodec.encode_input`` for a text input), sent to every server
over REST (JSON) and over gRPC (MLServer's own converters and stubs), and each answer's
``predict`` is decoded with the codec its ``content_type`` names (an answer without one fails).
Prints {case: {label/transport: values | {"error": text}}} as one JSON line.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

import grpc
import pandas as pd
from mlserver.codecs import PandasCodec, StringCodec
from mlserver.codecs.base import find_input_codec
from mlserver.grpc import dataplane_pb2_grpc
from mlserver.grpc.converters import ModelInferRequestConverter, ModelInferResponseConverter
from mlserver.types import InferenceRequest, InferenceResponse, Parameters


def request(case: dict[str, Any], *, use_bytes: bool) -> InferenceRequest:
    """The case's request as MLServer's codecs write it (bytes for gRPC, text for JSON)."""
    if case["codec"] == "pd":
        return PandasCodec.encode_request(pd.DataFrame(case["columns"]), use_bytes=use_bytes)
    (texts,) = case["columns"].values()
    tensor = StringCodec.encode_input(case["input"], texts, use_bytes=use_bytes)
    return InferenceRequest(inputs=[tensor], parameters=Parameters(content_type="str"))


def predicted(response: InferenceResponse) -> list[Any]:
    """``predict`` decoded by the codec its ``content_type`` names."""
    (output,) = [o for o in response.outputs if o.name == "predict"]
    content_type = output.parameters.content_type if output.parameters else None
    codec = find_input_codec(content_type) if content_type else None
    if codec is None:
        raise ValueError(f"the answer's predict has no content_type MLServer reads: {output}")
    values = codec.decode_output(output)
    return [v for v in values.ravel().tolist()]


def over_rest(url: str, model: str, case: dict[str, Any]) -> list[Any]:
    body = request(case, use_bytes=False).model_dump_json(exclude_none=True).encode()
    post = urllib.request.Request(
        f"{url}/v2/models/{model}/infer",
        data=body,
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(post, timeout=60) as answer:
            return predicted(InferenceResponse.model_validate_json(answer.read()))
    except urllib.error.HTTPError as exc:
        raise ValueError(f"HTTP {exc.code}: {exc.read().decode()[:500]}") from None


def over_grpc(address: str, model: str, case: dict[str, Any]) -> list[Any]:
    message = ModelInferRequestConverter.from_types(request(case, use_bytes=True), model)
    with grpc.insecure_channel(address) as channel:
        stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(channel)
        answer = stub.ModelInfer(message, timeout=60)
    return predicted(ModelInferResponseConverter.to_types(answer))


def main(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name, case in spec["cases"].items():
        results[name] = {}
        for label, server in spec["servers"].items():
            model = server["models"][name]
            for transport, call, address in (
                ("rest", over_rest, server["http"]),
                ("grpc", over_grpc, server["grpc"]),
            ):
                try:
                    results[name][f"{label}/{transport}"] = call(address, model, case)
                except Exception as exc:  # reported, compared by the test
                    results[name][f"{label}/{transport}"] = {
                        "error": f"{type(exc).__name__}: {exc}"
                    }
    return results


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
