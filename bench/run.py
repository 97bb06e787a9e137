"""Side-by-side benchmark: our BentoML V2 server vs MLServer 1.7.1 vs a bare "ceiling".

One server at a time, interleaved over rounds; wrk measures, hey cross-checks.
Run from anywhere with the project's venv:  .venv/bin/python bench/run.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

import load
import report
import servers
import setup_env
from setup_env import BENCH_DIR, SCENARIOS, log

ALL_SERVERS = ("ours-inprocess", "ours-runner", "mlserver", "ceiling")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 round, 3 s runs, 1 s warm-up, 2 s hey, c=1,16",
    )
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--duration", type=float, default=10.0, help="measured wrk run, s")
    p.add_argument(
        "--warmup", type=float, default=3.0, help="wrk warm-up before each cell, s"
    )
    p.add_argument(
        "--hey-duration", type=float, default=5.0, help="hey cross-check run, s"
    )
    p.add_argument(
        "--concurrency", default="1,16,64", help="comma-separated connections"
    )
    p.add_argument("--servers", default=",".join(ALL_SERVERS))
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument(
        "--project-dir",
        type=Path,
        default=BENCH_DIR.parent,
        help="holds .venv, train.py and service.py",
    )
    p.add_argument(
        "--ready-timeout", type=float, default=180.0, help="launch → ready limit, s"
    )
    p.add_argument(
        "--settle", type=float, default=2.0, help="idle pause before RSS sample, s"
    )
    p.add_argument(
        "--out", type=Path, help="results dir (default bench/results/<timestamp>)"
    )
    p.add_argument(
        "--skip-setup", action="store_true", help="do not apt-get / pip install"
    )
    p.add_argument(
        "--keep-work", action="store_true", help="keep the temporary work dir"
    )
    args = p.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup, args.hey_duration = 1, 3.0, 1.0, 2.0
        if args.concurrency == "1,16,64":
            args.concurrency = "1,16"
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.servers = [s for s in args.servers.split(",") if s]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.servers) - set(ALL_SERVERS) | set(args.scenarios) - set(
        SCENARIOS
    )
    if unknown:
        p.error(f"unknown server or scenario: {', '.join(sorted(unknown))}")
    args.project_dir = args.project_dir.resolve()
    return args


def server_specs(
    args: argparse.Namespace, work: Path, mlserver: Path
) -> dict[str, servers.ServerSpec]:
    project = args.project_dir
    bentoml_env = {
        "BENTOML_HOME": str(work / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "True",
        "OIP_MODELS": "iris,forest",
    }
    repo = work / "mlserver-repo"

    def prepare_mlserver(port: int) -> None:
        setup_env.write_mlserver_settings(
            repo, port, servers.free_port(), servers.free_port()
        )

    (work / "mlserver-cwd").mkdir(exist_ok=True)
    specs = {
        f"ours-{placement}": servers.ServerSpec(
            name=f"ours-{placement}",
            argv=[
                str(project / ".venv/bin/bentoml"),
                "serve",
                "service:Gateway",
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
            ],
            cwd=project,
            env={**bentoml_env, "OIP_PLACEMENT": placement},
        )
        for placement in ("inprocess", "runner")
    }
    specs["mlserver"] = servers.ServerSpec(
        name="mlserver",
        argv=[str(mlserver), "start", str(repo)],
        cwd=work / "mlserver-cwd",
        prepare=prepare_mlserver,
    )
    specs["ceiling"] = servers.ServerSpec(
        name="ceiling",
        argv=[
            sys.executable,
            str(BENCH_DIR / "ceiling.py"),
            "--models-dir",
            str(work / "joblib"),
            "--port",
            "{port}",
        ],
        cwd=BENCH_DIR,
    )
    return specs


def _preflight(url: str, body: bytes, rows: int) -> str | None:
    """None if the server answers 200 with `rows` predictions, else what went wrong."""
    try:
        status, resp = servers.http_post_json(url, body)
    except OSError as err:
        return f"preflight request failed: {err}"
    if status != 200:
        return f"preflight HTTP {status}: {resp[:300]!r}"
    try:
        output = json.loads(resp)["outputs"][0]
        got = output["shape"][0] if output.get("shape") else len(output["data"])
    except (ValueError, KeyError, IndexError, TypeError):
        return f"preflight: not a V2 response: {resp[:300]!r}"
    return None if got == rows else f"preflight: {got} predictions for {rows} rows"


def measure_server(
    args: argparse.Namespace,
    spec: servers.ServerSpec,
    rnd: int,
    work: Path,
    out: Path,
    data: dict[str, list[list[float]]],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    launch: dict[str, Any] = {"round": rnd, "server": spec.name}
    cells: list[dict[str, Any]] = []

    def fail_all(reason: str, scenarios: list[str]) -> None:
        for scenario in scenarios:
            for conns in args.concurrency:
                cells.append(
                    {
                        "round": rnd,
                        "server": spec.name,
                        "scenario": scenario,
                        "connections": conns,
                        "error": reason,
                    }
                )

    log_path = out / "logs" / f"round{rnd}-{spec.name}.log"
    try:
        with servers.launched(spec, log_path, args.ready_timeout) as srv:
            launch["launch_to_ready_s"] = srv.launch_to_ready_s
            log(f"  {spec.name}: ready in {srv.launch_to_ready_s:.2f} s")
            time.sleep(args.settle)
            launch["idle"] = servers.tree_memory_mib(srv.proc.pid)
            for scenario in args.scenarios:
                model, rows, _ = SCENARIOS[scenario]
                url = f"{srv.base_url}/v2/models/{model}/infer"
                name = servers.model_input_name(srv.base_url, model)
                body = setup_env.payload_bytes(name, data[scenario])
                body_path = work / "payloads" / f"{spec.name}-{scenario}.json"
                body_path.write_bytes(body)
                script = load.write_wrk_script(body_path, body_path.with_suffix(".lua"))
                problem = _preflight(url, body, rows)
                if problem:
                    log(f"  {spec.name} {scenario}: {problem}")
                    fail_all(problem, [scenario])
                    continue
                for conns in args.concurrency:
                    load.run_wrk(url, script, conns, args.warmup)
                    wrk = load.run_wrk(url, script, conns, args.duration)
                    hey = load.run_hey(url, body_path, conns, args.hey_duration)
                    cells.append(
                        {
                            "round": rnd,
                            "server": spec.name,
                            "scenario": scenario,
                            "connections": conns,
                            "input_name": name,
                            "wrk": wrk.to_dict(),
                            "hey": hey.to_dict(),
                        }
                    )
                    log(
                        f"  {spec.name} {scenario} c={conns}: wrk {wrk.rps or 0:.0f} req/s "
                        f"p99 {wrk.p99_ms or 0:.2f} ms | hey {hey.rps or 0:.0f} req/s "
                        f"p99 {hey.p99_ms or 0:.2f} ms | non-2xx {wrk.non_2xx + hey.non_2xx}"
                    )
            launch["after_load"] = servers.tree_memory_mib(srv.proc.pid)
    except (RuntimeError, TimeoutError, OSError) as err:
        launch["error"] = f"{type(err).__name__}: {err}"
        log(f"  {spec.name}: {launch['error']} (log: {log_path})")
        done = {c["scenario"] for c in cells}
        fail_all(launch["error"], [s for s in args.scenarios if s not in done])
    return launch, cells


def host_meta(
    args: argparse.Namespace, orders: list[list[str]], tags: dict[str, str]
) -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next(
            (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
            cpu,
        )
    mls_python = str(setup_env.MLSERVER_VENV / "bin/python")
    probe = "import importlib.metadata as m; print(m.version('mlserver'))"
    mls = subprocess.run(
        [mls_python, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    tools = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version}; ", "wrk", "hey"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    versions = (
        f"bentoml {importlib.metadata.version('bentoml')}, mlserver {mls.stdout.strip() or '?'}, "
        f"scikit-learn {importlib.metadata.version('scikit-learn')}, {tools.stdout.strip()}"
    )
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "rounds": args.rounds,
        "orders": orders,
        "servers": args.servers,
        "scenarios": args.scenarios,
        "concurrencies": args.concurrency,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "hey_duration_s": args.hey_duration,
        "versions": versions,
        "model_tags": tags,
    }


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _on_sigterm)
    project = args.project_dir
    needs = ["train.py"] + (
        ["service.py"] if any(s.startswith("ours") for s in args.servers) else []
    )
    missing = [n for n in needs if not (project / n).exists()]
    if missing:
        log(
            f"missing in {project}: {', '.join(missing)} (try --servers mlserver,ceiling)"
        )
        return 2
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (args.out or BENCH_DIR / "results" / stamp).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="oip-bench-"))
    try:
        if not args.skip_setup:
            setup_env.ensure_load_tools()
        mlserver = (
            setup_env.ensure_mlserver_venv()
            if not args.skip_setup
            else (setup_env.MLSERVER_VENV / "bin/mlserver")
        )
        (work / "payloads").mkdir()
        tags = setup_env.train_and_export(
            project, work / "bentoml-home", work / "joblib"
        )
        setup_env.write_mlserver_repo(work / "mlserver-repo", work / "joblib")
        data = setup_env.scenario_data()
        specs = server_specs(args, work, mlserver)
        n = len(args.servers)
        orders = [
            args.servers[r % n :] + args.servers[: r % n] for r in range(args.rounds)
        ]
        meta = host_meta(args, orders, tags)
        per_server = (
            len(args.scenarios)
            * len(args.concurrency)
            * (args.warmup + args.duration + args.hey_duration)
        )
        log(
            f"~{args.rounds * n * (per_server + 15) / 60:.0f} min of load; results in {out}"
        )
        launches: list[dict[str, Any]] = []
        cells: list[dict[str, Any]] = []
        for rnd, order in enumerate(orders, start=1):
            log(f"round {rnd}/{args.rounds}: {' → '.join(order)}")
            for name in order:
                launch, new_cells = measure_server(
                    args, specs[name], rnd, work, out, data
                )
                launches.append(launch)
                cells.extend(new_cells)
                raw = {"meta": meta, "launches": launches, "cells": cells}
                (out / "raw.json").write_text(json.dumps(raw, indent=1))
        text = report.markdown(meta, cells, launches)
        (out / "results.md").write_text(text)
        print(text)
        log(f"wrote {out / 'results.md'} and {out / 'raw.json'}")
        return 0
    except KeyboardInterrupt:
        log("interrupted; partial raw results (if any) are in " + str(out))
        return 130
    finally:
        if args.keep_work:
            log(f"kept work dir {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
