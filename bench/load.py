"""Load generators: wrk (primary) and hey (cross-check) for HTTP, h2load (or grpc_load.py) for
gRPC; each run bounded in time."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

GRPC_LOAD = Path(__file__).resolve().with_name("grpc_load.py")
GRPC_METHOD = "/inference.GRPCInferenceService/ModelInfer"

# wrk's own summary, printed by the Lua done() hook as one machine-readable line.
# The body is read in binary mode and sent as-is (Lua strings are 8-bit clean), so binary
# tensor data reaches the server byte for byte; {headers} sets Content-Type and, for binary
# bodies, Inference-Header-Content-Length.
_WRK_LUA = """\
wrk.method = "POST"
{headers}
local f = assert(io.open({body_path}, "rb"))
wrk.body = f:read("*a")
f:close()
assert(#wrk.body == {body_size}, "short read of the request body")

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {{"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"status_errors":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
"""

_HEY_PCT = re.compile(r"^\s*(\d+)% in ([0-9.]+) secs", re.MULTILINE)
_HEY_TOTAL = re.compile(r"Total:\s+([0-9.]+) secs")
_HEY_RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")
_HEY_STATUS = re.compile(r"^\s*\[(\d{3})\]\s+(\d+) responses", re.MULTILINE)
_HEY_ERRORS = re.compile(r"^\s*\[(\d+)\]\s+\S", re.MULTILINE)
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_WRK_RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")


@dataclass
class LoadResult:
    tool: str
    connections: int
    duration_s: float
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: int = 0
    non_2xx: int = 0  # gRPC: calls that ended in a status other than OK
    socket_errors: int = 0
    error: str | None = None
    errors_by_code: dict[str, int] = field(default_factory=dict)  # gRPC status -> calls
    processes: int = 0  # gRPC: load-generator processes (each one channel)
    raw: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_wrk_script(body_path: Path, headers: dict[str, str], script_path: Path) -> Path:
    lines = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())
    script = _WRK_LUA.format(
        headers=lines, body_path=json.dumps(str(body_path)), body_size=body_path.stat().st_size
    )
    script_path.write_text(script)
    return script_path


def _run(argv: list[str], timeout_s: float) -> tuple[int, str]:
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        out = err.stdout if isinstance(err.stdout, str) else ""
        return -1, out + f"\n[timed out after {timeout_s:.0f} s]"
    except OSError as err:  # e.g. wrk or hey not installed
        return -1, f"[could not run {argv[0]}: {err}]"
    return proc.returncode, proc.stdout + proc.stderr


def run_wrk(
    url: str, script: Path, connections: int, duration_s: float, prefix: Sequence[str] = ()
) -> LoadResult:
    """wrk for `duration_s`, threads = min(2, connections), 10 s request timeout; `prefix`
    runs it under another command (`taskset -c 1`)."""
    threads = min(2, connections)
    opts = f"-t{threads} -c{connections} -d{duration_s:g}s --timeout 10s --latency"
    argv = [*prefix, "wrk", *opts.split(), "-s", str(script), url]
    code, out = _run(argv, timeout_s=duration_s + 30)
    res = LoadResult("wrk", connections, duration_s, raw=out)
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCHJSON ")), None)
    if code != 0 or line is None:
        res.error = f"wrk exit {code}"
        return res
    stats = json.loads(line.removeprefix("BENCHJSON "))
    res.requests = int(stats["requests"])
    rps = _WRK_RPS.search(out)
    res.rps = float(rps.group(1)) if rps else res.requests / (stats["duration_us"] / 1e6)
    res.p50_ms = stats["p50_us"] / 1000
    res.p99_ms = stats["p99_us"] / 1000
    non2xx = _WRK_NON2XX.search(out)
    res.non_2xx = int(non2xx.group(1)) if non2xx else int(stats["status_errors"])
    res.socket_errors = sum(int(stats[k]) for k in ("connect", "read", "write", "timeout"))
    return res


def run_hey(
    url: str,
    body: Path,
    headers: dict[str, str],
    connections: int,
    requests: int,
    timeout_s: float,
) -> LoadResult:
    """hey sending `requests` POSTs over `connections` workers (keep-alive on); `-D` sends the
    file's bytes as they are."""
    opts = f"-n {max(requests, connections)} -c {connections} -t 10 -m POST"
    extra = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    content_type = headers.get("Content-Type", "application/json")
    header_args = [a for k, v in extra.items() for a in ("-H", f"{k}: {v}")]
    argv = ["hey", *opts.split(), "-T", content_type, *header_args, "-D", str(body), url]
    code, out = _run(argv, timeout_s=timeout_s)
    total = _HEY_TOTAL.search(out)
    res = LoadResult("hey", connections, float(total.group(1)) if total else 0.0, raw=out)
    rps = _HEY_RPS.search(out)
    if code != 0 or rps is None:
        res.error = f"hey exit {code}"
        return res
    res.rps = float(rps.group(1))
    pcts = {int(p): float(v) * 1000 for p, v in _HEY_PCT.findall(out)}
    res.p50_ms, res.p99_ms = pcts.get(50), pcts.get(99)
    statuses = {int(c): int(n) for c, n in _HEY_STATUS.findall(out)}
    res.requests = sum(statuses.values())
    res.non_2xx = sum(n for c, n in statuses.items() if not 200 <= c < 300)
    if "Error distribution:" in out:
        tail = out.split("Error distribution:", 1)[1]
        res.socket_errors = sum(int(n) for n in _HEY_ERRORS.findall(tail))
    return res


def _benchjson(out: str) -> dict[str, Any] | None:
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCHJSON ")), None)
    return None if line is None else dict(json.loads(line.removeprefix("BENCHJSON ")))


def _grpc_argv(
    mode: str, target: str, model: str, data: Path, datatype: str, body_out: Path | None = None
) -> list[str]:
    # the same interpreter as the benchmark: the project's venv, with grpcio and the stubs
    opts = ["--target", target, "--model", model, "--data", str(data), "--datatype", datatype]
    if body_out is not None:
        opts += ["--write-body", str(body_out)]
    return [sys.executable, str(GRPC_LOAD), mode, *opts]


def grpc_preflight(
    target: str, model: str, data: Path, datatype: str, body_out: Path | None = None
) -> tuple[str | None, dict[str, Any]]:
    """(None, {input_name, request_bytes, shape, data}) from one ModelInfer, after waiting up to
    30 s for the connection; else (what went wrong, {}). With `body_out`, the framed request
    (h2load's body) is written there."""
    argv = _grpc_argv("preflight", target, model, data, datatype, body_out)
    code, out = _run(argv, timeout_s=90)
    try:
        answer = _benchjson(out)
    except ValueError:
        answer = None
    if answer is None:
        return f"grpc_load preflight exit {code}: {out[-300:]}", {}
    if answer.get("error"):
        return str(answer["error"]), {}
    return None, answer


def run_grpc(
    target: str,
    model: str,
    data: Path,
    datatype: str,
    input_name: str,
    streams: int,
    warmup_s: float,
    duration_s: float,
    processes: int | None = None,
) -> LoadResult:
    """grpc_load.py: `streams` closed-loop unary ModelInfer calls for `warmup_s` + `duration_s`
    (the warm-up on the same connections, not counted)."""
    argv = _grpc_argv("run", target, model, data, datatype)
    argv += ["--input-name", input_name, "--streams", str(streams)]
    argv += ["--warmup", f"{warmup_s:g}", "--duration", f"{duration_s:g}"]
    if processes:
        argv += ["--processes", str(processes)]
    code, out = _run(argv, timeout_s=warmup_s + duration_s + 120)
    res = LoadResult("grpc_load", streams, duration_s, raw=out)
    try:
        stats = _benchjson(out)
    except ValueError:
        stats = None
    if stats is None or stats.get("error"):
        res.error = str(stats["error"]) if stats else f"grpc_load exit {code}"
        return res
    res.requests = int(stats["requests"])
    res.rps = float(stats["rps"])
    res.p50_ms, res.p99_ms = stats.get("p50_ms"), stats.get("p99_ms")
    res.errors_by_code = {str(k): int(v) for k, v in stats["errors"].items()}
    res.non_2xx = sum(res.errors_by_code.values())
    res.processes = int(stats["processes"])
    return res


_H2_RPS = re.compile(r"finished in [0-9.]+s, ([0-9.]+) req/s")
_H2_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_H2_FAILED = re.compile(r"requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed")
_GRPC_STATUS = re.compile(r"^grpc-status: *(\d+)", re.MULTILINE | re.IGNORECASE)


def h2load_shape(streams: int) -> tuple[int, int]:
    """(connections, streams per connection) for `streams` concurrent calls: up to 8
    connections, the rest multiplexed (64 -> 8 x 8, 16 -> 8 x 2, 1 -> 1 x 1)."""
    connections = min(8, streams)
    while streams % connections:
        connections -= 1
    return connections, streams // connections


def grpc_status(target: str, body: Path) -> str | None:
    """One ModelInfer with curl (HTTP/2 without TLS): None if it answers grpc-status 0, else what
    it answered. h2load counts a gRPC error as HTTP 200, so every h2load run is followed by one."""
    argv = ["curl", "-s", "-S", "--max-time", "10", "--http2-prior-knowledge", "-D", "-"]
    argv += ["-o", "/dev/null", "-H", "content-type: application/grpc", "-H", "te: trailers"]
    argv += ["--data-binary", f"@{body}", f"http://{target}{GRPC_METHOD}"]
    code, out = _run(argv, timeout_s=20)
    found = _GRPC_STATUS.search(out)
    if code == 0 and found and found.group(1) == "0":
        return None
    return f"curl exit {code}, grpc-status {found.group(1) if found else 'none'}"


def run_h2load(
    target: str, body: Path, streams: int, warmup_s: float, duration_s: float
) -> LoadResult:
    """h2load (one thread) posting the framed ModelInferRequest `body` on `streams` concurrent
    HTTP/2 streams (see h2load_shape) for `warmup_s` + `duration_s`; percentiles from its
    per-request log (the measured window only); then one call checked for grpc-status 0."""
    connections, per_connection = h2load_shape(streams)
    log_file = body.with_suffix(f".h2load-{streams}.log")
    log_file.unlink(missing_ok=True)
    argv = ["h2load", "-t", "1", "-c", str(connections), "-m", str(per_connection)]
    argv += ["-D", f"{duration_s:g}", f"--warm-up-time={warmup_s:g}", "-d", str(body)]
    argv += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    argv += [f"--log-file={log_file}", f"http://{target}{GRPC_METHOD}"]
    code, out = _run(argv, timeout_s=warmup_s + duration_s + 60)
    res = LoadResult("h2load", streams, duration_s, raw=out, processes=1)
    rps, status = _H2_RPS.search(out), _H2_STATUS.search(out)
    if code != 0 or rps is None or status is None or not log_file.exists():
        res.error = f"h2load exit {code}"
        return res
    import numpy as np

    # each line: start (us since the epoch), HTTP status, duration (us)
    rows = np.loadtxt(log_file, dtype=np.int64, ndmin=2)
    log_file.unlink()
    ok = rows[rows[:, 1] == 200, 2] if rows.size else np.zeros(0, dtype=np.int64)
    res.rps = float(rps.group(1))
    res.requests = int(ok.size)
    if ok.size:
        res.p50_ms, res.p99_ms = (float(v) / 1000 for v in np.percentile(ok, [50, 99]))
    failed = _H2_FAILED.search(out)
    res.non_2xx = sum(int(n) for n in status.groups()[1:])
    res.socket_errors = int(failed.group(1)) if failed else 0
    if (problem := grpc_status(target, body)) is not None:
        res.error = f"after h2load: {problem}"
    return res
