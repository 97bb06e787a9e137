"""Side-by-side benchmark: our BentoML V2 server vs its peers vs a bare "ceiling".

The peers: MLServer 1.7.1 with its defaults (``mlserver``) and as its own benchmark runs it
(``mlserver-tuned``: adaptive batching, 2 parallel workers), and KServe's Python ModelServer
(``kserve``: its sklearnserver's model class). Every ratio is against the best peer of each
case. One server at a time, interleaved over rounds; wrk measures, hey cross-checks; gRPC
scenarios are measured with h2load (or bench/grpc_load.py: --grpc-tool grpc_load). Charts (SVG)
beside the report.
Run from anywhere with the project's venv:  .venv/bin/python bench/run.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import charts
import measure
import report
import servers
import setup_env
from setup_env import BENCH_DIR, SCENARIOS, log

ALL_SERVERS = (
    "ours-inprocess",
    "ours-runner",
    "mlserver",
    "mlserver-tuned",
    "kserve",
    "ceiling",
    "bentoml-floor",
)
# --quick leaves out the model-bound forest-8192x20 pair (~15 s per cell at c=1) to stay near
# 4-5 min; the transport-bound linear pair stays in.
QUICK_SCENARIOS = tuple(s for s in SCENARIOS if not s.startswith("forest-8192"))
BENTOML_ARGS = "serve service:Gateway --host 127.0.0.1 --port {port}"
FLOOR_ARGS = "serve service:Floor --host 127.0.0.1 --port {port}"  # bench/floor/service.py


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 round, 3 s runs, 1 s warm-up, 2 s hey, c=1,16 (large: 1), "
        "no forest-8192x20 cases",
    )
    p.add_argument(
        "--startup",
        action="store_true",
        help="launch → ready and idle memory only (no load), every server, --rounds times",
    )
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--duration", type=float, default=10.0, help="measured wrk run, s")
    p.add_argument("--warmup", type=float, default=3.0, help="wrk warm-up before each cell, s")
    p.add_argument(
        "--hey-duration", type=float, default=5.0, help="hey cross-check size: s of wrk throughput"
    )
    p.add_argument(
        "--concurrency",
        help="connections for the small cases, comma-separated (1,16,64; quick: 1,16)",
    )
    p.add_argument("--large-concurrency", help="connections for the 8192-row cases (1,8; quick: 1)")
    p.add_argument(
        "--grpc-processes",
        type=int,
        help="grpc_load processes, streams split over them (default: min(streams, CPUs))",
    )
    p.add_argument(
        "--grpc-tool",
        choices=("h2load", "grpc_load"),
        default="h2load",
        help="gRPC load: h2load (nghttp2-client, C, one thread) or bench/grpc_load.py (Python)",
    )
    p.add_argument("--servers", default=",".join(ALL_SERVERS))
    p.add_argument("--scenarios", help=f"default: {','.join(SCENARIOS)}")
    p.add_argument(
        "--project-dir",
        type=Path,
        default=BENCH_DIR.parent,
        help="holds .venv, train.py and service.py",
    )
    p.add_argument("--ready-timeout", type=float, default=180.0, help="launch → ready limit, s")
    p.add_argument("--settle", type=float, default=2.0, help="idle pause before RSS sample, s")
    p.add_argument("--out", type=Path, help="results dir (default bench/results/<timestamp>)")
    p.add_argument("--skip-setup", action="store_true", help="do not apt-get / pip install")
    p.add_argument("--keep-work", action="store_true", help="keep the temporary work dir")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup, args.hey_duration = 1, 3.0, 1.0, 2.0
    if args.concurrency is None:
        args.concurrency = "1,16" if args.quick else "1,16,64"
    if args.large_concurrency is None:
        args.large_concurrency = "1" if args.quick else "1,8"
    if args.startup:
        args.scenarios = ""
    if args.scenarios is None:
        args.scenarios = ",".join(QUICK_SCENARIOS if args.quick else SCENARIOS)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.large_concurrency = [int(c) for c in args.large_concurrency.split(",")]
    args.servers = [s for s in args.servers.split(",") if s]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.servers) - set(ALL_SERVERS) | set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown server or scenario: {', '.join(sorted(unknown))}")
    lowest = min(args.duration, args.hey_duration, *args.concurrency, *args.large_concurrency)
    if args.rounds < 1 or lowest <= 0 or (args.grpc_processes or 1) < 1:
        p.error(
            "--rounds, --duration, --hey-duration, --grpc-processes and the concurrencies "
            "must be positive"
        )
    args.project_dir = args.project_dir.resolve()
    return args


def server_specs(
    args: argparse.Namespace, work: Path, mlserver: Path
) -> dict[str, servers.ServerSpec]:
    project = args.project_dir
    bentoml_env = {
        "BENTOML_HOME": str(work / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "True",
        "OIP_MODELS": ",".join(setup_env.MODELS),
        "OIP_GRPC_PORT": "{grpc_port}",  # not the default 8001: another server may hold it
        "OIP_GRPC_HOST": "127.0.0.1",
    }
    (work / "mlserver-cwd").mkdir(exist_ok=True)
    specs = {
        f"ours-{placement}": servers.ServerSpec(
            name=f"ours-{placement}",
            argv=[str(project / ".venv/bin/bentoml"), *BENTOML_ARGS.split()],
            cwd=project,
            env={**bentoml_env, "OIP_PLACEMENT": placement},
        )
        for placement in ("inprocess", "runner")
    }
    for name, tuned in (("mlserver", False), ("mlserver-tuned", True)):
        repo = work / f"{name}-repo"
        setup_env.write_mlserver_repo(repo, work / "joblib", tuned=tuned)
        specs[name] = servers.ServerSpec(
            name=name,
            argv=[str(mlserver), "start", str(repo)],
            cwd=work / "mlserver-cwd",
            prepare=_mlserver_settings(repo, tuned),
            binary=False,  # MLServer 1.7.1 has no binary tensor data extension
        )
    kserve_args = f"--models-dir {work / 'joblib'} --port {{port}}"
    specs["kserve"] = servers.ServerSpec(
        name="kserve",
        argv=[sys.executable, str(BENCH_DIR / "kserve_server.py"), *kserve_args.split()],
        cwd=BENCH_DIR,
        grpc=False,  # KServe binds its gRPC server to every interface: left off
        binary=False,  # reads binary tensors, but answers them in JSON
    )
    ceiling_args = f"--models-dir {work / 'joblib'} --port {{port}}"  # gRPC's too: it predicts
    if any(SCENARIOS[s].grpc for s in args.scenarios):  # a second process: grpc_ceiling.py
        ceiling_args += " --grpc-port {grpc_port}"
    specs["ceiling"] = servers.ServerSpec(
        name="ceiling",
        argv=[sys.executable, str(BENCH_DIR / "ceiling.py"), *ceiling_args.split()],
        cwd=BENCH_DIR,
    )
    specs["bentoml-floor"] = servers.ServerSpec(  # bentoml serve + scikit-learn, nothing of ours
        name="bentoml-floor",
        argv=[str(project / ".venv/bin/bentoml"), *FLOOR_ARGS.split()],
        cwd=BENCH_DIR / "floor",
        env={k: v for k, v in bentoml_env.items() if not k.startswith("OIP_GRPC")},
        startup_only=True,
    )
    return specs


def _mlserver_settings(repo: Path, tuned: bool) -> Callable[[int, int], None]:
    def prepare(port: int, grpc_port: int) -> None:
        setup_env.write_mlserver_settings(repo, port, grpc_port, servers.free_port(), tuned=tuned)

    return prepare


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _on_sigterm)
    project = args.project_dir
    needed = ["train.py"]
    if any(s.startswith("ours") for s in args.servers):
        needed.append("service.py")
    missing = [name for name in needed if not (project / name).exists()]
    if missing:
        log(f"missing in {project}: {', '.join(missing)} (try --servers mlserver,ceiling)")
        return 2
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (args.out or BENCH_DIR / "results" / stamp).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="oip-bench-"))
    try:
        if args.skip_setup:
            mlserver = setup_env.MLSERVER_VENV / "bin/mlserver"
        else:
            setup_env.ensure_load_tools()
            mlserver = setup_env.ensure_mlserver_venv()
        tags = setup_env.train_and_export(project, work / "bentoml-home", work / "joblib")
        (work / "payloads").mkdir()
        concurrency = {
            s: args.large_concurrency if SCENARIOS[s].large else args.concurrency
            for s in args.scenarios
        }
        plan = measure.Plan(
            scenarios=args.scenarios,
            concurrency=concurrency,
            duration_s=args.duration,
            warmup_s=args.warmup,
            hey_duration_s=args.hey_duration,
            settle_s=args.settle,
            ready_timeout_s=args.ready_timeout,
            work=work / "payloads",
            logs=out / "logs",
            grpc_processes=args.grpc_processes,
            grpc_tool=args.grpc_tool,
        )
        data = setup_env.scenario_data()
        specs = server_specs(args, work, mlserver)
        n = len(args.servers)
        orders = [args.servers[r % n :] + args.servers[: r % n] for r in range(args.rounds)]
        meta = {
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            **setup_env.host_facts(),
            "rounds": args.rounds,
            "orders": orders,
            "servers": args.servers,
            "scenarios": args.scenarios,
            "concurrencies": args.concurrency,
            "large_concurrencies": args.large_concurrency,
            "scenario_concurrencies": concurrency,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "hey_duration_s": args.hey_duration,
            "grpc_processes": args.grpc_processes,
            "grpc_tool": args.grpc_tool,
            "model_tags": tags,
        }
        cell_s = args.warmup + args.duration + args.hey_duration * 1.3
        grpc_cell_s = args.warmup + args.duration + 3  # + spawn, connect, preflight
        # hey's 100-request floor makes slow large cells longer (forest JSON at c=1: ~+15 s)
        per_launch = sum(
            len(c) * (grpc_cell_s if SCENARIOS[s].grpc else cell_s + 5 * SCENARIOS[s].large)
            for s, c in concurrency.items()
        )
        minutes = args.rounds * n * (per_launch + 15) / 60
        log(f"about {minutes:.0f} min of load; results in {out}")
        launches: list[dict[str, Any]] = []
        cells: list[dict[str, Any]] = []
        for rnd, order in enumerate(orders, start=1):
            log(f"round {rnd}/{args.rounds}: {' → '.join(order)}")
            for name in order:
                launch, new_cells = measure.measure_server(plan, specs[name], rnd, data)
                launches.append(launch)
                cells.extend(new_cells)
                raw = {"meta": meta, "launches": launches, "cells": cells}
                (out / "raw.json").write_text(json.dumps(raw, indent=1))
        text = report.markdown(meta, cells, launches, charts.write(meta, cells, launches, out))
        (out / "results.md").write_text(text)
        print(text)
        log(f"wrote {out / 'results.md'} and {out / 'raw.json'}")
        return 0
    except KeyboardInterrupt:
        log(f"interrupted; partial raw results (if any) are in {out}")
        return 130
    finally:
        if args.keep_work:
            log(f"kept work dir {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
