"""The data plane: what every V2 route means, independent of HTTP.

Routes hand their path parameters and body here; this module resolves the model version in the
registry, checks the request against the model's signature, decodes tensors with the codecs,
runs the model through its executor and builds the response.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from .codecs import DATATYPE_TO_DTYPE, Array, decode_tensor, encode_tensor
from .errors import InputMismatch, InvalidJSON, InvalidTensor, UnknownOutput, Unsupported
from .registry import ModelVersion, Registry
from .runtime import Executor
from .schemas import Datatype, InferenceRequest, RequestInput
from .signature import TensorSpec


class DataPlane:
    """Server and model metadata, health, and inference over a :class:`Registry`."""

    def __init__(
        self,
        registry: Registry,
        executors: Mapping[str, Executor],
        *,
        server_name: str,
        server_version: str,
    ) -> None:
        self.registry = registry
        self.executors = executors  # by model name
        self.server = {"name": server_name, "version": server_version, "extensions": []}

    def server_metadata(self) -> dict[str, Any]:
        return self.server

    async def ready(self) -> bool:
        """Ready when every served model can run inference."""
        for name in self.registry.models:
            if not await self.executors[name].ready():
                return False
        return True

    async def model_ready(self, name: str, version: str | None) -> dict[str, Any]:
        resolved = self.registry.resolve(name, version)
        return {"name": resolved.name, "ready": await self.executors[name].ready()}

    def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        model = self.registry.model(name)
        resolved = model.resolve(version)
        properties = dict(resolved.properties)
        properties["aliases"] = ",".join(model.aliases_of(resolved))
        return {
            "name": name,
            "versions": list(model.versions),
            "platform": resolved.platform,
            "inputs": [t.to_dict() for t in resolved.signature.inputs],
            "outputs": [t.to_dict() for t in resolved.signature.outputs],
            "properties": properties,
        }

    async def infer(self, name: str, version: str | None, body: bytes) -> dict[str, Any]:
        """Run one inference request (the raw JSON body) and build the response."""
        resolved = self.registry.resolve(name, version)
        request = parse_request(body)
        rows = decode_inputs(resolved, request.inputs)
        methods = requested_outputs(resolved, request)
        results = await self.executors[name].predict(resolved, methods, rows)
        response: dict[str, Any] = {
            "model_name": name,
            "model_version": resolved.version,
            "outputs": [encode_tensor(m, results[m]) for m in methods],
        }
        if request.id is not None:
            response["id"] = request.id
        return response


def parse_request(body: bytes) -> InferenceRequest:
    """Validate the envelope straight from the bytes; tensor data is left to numpy."""
    try:
        return InferenceRequest.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidJSON(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """One readable sentence per problem, e.g. ``inputs.0.shape: Field required``."""
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"])
        if error["type"] == "json_invalid":
            problems.append(f"the body is not valid JSON ({error['msg']})")
        elif error["type"] == "enum" and where.endswith("datatype"):
            problems.append(f"{where}: unknown datatype {error['input']!r}")
        elif error["type"] == "model_type" and not where:
            problems.append("the body must be a JSON object")
        else:
            problems.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "invalid inference request: " + "; ".join(problems)


def decode_inputs(resolved: ModelVersion, inputs: list[RequestInput]) -> Array:
    """Match the request's inputs to the signature and decode them into the model's input."""
    specs = resolved.signature.inputs
    if len(specs) != 1:
        raise Unsupported("models with more than one input tensor are not supported")
    spec = specs[0]
    names = [i.name for i in inputs]
    if names != [spec.name]:
        raise InputMismatch(
            f"model '{resolved.name}' takes one input named '{spec.name}', got {names}"
        )
    tensor = inputs[0]
    array = decode_tensor(tensor.name, tensor.datatype, tensor.shape, tensor.data)
    return conform(spec, tensor.datatype, array)


def conform(spec: TensorSpec, datatype: Datatype, array: Array) -> Array:
    """Check a decoded tensor against its spec: datatype family, rank and fixed dimensions.

    Numeric tensors of any numeric datatype are accepted and cast to the spec's dtype (clients
    often send FP32 to an FP64 model); BYTES and numbers never mix. A text model declared
    ``[-1]`` also accepts ``[N, 1]``, the shape many V2 clients use for strings.
    """
    if (datatype is Datatype.BYTES) != (spec.datatype is Datatype.BYTES):
        raise InputMismatch(
            f"input '{spec.name}' must be {spec.datatype.value}, got {datatype.value}"
        )
    if len(spec.shape) == 1 and array.ndim == 2 and array.shape[1] == 1:
        array = array.reshape(-1)
    expected = tuple(None if d < 0 else d for d in spec.shape)
    actual = array.shape
    if len(actual) != len(expected) or any(
        e not in (None, a) for e, a in zip(expected, actual, strict=True)
    ):
        shape = list(spec.shape)
        if len(expected) == 2 and len(actual) == 2 and expected[1] is not None:
            raise InvalidTensor(
                f"input '{spec.name}' must have shape {shape}: "
                f"expected {expected[1]} features, got {actual[1]}"
            )
        raise InvalidTensor(f"input '{spec.name}' must have shape {shape}, got {list(actual)}")
    if spec.datatype is not Datatype.BYTES and datatype is not spec.datatype:
        array = array.astype(DATATYPE_TO_DTYPE[spec.datatype])
    return array


def requested_outputs(resolved: ModelVersion, request: InferenceRequest) -> tuple[str, ...]:
    """The outputs to compute: those requested, in request order, or all of the signature."""
    available = resolved.signature.output_names
    if not request.outputs:
        return available
    names = tuple(dict.fromkeys(o.name for o in request.outputs))
    unknown = [n for n in names if n not in available]
    if unknown:
        raise UnknownOutput(
            f"unknown output {unknown} for model '{resolved.name}'; available: {list(available)}"
        )
    return names
