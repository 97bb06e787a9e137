"""The locustfile cannot rot: a few seconds of every scenario against the real server."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from load_tests import run

from .conftest import LiveServer

pytestmark = pytest.mark.e2e


def test_locust_scenarios_run_without_failures(live: LiveServer, tmp_path: Path) -> None:
    code = run.main(
        [
            "--url",
            live.url,
            "--users",
            "6",
            "--spawn-rate",
            "6",
            "--time",
            "4s",
            "--max-p99-ms",
            "5000",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    with (tmp_path / "load_stats.csv").open() as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    total = rows.pop("Aggregated")
    assert int(total["Request Count"]) > 0
    assert int(total["Failure Count"]) == 0
    # every scenario ran: small inferences, metadata, health and 256-row batches
    names = " ".join(rows)
    for fragment in ("infer iris@", "infer text@", "model metadata", "health ready", "batch256"):
        assert fragment in names, names
    assert (tmp_path / "report.html").stat().st_size > 0


def test_a_threshold_breach_exits_non_zero(
    live: LiveServer, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    code = run.main(
        [
            "--url",
            live.url,
            "--users",
            "2",
            "--spawn-rate",
            "2",
            "--time",
            "2s",
            "--max-p99-ms",
            "0.001",
            "--out",
            str(tmp_path),
        ]
    )
    out = capfd.readouterr().out  # locust's stdout is this process's fd 1
    assert code != 0
    # the p99 check failed, not locust, the server or a request (any of which also exit non-zero)
    assert re.search(
        r"load: FAIL p99 \d+ ms is over the threshold LOAD_MAX_P99_MS=0\.001\b", out
    ), out
    assert "requests failed" not in out, out


def test_nothing_listening_is_an_error(tmp_path: Path) -> None:
    assert run.main(["--url", "http://127.0.0.1:9", "--out", str(tmp_path)]) == 2
