"""The data plane: what every V2 operation means, whatever the transport.

A transport (the REST routes today) decodes its wire format into an
:class:`~adapters.protocol.messages.InferRequest` and writes back the
:class:`~adapters.protocol.messages.InferResponse`; everything in between happens here, once: resolve the
model version in the registry, check each input tensor against the model's signature, pick the
outputs, run the model through its executor, and label the outputs with their datatypes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio

from adapters.config.settings import Limits
from adapters.dataplane.answers import check_outputs, check_planned
from adapters.dataplane.statistics import Statistics
from adapters.models.registry import ModelVersion
from adapters.models.repository import Repository
from adapters.models.signature import TensorSpec
from adapters.protocol.classification import class_count, classify
from adapters.protocol.codecs import DATATYPE_TO_DTYPE, Array, cast_exact, datatype_of
from adapters.protocol.errors import (
    DeadlineExceeded,
    InputMismatch,
    InvalidTensor,
    NotFound,
    UnknownOutput,
    Unsupported,
)
from adapters.protocol.messages import InferRequest, InferResponse, RequestedOutput, Tensor
from adapters.protocol.schemas import Datatype

EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics", "classification"]


class Deadline:
    """``async with``: the request deadline of every transport (``OIP_REQUEST_TIMEOUT_S``).

    Past it the work inside is cancelled (a queued predict is dropped, a chunked one stops at
    its next chunk) and :class:`~adapters.protocol.errors.DeadlineExceeded` (504) is raised.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.timeout = asyncio.timeout(seconds)

    async def __aenter__(self) -> None:
        await self.timeout.__aenter__()

    async def __aexit__(self, kind: Any, exc: Any, traceback: Any) -> None:
        try:
            await self.timeout.__aexit__(kind, exc, traceback)
        except TimeoutError:
            raise DeadlineExceeded(
                f"the request did not complete in {self.seconds:g} s (OIP_REQUEST_TIMEOUT_S)"
            ) from None


class DataPlane:
    """Server and model metadata, health, inference, the repository and statistics, over a
    :class:`~adapters.models.repository.Repository` and its :class:`~adapters.models.registry.Registry`."""

    def __init__(
        self,
        repository: Repository,
        *,
        server_name: str,
        server_version: str,
        limits: Limits | None = None,
        predictions_db: str = "",
    ) -> None:
        self.repository = repository
        self.registry = repository.registry
        self.executors = repository.executors  # by model name
        self.server = {"name": server_name, "version": server_version, "extensions": EXTENSIONS}
        self.limits = limits or Limits()
        self.statistics = Statistics()
        self.predictions_db = predictions_db
        self._engine: Any = None

    def deadline(self) -> Deadline:
        """The deadline one inference request runs under, whatever its transport."""
        return Deadline(self.limits.request_timeout_s)

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

    async def loaded(self) -> dict[str, dict[str, list[str]]]:
        """The tags whose estimators are held, by placement, then by process (the answering
        gateway worker in process, every runner worker): what load fills and unload frees."""
        executors = {executor.placement: executor for executor in self.executors.values()}
        return {placement: await e.loaded() for placement, e in sorted(executors.items())}

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

    async def infer(self, request: InferRequest) -> InferResponse:
        """Run one decoded inference request on the version it resolves to."""
        start = time.perf_counter_ns()
        name = request.model_name
        resolved = self.registry.resolve(name, request.model_version)
        stats = self.statistics.of(name, resolved.version)
        rows = 0
        try:
            checked = time.perf_counter_ns()
            x = model_input(resolved, request.inputs)
            rows = len(x)
            wanted = requested_outputs(resolved, request.outputs)
            methods = tuple(dict.fromkeys(m for m, _ in wanted))
            limit = self.limits.max_response_bytes
            planned = (s for s in resolved.signature.outputs if s.name in methods)
            check_planned(planned, rows, limit)  # an answer too large is never computed
            predicting = time.perf_counter_ns()
            stats.add("compute_input", predicting - checked + request.decode_ns)
            results = await self.executors[name].predict(resolved, methods, x)
            done = time.perf_counter_ns()
            stats.add("compute_infer", done - predicting)
            outputs = [_output(resolved, m, count, results[m]) for m, count in wanted]
            check_outputs(outputs, limit)
            stats.add("compute_output", time.perf_counter_ns() - done)
        except BaseException:
            stats.finished(ok=False, rows=0, total_ns=time.perf_counter_ns() - start)
            raise
        stats.finished(ok=True, rows=rows, total_ns=time.perf_counter_ns() - start)
        return InferResponse(name, resolved.version, outputs, request.id)

    async def stored_prediction(self, name: str, version: str | None, key: str) -> dict[str, Any]:
        """A prediction ``score.py`` stored for one row (its key) by the version this resolves
        to, in the V2 response shape, from ``OIP_PREDICTIONS_DB``."""
        if not self.predictions_db:  # nothing stored to find: a 404, as for an unknown key
            raise NotFound("no stored predictions: set OIP_PREDICTIONS_DB to score.py's --db")
        resolved = self.registry.resolve(name, version)
        from adapters.batch import predictions

        if self._engine is None:
            self._engine = predictions.connect(self.predictions_db)
        found = await anyio.to_thread.run_sync(
            lambda: predictions.lookup(
                self._engine,
                predictions.default_table_name(name),
                name,
                resolved.version,
                key,
                signature=resolved.signature,
            )
        )
        if found is None:
            raise NotFound(
                f"no stored prediction with key '{key[:100]}' for {name}:{resolved.version}"
            )
        return found

    def encoded(self, response: InferResponse, ns: int) -> None:
        """The transport's time writing a response (statistics: ``compute_output``)."""
        self.statistics.of(response.model_name, response.model_version).extend("compute_output", ns)

    def model_statistics(self, name: str | None, version: str | None) -> dict[str, Any]:
        """Statistics of every loaded version, of one model's versions, or of one version."""
        if name is None:
            pairs = [(v.name, v.version) for v in self.registry.all_versions()]
        elif version is None:
            pairs = [(name, v) for v in self.registry.model(name).versions]
        else:
            pairs = [(name, self.registry.resolve(name, version).version)]
        return self.statistics.report(pairs)


