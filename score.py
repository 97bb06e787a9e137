"""Score a table with a stored model version and write the predictions into a database.

The version resolves as the server resolves it (``latest``, ``best``, a version; the server's
default, ``OIP_DEFAULT_VERSION``, when none is given), and the rows are read into the tensors a
V2 request would carry and checked against the same signature. One row per input row is
upserted into ``<model>_predictions``: ``key`` (the id column, else a hash of the row's content),
``model``, ``version``, one column per output and ``scored_at``. Re-running the same version
over the same rows replaces them; another version adds its own rows.

    python score.py --model iris --version best --input data.csv --db sqlite:///predictions.db
    python score.py --model text --input docs.parquet --db postgresql://user@host/db
    python score.py --model iris --input "sql:SELECT * FROM flowers" --db sqlite:///p.db
    make score SCORE_ARGS="--model iris --input data.csv"

Rows are streamed in chunks (``--chunk-rows``), each committed in its own transaction, on a
thread of its own while the next chunk is read and predicted. A row the model cannot take stops
the run with exit code 2, naming the row (counted from 0); the chunks before it stay committed,
so a run can be resumed by running it again.

``--engine ray`` predicts on Ray Data worker actors (``--ray-workers``, one model copy each) and
writes here, with the same chunks, keys and errors (:mod:`adapters.batch.scoring`): a local Ray on
this machine, or the cluster at ``RAY_ADDRESS``. It needs ``requirements-ray.txt`` and reads
.csv and .parquet files, not ``sql:``.

    python score.py --engine ray --model iris --input big.parquet --db postgresql://user@host/db
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import Counter
from collections.abc import Generator
from contextlib import ExitStack, closing
from typing import Any, TextIO

import bentoml
from sqlalchemy.exc import SQLAlchemyError

from adapters.batch.predictions import TableMismatch, connect, default_table_name, ensure_table
from adapters.batch.ray import EngineFailed, ray_chunks
from adapters.batch.readers import MalformedInput, Plan, input_columns, input_kind, read_chunks
from adapters.batch.scoring import Columns, predicted, stamped
from adapters.batch.writes import ChunkWriter
from adapters.config.fields import ConfigError
from adapters.config.settings import Settings
from adapters.models.inputs import requested_outputs
from adapters.models.registry import ModelVersion
from adapters.models.repository import Holder, Repository
from adapters.models.signature import TensorSpec
from adapters.protocol.errors import OIPError
from adapters.protocol.messages import RequestedOutput

DEFAULT_DB = "sqlite:///predictions.db"
DEFAULT_CHUNK_ROWS = 50_000
SQLITE_CACHE_MIB = 64  # SQLite's page cache (default 2 MiB): a million rows' key index fits


class Run:
    """What the summary tells: rows committed, time, the target; with a carriage-return
    progress line on stderr (rows, rows/s) unless quiet."""

    def __init__(self, stream: TextIO, *, quiet: bool) -> None:
        self.stream, self.quiet = stream, quiet
        self.start = time.perf_counter()
        self.rows = 0  # committed
        self.target = ""  # model:version -> table (database), once known
        self.nodes: Counter[str] = Counter()  # --engine ray: rows scored, by Ray node id

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    @property
    def rate(self) -> float:
        return self.rows / max(self.seconds, 1e-9)

    def committed(self, rows: int) -> None:
        self.rows += rows
        if not self.quiet:
            self.stream.write(f"\r{self.rows:,} rows  {self.rate:,.0f} rows/s ")
            self.stream.flush()

    def close(self) -> None:
        if not self.quiet and self.rows:
            self.stream.write("\n")


def resolve(name: str, version: str | None) -> ModelVersion:
    """The version the server would serve for ``name`` and ``version`` (``None``: its
    default; a weighted alias: its heaviest target), with the server's signature (``OIP_CONFIG``
    overrides included)."""
    settings = Settings.from_env()
    repository: Repository[Holder] = Repository(
        [name], settings.rollout, {}, signatures=settings.signatures
    )
    return repository.open(name).heaviest(version)


def score(args: argparse.Namespace, run: Run) -> None:
    """Score ``args.input`` into the table, one committed transaction per chunk.

    Raises:
        MalformedInput: a row the model cannot take (the chunks before it are committed).
        EngineFailed: Ray failed (``--engine ray``) for a reason that is not the input's.
    """
    resolved = resolve(args.model, args.version)
    requested = [RequestedOutput(n.strip()) for n in (args.outputs or "").split(",") if n.strip()]
    wanted = [name for name, _ in requested_outputs(resolved, requested or None)]
    specs = [s for name in wanted for s in resolved.signature.outputs if s.name == name]
    engine = connect(args.db, cache_mib=SQLITE_CACHE_MIB)
    table = ensure_table(engine, args.table or default_table_name(resolved.name), specs)
    url = engine.url.render_as_string(hide_password=True)
    run.target = f"{resolved.tag} -> {table.name} ({url})"
    estimator = bentoml.sklearn.load_model(resolved.tag)
    gc.freeze()  # the libraries' objects, loaded for good: collections scan only the chunk's
    with ExitStack() as stack:
        stack.callback(gc.unfreeze)
        connection = None
        if input_kind(args.input) == "sql":
            source = connect(args.input_db) if args.input_db else engine
            connection = stack.enter_context(source.connect())
        plan = Plan.of(resolved.signature, input_columns(args.input, connection), args.id_column)
        if args.engine == "ray":
            chunks = ray_chunks(
                args.input, resolved=resolved, estimator=estimator, plan=plan, specs=specs,
                chunk_rows=args.chunk_rows, workers=args.ray_workers, nodes=run.nodes,
            )  # fmt: skip
        else:
            chunks = local_chunks(args, resolved, estimator, plan, specs, connection)
        # commits chunk i on its thread while chunk i + 1 is read and predicted; leaving waits
        # for every chunk handed over (also on a malformed row: the chunks before it stay)
        writer = stack.enter_context(ChunkWriter(engine, table, on_commit=run.committed))
        for columns in stack.enter_context(closing(chunks)):
            writer.put(stamped(resolved, columns))


def local_chunks(
    args: argparse.Namespace,
    resolved: ModelVersion,
    estimator: Any,
    plan: Plan,
    specs: list[TensorSpec],
    connection: Any,
) -> Generator[Columns]:
    """The local engine: each chunk read, then predicted here, before the next is read."""
    chunks = read_chunks(
        args.input, chunk_rows=args.chunk_rows, text=plan.text_columns, connection=connection
    )
    offset = 0
    with closing(chunks):
        for chunk in chunks:
            frame = chunk.reset_index(drop=True)
            yield predicted(resolved, estimator, plan, specs, frame, offset=offset)
            offset += len(frame)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="a model name in the BentoML store")
    parser.add_argument(
        "--version", help="latest, best or a version (default: the server's, OIP_DEFAULT_VERSION)"
    )
    parser.add_argument(
        "--input", required=True, help='a .csv or .parquet file, or "sql:SELECT ..." (on --db)'
    )
    parser.add_argument("--db", default=DEFAULT_DB, help=f"SQLAlchemy URL (default {DEFAULT_DB})")
    parser.add_argument("--input-db", help="where a sql: input runs (default: --db)")
    parser.add_argument("--table", help="default: <model>_predictions")
    parser.add_argument(
        "--outputs", help="comma list, e.g. predict,predict_proba (default: the server's)"
    )
    parser.add_argument(
        "--id-column", help="the row key (default: id when the input has one, else a row hash)"
    )
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, metavar="N")
    parser.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="where predict runs: here (default), or on Ray worker actors (RAY_ADDRESS: a cluster)",
    )
    parser.add_argument(
        "--ray-workers",
        type=int,
        metavar="N",
        help="Ray actors, one model each (default: one per CPU)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    args = parser.parse_args(argv)
    if args.chunk_rows < 1:
        parser.error("--chunk-rows must be at least 1")
    if args.ray_workers is not None and (args.ray_workers < 1 or args.engine != "ray"):
        parser.error("--ray-workers takes a number of at least 1, with --engine ray")
    if args.engine == "ray" and args.input.startswith("sql:"):
        parser.error("--engine ray reads .csv and .parquet files; score a sql: input locally")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = Run(sys.stderr, quiet=args.quiet)
    error, code = None, 0
    try:
        score(args, run)
    except (MalformedInput, TableMismatch, OIPError, ConfigError, ValueError) as exc:
        error, code = getattr(exc, "message", None) or str(exc), 2
    except SQLAlchemyError as exc:
        error, code = f"database: {exc}".splitlines()[0], 1
    except EngineFailed as exc:
        error, code = str(exc), 1
    run.close()
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
    if run.target:
        done = "scored" if error is None else "stopped; committed before the error:"
        print(
            f"{run.target}: {done} {run.rows:,} rows in {run.seconds:.2f} s "
            f"({run.rate:,.0f} rows/s)"
        )
    if run.nodes:  # which Ray nodes did the work (a cluster's: RAY_ADDRESS)
        counts = ", ".join(f"{node[:8]} {rows:,}" for node, rows in sorted(run.nodes.items()))
        print(f"ray: rows scored by node: {counts}")
    return code


if __name__ == "__main__":
    sys.exit(main())
