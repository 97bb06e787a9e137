"""Stored predictions: one table row per scored input row, written by ``score.py`` and read back
as V2 outputs (``GET /v2/models/{m}/versions/{v}/predictions/{key}``).

A table (``<model>_predictions`` unless named) has the primary key ``(key, model, version)``,
one column per output named as the output, and ``scored_at``. A scalar output (shape ``[-1]``)
is a column of its own SQL type; a vector (``predict_proba``, shape ``[-1, k]``) is JSON text.
Writing upserts (:mod:`adapters.batch.writes`: SQLite and PostgreSQL ``INSERT ... ON CONFLICT
DO UPDATE``): scoring the same rows with the same version again replaces them, another version
adds its own.

Any SQLAlchemy URL of those two dialects works; a SQLite file is put in WAL mode by
:func:`connect`, so the server can read it while a scoring run writes, and writers wait for
each other (a busy timeout). The server's inference log shares the database
(:mod:`adapters.batch.inferences`).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adapters.models.signature import Signature, TensorSpec
from adapters.protocol.codecs import Array
from adapters.protocol.schemas import Datatype

KEY_COLUMNS = ("key", "model", "version")
SCORED_AT = "scored_at"
Row = Mapping[str, Any]

_SCALAR_TYPES: dict[Datatype, type[sa.types.TypeEngine[Any]]] = {
    Datatype.BOOL: sa.Boolean,
    Datatype.BYTES: sa.Text,
    **{t: sa.BigInteger for t in Datatype if t.name.startswith(("INT", "UINT"))},
    **{t: sa.Double for t in (Datatype.FP16, Datatype.FP32, Datatype.FP64)},
}
DIALECTS = ("sqlite", "postgresql")  # the upserts below are written for these two
BUSY_TIMEOUT_S = 30.0
# engine -> table name -> the table as the database has it (reflected once per engine)
_reflected: weakref.WeakKeyDictionary[Engine, dict[str, sa.Table]] = weakref.WeakKeyDictionary()


class TableMismatch(ValueError):
    """An existing table lacks columns the outputs need (e.g. another model's table)."""


def default_table_name(model: str) -> str:
    """``<model>_predictions``: the table ``score.py`` writes when none is named."""
    return f"{model}_predictions"


def is_vector(spec: TensorSpec) -> bool:
    """Whether each row of this output is more than one value (stored as JSON text)."""
    return len(spec.shape) > 1


def output_values(spec: TensorSpec, array: Array) -> list[Any]:
    """An output's column values, one per row: scalars as Python values, vectors as JSON."""
    if not is_vector(spec):
        values: list[Any] = array.reshape(-1).tolist()
        return values
    if array.ndim == 2 and len(array) and array.dtype.kind in "biuf":
        # NOTE: one dump of the whole matrix, cut between rows (numbers hold no "],["): a
        # third of the time of a dump per row
        text = orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY).decode()
        return text[1:-1].replace("],[", "]\n[").split("\n")
    return [orjson.dumps(row).decode() for row in array.tolist()]