def _output(resolved: ModelVersion, method: str, count: int | None, array: Array) -> Tensor:
    if count is None:
        return Tensor(method, datatype_of(array), array)
    return Tensor(method, Datatype.BYTES, classify(method, array, count, resolved.classes))


def model_input(resolved: ModelVersion, inputs: list[Tensor]) -> Any:
    """Match the request's inputs to the signature: what the model's methods take, one array
    (or, for a model fitted on a DataFrame, a DataFrame of its columns)."""
    specs = resolved.signature.inputs
    if resolved.signature.frame:
        return frame_input(resolved, inputs)
    if len(specs) != 1:
        raise Unsupported(
            f"model '{resolved.name}' declares {len(specs)} inputs but is not a DataFrame model "
            "(signature frame): only a DataFrame model takes more than one input tensor"
        )
    spec = specs[0]
    names = [i.name for i in inputs]
    if names != [spec.name]:
        raise InputMismatch(
            f"model '{resolved.name}' takes one input named '{spec.name}', got {names}"
        )
    return check_tensor(spec, inputs[0])


def frame_input(resolved: ModelVersion, inputs: list[Tensor]) -> Any:
    """The DataFrame a column model takes: one input per fitted column, any order, each
    ``[N]`` or ``[N, 1]``, rebuilt with the fitted names and order (no feature-name warning)."""
    import pandas as pd

    specs = {spec.name: spec for spec in resolved.signature.inputs}
    given = {tensor.name: tensor for tensor in inputs}
    missing = [name for name in specs if name not in given]
    unknown = [name for name in given if name not in specs]
    if missing or unknown or len(given) != len(inputs):
        raise InputMismatch(
            f"model '{resolved.name}' takes one input per column {list(specs)}; "
            f"missing {missing}, unknown {unknown}"
            + (", some given twice" if len(given) != len(inputs) else "")
        )
    columns = {name: check_tensor(spec, given[name]) for name, spec in specs.items()}
    lengths = {len(column) for column in columns.values()}
    if len(lengths) > 1:
        raise InvalidTensor(f"the columns of model '{resolved.name}' have different lengths")
    return pd.DataFrame(columns, columns=list(specs))


def check_tensor(spec: TensorSpec, tensor: Tensor) -> Array:
    """Check a decoded input against its spec (datatype family, rank, fixed dimensions) and
    return it in the dtype the model takes.

    Numeric tensors of any numeric datatype are accepted and cast to the spec's dtype (clients
    often send FP32 to an FP64 model) unless the cast would change a value; BYTES and numbers
    never mix. A text model declared ``[-1]`` also accepts ``[N, 1]``, the shape many V2 clients
    use for strings.
    """
    datatype, array = tensor.datatype, tensor.data
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
    if spec.datatype is not Datatype.BYTES:
        array = cast_exact(spec.name, array, DATATYPE_TO_DTYPE[spec.datatype])
    return array


def requested_outputs(
    resolved: ModelVersion, outputs: list[RequestedOutput] | None
) -> list[tuple[str, int | None]]:
    """The outputs to compute, in request order (all of the signature when none is asked for),
    each with its classification count, if any."""
    available = resolved.signature.output_names
    if not outputs:
        return [(name, None) for name in resolved.signature.default_outputs]
    unknown = [o.name for o in outputs if o.name not in available]
    if unknown:
        raise UnknownOutput(
            f"unknown output {unknown} for model '{resolved.name}'; available: {list(available)}"
        )
    wanted = {o.name: class_count(o.name, o.parameters) for o in outputs}
    return list(wanted.items())
