"""Writing predictions: each chunk upserted in one transaction into the table of
:mod:`adapters.batch.predictions`, by the fastest path each database offers, and
:class:`ChunkWriter`, which commits one chunk while the next is read and predicted.

* SQLite: the chunk's columns that vary go in as one JSON array of rows (``orjson``), the
  constant ones (model, version, ``scored_at``) as parameters, in one ``INSERT ... SELECT ...
  FROM json_each(?) ... ON CONFLICT DO UPDATE``: SQLite parses the rows in C, with the GIL
  released for the whole statement (a row of ``executemany`` binds its values in Python first).
  Values JSON cannot carry (an infinite float, an integer past 64 bits) take ``executemany``.
* PostgreSQL: ``COPY`` of the chunk as one text buffer (:mod:`adapters.batch.pgcopy`).
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine

from adapters.batch.pgcopy import copy_upsert
from adapters.batch.predictions import KEY_COLUMNS, Row


def write_chunk(engine: Engine, table: sa.Table, rows: Sequence[Row]) -> int:
    """Upsert ``rows`` (dicts of column values, all with the same columns: the primary key
    and any others) in one transaction; returns how many rows were written.

    Rows with the same primary key collapse to the last one (a second upsert of the same key
    in one statement is an error in PostgreSQL). Columns the rows leave out keep their stored
    values.
    """
    names = list(rows[0]) if rows else []
    return write_columns(engine, table, {c: [r[c] for r in rows] for c in names})


def write_columns(engine: Engine, table: sa.Table, columns: Mapping[str, Sequence[Any]]) -> int:
    """:func:`write_chunk` for the same rows given column by column (``score.py`` builds them
    so: a million dicts cost more than the database's own work)."""
    names = list(columns)
    if not names:
        return 0
    values = [columns[c] for c in names]
    n = _unique(values, [names.index(c) for c in KEY_COLUMNS])
    if not n:
        return 0
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            copy_upsert(connection, table, names, values)
        return n
    bound = [_bound(engine, table.c[c], v) for c, v in zip(names, values, strict=True)]
    with engine.begin() as connection:
        if not _json_upsert(connection, table, names, bound):
            _executemany_upsert(connection, table, names, bound)
    return n


def _unique(values: list[Sequence[Any]], keys: list[int]) -> int:
    """Drops the rows of ``values`` (in place) whose primary key comes again later in the
    chunk, keeping the last; returns how many rows are left."""
    n = len(values[0]) if values else 0
    first, *rest = (values[i] for i in keys)
    if all(_constant(v) for v in rest) and len(set(first)) == n:  # the usual chunk, at C speed
        return n
    last = {k: i for i, k in enumerate(zip(first, *rest, strict=True))}
    if len(last) < n:
        kept = sorted(last.values())
        values[:] = [[v[i] for i in kept] for v in values]
    return len(last)


def _constant(values: Sequence[Any]) -> bool:
    """Whether every value is the first (at C speed; NaN never is)."""
    return len(values) > 1 and values.count(values[0]) == len(values)


def _json_upsert(
    connection: sa.Connection, table: sa.Table, names: list[str], bound: list[Sequence[Any]]
) -> bool:
    """SQLite: one ``INSERT ... SELECT ... FROM json_each(?)``; ``False`` (nothing written)
    when a value has no exact JSON form."""
    constant = [_constant(v) for v in bound]
    varying = [v for v, c in zip(bound, constant, strict=True) if not c]
    try:
        text = orjson.dumps(list(zip(*varying, strict=True)))
    except orjson.JSONEncodeError:  # an integer past 64 bits, a type JSON does not have
        return False
    if b"null" in text and any(_infinite(v) for v in varying):
        return False  # orjson writes inf as null; NaN as null is right (SQLite stores NULL)
    quote = connection.dialect.identifier_preparer.quote
    selected, parameters, position = [], [], 0
    for value, is_constant in zip(bound, constant, strict=True):
        if is_constant:
            selected.append("?")
            parameters.append(value[0])
        else:
            selected.append(f"json_extract(value, '$[{position}]')")
            position += 1
    parameters.append(text.decode())
    columns = ", ".join(quote(c) for c in names)
    statement = (
        f"INSERT INTO {connection.dialect.identifier_preparer.format_table(table)} ({columns}) "
        f"SELECT {', '.join(selected)} FROM json_each(?) WHERE true {_conflict(names, quote)}"
    )  # NOTE: "WHERE true" ends the SELECT (else SQLite reads ON CONFLICT as a join's ON)
    connection.exec_driver_sql(statement, tuple(parameters))
    return True


def _infinite(values: Sequence[Any]) -> bool:
    return any(isinstance(v, float) and math.isinf(v) for v in values)


def _conflict(names: list[str], quote: Callable[[str], str]) -> str:
    keys = ", ".join(quote(c) for c in KEY_COLUMNS)
    updates = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in names if c not in KEY_COLUMNS)
    return f"ON CONFLICT ({keys}) " + (f"DO UPDATE SET {updates}" if updates else "DO NOTHING")