def connect(url: str, *, cache_mib: int = 0) -> Engine:
    """An engine for ``url``: SQLite (a file in WAL mode: readers beside one writer) or
    PostgreSQL (``postgresql+psycopg://``; a bare ``postgresql://`` uses psycopg 3 too).

    ``cache_mib``: SQLite's page cache per connection, if more than its default 2 MiB (a large
    table's index pages stay in memory while rows land all over it: ``score.py``).

    Raises:
        ValueError: another dialect (the upsert is written for these two).
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in DIALECTS:
        raise ValueError(f"--db {url!r}: only SQLite and PostgreSQL URLs are supported")
    # SQLite: writers beside each other (score.py, every gateway worker's inference log) wait
    # for the lock up to BUSY_TIMEOUT_S instead of failing at once
    options = {"connect_args": {"timeout": BUSY_TIMEOUT_S}} if _sqlite(parsed) else {}
    engine = sa.create_engine(parsed, **options)  # SQLite's qmark: executemany takes tuples
    if _sqlite(parsed) and parsed.database not in (None, "", ":memory:"):

        @sa.event.listens_for(engine, "connect")
        def _wal(dbapi_connection: Any, _: Any) -> None:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            if cache_mib:
                dbapi_connection.execute(f"PRAGMA cache_size={-1024 * int(cache_mib)}")

    return engine


def _sqlite(url: sa.URL) -> bool:
    return url.get_backend_name() == "sqlite"


def predictions_table(
    name: str, outputs: Iterable[TensorSpec], metadata: sa.MetaData | None = None
) -> sa.Table:
    """The table definition: ``key``, ``model``, ``version`` (the primary key), one column
    per output (its SQL type, or JSON text for a vector) and ``scored_at``."""
    columns: list[sa.Column[Any]] = [
        sa.Column(c, sa.String(), primary_key=True) for c in KEY_COLUMNS
    ]
    columns += [
        sa.Column(spec.name, sa.Text() if is_vector(spec) else _SCALAR_TYPES[spec.datatype]())
        for spec in outputs
    ]
    columns.append(sa.Column(SCORED_AT, sa.DateTime(timezone=True), nullable=False))
    return sa.Table(name, metadata or sa.MetaData(), *columns)


def ensure_table(engine: Engine, name: str, outputs: Sequence[TensorSpec]) -> sa.Table:
    """The table ``name``, created for ``outputs`` if it does not exist yet.

    Raises:
        TableMismatch: it exists without a column these outputs need.
    """
    table = predictions_table(name, outputs)
    if not sa.inspect(engine).has_table(name):
        table.create(engine, checkfirst=True)
        return table
    existing = _reflect(engine, name)
    missing = [c.name for c in table.columns if c.name not in existing.columns]
    if missing:
        raise TableMismatch(
            f"table {name!r} exists without the columns {missing} (another model's table?); "
            "name another one with --table"
        )
    return existing


def lookup(
    engine: Engine,
    table: sa.Table | str,
    model: str,
    version: str,
    key: str,
    *,
    signature: Signature,
) -> dict[str, Any] | None:
    """The stored prediction of one row by one concrete version, as a V2 inference response.

    Args:
        engine: from :func:`connect`.
        table: the table or its name (e.g. ``default_table_name(model)``).
        model: the model name.
        version: the concrete version (resolve ``latest``/``best`` first: rows name the version
            that scored them).
        key: the row's key (its id, or the content hash ``score.py`` computed).
        signature: the version's signature: each output's datatype and rank.

    Returns:
        ``{"model_name", "model_version", "id": key, "parameters": {"scored_at": ISO 8601},
        "outputs": [{"name", "datatype", "shape": [1, ...], "data": [...]}]}`` with the
        outputs that were stored, in signature order; ``None`` if there is no such row (or no
        such table).
    """
    found = table if isinstance(table, sa.Table) else _reflect_if_exists(engine, table)
    if found is None:
        return None
    where = [found.c[c] == v for c, v in zip(KEY_COLUMNS, (key, model, version), strict=True)]
    with engine.connect() as connection:
        row = connection.execute(sa.select(found).where(*where)).mappings().first()
    if row is None:
        return None
    outputs = [
        _output(spec, row[spec.name])
        for spec in signature.outputs
        if spec.name in row and row[spec.name] is not None
    ]
    scored_at: datetime = row[SCORED_AT]
    if scored_at.tzinfo is None:  # SQLite keeps no zone: score.py writes UTC
        scored_at = scored_at.replace(tzinfo=UTC)
    return {
        "model_name": model,
        "model_version": version,
        "id": key,
        "parameters": {"scored_at": scored_at.isoformat()},
        "outputs": outputs,
    }


def _output(spec: TensorSpec, value: Any) -> dict[str, Any]:
    data = json.loads(value) if is_vector(spec) else value
    shape = [1, *_shape(data)]
    flat = _flatten(data) if is_vector(spec) else [data]
    return {"name": spec.name, "datatype": spec.datatype.value, "shape": shape, "data": flat}


def _shape(data: Any) -> list[int]:
    """Dimensions of nested JSON lists (rectangular, as the model wrote them)."""
    shape = []
    while isinstance(data, list):
        shape.append(len(data))
        data = data[0] if data else None
    return shape


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    return [item for part in data for item in _flatten(part)]


def _reflect(engine: Engine, name: str) -> sa.Table:
    """The table as the database has it, read once per engine."""
    tables = _reflected.setdefault(engine, {})
    if name not in tables:
        tables[name] = sa.Table(name, sa.MetaData(), autoload_with=engine)
    return tables[name]


def _reflect_if_exists(engine: Engine, name: str) -> sa.Table | None:
    if name in _reflected.get(engine, {}) or sa.inspect(engine).has_table(name):
        return _reflect(engine, name)
    return None
