"""Medians over rounds, and the Markdown report."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

PEERS = ("mlserver", "mlserver-tuned", "kserve")
"""Other V2 servers; each of our cells is compared with the best of them in that case."""
CEILING = "ceiling"


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or not den else num / den


def aggregate_cells(
    cells: list[dict[str, Any]],
) -> dict[tuple[str, int, str], dict[str, Any]]:
    """(scenario, connections, server) -> medians over rounds, and summed error counts."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for cell in cells:
        key = (cell["scenario"], cell["connections"], cell["server"])
        groups.setdefault(key, []).append(cell)
    out: dict[tuple[str, int, str], dict[str, Any]] = {}
    for key, runs in groups.items():
        wrk = [r["wrk"] for r in runs if r.get("wrk")]
        hey = [r["hey"] for r in runs if r.get("hey")]
        grpc = [r["grpc"] for r in runs if r.get("grpc")]  # gRPC cells: grpc_load, no wrk/hey
        out[key] = {
            "rounds": len(runs),
            "unsupported": all(r.get("unsupported") for r in runs)
            and str(runs[0]["unsupported"]).removeprefix("n/a: "),
            "body_bytes": _median(r.get("body_bytes") for r in runs),
            "rps": _median(w["rps"] for w in wrk + grpc),
            "rps_all": [w["rps"] for w in wrk + grpc],
            "grpc_p50": _median(g["p50_ms"] for g in grpc),
            "grpc_p99": _median(g["p99_ms"] for g in grpc),
            "wrk_p50": _median(w["p50_ms"] for w in wrk),
            "wrk_p99": _median(w["p99_ms"] for w in wrk),
            "hey_rps": _median(h["rps"] for h in hey),
            "hey_p50": _median(h["p50_ms"] for h in hey),
            "hey_p99": _median(h["p99_ms"] for h in hey),
            "non_2xx": sum(x["non_2xx"] for x in wrk + hey + grpc),
            "socket_errors": sum(x["socket_errors"] for x in wrk + hey),
            "failures": [r["error"] for r in runs if r.get("error")]
            + [r["mismatch"] for r in runs if r.get("mismatch")]
            + [x["error"] for x in wrk + hey + grpc if x.get("error")],
        }
    return out


def best_peer(
    agg: dict[tuple[str, int, str], dict[str, Any]], scenario: str, conns: int
) -> tuple[str, dict[str, Any]] | None:
    """The peer with the highest req/s in this case (a fair comparison: the best-configured
    peer for each payload and concurrency, not one fixed baseline)."""
    cells = [
        (p, c)
        for p in PEERS
        if (c := agg.get((scenario, conns, p))) and not c["unsupported"] and c["rps"]
    ]
    return max(cells, key=lambda pc: pc[1]["rps"]) if cells else None


