"""The predictions table (adapters/batch/predictions.py) on SQLite and on a real PostgreSQL server:
its definition, upserts by (key, model, version), and reading a row back as V2 outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adapters.batch.predictions import (
    TableMismatch,
    connect,
    default_table_name,
    ensure_table,
    lookup,
    output_values,
    predictions_table,
)
from adapters.batch.writes import write_chunk
from adapters.models.signature import Signature, TensorSpec
from adapters.protocol.schemas import Datatype

from .conftest import ROOT, Store
from .postgres import postgres_url  # noqa: F401 (a fixture)

SIGNATURE = Signature(
    inputs=(TensorSpec("input-0", Datatype.FP64, (-1, 4)),),
    outputs=(
        TensorSpec("predict", Datatype.INT64, (-1,)),
        TensorSpec("predict_proba", Datatype.FP64, (-1, 3)),
        TensorSpec("label", Datatype.BYTES, (-1,)),
    ),
)
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def rows(version: str, predict: list[int], proba: list[list[float]]) -> list[dict[str, object]]:
    spec = SIGNATURE.outputs[1]
    probas = output_values(spec, np.array(proba))
    return [
        {
            "key": str(i),
            "model": "iris",
            "version": version,
            "predict": p,
            "predict_proba": q,
            "label": f"class-{p}",
            "scored_at": WHEN,
        }
        for i, (p, q) in enumerate(zip(predict, probas, strict=True))
    ]


def count(engine: Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_the_table_has_the_key_one_column_per_output_and_scored_at() -> None:
    table = predictions_table("t", SIGNATURE.outputs)
    assert [c.name for c in table.primary_key.columns] == ["key", "model", "version"]
    assert [c.name for c in table.columns] == [
        "key", "model", "version", "predict", "predict_proba", "label", "scored_at",
    ]  # fmt: skip
    assert isinstance(table.c.predict.type, sa.BigInteger)
    assert isinstance(table.c.predict_proba.type, sa.Text)  # a vector: JSON text
    assert isinstance(table.c.label.type, sa.Text)


def test_upsert_replaces_the_same_version_and_adds_another(engine: Engine) -> None:
    table = ensure_table(engine, default_table_name("iris"), SIGNATURE.outputs)
    assert write_chunk(engine, table, rows("v1", [0, 1], [[1, 0, 0], [0, 1, 0]])) == 2
    assert write_chunk(engine, table, rows("v1", [2, 2], [[0, 0, 1], [0, 0, 1]])) == 2
    assert count(engine, table.name) == 2
    write_chunk(engine, table, rows("v2", [0, 1], [[1, 0, 0], [0, 1, 0]]))
    assert count(engine, table.name) == 4
    found = lookup(engine, table.name, "iris", "v1", "1", signature=SIGNATURE)
    assert found is not None
    assert found["outputs"][0] == {
        "name": "predict",
        "datatype": "INT64",
        "shape": [1],
        "data": [2],
    }


def test_rows_with_one_key_in_a_chunk_collapse_to_the_last(engine: Engine) -> None:
    table = ensure_table(engine, default_table_name("iris"), SIGNATURE.outputs)
    twice = rows("v1", [0], [[1, 0, 0]]) + rows("v1", [1], [[0, 1, 0]])
    assert write_chunk(engine, table, twice) == 1
    found = lookup(engine, table, "iris", "v1", "0", signature=SIGNATURE)
    assert found is not None and found["outputs"][0]["data"] == [1]


def test_columns_left_out_keep_their_values(engine: Engine) -> None:
    table = ensure_table(engine, default_table_name("iris"), SIGNATURE.outputs)
    write_chunk(engine, table, rows("v1", [0], [[1, 0, 0]]))
    write_chunk(engine, table, [{"key": "0", "model": "iris", "version": "v1", "predict": 2,
                                 "scored_at": WHEN}])  # fmt: skip
    found = lookup(engine, table, "iris", "v1", "0", signature=SIGNATURE)
    assert found is not None
    assert [o["data"] for o in found["outputs"]] == [[2], [1.0, 0.0, 0.0], ["class-0"]]


def test_lookup_answers_v2_outputs(engine: Engine) -> None:
    table = ensure_table(engine, default_table_name("iris"), SIGNATURE.outputs)
    proba = [0.1, 0.2, 0.7000000000000001]
    write_chunk(engine, table, rows("v1", [2], [proba]))
    found = lookup(engine, table.name, "iris", "v1", "0", signature=SIGNATURE)
    assert found == {
        "model_name": "iris",
        "model_version": "v1",
        "id": "0",
        "parameters": {"scored_at": WHEN.isoformat()},
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [1], "data": [2]},
            {"name": "predict_proba", "datatype": "FP64", "shape": [1, 3], "data": proba},
            {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["class-2"]},
        ],
    }
    json.dumps(found)  # a response body as it is
    assert lookup(engine, table.name, "iris", "v2", "0", signature=SIGNATURE) is None
    assert lookup(engine, table.name, "iris", "v1", "nope", signature=SIGNATURE) is None
    assert lookup(engine, "no_such_table", "iris", "v1", "0", signature=SIGNATURE) is None


def test_an_existing_table_without_the_outputs_is_refused(engine: Engine) -> None:
    ensure_table(engine, default_table_name("iris"), SIGNATURE.outputs[:1])
    with pytest.raises(TableMismatch, match=r"without the columns \['predict_proba', 'label'\]"):
        ensure_table(engine, default_table_name("iris"), SIGNATURE.outputs)


def test_other_databases_are_refused() -> None:
    with pytest.raises(ValueError, match="only SQLite and PostgreSQL"):
        connect("mysql://user@localhost/db")


def test_the_read_back_route_answers_a_stored_prediction(store: Store, tmp_path: Path) -> None:
    """score.py writes, the server reads back (GET /v2/models/iris/versions/{v}/predictions/key)
    in the V2 response shape; unknown keys are 404, and so is any key with no database set."""
    from starlette.testclient import TestClient

    from adapters.bento.wiring import build_dataplane
    from adapters.config.settings import Settings
    from adapters.http.routes import build_app

    rows = tmp_path / "rows.csv"
    rows.write_text("id,a,b,c,d\nrow-1,5.1,3.5,1.4,0.2\nrow-2,6.7,3.0,5.2,2.3\n")
    db = f"sqlite:///{tmp_path / 'predictions.db'}"
    done = subprocess.run(
        [
            sys.executable,
            "score.py",
            "--model",
            "iris",
            "--version",
            "best",
            "--input",
            str(rows),
            "--db",
            db,
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    app = build_app()
    app.state.dataplane = build_dataplane(Settings(models=("iris",), predictions_db=db))
    with TestClient(app) as c:
        answer = c.get("/v2/models/iris/versions/best/predictions/row-2")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        best = c.get("/v2/models/iris/versions/best").json()["properties"]["bentoml_tag"]
        assert body["model_version"] == best.split(":")[1] and body["id"] == "row-2"
        live = c.post(
            "/v2/models/iris/versions/best/infer",
            json={
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [1, 4],
                        "datatype": "FP64",
                        "data": [6.7, 3.0, 5.2, 2.3],
                    }
                ],
                "outputs": [{"name": "predict"}],
            },
        ).json()
        stored = {o["name"]: o for o in body["outputs"]}
        assert stored["predict"]["data"] == live["outputs"][0]["data"]
        missing = c.get("/v2/models/iris/versions/best/predictions/nope")
        assert missing.status_code == 404 and list(missing.json()) == ["error"]
        json.dumps(body)
    app.state.dataplane = build_dataplane(Settings(models=("iris",)))
    with TestClient(app) as c:
        off = c.get("/v2/models/iris/predictions/row-1")
        assert off.status_code == 404 and "OIP_PREDICTIONS_DB" in off.json()["error"]
