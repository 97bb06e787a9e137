"""The floor of each way of writing a batch of predictions, side by side: N finished iris rows
(1 M by default: key, model, version, ``predict``, ``scored_at``) written in chunks, one
transaction each, into SQLite and PostgreSQL, each method on a fresh table, rounds alternating
between the methods (the machine is shared: the median of the rounds is printed, with the
spread).

    .venv/bin/python bench/score_writes.py [--rows 1000000] [--chunk-rows 50000] [--rounds 3]
                                           [--no-postgres]

SQLite, a file in WAL mode (:func:`adapters.batch.predictions.connect`):
  executemany   the driver's ``executemany`` of the rows as tuples (what batch scoring did
                before; ``adapters.batch.writes._executemany_upsert``)
  json_each     one ``INSERT ... SELECT ... FROM json_each(?)`` per chunk (``write_columns``)
  ..., cache 64 MiB   with ``PRAGMA cache_size`` of 64 MiB (SQLite's default: 2 MiB), as
                score.py sets it (``score.SQLITE_CACHE_MIB``)
  json_each, WITHOUT ROWID / synchronous=NORMAL   into such a table / with that pragma
PostgreSQL, a throwaway server (``tests/postgres.py``: initdb, fsync off):
  write_row     ``COPY`` row by row (psycopg ``write_row``) into a temporary table, then
                ``INSERT ... SELECT ... ON CONFLICT`` (what batch scoring did before)
  text, merge   one text buffer per chunk ``COPY``'d into a temporary table, then the same merge
                (``write_columns`` when keys are stored already)
  text, direct  the same buffer ``COPY``'d straight into the table (``write_columns``, new keys)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from adapters.batch import pgcopy, writes  # noqa: E402
from adapters.batch.predictions import connect, predictions_table  # noqa: E402
from adapters.models.signature import TensorSpec  # noqa: E402
from adapters.protocol.schemas import Datatype  # noqa: E402

OUTPUTS = [TensorSpec("predict", Datatype.INT64, (-1,))]
Columns = dict[str, list[Any]]
Method = Callable[[sa.Engine, sa.Table, Columns], None]


def finished_rows(n: int) -> Columns:
    when = dt.datetime.now(dt.UTC)
    return {
        "key": [str(i) for i in range(n)],
        "model": ["iris"] * n,
        "version": ["o7c5vghjl2auwax4"] * n,
        "predict": [i % 3 for i in range(n)],
        "scored_at": [when] * n,
    }


def executemany(engine: sa.Engine, table: sa.Table, chunk: Columns) -> None:
    names = list(chunk)
    bound = [writes._bound(engine, table.c[c], v) for c, v in chunk.items()]
    with engine.begin() as connection:
        writes._executemany_upsert(connection, table, names, bound)


def write_columns(engine: sa.Engine, table: sa.Table, chunk: Columns) -> None:
    writes.write_columns(engine, table, chunk)


def write_row_merge(engine: sa.Engine, table: sa.Table, chunk: Columns) -> None:
    """Batch scoring's PostgreSQL write before the text buffer: a row at a time."""
    names = ", ".join(f'"{c}"' for c in chunk)
    updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in ("predict", "scored_at"))
    with engine.begin() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMP TABLE _oip_rows ON COMMIT DROP AS SELECT {names} FROM "
                f'"{table.name}" WITH NO DATA'
            )
            with cursor.copy(f"COPY _oip_rows ({names}) FROM STDIN") as copy:
                for row in zip(*chunk.values(), strict=True):
                    copy.write_row(row)
            cursor.execute(
                f'INSERT INTO "{table.name}" ({names}) SELECT {names} FROM _oip_rows '
                f'ON CONFLICT ("key", model, version) DO UPDATE SET {updates}'
            )


def text_merge(engine: sa.Engine, table: sa.Table, chunk: Columns) -> None:
    pgcopy._merging.setdefault(engine, set()).add(table.name)  # as after a conflict
    writes.write_columns(engine, table, chunk)


