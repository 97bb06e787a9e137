"""``score.py --engine ray`` with ``RAY_ADDRESS`` on a Ray cluster of two nodes on this machine
(``ray start --head`` and a second ``ray start --address``, with Ray's token authentication, as
``docs/batch-scoring.md`` shows): every row is written once, and the rows each node scored add up.

Skipped where Ray cannot start, except in CI (``CI`` set), where that fails."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import bentoml
import numpy as np
import pytest

import liveserver

from .conftest import ROOT, Store, free_port
from .test_score import by_chunks, iris_csv

pytestmark = pytest.mark.e2e
RAY = Path(sys.executable).parent / "ray"
ROWS, CHUNK = 40_000, 1_000


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A head and a second node, one CPU each; the variables that reach the cluster."""
    # Ray's sockets live under its temporary directory, and a Unix socket's path is short
    temp = Path(tempfile.mkdtemp(prefix="oipray-", dir="/tmp"))
    logs = tmp_path_factory.mktemp("ray")
    port = free_port()
    env = {
        "RAY_ADDRESS": f"127.0.0.1:{port}",
        "RAY_AUTH_MODE": "token",  # `ray start --head` turns token authentication on
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    common = ["--num-cpus=1", "--block", "--disable-usage-stats"]
    head_argv = [RAY, "start", "--head", f"--port={port}", "--include-dashboard=false"]
    nodes = []
    try:
        nodes.append(start(logs / "head.log", env, [*head_argv, f"--temp-dir={temp}", *common]))
        wait_for_nodes(env, 1)
        node_argv = [RAY, "start", f"--address={env['RAY_ADDRESS']}"]
        for attempt in range(3):
            # NOTE: `ray start` gives a node's raylet a fixed 30 s to register and then exits;
            # on a loaded machine it can miss that: the node is started again
            nodes.append(start(logs / f"node-{attempt}.log", env, [*node_argv, *common]))
            if wait_for_nodes(env, 2, process=nodes[-1]):
                break
        else:
            raise RuntimeError("the second node exited three times (its logs: node-*.log)")
    except Exception as exc:
        for node in reversed(nodes):
            liveserver.stop(node, grace_s=10)
        if os.environ.get("CI"):
            pytest.fail(f"the Ray cluster did not start: {exc}")
        pytest.skip(f"a Ray cluster cannot start here: {exc}")
    try:
        yield env
    finally:
        for node in reversed(nodes):
            liveserver.stop(node, grace_s=10)
        shutil.rmtree(temp, ignore_errors=True)


def start(log: Path, env: dict[str, str], argv: list[object]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(a) for a in argv],
            env={**liveserver.clean_environ(), **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for_nodes(
    env: dict[str, str],
    count: int,
    deadline_s: float = 120.0,
    process: subprocess.Popen[bytes] | None = None,
) -> bool:
    """Until the cluster has ``count`` live nodes (asked by a driver of its own): True; False
    as soon as ``process`` (the node being waited for) has exited."""
    code = (
        "import ray; ray.init(logging_level='ERROR', log_to_driver=False); "
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        done = subprocess.run(
            [sys.executable, "-c", code],
            env={**liveserver.clean_environ(), **env},
            capture_output=True,
            text=True,
            timeout=deadline_s,
            check=False,
        )
        if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(count)]:
            return True
        time.sleep(1.0)
    raise RuntimeError(f"no {count} live Ray nodes within {deadline_s:g} s")


def test_every_row_is_written_once_on_a_two_node_cluster(
    two_nodes: dict[str, str], store: Store, tmp_path: Path
) -> None:
    csv, X = iris_csv(tmp_path / "rows.csv", rows=ROWS)
    db = tmp_path / "predictions.db"
    argv = ["--engine", "ray", "--model", "iris", "--input", str(csv), "--db", f"sqlite:///{db}"]
    done = subprocess.run(
        [sys.executable, "score.py", *argv, "--chunk-rows", str(CHUNK), "--quiet"],
        cwd=ROOT,
        env={**liveserver.clean_environ(), "BENTOML_HOME": str(store.home), **two_nodes},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert f"scored {ROWS:,} rows" in done.stdout

    by_node = re.search(r"^ray: rows scored by node: (.+)$", done.stdout, re.MULTILINE)
    assert by_node is not None, done.stdout
    counts = [int(n.replace(",", "")) for n in re.findall(r"\w+ ([\d,]+)", by_node[1])]
    # Which nodes score is Ray Data's choice: actors are spread over both nodes and all of them
    # are up before the first batch, but a batch goes to the least busy one, so when scoring is
    # faster than reading (iris, an idle machine) the first actor may score every batch.
    assert 1 <= len(counts) <= 2 and min(counts) > 0 and sum(counts) == ROWS, by_node[1]

    with sqlite3.connect(db) as table:
        rows = table.execute("SELECT key, version, predict FROM iris_predictions").fetchall()
    keys = [key for key, _, _ in rows]
    assert len(keys) == ROWS and set(keys) == {str(i) for i in range(ROWS)}
    latest = store.tags["iris"][-1]
    assert {version for _, version, _ in rows} == {latest.split(":")[1]}
    expected = by_chunks(bentoml.sklearn.load_model(latest).predict, X, CHUNK)
    predicted = {key: label for key, _, label in rows}
    assert np.array_equal([predicted[str(i)] for i in range(ROWS)], expected)
