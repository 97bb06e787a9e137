"""score.py end to end, in process, on the session's store, with each engine (local, and Ray on
a local 2-CPU Ray started once for the module): the stored predictions are the estimator's own
for iris (CSV), diabetes (Parquet, hashed keys) and text (CSV); upserts; a malformed row is
named and the chunks before it stay. With the local engine: versions resolve as the server
resolves them; a ``sql:`` input; PostgreSQL for real."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn.datasets import load_diabetes, load_iris

import score
import train
from adapters.batch.predictions import connect, lookup
from adapters.batch.readers import MalformedInput, Plan, content_keys
from adapters.models.inputs import model_input
from adapters.models.registry import ModelVersion
from adapters.models.repository import Repository
from adapters.models.signature import Signature, TensorSpec
from adapters.protocol.schemas import Datatype

from .conftest import Store
from .postgres import postgres_url  # noqa: F401 (a fixture)

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray of 2 CPUs for this module's ``--engine ray`` runs (its start takes seconds:
    once). Skipped where Ray cannot start, except in CI (``CI`` set), where that fails."""
    from adapters.batch.ray import ray_session

    with pytest.MonkeyPatch.context() as patch, ExitStack() as stack:
        patch.delenv("RAY_ADDRESS", raising=False)  # this machine's Ray, never a cluster
        try:
            stack.enter_context(ray_session(num_cpus=2))
        except Exception as exc:  # whatever ray.init raises: it is Ray that cannot start
            if os.environ.get("CI"):
                pytest.fail(f"Ray did not start: {exc}")
            pytest.skip(f"Ray cannot start here: {exc}")
        yield


@pytest.fixture(params=["local", "ray"])
def engine(request: pytest.FixtureRequest) -> list[str]:
    """``score.py --engine ...``: every end-to-end check runs with each engine (Ray with one
    actor: starting an actor is most of a small run's time on 2 CPUs)."""
    if request.param == "ray":
        request.getfixturevalue("local_ray")
        return ["--engine", "ray", "--ray-workers", "1"]
    return ["--engine", request.param]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = score.main([*args, "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def stored(url: str, table: str, version: str) -> pd.DataFrame:
    engine = connect(url)
    query = sa.text(f"SELECT * FROM {table} WHERE version = :v ORDER BY key")
    with engine.connect() as connection:
        frame = pd.read_sql(query, connection, params={"v": version})
    engine.dispose()
    return frame


def count(url: str, table: str) -> int:
    engine = connect(url)
    with engine.connect() as connection:
        found = connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
    engine.dispose()
    return int(found)


def iris_csv(path: Path, rows: int = 150) -> tuple[Path, np.ndarray[Any, Any]]:
    X = np.resize(load_iris().data, (rows, 4))  # the iris rows, again and again past 150
    frame = pd.DataFrame(X, columns=FEATURES)
    frame.insert(0, "id", range(rows))
    frame.to_csv(path, index=False)
    return path, X


def by_chunks(method: Any, X: Any, size: int) -> np.ndarray[Any, Any]:
    """The estimator on the same rows as score.py: chunk by chunk (BLAS may round the
    products of a 100-row and a 30-row matrix differently, in the last bit)."""
    return np.concatenate([method(X[i : i + size]) for i in range(0, len(X), size)])


def version(tag: str) -> str:
    return tag.split(":")[1]


def test_iris_csv_predictions_are_the_estimators(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: list[str]
) -> None:
    tag = store.tags["iris"][0]
    csv, X = iris_csv(tmp_path / "iris.csv")
    db = f"sqlite:///{tmp_path / 'p.db'}"
    code, out, _ = run(capsys, "--model", "iris", "--version", version(tag), "--input", str(csv),
                       "--db", db, "--chunk-rows", "64", *engine)  # fmt: skip
    assert code == 0, out
    assert f"{tag} -> iris_predictions" in out and "scored 150 rows" in out
    rows = stored(db, "iris_predictions", version(tag)).sort_values(
        "key", key=lambda k: k.astype(int)
    )
    estimator = bentoml.sklearn.load_model(tag)
    assert rows["key"].tolist() == [str(i) for i in range(150)]
    assert (rows["model"] == "iris").all()
    np.testing.assert_array_equal(rows["predict"], by_chunks(estimator.predict, X, 64))
    proba = np.array([json.loads(p) for p in rows["predict_proba"]])
    np.testing.assert_array_equal(proba, by_chunks(estimator.predict_proba, X, 64))


def test_diabetes_parquet_predictions_are_the_estimators_keyed_by_content(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: list[str]
) -> None:
    tag = store.tags["diabetes"][0]
    X = load_diabetes().data[:100]
    path = tmp_path / "diabetes.parquet"
    pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])]).to_parquet(path)
    db = f"sqlite:///{tmp_path / 'p.db'}"
    code, out, _ = run(capsys, "--model", "diabetes", "--version", version(tag),
                       "--input", str(path), "--db", db, "--chunk-rows", "30", *engine)  # fmt: skip
    assert code == 0, out
    rows = stored(db, "diabetes_predictions", version(tag)).set_index("key")
    keys = content_keys(X)
    assert len(set(keys)) == 100 and all(len(k) == 32 for k in keys)
    estimator = bentoml.sklearn.load_model(tag)
    expected = by_chunks(estimator.predict, X, 30)
    np.testing.assert_array_equal(rows.loc[keys, "predict"], expected)
    assert list(rows.columns) == ["model", "version", "predict", "scored_at"]


