"""Batch scoring's Ray engine: :func:`~adapters.batch.scoring.predicted` run on Ray Data worker
actors. ``score.py --engine local`` reads the input in chunks and scores each in its own
process; ``--engine ray`` (:func:`ray_chunks`) is a Ray Data pipeline:

    read_csv / read_parquet -> repartition(chunk_rows, strict) -> map_batches(_Scorer,
    ActorPoolStrategy(size=workers)) -> iter_batches on the driver, which upserts each batch

The blocks are cut where the local engine cuts its chunks, so each ``predict`` call sees the
same rows with either engine and the predictions are equal to the last bit (a BLAS product of
100 rows may round otherwise than one of 30). Each actor holds one copy of the estimator, taken
from Ray's object store (``ray.put`` by the driver, which loaded it from its BentoML store): a
cluster's workers need the packages of ``requirements-ray.txt``, not the store; the
``adapters`` package reaches them from the driver (``py_modules``, :func:`ray_session`). The
database is written by the driver only, one transaction per batch of ``--chunk-rows`` rows, so
upserts, resuming and the count of rows committed before an error are the local engine's. The
actors are spread over the cluster's nodes (Ray Data's ``SPREAD``, each leaving a CPU per node
to the read tasks: :func:`actor_cpus`), and each batch says which node scored it (``_NODE``, on
its first row only): the driver counts the rows of each node.

Row numbers: the batches reach the driver in input order (``preserve_order``), and an actor
does not raise on a bad row but returns the fault in its batch (``_ERROR``, at the row's place),
so the driver names the input's row. A row that does not parse (a ragged line, text in a number
column) fails the read task itself, and pyarrow names no row; the driver then finds it by
reading the file the local engine's way (:func:`_locate`), and reports what the local engine
would have.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections import Counter
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adapters.batch.readers import MalformedInput, Plan, input_kind, read_chunks
from adapters.batch.scoring import Columns, predicted
from adapters.models.registry import ModelVersion
from adapters.models.signature import TensorSpec

_ERROR, _ERROR_ROWS = "_error", "_error_rows"  # a batch's fault: its text, how many rows
ACTORS_READY_S = 300  # every actor up before the first batch; a cluster short of CPUs fails
_NODE = "_node"  # the Ray node that scored the batch, on its first row (None on the others)
PACKAGE = str(Path(__file__).parents[1])  # the adapters package, sent to every worker (py_modules)


class EngineFailed(RuntimeError):
    """Ray failed for a reason that is not the input's (a worker lost, no cluster)."""


@dataclass(frozen=True)
class _Job:
    """What every actor needs besides the estimator (pickled into each actor once)."""

    resolved: ModelVersion
    plan: Plan
    specs: list[TensorSpec]


class _Scorer:
    """One Ray Data worker actor: one estimator copy, :func:`predicted` on each batch."""

    def __init__(self, job: _Job, model: list[Any]) -> None:
        import ray

        self.job, self.estimator = job, ray.get(model[0])  # in a list: Ray passes it as is
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, frame: pd.DataFrame) -> dict[str, Any]:
        job, n = self.job, len(frame)
        names = ["key", *(s.name for s in job.specs)]
        batch: dict[str, Any] = {_ERROR: np.full(n, None, dtype=object)}
        batch[_ERROR_ROWS] = np.zeros(n, dtype=np.int64)
        batch[_NODE] = np.full(n, None, dtype=object)
        batch[_NODE][0] = self.node
        try:
            columns = predicted(
                job.resolved, self.estimator, job.plan, job.specs, frame.reset_index(drop=True),
                offset=0,
            )  # fmt: skip
        except MalformedInput as fault:  # returned in place: the driver knows the row's number
            batch[_ERROR][fault.row], batch[_ERROR_ROWS][fault.row] = fault.detail, fault.rows
            return {name: np.full(n, None, dtype=object) for name in names} | batch
        return {name: _array(columns[name]) for name in names} | batch


def _array(values: list[Any]) -> Any:
    """A column as numpy: numbers typed, text (and JSON vectors) as Python strings."""
    text = bool(values) and isinstance(values[0], str)
    return np.asarray(values, dtype=object if text else None)


def default_workers(cpus: float) -> int:
    """One actor per CPU (each reserves a share of a CPU less, so the read tasks keep one):
    on 2 cores two actors scored 1 M rows a third faster than one."""
    return max(1, int(cpus))


