"""Measuring one launch of one server: start-up, idle memory, every load cell."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import load
import numpy as np
import servers
import setup_env
from setup_env import SCENARIOS, log


@dataclass(frozen=True)
class Plan:
    scenarios: list[str]
    concurrency: dict[str, list[int]]  # per scenario
    duration_s: float
    warmup_s: float
    hey_duration_s: float
    settle_s: float
    ready_timeout_s: float
    work: Path  # payloads and wrk scripts go here
    logs: Path  # one server log per launch
    grpc_processes: int | None = None  # grpc_load processes; None: min(streams, CPUs)
    grpc_tool: str = "h2load"  # or "grpc_load" (bench/grpc_load.py)


# hey prints a p99 from 100 requests on; small cases keep a margin, large ones (tens of ms each)
# cannot afford it.
HEY_MIN_REQUESTS = 200
HEY_MIN_REQUESTS_LARGE = 100


def _predictions(output: dict[str, Any], raw: bytes) -> list[Any] | None:
    """The output's values, from `data` or its binary bytes; None if they cannot be read."""
    if "data" in output:
        return list(np.asarray(output["data"]).ravel().tolist())
    dtype = setup_env.DTYPES.get(output.get("datatype", ""))
    return None if dtype is None else list(np.frombuffer(raw, dtype=dtype).tolist())


def preflight(
    url: str, body: bytes, headers: dict[str, str], rows: int, binary: bool
) -> tuple[str | None, list[Any] | None]:
    """(None, predictions) if the server answers 200 with `rows` predictions (in a binary
    response when `binary`), else (what went wrong, None)."""
    try:
        status, resp_headers, resp = servers.http_post(url, body, headers)
    except OSError as err:
        return f"preflight request failed: {err}", None
    if status != 200:
        return f"preflight HTTP {status}: {resp[:300]!r}", None
    length = resp_headers.get("Inference-Header-Content-Length")
    if binary and length is None:
        kind = resp_headers.get("Content-Type")
        return f"preflight: no Inference-Header-Content-Length in a {kind} response", None
    try:
        size = len(resp) if length is None else int(length)
        output = json.loads(resp[:size])["outputs"][0]
        if binary:
            raw_size = output["parameters"]["binary_data_size"]
            if output["shape"] != [rows] or raw_size != len(resp) - size:
                return f"preflight: binary output {output} in a {len(resp)}-byte body", None
            got = rows
        else:
            got = output["shape"][0] if output.get("shape") else len(output["data"])
    except (ValueError, KeyError, IndexError, TypeError):
        return f"preflight: not a V2 response: {resp[:300]!r}", None
    if got != rows:
        return f"preflight: {got} predictions for {rows} rows", None
    return None, _predictions(output, resp[size:])


