"""PostgreSQL: a chunk of predictions written with one ``COPY`` of a text buffer built column
by column (a ``str`` conversion per value, in C; psycopg's ``write_row`` costs Python work per
row), straight into the table when none of the chunk's keys is stored yet (a first run).

When a key is stored (a rerun, or another run's rows), that ``COPY`` fails on the primary key
and is rolled back to a savepoint, and the chunk goes the merging way: ``COPY`` into a temporary
table of just these columns (no constraints: a column left out keeps its stored value), then one
``INSERT ... SELECT ... ON CONFLICT DO UPDATE``. After one such conflict, later chunks into the
same table go that way at once (a rerun would otherwise send every chunk twice). Two runs
writing the same keys at once are safe: one waits on the other's keys, then conflicts.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adapters.batch.predictions import KEY_COLUMNS

_NULL = "\\N"
_SPECIAL = re.compile(r"[\\\t\n\r]")  # what COPY's text format escapes
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
UNIQUE_VIOLATION = "23505"
# engine -> tables a chunk conflicted in: they merge from then on
_merging: weakref.WeakKeyDictionary[Engine, set[str]] = weakref.WeakKeyDictionary()


def copy_upsert(
    connection: sa.Connection, table: sa.Table, names: list[str], values: list[Sequence[Any]]
) -> None:
    """Upsert the rows (``values``: one sequence per column of ``names``, keys unique) in the
    connection's transaction.

    Raises:
        sqlalchemy.exc.DatabaseError: the server refused the rows (e.g. a number out of range).
    """
    import psycopg

    try:
        _copy_upsert(connection, table, names, values)
    except psycopg.Error as exc:  # from the driver's own cursor: SQLAlchemy did not wrap it
        raise sa.exc.DatabaseError("COPY", None, exc) from exc


def _copy_upsert(
    connection: sa.Connection, table: sa.Table, names: list[str], values: list[Sequence[Any]]
) -> None:
    import psycopg

    preparer = connection.dialect.identifier_preparer
    target, columns = preparer.format_table(table), ", ".join(preparer.quote(c) for c in names)
    rows = text_rows(values)
    driver = connection.connection.driver_connection  # psycopg 3
    assert driver is not None  # a pooled connection in use always has one
    merging = _merging.setdefault(connection.engine, set())
    with driver.cursor() as cursor:
        if table.name not in merging:
            cursor.execute("SAVEPOINT oip_copy")
            try:
                with cursor.copy(f"COPY {target} ({columns}) FROM STDIN") as copy:
                    copy.write(rows)
            except psycopg.Error as exc:
                if exc.sqlstate != UNIQUE_VIOLATION:
                    raise
                cursor.execute("ROLLBACK TO SAVEPOINT oip_copy")
                merging.add(table.name)
            else:
                cursor.execute("RELEASE SAVEPOINT oip_copy")
                return
        cursor.execute(
            f"CREATE TEMP TABLE _oip_rows ON COMMIT DROP AS SELECT {columns} FROM {target} "
            "WITH NO DATA"
        )
        with cursor.copy(f"COPY _oip_rows ({columns}) FROM STDIN") as copy:
            copy.write(rows)
        quote = preparer.quote
        updates = ", ".join(
            f"{quote(c)} = EXCLUDED.{quote(c)}" for c in names if c not in KEY_COLUMNS
        )
        conflict = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        keys = ", ".join(quote(c) for c in KEY_COLUMNS)
        cursor.execute(
            f"INSERT INTO {target} ({columns}) SELECT {columns} FROM _oip_rows "
            f"ON CONFLICT ({keys}) {conflict}"
        )


def text_rows(values: list[Sequence[Any]]) -> str:
    """The rows in ``COPY``'s text format: a line per row, tab-separated, ``\\N`` for NULL."""
    cells = [_cells(column) for column in values]
    return "\n".join(map("\t".join, zip(*cells, strict=True))) + "\n"


def _cells(values: Sequence[Any]) -> Sequence[str]:
    """One column's cells: a whole column of one type converted at once, a constant once."""
    n = len(values)
    if n > 1 and values.count(values[0]) == n:
        return [_cell(values[0])] * n
    kinds = set(map(type, values))
    if kinds == {str}:
        joined = "".join(values)
        return [v.translate(_ESCAPES) for v in values] if _SPECIAL.search(joined) else values
    if kinds == {int} or kinds == {float}:  # repr: PostgreSQL reads "nan", "inf" too
        return list(map(repr, values))
    return [_cell(v) for v in values]


def _cell(value: Any) -> str:
    if value is None:
        return _NULL
    convert = _CONVERT.get(type(value))
    return convert(value) if convert else _escaped(str(value))


def _escaped(text: str) -> str:
    return text.translate(_ESCAPES) if _SPECIAL.search(text) else text


_CONVERT: dict[type, Callable[[Any], str]] = {
    bool: lambda v: "t" if v else "f",
    int: repr,
    float: repr,  # the shortest text that reads back as the same double
    datetime: lambda v: v.isoformat(sep=" "),
    date: lambda v: v.isoformat(),
}
