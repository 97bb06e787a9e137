"""The inference log (adapters/dataplane/journal.py) into the predictions database: rows written
in batches off the request path, drops counted when the database holds the queue up, several
writers at once on SQLite (WAL, busy timeout) and on a real PostgreSQL server, the documented
query reading them back."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from adapters.batch.inferences import ensure_inferences, read_inferences
from adapters.batch.predictions import connect, predictions_table
from adapters.batch.writes import write_chunk
from adapters.dataplane.journal import MAX_LOGGED_ELEMENTS, Entry, Journal
from adapters.models.signature import TensorSpec
from adapters.protocol.messages import Tensor
from adapters.protocol.schemas import Datatype

from .postgres import postgres_url  # noqa: F401 (a fixture)

ROWS = np.arange(8, dtype=np.float64).reshape(2, 4)


def entry(request_id: str, *, shadow: bool = False, rows: np.ndarray = ROWS) -> Entry:
    inputs = [Tensor("input-0", Datatype.FP64, rows)]
    labels = np.array(["setosa", "virginica"], dtype=np.object_)
    outputs = [Tensor("predict", Datatype.BYTES, labels)]
    return Entry(request_id, "iris", "v1", 200, 1.5, inputs, outputs, shadow=shadow)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'predictions.db'}"


def test_entries_become_rows_read_back_by_the_documented_query(sqlite_url: str) -> None:
    journal = Journal(sqlite_url, batch=7)
    for i in range(50):
        journal.record(entry(f"r{i}", shadow=i % 5 == 0))
    wide = np.zeros((1, MAX_LOGGED_ELEMENTS + 1))
    journal.record(entry("wide", rows=wide))
    assert journal.flush(30) and journal.dropped == journal.failed == 0
    engine = connect(sqlite_url)
    served = read_inferences(engine, "iris", shadow=False)
    assert len(served) == 40 + 1 and len(read_inferences(engine, "iris", shadow=True)) == 10
    row = next(r for r in served if r["request_id"] == "r1")
    assert (row["model"], row["version"], row["status"], row["latency_ms"]) == (
        "iris",
        "v1",
        200,
        1.5,
    )
    assert json.loads(row["inputs"]) == [
        {"name": "input-0", "datatype": "FP64", "shape": [2, 4], "data": ROWS.ravel().tolist()}
    ]
    assert json.loads(row["outputs"])[0]["data"] == ["setosa", "virginica"]
    assert row["error"] is None and row["created_at"] is not None
    (truncated,) = json.loads(next(r for r in served if r["request_id"] == "wide")["inputs"])
    assert truncated["data"] is None and truncated["truncated"] is True
    assert truncated["shape"] == [1, MAX_LOGGED_ELEMENTS + 1]
    sql = sa.text("SELECT count(*) FROM inferences WHERE model = 'iris' AND shadow")
    with engine.connect() as connection:
        assert connection.execute(sql).scalar() == 10  # the SQL docs/rollout.md shows


def test_a_database_that_holds_the_queue_up_drops_and_counts(sqlite_url: str) -> None:
    """The database is locked by another writer: the log's writer waits on its first batch,
    the queue fills, and what does not fit is dropped and counted, never waited for."""
    engine = connect(sqlite_url)
    ensure_inferences(engine)
    lock = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    journal = Journal(sqlite_url, capacity=3)
    try:
        journal.record(entry("first"))
        assert until(lambda: journal.entries.empty())  # taken: the writer waits for the lock
        for i in range(8):
            journal.record(entry(f"queued-{i}"))
        assert journal.dropped == 5 and journal.entries.qsize() == 3
    finally:
        lock.execute("COMMIT")
        lock.close()
    assert journal.flush(60) and journal.failed == 0
    assert len(read_inferences(engine, "iris")) == 4


def until(condition: Callable[[], bool], deadline_s: float = 30) -> bool:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def several_writers(url: str) -> None:
    """Two logs (two gateway workers) and a scoring run's upserts, all at once."""
    engine = connect(url)
    table = predictions_table("iris_predictions", [TensorSpec("predict", Datatype.INT64, (-1,))])
    table.create(engine, checkfirst=True)
    errors: list[BaseException] = []

    def log(worker: int) -> None:
        try:
            journal = Journal(url, batch=10)
            for i in range(200):
                journal.record(entry(f"w{worker}-{i}"))
            assert journal.flush(120) and journal.failed == journal.dropped == 0
        except BaseException as exc:
            errors.append(exc)

    def score() -> None:
        try:
            from datetime import UTC, datetime

            for chunk in range(20):
                rows = [
                    {
                        "key": f"{chunk}-{i}",
                        "model": "iris",
                        "version": "v1",
                        "predict": i,
                        "scored_at": datetime.now(UTC),
                    }
                    for i in range(50)
                ]
                write_chunk(engine, table, rows)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=log, args=(w,)) for w in (1, 2)]
    threads.append(threading.Thread(target=score))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert errors == []
    ids = {r["request_id"] for r in read_inferences(engine, "iris", limit=10000)}
    assert ids == {f"w{w}-{i}" for w in (1, 2) for i in range(200)}
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 1000


def test_several_writers_at_once_on_sqlite(sqlite_url: str) -> None:
    several_writers(sqlite_url)


def test_several_writers_at_once_on_postgresql(postgres_url: str) -> None:  # noqa: F811
    several_writers(postgres_url)


@pytest.fixture
def unreachable() -> Iterator[str]:
    yield "postgresql://nobody@127.0.0.1:1/none"


def test_a_database_that_cannot_be_reached_loses_rows_counted(unreachable: str) -> None:
    journal = Journal(unreachable)
    journal.record(entry("lost"))
    assert journal.flush(60) and journal.failed == 1