def _cells_for(
    plan: Plan,
    rnd: int,
    server: str,
    scenario: str,
    base_url: str,
    matrix: setup_env.Matrix,
    seen: dict[str, tuple[str, list[Any]]],
) -> list[dict[str, Any]]:
    spec = SCENARIOS[scenario]
    url = f"{base_url}/v2/models/{spec.model}/infer"
    # Our server names its input in the metadata; the others accept any name.
    name = servers.model_input_name(base_url, spec.model)
    body, headers = setup_env.payload(name, spec, matrix)
    body_path = plan.work / f"{server}-{scenario}.{'bin' if spec.binary else 'json'}"
    body_path.write_bytes(body)
    script = load.write_wrk_script(body_path, headers, body_path.with_suffix(".lua"))
    cell = {"round": rnd, "server": server, "scenario": scenario, "input_name": name}
    cell["body_bytes"] = len(body)
    concurrency = plan.concurrency[scenario]
    problem, predictions = preflight(url, body, headers, spec.rows, spec.binary)
    if problem:
        log(f"  {server} {scenario}: {problem}")
        return [{**cell, "connections": c, "error": problem} for c in concurrency]
    # Both encodings of a case send the same numbers: they must get the same predictions.
    key = f"{spec.model}/{spec.matrix}"
    if predictions is not None and key in seen and seen[key][1] != predictions:
        other = seen[key][0]
        cell["mismatch"] = f"predictions differ from {other}'s on the same data"
        log(f"  {server} {scenario}: {cell['mismatch']}")
    elif predictions is not None:
        seen.setdefault(key, (scenario, predictions))
    hey_min = HEY_MIN_REQUESTS_LARGE if spec.large else HEY_MIN_REQUESTS
    cells = []
    for conns in concurrency:
        load.run_wrk(url, script, conns, plan.warmup_s)
        wrk = load.run_wrk(url, script, conns, plan.duration_s)
        # As many requests as wrk managed in the hey window, and enough for hey's p99; a
        # multiple of the connections, as hey gives each worker n // c requests.
        count = max(hey_min, round((wrk.rps or 0) * plan.hey_duration_s))
        count = -(-count // conns) * conns
        nominal_s = max(plan.hey_duration_s, count / max(wrk.rps or 0, 1.0))
        hey_timeout = nominal_s * 4 + 30
        hey = load.run_hey(url, body_path, headers, conns, count, timeout_s=hey_timeout)
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


def _grpc_cells_for(
    plan: Plan,
    rnd: int,
    spec: servers.ServerSpec,
    scenario: str,
    target: str,
    matrix: setup_env.Matrix,
    seen: dict[str, tuple[str, list[Any]]],
) -> list[dict[str, Any]]:
    """A gRPC scenario: preflight (one prediction per row; the same predictions as over HTTP;
    it writes h2load's body), then h2load or grpc_load.py at each concurrency (its warm-up
    included)."""
    sc = SCENARIOS[scenario]
    data_path = plan.work / f"{sc.matrix}.npy"
    if not data_path.exists():
        np.save(data_path, matrix)
    cell: dict[str, Any] = {"round": rnd, "server": spec.name, "scenario": scenario}
    concurrency = plan.concurrency[scenario]
    body = plan.work / f"{spec.name}-{scenario}.grpc"
    problem, answer = load.grpc_preflight(target, sc.model, data_path, sc.datatype, body)
    if not problem and (answer["shape"][:1] != [sc.rows] or len(answer["data"]) != sc.rows):
        problem = f"preflight: output shape {answer['shape']} for {sc.rows} rows"
    if problem:
        log(f"  {spec.name} {scenario}: {problem}")
        return [{**cell, "connections": c, "error": problem} for c in concurrency]
    cell |= {"input_name": answer["input_name"], "body_bytes": answer["request_bytes"]}
    key = f"{sc.model}/{sc.matrix}"
    if spec.grpc_predicts and key in seen and seen[key][1] != answer["data"]:
        cell["mismatch"] = f"gRPC predictions differ from {seen[key][0]}'s on the same data"
        log(f"  {spec.name} {scenario}: {cell['mismatch']}")
    cells = []
    for conns in concurrency:
        if plan.grpc_tool == "h2load":
            res = load.run_h2load(target, body, conns, plan.warmup_s, plan.duration_s)
        else:
            res = load.run_grpc(
                target,
                sc.model,
                data_path,
                sc.datatype,
                answer["input_name"],
                conns,
                plan.warmup_s,
                plan.duration_s,
                plan.grpc_processes,
            )
        loadavg = os.getloadavg()[0]
        cells.append({**cell, "connections": conns, "grpc": res.to_dict(), "loadavg_1m": loadavg})
        log(
            f"  {spec.name} {scenario} c={conns}: {res.tool} {res.rps or 0:.0f} req/s "
            f"p50 {res.p50_ms or 0:.2f} p99 {res.p99_ms or 0:.2f} ms "
            f"({res.processes} processes) | non-OK {res.non_2xx}"
            + (f" {res.errors_by_code}" if res.errors_by_code else "")
            + (f" | {res.error}" if res.error else "")
        )
    return cells


UNSUPPORTED = "n/a: no binary tensor data extension"
NO_GRPC = "n/a: no gRPC server"


def measure_server(
    plan: Plan, spec: servers.ServerSpec, rnd: int, data: dict[str, setup_env.Matrix]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Launch `spec`, measure every scenario x concurrency, stop it; never raises."""
    launch: dict[str, Any] = {"round": rnd, "server": spec.name}
    cells: list[dict[str, Any]] = []
    scenarios = [] if spec.startup_only else plan.scenarios
    # Binary scenarios on a server without the extension: recorded as n/a, not run.
    why = {s: UNSUPPORTED for s in scenarios if SCENARIOS[s].binary and not spec.binary}
    why |= {s: NO_GRPC for s in scenarios if SCENARIOS[s].grpc and not spec.grpc}
    unsupported = list(why)
    cells += [
        {"round": rnd, "server": spec.name, "scenario": s, "connections": c}
        | {"unsupported": why[s]}
        for s in unsupported
        for c in plan.concurrency[s]
    ]
    seen: dict[str, tuple[str, list[Any]]] = {}
    log_path = plan.logs / f"round{rnd}-{spec.name}.log"
    try:
        with servers.launched(spec, log_path, plan.ready_timeout_s) as srv:
            launch["launch_to_ready_s"] = srv.launch_to_ready_s
            log(f"  {spec.name}: ready in {srv.launch_to_ready_s:.2f} s")
            time.sleep(plan.settle_s)
            launch["idle"] = servers.tree_memory_mib(srv.proc.pid)
            # HTTP first: the gRPC preflight compares its predictions with HTTP's
            ordered = sorted(scenarios, key=lambda s: SCENARIOS[s].grpc)
            for scenario in ordered:
                if scenario in unsupported:
                    continue
                matrix = data[SCENARIOS[scenario].matrix]
                if SCENARIOS[scenario].grpc:
                    target = srv.grpc_target
                    cells += _grpc_cells_for(plan, rnd, spec, scenario, target, matrix, seen)
                else:
                    url = srv.base_url
                    cells += _cells_for(plan, rnd, spec.name, scenario, url, matrix, seen)
            launch["after_load"] = servers.tree_memory_mib(srv.proc.pid)
    except (RuntimeError, TimeoutError, OSError) as err:
        launch["error"] = f"{type(err).__name__}: {err}"
        log(f"  {spec.name}: {launch['error']} (log: {log_path})")
        done = {(c["scenario"], c["connections"]) for c in cells}
        cells += [
            {"round": rnd, "server": spec.name, "scenario": s, "connections": c}
            | {"error": launch["error"]}
            for s in scenarios
            for c in plan.concurrency[s]
            if (s, c) not in done
        ]
    time.sleep(1.0)  # let the stopped tree's CPU and sockets settle before the next server
    return launch, cells
