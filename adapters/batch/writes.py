"""Writing predictions: each chunk upserted in one transaction into the table of
:mod:`adapters.batch.predictions`, by the fastest path each database offers (SQLite: one
``executemany`` of the rows in the driver's own form; PostgreSQL: ``COPY`` into a temporary table,
then one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine

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
    values = [columns[c] for c in names]
    keys = [values[names.index(c)] for c in KEY_COLUMNS]
    last = {k: i for i, k in enumerate(zip(*keys, strict=True))}  # by primary key
    if len(last) < len(values[0]):
        kept = sorted(last.values())
        values = [[v[i] for i in kept] for v in values]
    if not last:
        return 0
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            _copy_upsert(connection, table, names, values)
        return len(last)
    insert = sqlite.insert(table)
    statement = insert.on_conflict_do_update(
        index_elements=list(KEY_COLUMNS),
        set_={c: insert.excluded[c] for c in names if c not in KEY_COLUMNS},
    )
    compiled = statement.compile(dialect=engine.dialect, column_keys=names)
    # NOTE: SQLAlchemy's executemany prepares each row's parameters in Python (~20 us a row);
    # sqlite3 takes them as they are, tuples in the statement's order, once each column is in
    # its bound form.
    bound = {c: _bound(engine, table.c[c], v) for c, v in zip(names, values, strict=True)}
    parameters = list(zip(*(bound[p] for p in compiled.positiontup or ()), strict=True))
    with engine.begin() as connection:
        connection.exec_driver_sql(compiled.string, parameters)
    return len(last)


def _copy_upsert(
    connection: sa.Connection, table: sa.Table, names: list[str], values: list[Sequence[Any]]
) -> None:
    """PostgreSQL: ``COPY`` the rows into a temporary table of just these columns (no
    constraints: a column left out keeps its stored value), then one ``INSERT ... SELECT ...
    ON CONFLICT DO UPDATE`` into ``table``. ``executemany`` sends a statement per row; ``COPY``
    streams them (psycopg writes each row in C)."""
    quote = connection.dialect.identifier_preparer.quote
    target = connection.dialect.identifier_preparer.format_table(table)
    columns = ", ".join(quote(c) for c in names)
    updates = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in names if c not in KEY_COLUMNS)
    keys = ", ".join(quote(c) for c in KEY_COLUMNS)
    conflict = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    driver = connection.connection.driver_connection  # psycopg 3
    assert driver is not None  # a pooled connection in use always has one
    cursor = driver.cursor()
    try:
        cursor.execute(
            f"CREATE TEMP TABLE _oip_rows ON COMMIT DROP AS SELECT {columns} FROM {target} "
            "WITH NO DATA"
        )
        with cursor.copy(f"COPY _oip_rows ({columns}) FROM STDIN") as copy:
            for row in zip(*values, strict=True):
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO {target} ({columns}) SELECT {columns} FROM _oip_rows "
            f"ON CONFLICT ({keys}) {conflict}"
        )
    finally:
        cursor.close()


def _bound(engine: Engine, column: sa.Column[Any], values: Sequence[Any]) -> Sequence[Any]:
    """A column's values as the driver takes them (e.g. a datetime as text in SQLite): each
    distinct value converted once."""
    process = column.type.dialect_impl(engine.dialect).bind_processor(engine.dialect)
    if process is None:
        return values
    done: dict[Any, Any] = {}
    return [done[v] if v in done else done.setdefault(v, process(v)) for v in values]