def _executemany_upsert(
    connection: sa.Connection, table: sa.Table, names: list[str], bound: list[Sequence[Any]]
) -> None:
    """SQLite: the driver's own ``executemany`` of the rows as tuples (SQLAlchemy's would
    prepare each row's parameters in Python, ~20 us a row)."""
    insert = sqlite.insert(table)
    statement = insert.on_conflict_do_update(
        index_elements=list(KEY_COLUMNS),
        set_={c: insert.excluded[c] for c in names if c not in KEY_COLUMNS},
    )
    compiled = statement.compile(dialect=connection.dialect, column_keys=names)
    by_name = dict(zip(names, bound, strict=True))
    rows = list(zip(*(by_name[p] for p in compiled.positiontup or ()), strict=True))
    connection.exec_driver_sql(compiled.string, rows)


def _bound(engine: Engine, column: sa.Column[Any], values: Sequence[Any]) -> Sequence[Any]:
    """A column's values as the driver takes them (e.g. a datetime as text in SQLite): each
    distinct value converted once."""
    process = column.type.dialect_impl(engine.dialect).bind_processor(engine.dialect)
    if process is None:
        return values
    if _constant(values):
        return [process(values[0])] * len(values)
    done: dict[Any, Any] = {}
    return [done[v] if v in done else done.setdefault(v, process(v)) for v in values]


class ChunkWriter:
    """Writes chunks with :func:`write_columns` on a thread of its own, in order, one
    transaction each, while the caller prepares the next: the database's work (SQLite's
    statement, PostgreSQL's server) runs beside the reading and predicting. At most one chunk
    waits (bounded memory). ``on_commit(rows)`` runs on that thread after each commit, with the
    chunk's row count.

    Leaving the ``with`` block waits for every chunk handed over to be committed, also when
    the block raises (a malformed row: the chunks before it stay committed). A failed write
    is raised by the next :meth:`put` or on leaving, and no later chunk is written.
    """

    def __init__(self, engine: Engine, table: sa.Table, on_commit: Callable[[int], None]) -> None:
        self.engine, self.table, self.on_commit = engine, table, on_commit
        self._chunks: queue.Queue[Mapping[str, Sequence[Any]] | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="oip-chunk-writer", daemon=True)

    def __enter__(self) -> ChunkWriter:
        self._thread.start()
        return self

    def put(self, columns: Mapping[str, Sequence[Any]]) -> None:
        """Hand a chunk over (waits while another one is waiting)."""
        self._raise()
        self._chunks.put(columns)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._chunks.put(None)
        self._thread.join()
        if exc is None:
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (columns := self._chunks.get()) is not None:
            if self._error is not None:
                continue  # drain: the caller learns of the error on its next put
            try:
                write_columns(self.engine, self.table, columns)
                self.on_commit(len(next(iter(columns.values()), ())))
            except BaseException as exc:  # handed to the caller's thread
                self._error = exc