def test_text_csv_predictions_are_the_estimators(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: list[str]
) -> None:
    tag = store.tags["text"][0]
    texts = pd.read_csv(train.TEXT_DATA)[:60]
    texts.insert(0, "id", [f"doc-{i:03d}" for i in range(len(texts))])
    path = tmp_path / "docs.csv"
    texts.to_csv(path, index=False)  # id, text, label: the model's column is "text"
    db = f"sqlite:///{tmp_path / 'p.db'}"
    code, out, _ = run(capsys, "--model", "text", "--version", version(tag), "--input", str(path),
                       "--db", db, "--outputs", "predict,predict_proba", *engine)  # fmt: skip
    assert code == 0, out
    rows = stored(db, "text_predictions", version(tag))
    assert rows["key"].tolist() == texts["id"].tolist()
    estimator = bentoml.sklearn.load_model(tag)
    X = texts["text"].to_numpy(dtype=object)
    assert rows["predict"].tolist() == estimator.predict(X).tolist()
    proba = np.array([json.loads(p) for p in rows["predict_proba"]])
    np.testing.assert_array_equal(proba, by_chunks(estimator.predict_proba, X, 64))


def test_the_same_version_upserts_and_another_adds_its_rows(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: list[str]
) -> None:
    csv, _ = iris_csv(tmp_path / "iris.csv", rows=40)
    db = f"sqlite:///{tmp_path / 'p.db'}"
    first, second = (version(t) for t in store.tags["iris"][:2])
    args = ["--model", "iris", "--input", str(csv), "--db", db, "--table", "scores", *engine]
    assert run(capsys, *args, "--version", first)[0] == 0
    before = stored(db, "scores", first)["scored_at"].max()
    assert run(capsys, *args, "--version", first)[0] == 0
    assert count(db, "scores") == 40
    assert stored(db, "scores", first)["scored_at"].max() > before  # replaced, not kept
    assert run(capsys, *args, "--version", second)[0] == 0
    assert count(db, "scores") == 80
    assert sorted(stored(db, "scores", second)["key"].astype(int)) == list(range(40))


