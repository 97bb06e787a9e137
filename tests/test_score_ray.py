"""The Ray engine's edges that need no running Ray: what it refuses before starting one, how
many actors it takes, and what a failed Ray run is reported as (the input's row, the input, or
Ray's own failure). Its end-to-end runs are in test_score.py, beside the local engine's."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from ray.exceptions import RayTaskError

import score
from adapters.batch.ray import EngineFailed, _count, _reading_fault, actor_cpus, default_workers
from adapters.batch.readers import MalformedInput, Plan
from adapters.models.signature import Signature, TensorSpec
from adapters.protocol.schemas import Datatype

from .conftest import Store
from .test_score import FEATURES, iris_csv, write_lines

IRIS = Signature(
    inputs=(TensorSpec("input-0", Datatype.FP64, (-1, 4)),),
    outputs=(TensorSpec("predict", Datatype.INT64, (-1,)),),
)


def test_a_ray_client_address_is_refused_before_connecting(
    store: Store,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ray Data does not run over Ray Client: said at once, not after a connection attempt."""
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    csv, _ = iris_csv(tmp_path / "iris.csv", rows=5)
    argv = ["--model", "iris", "--input", str(csv), "--db", f"sqlite:///{tmp_path / 'p.db'}"]
    assert score.main([*argv, "--engine", "ray", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "RAY_ADDRESS=ray://head:10001 is a Ray Client address" in err
    assert "RAY_ADDRESS=auto" in err


def test_a_sql_input_and_workers_without_ray_are_refused_before_ray_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (
        ["--model", "iris", "--input", "sql:SELECT 1", "--engine", "ray"],
        ["--model", "iris", "--input", "rows.csv", "--ray-workers", "2"],
        ["--model", "iris", "--input", "rows.csv", "--engine", "ray", "--ray-workers", "0"],
    ):
        with pytest.raises(SystemExit) as exited:
            score.parse_args(argv)
        assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--engine ray reads .csv and .parquet files; score a sql: input locally" in err
    assert "--ray-workers takes a number of at least 1, with --engine ray" in err


@pytest.mark.parametrize(("cpus", "workers"), [(0.5, 1), (1, 1), (2, 2), (2.5, 2), (64, 64)])
def test_one_actor_per_cpu(cpus: float, workers: int) -> None:
    assert default_workers(cpus) == workers


@pytest.mark.parametrize(
    ("nodes", "actors", "share"),
    [
        ([2], 2, 0.5),  # one node of 2 CPUs: a CPU for the actors, one for the reads
        ([1, 1], 2, 0.0),  # two of 1 CPU, an actor on each: a read would find no whole CPU
        ([4, 4], 8, 0.75),  # 4 actors a node, 3 CPUs for them
        ([8], 2, 1.0),  # never more than one CPU an actor
        ([1], 1, 0.0),
    ],
)
def test_actors_leave_a_cpu_on_every_node_for_the_reads(
    nodes: list[float], actors: int, share: float
) -> None:
    assert actor_cpus(nodes, actors) == share


def test_the_rows_of_each_node_are_counted_across_batches() -> None:
    """A batch's first row names its node; a batch the driver cut otherwise still counts
    each row once, for the node that scored it."""
    nodes: Counter[str] = Counter()
    column = np.array(["a", None, None, "b", None], dtype=object)
    assert _count(nodes, column, "") == "b"
    assert _count(nodes, np.array([None, None], dtype=object), "b") == "b"  # b's, continued
    assert _count(nodes, np.array(["a"], dtype=object), "b") == "a"
    assert nodes == {"a": 4, "b": 4}


def failed(cause: Exception) -> RayTaskError:
    """A Ray task's failure as the driver receives it (the cause pickled back)."""
    return RayTaskError("ReadCSV", "Traceback ...", cause)


def test_a_read_task_that_failed_on_a_row_is_that_row_found_as_the_local_engine_finds_it(
    tmp_path: Path,
) -> None:
    csv, _ = iris_csv(tmp_path / "iris.csv", rows=30)
    lines = csv.read_text().splitlines()
    lines[21] = "20,5.0,3.1,1.4,0.2,9"  # ragged
    write_lines(csv, lines)
    plan = Plan.of(IRIS, ["id", *FEATURES], None)
    fault = _reading_fault(failed(ValueError("Failed to read CSV file")), str(csv), plan, 7)
    assert isinstance(fault, MalformedInput) and fault.row == 20
    assert str(fault).startswith("row 20: line 22 of")


def test_a_read_fault_no_row_explains_is_the_inputs_and_anything_else_is_rays(
    tmp_path: Path,
) -> None:
    csv, _ = iris_csv(tmp_path / "iris.csv", rows=10)  # nothing wrong with its rows
    plan = Plan.of(IRIS, ["id", *FEATURES], None)
    read = _reading_fault(failed(ValueError("Failed to read CSV file\nmore")), str(csv), plan, 5)
    assert type(read) is ValueError and str(read) == "Failed to read CSV file"
    parquet = _reading_fault(failed(ValueError("bad footer")), "x.parquet", plan, 5)
    assert type(parquet) is ValueError and str(parquet) == "bad footer"
    lost = _reading_fault(failed(OSError("worker died")), str(csv), plan, 5)
    assert isinstance(lost, EngineFailed) and str(lost) == "ray: worker died"
