"""The inference log's table, ``inferences``: one row per inference the server answered (and per
shadow run), in the predictions database (``OIP_PREDICTIONS_DB``, :func:`~adapters.batch.
predictions.connect`: SQLite in WAL mode with a busy timeout, or PostgreSQL).

Columns: ``id`` (a surrogate key), ``request_id`` (the request's ``id``, or the one the server
gave it), ``model``, ``version`` (the concrete version that answered), ``status`` (the HTTP
status of the answer; gRPC's maps from it), ``latency_ms`` (the data plane's part: checks,
queue, predict, labelling), ``inputs`` and ``outputs`` (JSON lists of V2 tensors ``{"name",
"datatype", "shape", "data"}``; ``outputs`` empty on failure), ``error`` (the message of a
failure), ``created_at`` (UTC) and ``shadow`` (true for a shadow version's run of a request the
default answered, with the same ``request_id``).

The server writes it (:mod:`adapters.dataplane.journal`: batched inserts off the request path);
:func:`read_inferences` is the documented query, in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

TABLE = "inferences"
_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite's ROWID: an INTEGER key


def inferences_table(metadata: sa.MetaData | None = None) -> sa.Table:
    """The table's definition, with an index per usual question (a model's recent rows, one
    request's rows)."""
    return sa.Table(
        TABLE,
        metadata or sa.MetaData(),
        sa.Column("id", _KEY, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.Column("outputs", sa.Text(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shadow", sa.Boolean(), nullable=False),
        sa.Index("inferences_model_created", "model", "version", "created_at"),
        sa.Index("inferences_request", "request_id"),
    )


def ensure_inferences(engine: Engine) -> sa.Table:
    """The table, created if it does not exist yet (several writers may race to create it:
    the losers find it made)."""
    table = inferences_table()
    try:
        table.create(engine, checkfirst=True)
    except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
        if not sa.inspect(engine).has_table(TABLE):
            raise
    return table


def write_inferences(engine: Engine, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts of every column but ``id``) in one transaction."""
    if rows:
        with engine.begin() as connection:
            connection.execute(table.insert(), list(rows))


def read_inferences(
    engine: Engine,
    model: str,
    *,
    version: str | None = None,
    shadow: bool | None = None,
    since: datetime | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """A model's logged inferences, newest first: one version's, the shadow runs' (or the
    served ones'), those since a time; the same as the SQL of ``docs/rollout.md``."""
    table = inferences_table()
    where = [table.c.model == model]
    if version is not None:
        where.append(table.c.version == version)
    if shadow is not None:
        where.append(table.c.shadow.is_(shadow))
    if since is not None:
        where.append(table.c.created_at >= since)
    query = sa.select(table).where(*where).order_by(table.c.id.desc()).limit(limit)
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]