def actor_cpus(node_cpus: list[float], size: int) -> float:
    """The CPU share each of ``size`` actors reserves: at most one, and once they are spread
    over the nodes (as evenly as SPREAD puts them), one CPU left on every node for Ray Data's
    read tasks, which take a whole one. On one node of 2 CPUs, 2 actors take 0.5 each; on two
    nodes of 1 CPU, none is left to share: they reserve nothing (else no read could run)."""
    per_node = math.ceil(size / len(node_cpus))
    return max(0.0, min(1.0, (min(node_cpus) - 1) / per_node))


def _node_cpus(nodes: list[dict[str, Any]]) -> list[float]:
    """The CPUs of each live node of ``ray.nodes()`` that has any."""
    cpus = [float(n.get("Resources", {}).get("CPU", 0)) for n in nodes if n.get("Alive")]
    return [c for c in cpus if c > 0]


def ray_chunks(
    source: str,
    *,
    resolved: ModelVersion,
    estimator: Any,
    plan: Plan,
    specs: list[TensorSpec],
    chunk_rows: int,
    workers: int | None,
    nodes: Counter[str] | None = None,
) -> Generator[Columns]:
    """The input's key and output columns, in batches of ``chunk_rows`` rows in input order,
    predicted by ``workers`` Ray actors (default: :func:`default_workers` of the cluster's),
    spread over its nodes; ``nodes`` counts the rows each node scored, by node id.

    Ray is the caller's when it is already initialised; else this connects to ``RAY_ADDRESS``
    when set, or starts a local Ray on this machine's CPUs, and stops or leaves it at the end.

    Raises:
        MalformedInput: a row the model cannot take; the batches before it have been yielded.
        ValueError: the input cannot be read (a fault that is no row's).
        EngineFailed: Ray failed otherwise.
    """
    import ray
    import ray.data
    from ray.exceptions import RayError

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # no plan and progress on stderr
    # an input of fewer chunks than actors is fine: the spare actors just stay idle
    warnings.filterwarnings("ignore", "The minimum number of concurrent actors", UserWarning)
    with ray_session():
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # the driver counts the rows
        context.enable_progress_bars = False
        context.wait_for_min_actors_s = ACTORS_READY_S  # ACTORS_READY_S says why
        # NOTE: Ray 2.60's new Parquet path (ListFiles -> ReadFiles) spends 6-12 s listing one
        # local file on a 2-CPU machine; the first path reads it in under a second
        context.use_datasource_v2 = False
        resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        cpus = float(resources.get("CPU", 1))
        size = workers or default_workers(cpus)
        nodes_cpus = _node_cpus(ray.nodes())  # type: ignore[no-untyped-call]
        model = ray.put(estimator)
        names = ["key", *(s.name for s in specs)]
        chunks = _read(source, plan).repartition(target_num_rows_per_block=chunk_rows, strict=True)
        mapped = chunks.map_batches(
            _Scorer,
            fn_constructor_kwargs={"job": _Job(resolved, plan, specs), "model": [model]},
            batch_size=chunk_rows,
            batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=size),
            # NOTE: Ray Data places actors with DataContext.scheduling_strategy, SPREAD by
            # default (a strategy given here is deprecated in Ray 2.60): every node scores
            num_cpus=actor_cpus(nodes_cpus or [cpus], size),
        )
        offset, node = 0, ""
        batches = mapped.iter_batches(batch_size=chunk_rows, batch_format="numpy")
        try:
            for batch in batches:
                faults = np.flatnonzero(pd.notna(batch[_ERROR]))
                if len(faults):
                    i = int(faults[0])
                    detail = str(batch[_ERROR][i])
                    raise MalformedInput(detail, row=offset + i, rows=int(batch[_ERROR_ROWS][i]))
                node = _count(nodes, batch[_NODE], node)
                yield {name: batch[name].tolist() for name in names}
                offset += len(batch[_ERROR])
        except RayError as exc:
            raise _reading_fault(exc, source, plan, chunk_rows) from None


def _count(nodes: Counter[str] | None, column: Any, node: str) -> str:
    """Add a batch's rows to the count of the node that scored them (each marked first row
    starts a node's rows; rows before the first mark are ``node``'s, where the last batch
    ended); the node scoring at the batch's end."""
    marks = np.flatnonzero(pd.notna(column))
    starts = [0, *marks.tolist(), len(column)]
    owners = [node, *(str(column[i]) for i in marks)]
    for owner, begin, end in zip(owners, starts, starts[1:], strict=False):
        if nodes is not None and end > begin:
            nodes[owner] += end - begin
    return owners[-1]


