"""``make capacity``: what one replica holds on one core, the figures of docs/capacity.md.

One ``bentoml serve`` of this project (in process, one gateway worker) is pinned to one CPU with
``taskset`` and wrk to another, so that the replica has a core of its own and the load generator
does not take from it. For each HTTP payload of the benchmark (``setup_env.SCENARIOS``: iris 1x4,
forest 256x20, and 8192x20 rows to a forest and to a linear model, JSON and binary) and each
concurrency (wrk's connections: closed loop, so about that many requests in flight), a warm-up
and a measured run give req/s, p50 and p99. Then memory (PSS of the replica's process tree): a
replica serving one small model, one serving the three, each model with one version and with
``--versions`` more (the difference, per version), and a replica in the runner placement.

    .venv/bin/python bench/capacity.py                 # ~8 min
    .venv/bin/python bench/capacity.py --quick         # ~2 min, fewer and shorter runs

The tables are printed and written with the raw numbers to ``results/capacity/<time>/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # appended: bench's own modules (load, servers...) keep priority
    sys.path.append(str(ROOT))

import load  # noqa: E402
import servers  # noqa: E402
import setup_env  # noqa: E402
from setup_env import MODELS, SCENARIOS, log  # noqa: E402

import liveserver  # noqa: E402

PAYLOADS = [name for name, s in SCENARIOS.items() if not s.grpc]
BUDGETS_MS = (5, 10, 25, 50, 100, 250)
"""p99 budgets: for each, the highest rate a core held with its p99 within it."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--payloads", default=",".join(PAYLOADS))
    p.add_argument("--concurrency", default="1,2,4,8,16,32", help="wrk connections, small")
    p.add_argument("--large-concurrency", default="1,2,4,8", help="for the 8192-row payloads")
    p.add_argument("--duration", type=float, default=8.0, help="measured wrk run, s")
    p.add_argument("--warmup", type=float, default=2.0, help="wrk warm-up before each run, s")
    p.add_argument("--versions", type=int, default=3, help="extra versions for the memory runs")
    p.add_argument("--server-cpu", default="0", help="taskset CPU list of the replica")
    p.add_argument("--load-cpu", default="1", help="taskset CPU list of wrk")
    p.add_argument("--quick", action="store_true", help="c = 1,4,16 (large 1,4), 3 s runs")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.concurrency, args.large_concurrency = "1,4,16", "1,4"
        args.duration, args.warmup, args.versions = 3.0, 1.0, 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or ROOT / "results" / "capacity" / stamp
    (out / "logs").mkdir(parents=True, exist_ok=True)
    setup_env.ensure_load_tools()
    work = Path(tempfile.mkdtemp(prefix="oip-capacity-"))
    try:
        one, more = work / "one-version", work / "more-versions"
        train(one, times=1)
        shutil.copytree(one, more, symlinks=True)
        train(more, times=args.versions)
        report: dict[str, Any] = {
            "date": dt.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "host": {k: v for k, v in setup_env.host_facts().items() if k != "versions"},
            "cpus": {"replica": args.server_cpu, "wrk": args.load_cpu},
            "throughput": throughput(args, one, out),
            "memory": memory(args, one, more, out),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (out / "capacity.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (out / "capacity.md").write_text(text)
    print(text)
    log(f"written to {out}")
    return 0


def train(home: Path, *, times: int) -> None:
    """``times`` new versions of each benchmark model in the store at ``home``."""
    env = {"BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    for _ in range(times):
        argv = [sys.executable, "train.py", *(a for m in MODELS for a in ("--model", m))]
        subprocess.run(argv, cwd=ROOT, env=liveserver.clean_environ() | env, check=True)


@contextmanager
def replica(
    args: argparse.Namespace, home: Path, log_path: Path, models: str, placement: str = "inprocess"
) -> Iterator[servers.RunningServer]:
    """One replica on ``--server-cpu`` serving ``models`` from the store at ``home``."""
    port = liveserver.free_port()
    argv = ["taskset", "-c", args.server_cpu, *liveserver.gateway_argv(port)]
    env = {
        "BENTOML_HOME": str(liveserver.own_home(home, log_path.with_suffix(".home"))),
        "BENTOML_DO_NOT_TRACK": "true",
        "OIP_MODELS": models,
        "OIP_PLACEMENT": placement,
        "OIP_GRPC_PORT": "0",
    }
    server = liveserver.launch(
        argv,
        url=f"http://127.0.0.1:{port}",
        cwd=ROOT,
        env=env,
        base_env=liveserver.clean_environ(),
        log_path=log_path,
        deadline_s=300,
    )
    try:
        yield servers.RunningServer(models, server.url, server.proc, server.ready_s, log_path, "")
    finally:
        liveserver.stop(server.proc)


def throughput(args: argparse.Namespace, home: Path, out: Path) -> dict[str, Any]:
    """For each payload: the runs, one per concurrency, and the best rate within each budget."""
    data = setup_env.scenario_data()
    prefix = ["taskset", "-c", args.load_cpu]
    results: dict[str, Any] = {}
    with replica(args, home, out / "logs" / "throughput.log", ",".join(MODELS)) as server:
        for name in args.payloads.split(","):
            scenario = SCENARIOS[name]
            model_url = f"{server.base_url}/v2/models/{scenario.model}/infer"
            input_name = servers.model_input_name(server.base_url, scenario.model)
            body, headers = setup_env.payload(input_name, scenario, data[scenario.matrix])
            (out / f"{name}.body").write_bytes(body)
            script = load.write_wrk_script(out / f"{name}.body", headers, out / f"{name}.lua")
            status, _, answer = servers.http_post(model_url, body, headers)
            if status != 200:
                raise SystemExit(f"{name}: the replica answered {status}: {answer[:300]!r}")
            levels = args.large_concurrency if scenario.large else args.concurrency
            runs = []
            for connections in (int(c) for c in levels.split(",")):
                load.run_wrk(model_url, script, connections, args.warmup, prefix)
                run = load.run_wrk(model_url, script, connections, args.duration, prefix)
                row = {k: getattr(run, k) for k in ("rps", "p50_ms", "p99_ms", "error")}
                row |= {"connections": connections, "failed": run.non_2xx + run.socket_errors}
                log(f"{name} c={connections}: {row}")
                runs.append(row)
            results[name] = {"runs": runs, "within": within(runs)}
        results["_after_load_pss_mib"] = liveserver.tree_memory_mib(server.proc.pid)["pss_mib"]
    return results


def within(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """For each budget, the run of the highest rate whose p99 was within it (None if none)."""
    best: dict[str, dict[str, Any] | None] = {}
    for budget in BUDGETS_MS:
        fit = [r for r in runs if r["rps"] and not r["failed"] and r["p99_ms"] <= budget]
        best[f"{budget}"] = max(fit, key=lambda r: r["rps"]) if fit else None
    return best


def memory(args: argparse.Namespace, one: Path, more: Path, out: Path) -> dict[str, Any]:
    """PSS (MiB) of a replica's process tree, idle, once loaded."""

    def pss(home: Path, models: str, tag: str, placement: str = "inprocess") -> float:
        log_path = out / "logs" / f"memory-{tag}.log"
        with replica(args, home, log_path, models, placement) as server:
            time.sleep(2.0)  # settled after start-up
            return float(liveserver.tree_memory_mib(server.proc.pid)["pss_mib"])

    found: dict[str, Any] = {"extra_versions": args.versions}
    found["replica_iris"] = pss(one, "iris", "iris")
    found["replica_all"] = pss(one, ",".join(MODELS), "all")
    found["replica_iris_runner"] = pss(one, "iris", "iris-runner", "runner")
    for model in MODELS:
        grown = pss(more, model, f"{model}-more") - pss(one, model, f"{model}-one")
        found[f"per_version_{model}"] = grown / args.versions
    return found


def markdown(report: dict[str, Any]) -> str:
    host = report["host"]
    lines = [
        f"capacity: {report['date']}, {host['cpu_model']} ({host['nproc']} CPUs), "
        f"replica on CPU {report['cpus']['replica']}, wrk on CPU {report['cpus']['wrk']}",
        "",
        "| payload | connections | req/s | p50 ms | p99 ms | failed |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    payloads = {k: v for k, v in report["throughput"].items() if not k.startswith("_")}
    for name, found in payloads.items():
        for r in found["runs"]:
            rps, p50, p99 = (r[k] or 0.0 for k in ("rps", "p50_ms", "p99_ms"))
            c, failed = r["connections"], r["failed"]
            lines.append(f"| {name} | {c} | {rps:,.0f} | {p50:.1f} | {p99:.1f} | {failed} |")
    lines += ["", "| payload | " + " | ".join(f"p99 <= {b} ms" for b in BUDGETS_MS) + " |"]
    lines.append("| --- |" + " ---: |" * len(BUDGETS_MS))
    for name, found in payloads.items():
        cells = [
            f"{r['rps']:,.0f} (c={r['connections']})" if r else "-"
            for r in found["within"].values()
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    mem = report["memory"]
    lines += ["", "| memory (PSS, MiB) | |", "| --- | ---: |"]
    lines.append(f"| replica, iris | {mem['replica_iris']:.0f} |")
    lines.append(f"| replica, iris + forest + linear | {mem['replica_all']:.0f} |")
    after = report["throughput"]["_after_load_pss_mib"]
    lines.append(f"| the same, after the throughput runs | {after:.0f} |")
    lines.append(f"| replica, iris on the runner | {mem['replica_iris_runner']:.0f} |")
    for model in MODELS:
        lines.append(f"| one more version of {model} | {mem[f'per_version_{model}']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
