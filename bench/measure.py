"""Measuring one launch of one server: start-up, idle memory, every load cell."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import load
import servers
import setup_env
from setup_env import SCENARIOS, log


@dataclass(frozen=True)
class Plan:
    scenarios: list[str]
    concurrency: list[int]
    duration_s: float
    warmup_s: float
    hey_duration_s: float
    settle_s: float
    ready_timeout_s: float
    work: Path  # payloads and wrk scripts go here
    logs: Path  # one server log per launch


def preflight(url: str, body: bytes, rows: int) -> str | None:
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


def _cells_for(
    plan: Plan, rnd: int, server: str, scenario: str, base_url: str, data: list[list[float]]
) -> list[dict[str, Any]]:
    model, rows, _ = SCENARIOS[scenario]
    url = f"{base_url}/v2/models/{model}/infer"
    # Our server names its input in the metadata; the others accept any name.
    name = servers.model_input_name(base_url, model)
    body = setup_env.payload_bytes(name, data)
    body_path = plan.work / f"{server}-{scenario}.json"
    body_path.write_bytes(body)
    script = load.write_wrk_script(body_path, body_path.with_suffix(".lua"))
    cell = {"round": rnd, "server": server, "scenario": scenario, "input_name": name}
    problem = preflight(url, body, rows)
    if problem:
        log(f"  {server} {scenario}: {problem}")
        return [{**cell, "connections": c, "error": problem} for c in plan.concurrency]
    cells = []
    for conns in plan.concurrency:
        load.run_wrk(url, script, conns, plan.warmup_s)
        wrk = load.run_wrk(url, script, conns, plan.duration_s)
        # As many requests as wrk managed in the hey window, and >= 200 so p99 exists.
        count = max(200, round((wrk.rps or 0) * plan.hey_duration_s))
        hey = load.run_hey(url, body_path, conns, count, timeout_s=plan.hey_duration_s * 4 + 30)
        loadavg = os.getloadavg()[0]  # 1-min load average after the cell: a noise hint
        results = {"wrk": wrk.to_dict(), "hey": hey.to_dict(), "loadavg_1m": loadavg}
        cells.append({**cell, "connections": conns, **results})
        log(
            f"  {server} {scenario} c={conns}: wrk {wrk.rps or 0:.0f} req/s "
            f"p50 {wrk.p50_ms or 0:.2f} p99 {wrk.p99_ms or 0:.2f} ms | hey {hey.rps or 0:.0f} "
            f"req/s p50 {hey.p50_ms or 0:.2f} p99 {hey.p99_ms or 0:.2f} ms | "
            f"non-2xx {wrk.non_2xx + hey.non_2xx}, sock err {wrk.socket_errors + hey.socket_errors}"
        )
    return cells


def measure_server(
    plan: Plan, spec: servers.ServerSpec, rnd: int, data: dict[str, list[list[float]]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Launch `spec`, measure every scenario x concurrency, stop it; never raises."""
    launch: dict[str, Any] = {"round": rnd, "server": spec.name}
    cells: list[dict[str, Any]] = []
    log_path = plan.logs / f"round{rnd}-{spec.name}.log"
    try:
        with servers.launched(spec, log_path, plan.ready_timeout_s) as srv:
            launch["launch_to_ready_s"] = srv.launch_to_ready_s
            log(f"  {spec.name}: ready in {srv.launch_to_ready_s:.2f} s")
            time.sleep(plan.settle_s)
            launch["idle"] = servers.tree_memory_mib(srv.proc.pid)
            for scenario in plan.scenarios:
                cells += _cells_for(plan, rnd, spec.name, scenario, srv.base_url, data[scenario])
            launch["after_load"] = servers.tree_memory_mib(srv.proc.pid)
    except (RuntimeError, TimeoutError, OSError) as err:
        launch["error"] = f"{type(err).__name__}: {err}"
        log(f"  {spec.name}: {launch['error']} (log: {log_path})")
        done = {(c["scenario"], c["connections"]) for c in cells}
        cells += [
            {"round": rnd, "server": spec.name, "scenario": s, "connections": c}
            | {"error": launch["error"]}
            for s in plan.scenarios
            for c in plan.concurrency
            if (s, c) not in done
        ]
    time.sleep(1.0)  # let the stopped tree's CPU and sockets settle before the next server
    return launch, cells
