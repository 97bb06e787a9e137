"""The write paths of batch scoring (adapters/batch/writes.py, pgcopy.py) on SQLite and on a real
PostgreSQL server: SQLite's ``json_each`` statement and its ``executemany`` fallback, PostgreSQL's
``COPY`` straight into the table and its merge once keys are stored; several chunks, reruns that
overwrite, chunks of stored and new keys, NULL, NaN, infinities, text COPY must escape, doubles
to the last bit; the writer thread's order and errors; and score.py's predictions, on both
databases, equal to the estimator's own."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import score
from adapters.batch import pgcopy
from adapters.batch.predictions import connect, default_table_name, ensure_table
from adapters.batch.writes import ChunkWriter, write_columns
from adapters.models.signature import TensorSpec
from adapters.protocol.schemas import Datatype

from .conftest import Store
from .postgres import postgres_url  # noqa: F401 (a fixture)
from .test_score import by_chunks, iris_csv, stored, version

OUTPUTS = [
    TensorSpec("predict", Datatype.INT64, (-1,)),
    TensorSpec("score", Datatype.FP64, (-1,)),
    TensorSpec("label", Datatype.BYTES, (-1,)),
    TensorSpec("ok", Datatype.BOOL, (-1,)),
]
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
TABLE = default_table_name("iris")  # the one the engine fixture (conftest.py) drops


def chunk(keys: range, version: str = "v1", **columns: list[Any]) -> dict[str, list[Any]]:
    n = len(keys)
    found: dict[str, list[Any]] = {"key": [str(k) for k in keys], "model": ["m"] * n}
    found["version"] = [version] * n
    found.update(columns)
    found["scored_at"] = [WHEN] * n
    return found


def numbers(keys: range, offset: int) -> dict[str, list[Any]]:
    return {"predict": [k + offset for k in keys], "score": [k / 7 + offset for k in keys]}


def read(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as connection:
        found = connection.execute(sa.text(f"SELECT * FROM {TABLE}")).mappings().all()
    return {row["key"]: dict(row) for row in found}


def test_chunks_reruns_and_chunks_of_stored_and_new_keys(engine: Engine) -> None:
    table = ensure_table(engine, TABLE, OUTPUTS)
    for start in range(0, 300, 100):  # several chunks into a fresh table
        keys = range(start, start + 100)
        assert write_columns(engine, table, chunk(keys, **numbers(keys, 0))) == 100
    keys = range(0, 300)
    assert write_columns(engine, table, chunk(keys, **numbers(keys, 1))) == 300  # a rerun
    keys = range(250, 400)  # stored and new keys in one chunk
    assert write_columns(engine, table, chunk(keys, **numbers(keys, 2))) == 150
    keys = range(400, 450)
    write_columns(engine, table, chunk(keys, "v2", **numbers(keys, 3)))
    rows = read(engine)
    assert len(rows) == 450
    for k in range(450):
        offset = 1 if k < 250 else 2 if k < 400 else 3
        row = rows[str(k)]
        assert (row["predict"], row["score"]) == (k + offset, k / 7 + offset)
        assert row["version"] == ("v2" if k >= 400 else "v1")
        assert row["label"] is None and row["ok"] is None  # left out: NULL


def test_a_conflict_while_copying_falls_back_to_the_merge(engine: Engine) -> None:
    table = ensure_table(engine, TABLE, OUTPUTS)
    write_columns(engine, table, chunk(range(3), predict=[1, 2, 3]))
    pgcopy._merging.pop(engine, None)  # as a writer that has not met a stored key yet
    write_columns(engine, table, chunk(range(5), predict=[5, 6, 7, 8, 9]))
    assert {k: r["predict"] for k, r in read(engine).items()} == {
        "0": 5, "1": 6, "2": 7, "3": 8, "4": 9,
    }  # fmt: skip


def test_null_nan_infinities_text_and_doubles(engine: Engine) -> None:
    table = ensure_table(engine, TABLE, OUTPUTS)
    special = [math.nan, math.inf, -math.inf, None, -0.0, 5e-324, 1.7976931348623157e308]
    texts = ["tab\there", "line\nbreak", "back\\slash", "quote\" '", "crlf\r\n", "é ✓", "", None]
    doubles = np.random.default_rng(0).normal(0, 1, 200) * 10.0 ** np.arange(-100, 100)
    score_values = [*special, None, *doubles.tolist()]
    n = len(score_values)
    labels = (texts * n)[:n]
    flags = [True, False, None] * (n // 3) + [True] * (n % 3)
    keys = range(n)
    write_columns(
        engine, table, chunk(keys, predict=list(keys), score=score_values, label=labels, ok=flags)
    )
    rows = read(engine)
    nan_stored = None if engine.dialect.name == "sqlite" else "nan"  # SQLite stores NaN as NULL
    for k, (value, label, flag) in enumerate(zip(score_values, labels, flags, strict=True)):
        row = rows[str(k)]
        got = row["score"]
        if value is not None and math.isnan(value):
            assert (got if nan_stored is None else str(got)) == nan_stored
        else:
            assert got == value
        assert (row["label"], row["ok"]) == (label, flag)
    # no NaN nor infinity: the JSON path (SQLite) takes every double as it is
    write_columns(engine, table, chunk(range(len(doubles)), "v3", score=doubles.tolist()))
    with engine.connect() as connection:
        query = sa.text(f"SELECT key, score FROM {TABLE} WHERE version = 'v3'")
        back = {int(k): s for k, s in connection.execute(query)}
    assert [back[k] for k in range(len(doubles))] == doubles.tolist()


def test_integers_past_64_bits_are_refused_as_before(engine: Engine) -> None:
    table = ensure_table(engine, TABLE, OUTPUTS)
    with pytest.raises((OverflowError, sa.exc.SQLAlchemyError)):
        write_columns(engine, table, chunk(range(2), predict=[1, 2**70]))
    assert read(engine) == {}


def test_the_writer_commits_in_order_and_raises_a_failed_write(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'p.db'}")
    table = ensure_table(engine, TABLE, OUTPUTS)
    committed: list[tuple[int, str]] = []
    record = lambda n: committed.append((n, threading.current_thread().name))  # noqa: E731
    with ChunkWriter(engine, table, on_commit=record) as writer:
        for start in range(0, 50, 10):
            writer.put(chunk(range(start, start + 10), predict=[start] * 10))
    assert [n for n, _ in committed] == [10] * 5
    assert all(name != threading.current_thread().name for _, name in committed)
    assert {r["predict"] for r in read(engine).values()} == {0, 10, 20, 30, 40}
    bad = chunk(range(2), predict=[1, 2**70])  # refused by the database driver
    with pytest.raises(OverflowError), ChunkWriter(engine, table, on_commit=record) as writer:
        writer.put(chunk(range(100, 110), predict=[1] * 10))
        writer.put(bad)
        writer.put(chunk(range(200, 210), predict=[1] * 10))  # raises, or leaving does
        writer.put(chunk(range(300, 310), predict=[1] * 10))
    assert "200" not in read(engine) and "100" in read(engine)
    engine.dispose()


def test_leaving_on_an_error_commits_what_was_handed_over(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'p.db'}")
    table = ensure_table(engine, TABLE, OUTPUTS)
    with pytest.raises(KeyError), ChunkWriter(engine, table, on_commit=lambda n: None) as writer:
        for start in range(0, 30, 10):
            writer.put(chunk(range(start, start + 10), predict=[start] * 10))
        raise KeyError("a malformed row")
    assert len(read(engine)) == 30
    engine.dispose()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_score_writes_the_estimators_predictions_and_a_rerun_overwrites(
    store: Store,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
    database: str,
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'p.db'}"
        if database == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    tag = store.tags["iris"][0]
    csv, X = iris_csv(tmp_path / "iris.csv", rows=250)
    args = ["--model", "iris", "--version", version(tag), "--input", str(csv), "--db", url]
    args += ["--table", "score_writes", "--outputs", "predict", "--chunk-rows", "60", "--quiet"]
    assert score.main(args) == 0
    first = stored(url, "score_writes", version(tag)).set_index("key")
    assert score.main(args) == 0  # every key stored: PostgreSQL merges
    again = stored(url, "score_writes", version(tag)).set_index("key")
    capsys.readouterr()
    estimator = bentoml.sklearn.load_model(tag)
    expected = by_chunks(estimator.predict, X, 60)
    keys = [str(i) for i in range(250)]
    np.testing.assert_array_equal(again.loc[keys, "predict"], expected)
    assert len(again) == 250
    assert (again.loc[keys, "scored_at"] > first.loc[keys, "scored_at"]).all()