@pytest.mark.parametrize("alias", ["best", "latest"])
def test_aliases_resolve_as_the_server_resolves_them(
    store: Store,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    alias: str,
) -> None:
    csv, _ = iris_csv(tmp_path / "iris.csv", rows=10)
    db = f"sqlite:///{tmp_path / 'p.db'}"
    served = Repository(["iris"], lambda name: "latest", {}).open("iris").resolve(alias)
    assert (
        run(capsys, "--model", "iris", "--version", alias, "--input", str(csv), "--db", db)[0] == 0
    )
    assert count(db, "iris_predictions") == len(stored(db, "iris_predictions", served.version))
    # no --version: the server's default, OIP_DEFAULT_VERSION
    monkeypatch.setenv("OIP_DEFAULT_VERSION", f"iris={alias}")
    code, out, _ = run(capsys, "--model", "iris", "--input", str(csv), "--db", db)
    assert code == 0 and f"iris:{served.version} ->" in out
    assert count(db, "iris_predictions") == 10
    if alias == "best":  # C=1.0 beats the later C=0.001 on accuracy
        assert served.version == version(store.tags["iris"][0])


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("damage", "row", "message", "parsed"),
    [
        (
            lambda ls: ls.__setitem__(14, "13,5.0,abc,1.4,0.2"),
            13,
            "'sepal_width' is not a number",
            0,
        ),
        (lambda ls: ls.__setitem__(14, "13,5.0,3.1,1.4,0.2,9"), 13, "line 15", 0),  # ragged: long
        (lambda ls: ls.__setitem__(14, "13,5.0,3.1,1.4"), 13, "'petal_width' has no value", 0),
        (lambda ls: ls.__setitem__(14, "13,5.0,,1.4,0.2"), 13, "'sepal_width' has no value", 1),
        (lambda ls: ls.__setitem__(0, "id,sepal_length,sepal_width,petal_length"), 0, "takes 4", 1),
    ],
    ids=["wrong-type", "long-row", "short-row", "empty-field", "missing-column"],
)
def test_a_malformed_row_is_named_and_the_chunks_before_it_stay(
    store: Store,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    engine: list[str],
    damage: Any,
    row: int,
    message: str,
    parsed: int,
) -> None:
    """Ray's reader (pyarrow) stops at a line it cannot parse, before the rows before it reach
    the driver: there (``parsed`` 0) fewer chunks may be committed, as many as it says; the
    row is found again as the local engine finds it."""
    csv, _ = iris_csv(tmp_path / "iris.csv", rows=25)
    lines = csv.read_text().splitlines()
    damage(lines)
    write_lines(csv, lines)
    db = f"sqlite:///{tmp_path / 'p.db'}"
    base = ["--model", "iris", "--input", str(csv), "--db", db, "--chunk-rows", "5"]
    args = [*base, *engine]
    code, out, err = run(capsys, *args)
    assert code == 2
    assert f"error: row {row}" in err and message in err, err
    said = re.search(r"committed before the error: (\d+) rows", out)
    assert said is not None, out
    committed = int(said.group(1))
    assert committed % 5 == 0 and committed <= row // 5 * 5  # whole chunks before the bad row
    if engine[1] == "local" or parsed:
        assert committed == row // 5 * 5
    assert count(db, "iris_predictions") == committed
    if committed:
        keys = sorted(stored(db, "iris_predictions", version(store.tags["iris"][-1]))["key"])
        assert sorted(int(k) for k in keys) == list(range(committed))
    iris_csv(csv, rows=25)  # repaired: running again resumes, nothing twice
    # NOTE: resumed by the local engine whichever engine failed: what is resumed is the table's,
    # and a Ray run's actors take most of a minute on two cores (Ray's upserts have their test)
    assert run(capsys, *base, "--engine", "local")[0] == 0
    assert count(db, "iris_predictions") == 25


def test_ray_names_a_row_far_into_the_input_whichever_actor_scored_it(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str], local_ray: None
) -> None:
    """Two actors (the default on 2 CPUs), 15 chunks: the batches reach the driver in input
    order whatever order the actors finish them in, so the row and the chunks committed before
    it are the input's."""
    tag = store.tags["iris"][0]
    csv, X = iris_csv(tmp_path / "iris.csv", rows=3000)
    lines = csv.read_text().splitlines()
    lines[2346] = "2345,5.0,,1.4,0.2"
    write_lines(csv, lines)
    db = f"sqlite:///{tmp_path / 'p.db'}"
    code, out, err = run(capsys, "--model", "iris", "--version", version(tag), "--input", str(csv),
                         "--db", db, "--chunk-rows", "200", "--engine", "ray")  # fmt: skip
    assert code == 2 and "error: row 2345: column 'sepal_width' has no value" in err, err
    assert "committed before the error: 2,200 rows" in out, out
    rows = stored(db, "iris_predictions", version(tag))
    rows = rows.sort_values("key", key=lambda k: k.astype(int))
    assert rows["key"].tolist() == [str(i) for i in range(2200)]
    estimator = bentoml.sklearn.load_model(tag)
    proba = np.array([json.loads(p) for p in rows["predict_proba"]])
    np.testing.assert_array_equal(proba, by_chunks(estimator.predict_proba, X[:2200], 200))