def aggregate_launches(launches: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for launch in launches:
        groups.setdefault(launch["server"], []).append(launch)
    out: dict[str, dict[str, Any]] = {}
    for server, runs in groups.items():
        ok = [r for r in runs if not r.get("error")]
        out[server] = {
            "launches": len(runs),
            "ready_s": _median(r["launch_to_ready_s"] for r in ok),
            "idle_rss": _median(r["idle"]["rss_mib"] for r in ok),
            "idle_pss": _median(r["idle"]["pss_mib"] for r in ok),
            "processes": _median(r["idle"]["processes"] for r in ok),
            "loaded_rss": _median(r["after_load"]["rss_mib"] for r in ok if r.get("after_load")),
            "errors": [r["error"] for r in runs if r.get("error")],
        }
    return out


def _cell_row(
    conns: int,
    server: str,
    agg: dict[str, Any],
    base: dict[str, Any] | None,
    ceil: dict[str, Any] | None,
) -> str:
    if agg["unsupported"]:
        cols = [str(conns), server, *["n/a"] * 6, f"n/a ({agg['unsupported']})", *["n/a"] * 3]
        return "| " + " | ".join(cols) + " |"
    base = base or {}
    ceil = ceil or {}
    p99_vs = "/".join(_fmt(_ratio(agg[k], base.get(k))) for k in ("wrk_p99", "hey_p99"))
    errors = f"{agg['non_2xx']} / {agg['socket_errors']}"
    if agg["failures"]:
        errors += " ⚠"
    cols = [
        str(conns),
        server,
        _fmt(agg["rps"], 0),
        _fmt(agg["wrk_p50"]),
        _fmt(agg["wrk_p99"]),
        _fmt(agg["hey_rps"], 0),
        _fmt(agg["hey_p50"]),
        _fmt(agg["hey_p99"]),
        errors,
        _fmt(_ratio(agg["rps"], base.get("rps"))),
        _fmt(_ratio(agg["rps"], ceil.get("rps"))),
        p99_vs,
    ]
    return "| " + " | ".join(cols) + " |"


def _grpc_row(
    conns: int,
    server: str,
    agg: dict[str, Any],
    base: dict[str, Any] | None,
    ceil: dict[str, Any] | None,
) -> str:
    if agg["unsupported"]:
        cols = [str(conns), server, *["n/a"] * 3, f"n/a ({agg['unsupported']})", *["n/a"] * 3]
        return "| " + " | ".join(cols) + " |"
    base = base or {}
    ceil = ceil or {}
    errors = str(agg["non_2xx"]) + (" ⚠" if agg["failures"] else "")
    cols = [
        str(conns),
        server,
        _fmt(agg["rps"], 0),
        _fmt(agg["grpc_p50"]),
        _fmt(agg["grpc_p99"]),
        errors,
        _fmt(_ratio(agg["rps"], base.get("rps"))),
        _fmt(_ratio(agg["rps"], ceil.get("rps"))),
        _fmt(_ratio(agg["grpc_p99"], base.get("grpc_p99"))),
    ]
    return "| " + " | ".join(cols) + " |"


GRPC_NOTE = (
    "gRPC: unary `ModelInfer`, the same matrix as `raw_input_contents` (little-endian), "
    "`predict` requested; load from h2load (nghttp2-client, one thread; `streams` = "
    "connections x streams each: 64 = 8 x 8, 16 = 8 x 2), the framed request checked by a real "
    "gRPC call first and by one `curl --http2-prior-knowledge` call for `grpc-status: 0` after "
    "each run (h2load counts a gRPC error as HTTP 200); p50/p99 from its per-request log. "
    "The gRPC `ceiling` is bench/grpc_ceiling.py: bare grpc.aio doing the same work (parse, "
    "`np.frombuffer`, `predict` inline, serialise the answer), nothing else; `÷ ceil` is the "
    "share of it. No cross-check tool: one req/s and p99 per cell."
)
GRPC_COLUMNS = (
    "streams", "server", "req/s", "p50", "p99", "non-OK", "req/s ÷ peer", "req/s ÷ ceil",
    "p99 ÷ peer",
)  # fmt: skip
# The product owner's gRPC target: iris 1x4 at 64 streams.
TARGET = ("iris-1x4-grpc", 64, 2.0, 0.5)  # scenario, streams, min req/s ÷ peer, max p99 ÷ peer


def _targets(agg: dict[tuple[str, int, str], dict[str, Any]], servers: list[str]) -> list[str]:
    scenario, conns, min_rps, max_p99 = TARGET
    peer = best_peer(agg, scenario, conns)
    base = peer[1] if peer else None
    ceiling = agg.get((scenario, conns, "ceiling"))
    lines = []
    for server in servers:
        cell = agg.get((scenario, conns, server))
        if not server.startswith("ours") or cell is None:
            continue
        rest = agg.get((scenario.removesuffix("-grpc"), conns, server))  # same matrix, JSON
        side = [
            f"gRPC {_fmt(cell['rps'], 0)} req/s",
            f"÷ its REST {_fmt(_ratio(cell['rps'], (rest or {}).get('rps')))}",
            f"÷ gRPC ceiling {_fmt(_ratio(cell['rps'], (ceiling or {}).get('rps')))}",
        ]
        lines.append(f"- {server}: " + ", ".join(side))
        if base is None:
            continue
        rps = _ratio(cell["rps"], base["rps"])
        p99 = _ratio(cell["grpc_p99"], base["grpc_p99"])
        met = rps is not None and p99 is not None and rps >= min_rps and p99 <= max_p99
        lines.append(
            f"  - req/s ÷ peer {_fmt(rps)} (target ≥ {min_rps:g}), p99 ÷ peer "
            f"{_fmt(p99)} (target ≤ {max_p99:g}): **{'met' if met else 'not met'}**"
        )
    if not lines:
        return []
    best = peer[0] if peer else "none"
    head = f"## Target: {scenario} at {conns} streams: vs our REST, the ceiling, {best}'s gRPC"
    return ["", head, "", *lines]


LEGEND = (
    "Latencies in ms. `non-2xx / sock err` sums over all wrk and hey runs; ⚠ marks a "
    "failed run (see raw.json). `÷ peer`, `÷ ceil` are ratios of wrk req/s to the best peer's "
    "(the peer with the most req/s in that row's case, named under each table: MLServer with "
    "its defaults, MLServer tuned as its own benchmark runs it, KServe's ModelServer) and the "
    "ceiling's; `p99 ÷ peer` is wrk/hey p99 over that peer's."
)
CELL_COLUMNS = (
    "conns", "server", "req/s (wrk)", "p50 wrk", "p99 wrk", "req/s (hey)", "p50 hey",
    "p99 hey", "non-2xx / sock err", "req/s ÷ peer", "req/s ÷ ceil", "p99 ÷ peer (wrk/hey)",
)  # fmt: skip
MEMORY_NOTE = (
    "Launch → ready: from process start to the first 200 on /v2/health/ready (polled "
    "every 50 ms). Idle: whole process tree after ready plus a settle pause, before any "
    "request. RSS sums double-count shared pages; PSS does not. `bentoml-floor` "
    "(bench/floor/service.py) is the least BentoML service loading the same models: "
    "`bentoml serve` and scikit-learn's own start-up, nothing of this project."
)
MEMORY_COLUMNS = (
    "server", "launch → ready (s)", "idle RSS (MiB)", "idle PSS (MiB)", "processes",
    "RSS after load (MiB)",
)  # fmt: skip


def _table_head(columns: tuple[str, ...]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def _header(meta: dict[str, Any]) -> list[str]:
    orders = "; ".join(" → ".join(o) for o in meta["orders"])
    host = f"{meta['nproc']} CPUs ({meta['cpu_model']}), kernel {meta['kernel']}"
    cell = (
        f"wrk warm-up {meta['warmup_s']:g} s, wrk {meta['duration_s']:g} s "
        f"(threads = min(2, connections)), then hey {meta['hey_duration_s']:g} s"
    )
    lines = [
        "# Model-server benchmark: ours vs MLServer, KServe and the ceiling",
        "",
        f"- Date: {meta['date']}; commit: {meta.get('commit', '?')}; host: {host}",
        f"- Rounds: {meta['rounds']}, interleaved, order rotated each round: {orders}",
        f"- Per cell: {cell}; medians over rounds",
    ]
    if any(s.endswith("-grpc") for s in meta["scenarios"]):
        tool = meta.get("grpc_tool", "grpc_load")
        extra = ""
        if tool == "grpc_load":
            extra = f", {meta.get('grpc_processes') or 'min(streams, CPUs)'} processes"
        lines.append(
            f"- Per gRPC cell: {tool} warm-up {meta['warmup_s']:g} s then "
            f"{meta['duration_s']:g} s measured on the same connections{extra}"
        )
    lines += [f"- Versions: {meta['versions']}", f"- Models: {meta['model_tags']}"]
    return [*lines, "", LEGEND]


ENCODING_NOTE = (
    "The same {shape} FP32 matrix (fixed seed) sent as JSON numbers (`data`, shortest "
    "float32 form) or as Triton binary tensor data (raw little-endian bytes after the JSON "
    "header, `binary_data_output: true`, so `predict` comes back binary too); `outputs` is "
    "`predict` only either way. Request body: JSON {json_bytes}, binary {binary_bytes} bytes. "
    "req/s and p99 are wrk's (p99 hey's after the slash); `binary ÷ JSON` is the ratio of wrk "
    "req/s. MLServer 1.7.1 has no binary tensor data extension: n/a."
)
ENCODING_COLUMNS = (
    "model", "conns", "server", "JSON req/s", "JSON p99 (wrk/hey)", "binary req/s",
    "binary p99 (wrk/hey)", "binary ÷ JSON",
)  # fmt: skip


def _pairs(meta: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(model, JSON scenario, binary scenario) for every model run in both encodings."""
    names = set(meta["scenarios"])
    pairs = []
    for name in meta["scenarios"]:
        if name.endswith("-json") and (binary := name.removesuffix("-json") + "-binary") in names:
            pairs.append((name.split("-", 1)[0], name, binary))
    return pairs


def _concurrencies(meta: dict[str, Any], scenario: str) -> list[int]:
    return list(meta.get("scenario_concurrencies", {}).get(scenario, meta["concurrencies"]))


def _encoding_section(
    meta: dict[str, Any], agg: dict[tuple[str, int, str], dict[str, Any]]
) -> list[str]:
    pairs = _pairs(meta)
    if not pairs:
        return []
    rows, summary = [], []
    for model, json_name, binary_name in pairs:
        for conns in _concurrencies(meta, json_name):
            for server in meta["servers"]:
                as_json = agg.get((json_name, conns, server))
                as_binary = agg.get((binary_name, conns, server))
                if as_json is None and as_binary is None:
                    continue
                j = as_json or {}
                b = {} if as_binary is None or as_binary["unsupported"] else as_binary
                ratio = _ratio(b.get("rps"), j.get("rps"))
                flags = " ⚠" if j.get("failures") or b.get("failures") else ""
                cols = [
                    model,
                    str(conns),
                    server,
                    _fmt(j.get("rps"), 1),
                    f"{_fmt(j.get('wrk_p99'), 1)} / {_fmt(j.get('hey_p99'), 1)}",
                    _fmt(b.get("rps"), 1),
                    f"{_fmt(b.get('wrk_p99'), 1)} / {_fmt(b.get('hey_p99'), 1)}",
                    ("n/a" if ratio is None else f"{ratio:.2f}x") + flags,
                ]
                rows.append("| " + " | ".join(cols) + " |")
                if server.startswith("ours") and ratio is not None:
                    summary.append(f"{server} {model} c={conns}: {ratio:.2f}x")
    sizes = {
        enc: next(
            (a["body_bytes"] for (s, _, _), a in agg.items() if s == name and a["body_bytes"]),
            None,
        )
        for enc, name in (("json", pairs[0][1]), ("binary", pairs[0][2]))
    }
    note = ENCODING_NOTE.format(
        shape=pairs[0][1].split("-")[1],  # e.g. linear-8192x20-json
        json_bytes=_fmt(sizes["json"], 0),
        binary_bytes=_fmt(sizes["binary"], 0),
    )
    lines = ["", "## Large payloads: JSON vs binary", "", note, "", *_table_head(ENCODING_COLUMNS)]
    lines += rows
    if summary:
        lines += ["", "Our server, binary ÷ JSON req/s: " + "; ".join(summary) + "."]
    return lines


def markdown(
    meta: dict[str, Any],
    cells: list[dict[str, Any]],
    launches: list[dict[str, Any]],
    charts: dict[str, str] | None = None,
) -> str:
    """The report; ``charts``: section (a scenario, or ``"startup"``) -> an image's path."""
    charts = charts or {}
    agg = aggregate_cells(cells)
    lines = _header(meta)
    loads = [c["loadavg_1m"] for c in cells if c.get("loadavg_1m") is not None]
    if loads:  # other work on the machine shows up here (the load generators count too)
        lines.insert(
            -2, f"- 1-min load average after each cell: {min(loads):.2f} to {max(loads):.2f}"
        )
    grpc_note = False
    for scenario in meta["scenarios"]:
        grpc = scenario.endswith("-grpc")
        lines += ["", f"## {scenario}", ""]
        if grpc and not grpc_note:
            lines += [GRPC_NOTE, ""]
            grpc_note = True
        if scenario in charts:
            lines += [f"![{scenario}: req/s and p99 per server]({charts[scenario]})", ""]
        lines += _table_head(GRPC_COLUMNS if grpc else CELL_COLUMNS)
        peers = []
        for conns in _concurrencies(meta, scenario):
            peer = best_peer(agg, scenario, conns)
            peers.append(f"{conns}: {peer[0] if peer else 'none'}")
            for server in meta["servers"]:
                cell = agg.get((scenario, conns, server))
                if cell is None:
                    continue
                base = peer[1] if peer else None
                ceil = agg.get((scenario, conns, CEILING))
                row = _grpc_row if grpc else _cell_row
                lines.append(row(conns, server, cell, base, ceil))
        lines += ["", "Best peer by connections: " + ", ".join(peers) + "."]
    lines += _encoding_section(meta, agg)
    lines += _targets(agg, meta["servers"])
    lines += [
        "",
        "## Start-up and memory",
        "",
        MEMORY_NOTE,
        "",
        *([f"![start-up and memory]({charts['startup']})", ""] if "startup" in charts else []),
        *_table_head(MEMORY_COLUMNS),
    ]
    for server, launch in aggregate_launches(launches).items():
        cols = [
            server,
            _fmt(launch["ready_s"]),
            _fmt(launch["idle_rss"], 0),
            _fmt(launch["idle_pss"], 0),
            _fmt(launch["processes"], 0),
            _fmt(launch["loaded_rss"], 0),
        ]
        warn = f" ⚠ {launch['errors'][0][:80]}" if launch["errors"] else ""
        lines.append("| " + " | ".join(cols) + " |" + warn)
    return "\n".join(lines) + "\n"
