"""Batch scoring throughput: N iris rows (1 M by default) through score.py's engines, local and
Ray, against the floor, the estimator's own ``predict`` on the whole array in memory.

    .venv/bin/python bench/score.py [--rows 1000000] [--chunk-rows 50000] [--db URL | --postgres]
                                    [--no-ray]

Everything lives in a temporary directory, removed at the end: a BentoML store with one iris
version (train.py's recipe), a CSV of ``id`` + 4 features (iris rows resampled with noise, seed
0) and, unless ``--db`` names another, a SQLite database. Printed: the floor (best of 3), the
engine end to end (``score.main``: resolve, read, check, predict, upsert, one transaction per
chunk) on a fresh table, again over the same rows (every row an update), and with the server's
default outputs (``predict`` and ``predict_proba``); then the Ray engine (``predict``, a fresh
table each): end to end with the local Ray it starts and stops, and on a Ray already running
(this machine's CPUs) with one actor and with its default, one per CPU; then, for scale, the
database alone: the driver's own ``executemany`` of the rows' final values into the same kind
of table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.mkdtemp(prefix="oip-bench-score-"))
os.environ["BENTOML_HOME"] = str(WORK / "bentoml")  # before bentoml is imported
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
sys.path.insert(0, str(ROOT))

import bentoml  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402

import score  # noqa: E402
import train  # noqa: E402
from adapters.batch.ray import default_workers  # noqa: E402

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def make_rows(n: int, path: Path) -> np.ndarray:
    rng = np.random.default_rng(0)
    X = load_iris().data
    rows = np.round(X[rng.integers(0, len(X), n)] + rng.normal(0, 0.05, (n, 4)), 3)
    frame = pd.DataFrame(rows, columns=FEATURES)
    frame.insert(0, "id", np.arange(n))
    frame.to_csv(path, index=False)
    return rows


def floor(estimator: object, X: np.ndarray) -> float:
    """Rows/s of predict on the whole array, best of 3."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        estimator.predict(X)  # type: ignore[attr-defined]
        best = min(best, time.perf_counter() - start)
    return len(X) / best


def engine(argv: list[str]) -> tuple[float, str]:
    """Rows/s of score.py end to end, in process (imports already warm), and its summary."""
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = score.main([*argv, "--quiet"])
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"score.py failed ({code}): {out.getvalue()}")
    rows = int(out.getvalue().split(" rows in ")[0].rsplit(" ", 1)[-1].replace(",", ""))
    return rows / seconds, out.getvalue().strip()


def sqlite_alone(path: Path, n: int, version: str) -> float:
    """Rows/s of sqlite3's executemany upserting n finished rows (what any engine pays)."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(
        'CREATE TABLE t ("key" VARCHAR, model VARCHAR, version VARCHAR, predict BIGINT, '
        'scored_at DATETIME, PRIMARY KEY ("key", model, version))'
    )
    sql = (
        'INSERT INTO t ("key", model, version, predict, scored_at) VALUES (?, ?, ?, ?, ?) '
        'ON CONFLICT ("key", model, version) DO UPDATE SET predict = excluded.predict, '
        "scored_at = excluded.scored_at"
    )
    rows = [(str(i), "iris", version, i % 3, "2026-01-01 00:00:00.000000") for i in range(n)]
    start = time.perf_counter()
    for i in range(0, n, 50_000):
        connection.executemany(sql, rows[i : i + 50_000])
        connection.commit()
    seconds = time.perf_counter() - start
    connection.close()
    return n / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=score.DEFAULT_CHUNK_ROWS)
    parser.add_argument("--db", help="a SQLAlchemy URL (default: SQLite in a temporary file)")
    parser.add_argument(
        "--postgres", action="store_true", help="--db: a throwaway server (tests/postgres.py)"
    )
    parser.add_argument("--no-ray", action="store_true", help="the local engine only")
    args = parser.parse_args()

    print(f"{dt.date.today()}  {os.cpu_count()} CPUs  {args.rows:,} iris rows")
    try:
        if args.postgres:
            from tests import postgres

            with postgres.start() as args.db:
                run(args)
        else:
            run(args)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)


def run(args: argparse.Namespace) -> None:
    tag = str(train.train("iris", {}, seed=0, test_size=0.2).tag)
    csv = WORK / "iris.csv"
    X = make_rows(args.rows, csv)
    estimator = bentoml.sklearn.load_model(tag)
    base = floor(estimator, X)
    print(f"floor   predict on the whole array        {base:>14,.0f} rows/s")

    db = args.db or f"sqlite:///{WORK / 'predictions.db'}"
    common = ["--model", "iris", "--input", str(csv), "--db", db]
    common += ["--chunk-rows", str(args.chunk_rows)]
    runs = [
        ("engine  predict, fresh table", ["--outputs", "predict", "--table", "bench"]),
        ("engine  predict, same rows again (upsert)", ["--outputs", "predict", "--table", "bench"]),
        ("engine  predict + predict_proba (default)", ["--table", "bench_default"]),
    ]
    headline = 0.0
    for label, extra in runs:
        rate, summary = engine(common + extra)
        headline = headline or rate
        report(label, rate, base, summary)
    if not args.no_ray:
        ray_runs(common, base)
    alone = sqlite_alone(WORK / "alone.db", args.rows, tag.split(":")[1])
    print(f"sqlite3 executemany of finished rows      {alone:>14,.0f} rows/s  {alone / base:6.1%}")
    verdict = "met" if headline >= 0.5 * base else "NOT met"
    print(f"ratio engine/floor {headline / base:.2%}: the 50 % target is {verdict}")


def ray_runs(common: list[str], base: float) -> None:
    """The Ray engine on ``predict``: starting its own Ray, then on one already running."""
    from adapters.batch.ray import ray_session

    os.environ.pop("RAY_ADDRESS", None)  # this machine's Ray
    ray = [*common, "--outputs", "predict", "--engine", "ray"]
    cpus = os.cpu_count() or 1
    rate, summary = engine([*ray, "--table", "bench_ray_cold"])
    report(f"ray     predict, Ray started, {actors(default_workers(cpus))}", rate, base, summary)
    with ray_session():
        for workers in sorted({1, default_workers(cpus)}):
            table = f"bench_ray_{workers}"
            rate, summary = engine([*ray, "--table", table, "--ray-workers", str(workers)])
            report(f"ray     predict, Ray running, {actors(workers)}", rate, base, summary)


def actors(n: int) -> str:
    return f"{n} actor" if n == 1 else f"{n} actors"


def report(label: str, rate: float, base: float, summary: str) -> None:
    print(f"{label:<41} {rate:>14,.0f} rows/s  {rate / base:6.1%} of the floor")
    print(f"        {summary}")


if __name__ == "__main__":
    main()