def test_sql_input_from_a_sqlite_table(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = store.tags["iris"][0]
    db = f"sqlite:///{tmp_path / 'p.db'}"
    X = load_iris().data
    flowers = pd.DataFrame(X, columns=FEATURES)
    flowers.insert(0, "flower", [f"f{i}" for i in range(len(X))])
    engine = connect(db)
    flowers.to_sql("flowers", engine, index=False)
    engine.dispose()
    code, _, err = run(capsys, "--model", "iris", "--version", version(tag), "--db", db,
                         "--input", "sql:SELECT * FROM flowers ORDER BY flower",
                         "--id-column", "flower", "--chunk-rows", "40")  # fmt: skip
    assert code == 0, err
    rows = stored(db, "iris_predictions", version(tag)).set_index("key")
    estimator = bentoml.sklearn.load_model(tag)
    expected = by_chunks(estimator.predict, X, 40)
    np.testing.assert_array_equal(rows.loc[flowers["flower"], "predict"], expected)


def test_postgresql(
    store: Store,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    url = request.getfixturevalue("postgres_url")
    tag = store.tags["iris"][0]
    csv, X = iris_csv(tmp_path / "iris.csv", rows=50)
    args = ["--model", "iris", "--version", version(tag), "--input", str(csv)]
    args += ["--db", url, "--table", "pg_iris", "--chunk-rows", "20"]
    assert run(capsys, *args)[0] == 0
    assert run(capsys, *args)[0] == 0
    assert count(url, "pg_iris") == 50
    resolved = Repository(["iris"], lambda name: "latest", {}).open("iris").resolve(version(tag))
    engine = connect(url)
    found = lookup(engine, "pg_iris", "iris", resolved.version, "7", signature=resolved.signature)
    engine.dispose()
    estimator = bentoml.sklearn.load_model(tag)
    assert found is not None
    first_chunk = X[:20]  # row 7 was scored with its chunk
    assert found["outputs"][0]["data"] == [estimator.predict(first_chunk)[7]]
    assert found["outputs"][1]["data"] == estimator.predict_proba(first_chunk)[7].tolist()


def test_unknown_outputs_versions_and_models_are_errors(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv, _ = iris_csv(tmp_path / "iris.csv", rows=3)
    db = f"sqlite:///{tmp_path / 'p.db'}"
    base = ["--input", str(csv), "--db", db]
    code, _, err = run(capsys, "--model", "iris", "--outputs", "transform", *base)
    assert code == 2 and "unknown output ['transform']" in err
    code, _, err = run(capsys, "--model", "iris", "--version", "nope", *base)
    assert code == 2 and "nope" in err
    code, _, err = run(capsys, "--model", "no_such_model", *base)
    assert code == 2 and "no servable version" in err


def test_a_frame_model_takes_its_columns_by_name() -> None:
    signature = Signature(
        inputs=(TensorSpec("b", Datatype.INT64, (-1,)), TensorSpec("a", Datatype.BYTES, (-1,))),
        outputs=(TensorSpec("predict", Datatype.INT64, (-1,)),),
        frame=True,
    )
    resolved = ModelVersion("m", "v", signature, "sklearn_x", pd.Timestamp.now())
    chunk = pd.DataFrame({"id": ["007", "8"], "a": ["x", "y"], "b": [1, 2], "extra": [0, 0]})
    plan = Plan.of(signature, list(chunk.columns), None)
    assert plan.key == "id" and plan.text_columns == ["id", "a"]
    x = model_input(resolved, plan.tensors(chunk, offset=0))
    assert list(x.columns) == ["b", "a"] and x["b"].dtype == np.int64
    assert plan.keys(chunk, x, offset=0) == ["007", "8"]
    with pytest.raises(MalformedInput, match=r"row 11: column 'a' must be text, got 3"):
        plan.tensors(chunk.assign(a=["x", 3]), offset=10)
    with pytest.raises(MalformedInput, match=r"row 0: no column \['a'\]"):
        Plan.of(signature, ["id", "b"], None)


def test_a_row_hash_is_the_same_from_any_format_and_release() -> None:
    assert content_keys(np.array([[5.1, 3.5, 1.4, 0.2]])) == ["fa6fd14a4fe8200bee7a2e1a85e23a60"]
    assert content_keys(np.array(["hello"], dtype=object)) == ["05925d28ddc9ac5ba00d1e0db18a173e"]
    as_csv = pd.DataFrame({"x": [0.1, -0.0]}).to_numpy()
    assert content_keys(as_csv)[1] == content_keys(np.array([[0.0]]))[0]