def _read(source: str, plan: Plan) -> Any:
    """The plan's columns as a Ray dataset: the key and BYTES inputs as strings, the other
    inputs as float64 (the tensors are FP64 either way), so no block infers its own types."""
    import pyarrow as pa
    import ray.data
    from pyarrow import csv

    text = set(plan.text_columns)
    used = ([plan.key] if plan.key else []) + [c for _, cols in plan.inputs for c in cols]
    if input_kind(source) == "parquet":
        return ray.data.read_parquet(source).select_columns(used)
    types = {c: pa.string() if c in text else pa.float64() for c in used}
    convert = csv.ConvertOptions(
        column_types=types,
        include_columns=used,
        null_values=[""],  # only an empty field is missing ("NA" is text, or an error)
        strings_can_be_null=True,
    )
    parse = csv.ParseOptions(newlines_in_values=True)  # a quoted text may hold a line break
    return ray.data.read_csv(source, convert_options=convert, parse_options=parse)


def _reading_fault(exc: Exception, source: str, plan: Plan, chunk_rows: int) -> Exception:
    """What a failed Ray run means: a row of the input (found again by the local reader), the
    input as a whole (a ``ValueError`` of the read: Ray keeps no row number), or Ray itself."""
    import pyarrow as pa

    cause = getattr(exc, "cause", None)
    said = str(cause or exc).strip().splitlines()[0]
    if not isinstance(cause, ValueError | pa.ArrowException):
        return EngineFailed(f"ray: {said}")
    if input_kind(source) == "csv":
        try:
            _locate(source, plan, chunk_rows)
        except MalformedInput as fault:
            return fault
    return ValueError(said)


def _locate(source: str, plan: Plan, chunk_rows: int) -> None:
    """Read the CSV file the local engine's way, raising its :class:`MalformedInput` for the
    first row that cannot be read."""
    offset = 0
    for chunk in read_chunks(source, chunk_rows=chunk_rows, text=plan.text_columns):
        frame = chunk.reset_index(drop=True)
        plan.tensors(frame, offset)
        if plan.key:
            plan.keys(frame, None, offset)
        offset += len(frame)


@contextmanager
def ray_session(*, num_cpus: int | None = None) -> Iterator[None]:
    """Ray for the duration: the caller's when it is already initialised (left running), else
    the cluster at ``RAY_ADDRESS`` (disconnected after), else a local Ray on ``num_cpus``
    (default: this machine's) started here and stopped after.

    The workers get the ``adapters`` package from the driver (``py_modules``, uploaded by
    ``ray.init``): a Ray initialised by the caller must have been given :data:`PACKAGE`, or
    run where ``adapters`` is importable.

    Raises:
        EngineFailed: Ray did not start, or the cluster did not answer.
        ValueError: ``RAY_ADDRESS`` is a Ray Client address (``ray://``).
    """
    import ray

    if ray.is_initialized():
        yield
        return
    # NOTE: a new runtime_env dict each time: ray.init replaces the path in it with the
    # uploaded package's URI, which a later Ray (another cluster) would not have
    options: dict[str, Any] = {"runtime_env": {"py_modules": [PACKAGE]}}
    options.update(logging_level=logging.ERROR, log_to_driver=False)
    address = os.environ.get("RAY_ADDRESS")
    if address and address.startswith("ray://"):
        # NOTE: Ray Data does not run over Ray Client (its iterator needs a core worker)
        raise ValueError(
            f"RAY_ADDRESS={address} is a Ray Client address, which Ray Data does not run over: "
            "run on a node of the cluster with RAY_ADDRESS=auto (or its host:port), or as a Ray job"
        )
    try:
        if address:
            ray.init(address=address, **options)
        else:
            cpus = num_cpus or os.cpu_count()  # "local": a new Ray, even beside a `ray start` one
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, **options)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError: Ray's to say which
        doing = f"connecting to RAY_ADDRESS={address}" if address else "starting a local Ray"
        raise EngineFailed(f"ray: {doing}: {str(exc).splitlines()[0]}") from None
    try:
        yield
    finally:
        ray.shutdown()
