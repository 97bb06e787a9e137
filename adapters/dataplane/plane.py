"""The data plane: what every V2 operation means, whatever the transport.

A transport (the HTTP and gRPC edges) decodes its wire format into an
:class:`~adapters.protocol.messages.InferRequest` and writes back the
:class:`~adapters.protocol.messages.InferResponse`; everything in between happens here, once:
resolve the model version in the registry (a weighted alias picks one per request, by its
routing key if it has one), check the inputs against the model's signature
(:mod:`adapters.models.inputs`), pick the outputs, run the model through its executor, and
label the outputs with their datatypes; then, off the request path, log the inference
(:mod:`adapters.dataplane.journal`) and run it on the model's shadow
(:mod:`adapters.dataplane.shadow`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import anyio

from adapters.config.settings import Limits
from adapters.dataplane.answers import check_outputs, check_planned
from adapters.dataplane.deadlines import sweep
from adapters.dataplane.inflight import InFlight
from adapters.dataplane.journal import Entry, Journal, failure
from adapters.dataplane.shadow import Job, Shadows
from adapters.dataplane.statistics import Statistics
from adapters.execution.runtime import Executor
from adapters.models.inputs import model_input, requested_outputs
from adapters.models.registry import ModelVersion
from adapters.models.repository import Repository
from adapters.protocol.classification import classify
from adapters.protocol.codecs import Array, datatype_of
from adapters.protocol.content import output_parameters
from adapters.protocol.errors import BadRequest, DeadlineExceeded, NotFound
from adapters.protocol.messages import InferRequest, InferResponse, Tensor
from adapters.protocol.schemas import Datatype

EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics", "classification"]


class Deadline:
    """``async with``: the request deadline of every transport (``OIP_REQUEST_TIMEOUT_S``).

    Past it the work inside is cancelled (a queued predict is dropped, a chunked one stops at
    its next chunk) and :class:`~adapters.protocol.errors.DeadlineExceeded` (504) is raised.
    Inside it, the request counts in ``in_flight`` (a gauge's series), when given. The deadline
    is a watch of the loop's sweep (:mod:`adapters.dataplane.deadlines`), not a timer of its own.
    """

    __slots__ = ("in_flight", "seconds", "sweep", "watch")

    def __init__(self, seconds: float, in_flight: Any = None) -> None:
        self.seconds = seconds
        self.in_flight = in_flight

    async def __aenter__(self) -> None:
        if self.in_flight is not None:
            self.in_flight.inc()
        self.sweep = sweep()  # the loop's, looked up once per request
        self.watch = self.sweep.watch(self.seconds)

    async def __aexit__(self, kind: Any, exc: Any, traceback: Any) -> None:
        if self.in_flight is not None:
            self.in_flight.dec()
        if self.sweep.leave(self.watch, kind):
            raise DeadlineExceeded(
                f"the request did not complete in {self.seconds:g} s (OIP_REQUEST_TIMEOUT_S)"
            ) from None


class DataPlane:
    """Server and model metadata, health, inference, the repository and statistics, over a
    :class:`~adapters.models.repository.Repository` and its
    :class:`~adapters.models.registry.Registry`."""

    def __init__(
        self,
        repository: Repository[Executor],
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
        repository.warmed = self.statistics.warmed  # a load's warm-up: one inference each
        self.predictions_db = predictions_db
        self._engine: Any = None
        self.journal = Journal(predictions_db) if predictions_db else None
        self.shadows = Shadows(
            self.executors, self._record, timeout_s=self.limits.request_timeout_s
        )
        self.in_flight = InFlight(repository.names)
        self.draining = False  # set by drain(): ready() is False from then on

    def deadline(self, model: str | None = None) -> Deadline:
        """The deadline one inference request runs under, whatever its transport; with the
        requested ``model``, the request counts in ``oip_requests_in_flight`` meanwhile."""
        in_flight = None if model is None else self.in_flight.of(model)
        return Deadline(self.limits.request_timeout_s, in_flight)

    def drain(self) -> None:
        """Report not ready from now on (the server is stopping; requests are still served), so
        that load balancers take this replica out before it stops accepting."""
        self.draining = True

    def server_metadata(self) -> dict[str, Any]:
        return self.server

    async def ready(self) -> bool:
        """Ready when every served model can run inference, until the server drains."""
        if self.draining:
            return False
        for name in self.registry.models:
            if not await self.executors[name].ready():
                return False
        return True

    async def model_ready(self, name: str, version: str | None) -> dict[str, Any]:
        resolved = self.registry.model(name).heaviest(version)
        return {"name": resolved.name, "ready": await self.executors[name].ready()}

    async def loaded(self) -> dict[str, dict[str, list[str]]]:
        """The tags whose estimators are held, by placement, then by process (the answering
        gateway worker in process, every runner worker): what load fills and unload frees."""
        executors = {executor.placement: executor for executor in self.executors.values()}
        return {placement: await e.loaded() for placement, e in sorted(executors.items())}

    def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        model = self.registry.model(name)
        resolved = model.heaviest(version)
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
        """Run one decoded inference request on the version it resolves to (see the module
        docstring); a model that logs its inferences gives a request without ``id`` one."""
        start = time.perf_counter_ns()
        name = request.model_name
        model = self.registry.model(name)
        key = routing_key(request)
        resolved = model.resolve(request.model_version, key)
        logged = self.journal is not None and model.rollout.log_inferences
        request_id = request.id or (uuid.uuid4().hex if logged else None)
        stats = self.statistics.of(name, resolved.version)
        rows = 0
        try:
            checked = time.perf_counter_ns()
            x = model_input(resolved, request.inputs, request.parameters)
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
        except BaseException as exc:
            stats.finished(ok=False, rows=0, total_ns=time.perf_counter_ns() - start)
            if logged:
                status, error = failure(exc)
                self._record(_entry(request, resolved, request_id, start, status, [], error))
            raise
        stats.finished(ok=True, rows=rows, total_ns=time.perf_counter_ns() - start)
        if logged:
            self._record(_entry(request, resolved, request_id, start, 200, outputs, None))
        if model.rollout.shadow and request.model_version in (None, model.rollout.default):
            job = Job(model, resolved, request, request_id or "", methods, results, key, logged)
            self.shadows.submit(job)
        return InferResponse(name, resolved.version, outputs, request_id)

    def _record(self, entry: Entry) -> None:
        if self.journal is not None:
            self.journal.record(entry)

    async def stored_prediction(self, name: str, version: str | None, key: str) -> dict[str, Any]:
        """A prediction ``score.py`` stored for one row (its key) by the version this resolves
        to, in the V2 response shape, from ``OIP_PREDICTIONS_DB``."""
        if not self.predictions_db:  # nothing stored to find: a 404, as for an unknown key
            raise NotFound("no stored predictions: set OIP_PREDICTIONS_DB to score.py's --db")
        resolved = self.registry.model(name).heaviest(version)
        from adapters.batch import predictions  # SQLAlchemy only when the route is used

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
            pairs = [(name, v.version) for v in self.registry.model(name).targets(version)]
        return self.statistics.report(pairs)

    async def close(self, timeout_s: float = 5.0) -> None:
        """At shutdown: the shadow runs under way end, the inference log is written out."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.shadows.idle()
        if self.journal is not None:
            await anyio.to_thread.run_sync(self.journal.flush, timeout_s)


def routing_key(request: InferRequest) -> str | None:
    """The request parameter ``routing_key``: one key, one version of a weighted alias."""
    key = (request.parameters or {}).get("routing_key")
    if key is not None and not isinstance(key, str):
        raise BadRequest(f"parameter 'routing_key' must be a string, got {type(key).__name__}")
    return key


def _entry(
    request: InferRequest,
    resolved: ModelVersion,
    request_id: str | None,
    start: int,
    status: int,
    outputs: list[Tensor],
    error: str | None,
) -> Entry:
    latency_ms = (time.perf_counter_ns() - start) / 1e6
    return Entry(
        request_id or "",
        resolved.name,
        resolved.version,
        status,
        latency_ms,
        request.inputs,
        outputs,
        error,
        created_at=datetime.now(UTC),
    )


def _output(resolved: ModelVersion, method: str, count: int | None, array: Array) -> Tensor:
    if count is None:
        return Tensor(method, datatype_of(array), array, output_parameters())
    labels = classify(method, array, count, resolved.classes)
    return Tensor(method, Datatype.BYTES, labels, output_parameters())
