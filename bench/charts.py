"""SVG charts of a benchmark run: req/s and p99 per server and payload, start-up and memory.

Drawn with matplotlib (Agg, no display) from the same medians the report's tables hold
(``report.aggregate_cells``), so a chart never says what its table does not. One file per
scenario, one for start-up; ``write`` returns section -> path relative to the report, which
``report.markdown`` embeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import report

plt.rcParams["svg.hashsalt"] = "oip-bench"  # stable ids: a rerun's SVG diffs by its numbers only
plt.rcParams["svg.fonttype"] = "none"  # text stays text (smaller, searchable)


def _bars(ax: Any, groups: Sequence[str], series: dict[str, list[float]], log: bool) -> None:
    """Grouped bars: one group per connection count, one bar per server (0 = no value)."""
    width = 0.8 / max(len(series), 1)
    for i, (server, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, values, width, label=server)
    ax.set_xticks(range(len(groups)), groups)
    if log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)


def _scenario(
    path: Path, scenario: str, conns: list[int], servers: list[str], agg: dict[Any, Any]
) -> bool:
    grpc = scenario.endswith("-grpc")
    p99_key = "grpc_p99" if grpc else "wrk_p99"
    rps: dict[str, list[float]] = {}
    p99: dict[str, list[float]] = {}
    for server in servers:
        cells = [agg.get((scenario, c, server)) for c in conns]
        if not any(cell and cell["rps"] for cell in cells):
            continue
        rps[server] = [(cell or {}).get("rps") or 0.0 for cell in cells]
        p99[server] = [(cell or {}).get(p99_key) or 0.0 for cell in cells]
    if not rps:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    groups = [f"{c} {'streams' if grpc else 'conns'}" for c in conns]
    _bars(left, groups, rps, log=False)
    left.set_title(f"{scenario}: req/s (higher is better)")
    _bars(right, groups, p99, log=True)
    right.set_title("p99 latency, ms (lower is better; log scale)")
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return True


def _startup(path: Path, launches: dict[str, dict[str, Any]]) -> bool:
    servers = [s for s, launch in launches.items() if launch["ready_s"] is not None]
    if not servers:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.2))
    left.barh(servers, [launches[s]["ready_s"] for s in servers], color="tab:blue")
    left.set_title("launch → ready, s (lower is better)")
    right.barh(servers, [launches[s]["idle_pss"] or 0.0 for s in servers], color="tab:green")
    right.set_title("idle memory, PSS MiB (lower is better)")
    for ax in (left, right):
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return True


def write(
    meta: dict[str, Any],
    cells: list[dict[str, Any]],
    launches: list[dict[str, Any]],
    out: Path,
) -> dict[str, str]:
    """Every chart of the run into ``out/charts/``; section -> path relative to ``out``."""
    folder = out / "charts"
    folder.mkdir(parents=True, exist_ok=True)
    agg = report.aggregate_cells(cells)
    written: dict[str, str] = {}
    for scenario in meta["scenarios"]:
        conns = list(meta.get("scenario_concurrencies", {}).get(scenario, meta["concurrencies"]))
        if _scenario(folder / f"{scenario}.svg", scenario, conns, meta["servers"], agg):
            written[scenario] = f"charts/{scenario}.svg"
    if _startup(folder / "startup.svg", report.aggregate_launches(launches)):
        written["startup"] = "charts/startup.svg"
    return written


def batch(rows_per_s: dict[str, float], path: Path, title: str) -> None:
    """One horizontal bar per write method (bench/score.py): rows/s."""
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(rows_per_s)))
    ax.barh(list(rows_per_s), list(rows_per_s.values()), color="tab:purple")
    ax.invert_yaxis()
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
