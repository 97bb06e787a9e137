"""The benchmark's report and charts: every ratio against the best peer of its case, and an SVG
chart per scenario that holds the servers measured (bench/report.py, bench/charts.py)."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench() -> Any:
    sys.path.insert(0, str(BENCH))
    try:
        import charts
        import report

        yield report, charts
    finally:
        sys.path.remove(str(BENCH))


def cell(server: str, scenario: str, conns: int, rps: float, p99: float, **extra: Any) -> dict:
    wrk = {"rps": rps, "p50_ms": p99 / 2, "p99_ms": p99, "non_2xx": 0, "socket_errors": 0}
    return {"round": 1, "server": server, "scenario": scenario, "connections": conns} | (
        extra or {"wrk": wrk}
    )


CELLS = [
    cell("ours-inprocess", "iris-1x4", 1, 2000.0, 1.0),
    cell("mlserver", "iris-1x4", 1, 250.0, 6.0),
    cell("mlserver-tuned", "iris-1x4", 1, 400.0, 5.0),
    cell("kserve", "iris-1x4", 1, 500.0, 8.0),  # the most req/s: the peer of c=1
    cell("ours-inprocess", "iris-1x4", 64, 3000.0, 30.0),
    cell("mlserver", "iris-1x4", 64, 600.0, 150.0),
    cell("mlserver-tuned", "iris-1x4", 64, 1200.0, 160.0),  # the peer of c=64
    cell("kserve", "iris-1x4", 64, 900.0, 120.0),
    cell(
        "ours-inprocess",
        "iris-1x4-grpc",
        1,
        1500.0,
        1.0,
        grpc={"rps": 1500.0, "p50_ms": 0.5, "p99_ms": 1.0, "non_2xx": 0},
    ),
    cell("kserve", "iris-1x4-grpc", 1, 0, 0, unsupported="n/a: no gRPC server"),
]
META = {
    "date": "2026-12-03T12:00:00+00:00", "commit": "abc1234", "nproc": 2, "cpu_model": "cpu",
    "kernel": "k", "rounds": 1, "orders": [["ours-inprocess"]], "warmup_s": 1, "duration_s": 3,
    "hey_duration_s": 2, "versions": "v", "model_tags": {}, "concurrencies": [1, 64],
    "scenarios": ["iris-1x4", "iris-1x4-grpc"],
    "scenario_concurrencies": {"iris-1x4": [1, 64], "iris-1x4-grpc": [1]},
    "servers": ["ours-inprocess", "mlserver", "mlserver-tuned", "kserve"],
}  # fmt: skip
LAUNCHES = [
    {"round": 1, "server": s, "launch_to_ready_s": 3.0 + i, "idle": idle, "after_load": idle}
    for i, s in enumerate(META["servers"])
    for idle in [{"rss_mib": 300.0 + i, "pss_mib": 250.0 + i, "processes": 2}]
]


def test_each_case_is_compared_with_its_best_peer(bench: Any) -> None:
    report, _ = bench
    agg = report.aggregate_cells(CELLS)
    assert report.best_peer(agg, "iris-1x4", 1)[0] == "kserve"
    assert report.best_peer(agg, "iris-1x4", 64)[0] == "mlserver-tuned"
    assert report.best_peer(agg, "iris-1x4-grpc", 1) is None  # KServe's gRPC: not a peer
    text = report.markdown(META, CELLS, LAUNCHES, {"iris-1x4": "charts/iris-1x4.svg"})
    ours = [ln for ln in text.splitlines() if ln.startswith("| ") and "| ours-" in ln]
    c1, c64, grpc = ours[:3]  # the cells, then the start-up table
    assert f"| {2000 / 500:.2f} |" in c1  # over KServe's 500
    assert f"| {3000 / 1200:.2f} |" in c64  # over MLServer tuned's 1,200
    assert "| n/a | n/a | n/a |" in grpc  # no peer serves gRPC here
    assert "Best peer by connections: 1: kserve, 64: mlserver-tuned." in text
    assert "n/a (no gRPC server)" in text
    assert "![iris-1x4: req/s and p99 per server](charts/iris-1x4.svg)" in text
    assert "commit: abc1234" in text


def test_the_charts_are_svg_with_every_server(bench: Any, tmp_path: Path) -> None:
    _, charts = bench
    written = charts.write(META, CELLS, LAUNCHES, tmp_path)
    assert set(written) == {"iris-1x4", "iris-1x4-grpc", "startup"}
    for section, relative in written.items():
        svg = (tmp_path / relative).read_text()
        ET.fromstring(svg)  # well-formed
        names = ["ours-inprocess"] if section == "iris-1x4-grpc" else META["servers"]
        for server in names:
            assert server in svg, (section, server)