def text_direct(engine: sa.Engine, table: sa.Table, chunk: Columns) -> None:
    pgcopy._merging.get(engine, set()).discard(table.name)
    writes.write_columns(engine, table, chunk)


def rate(engine: sa.Engine, table: sa.Table, method: Method, rows: Columns, size: int) -> float:
    """Rows/s of ``method`` writing every chunk of ``rows`` into a fresh ``table``."""
    table.drop(engine, checkfirst=True)
    table.create(engine)
    n = len(rows["key"])
    start = time.perf_counter()
    for i in range(0, n, size):
        method(engine, table, {c: v[i : i + size] for c, v in rows.items()})
    return n / (time.perf_counter() - start)


@contextlib.contextmanager
def sqlite_engine(work: Path, pragma: str | None = None) -> Iterator[sa.Engine]:
    engine = connect(f"sqlite:///{work / 'bench.db'}")
    if pragma:
        sa.event.listen(engine, "connect", lambda c, _: c.execute(f"PRAGMA {pragma}"))
    try:
        yield engine
    finally:
        engine.dispose()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{work / 'bench.db'}{suffix}").unlink(missing_ok=True)


def sqlite_methods(work: Path) -> dict[str, Callable[[Columns, int], float]]:
    def run(method: Method, rowid: bool = True, pragma: str | None = None) -> Any:
        def measure(rows: Columns, size: int) -> float:
            with sqlite_engine(work, pragma) as engine:
                table = predictions_table("bench", OUTPUTS)
                if not rowid:
                    table.dialect_options["sqlite"]["with_rowid"] = False
                return rate(engine, table, method, rows, size)

        return measure

    cache = "cache_size=-65536"  # score.py's: score.SQLITE_CACHE_MIB
    return {
        "sqlite      executemany (before)": run(executemany),
        "sqlite      executemany, cache 64 MiB": run(executemany, pragma=cache),
        "sqlite      json_each": run(write_columns),
        "sqlite      json_each, cache 64 MiB (score.py)": run(write_columns, pragma=cache),
        "sqlite      json_each, WITHOUT ROWID": run(write_columns, rowid=False),
        "sqlite      json_each, synchronous=NORMAL": run(
            write_columns, pragma="synchronous=NORMAL"
        ),
    }


def postgres_methods(url: str) -> dict[str, Callable[[Columns, int], float]]:
    engine = connect(url)

    def run(method: Method) -> Any:
        return lambda rows, size: rate(
            engine, predictions_table("bench", OUTPUTS), method, rows, size
        )

    return {
        "postgresql  COPY write_row, merge (before)": run(write_row_merge),
        "postgresql  COPY text, merge": run(text_merge),
        "postgresql  COPY text, direct": run(text_direct),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--chart", type=Path, help="also draw the medians into this SVG file")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"{dt.date.today()}  {os.cpu_count()} CPUs (load {load:.1f})  {args.rows:,} rows, "
          f"chunks of {args.chunk_rows:,}, median of {args.rounds} rounds")  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="oip-bench-writes-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        methods = sqlite_methods(work)
        if not args.no_postgres:
            from tests import postgres

            methods.update(postgres_methods(stack.enter_context(postgres.start())))
        rows = finished_rows(args.rows)
        found: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(args.rounds):
            for name, measure in methods.items():
                found[name].append(measure(rows, args.chunk_rows))
        for name, rates in found.items():
            print(f"{name:<44} {statistics.median(rates):>10,.0f} rows/s  {spread(rates)}")
        if args.chart:
            import charts  # bench/charts.py: matplotlib, only when asked

            medians = {" ".join(n.split()): statistics.median(r) for n, r in found.items()}
            title = f"write floors, rows/s ({args.rows:,} rows, {dt.date.today()})"
            charts.batch(medians, args.chart, title)


def spread(rates: Sequence[float]) -> str:
    return f"({min(rates):,.0f}-{max(rates):,.0f})"


if __name__ == "__main__":
    main()
