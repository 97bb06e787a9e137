"""Idempotent setup: load generators, the MLServer venv, models and payloads."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

BENCH_DIR = Path(__file__).resolve().parent
MLSERVER_VENV = BENCH_DIR / ".venv-mlserver"
MLSERVER_REQS = BENCH_DIR / "requirements-mlserver.txt"
MLSERVER_LOCK = BENCH_DIR / "constraints-mlserver.txt"
MODELS = ("iris", "forest", "linear")

Matrix = npt.NDArray[Any]

LARGE_ROWS = 8192


@dataclass(frozen=True)
class Scenario:
    """One request shape on one model, in one encoding."""

    model: str
    rows: int
    features: int
    datatype: str = "FP64"  # of the request tensor: "FP64" or "FP32"
    # Triton's binary tensor data extension: raw input bytes after the JSON header, and the
    # response in binary too (`binary_data_output`); otherwise plain JSON both ways.
    binary: bool = False
    # Key of the request matrix in scenario_data(): both encodings of a case share it, so they
    # send the very same numbers.
    matrix: str = ""
    # gRPC (ModelInfer, raw_input_contents) with h2load instead of HTTP with wrk/hey
    grpc: bool = False

    @property
    def large(self) -> bool:
        """Large cases get their own (lower) concurrencies: see run.py --large-concurrency."""
        return self.rows >= LARGE_ROWS

    @property
    def encoding(self) -> str:
        return "grpc" if self.grpc else "binary" if self.binary else "json"


def _large(model: str, binary: bool) -> Scenario:
    shape = f"{LARGE_ROWS}x20"
    return Scenario(model, LARGE_ROWS, 20, "FP32", binary, matrix=shape)


# Scenario name -> what it sends. Data is fixed: same bytes for every server.
SCENARIOS: dict[str, Scenario] = {
    "iris-1x4": Scenario("iris", 1, 4, matrix="iris-1x4"),
    "forest-256x20": Scenario("forest", 256, 20, matrix="forest-256x20"),
    # the same two requests over gRPC: unary ModelInfer, the matrix as raw_input_contents
    "iris-1x4-grpc": Scenario("iris", 1, 4, matrix="iris-1x4", grpc=True),
    "forest-256x20-grpc": Scenario("forest", 256, 20, matrix="forest-256x20", grpc=True),
    # model-bound: a 100-tree forest on 8192 rows
    "forest-8192x20-json": _large("forest", binary=False),
    "forest-8192x20-binary": _large("forest", binary=True),
    # transport-bound: a logistic regression costs next to nothing on the same rows
    "linear-8192x20-json": _large("linear", binary=False),
    "linear-8192x20-binary": _large("linear", binary=True),
}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _run(
    argv: list[str],
    timeout_s: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> str:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=cwd,
        env=full_env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return str(proc.stdout)


def ensure_load_tools() -> None:
    """wrk, hey and h2load (nghttp2-client: gRPC load) from Debian; curl checks gRPC statuses."""
    packages = {"wrk": "wrk", "hey": "hey", "h2load": "nghttp2-client", "curl": "curl"}
    missing = [p for t, p in packages.items() if shutil.which(t) is None]
    if not missing:
        return
    log(f"installing {' '.join(missing)} with apt-get")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    try:
        _run(["apt-get", "install", "-y", *missing], 600, env=env)
    except RuntimeError:
        _run(["apt-get", "update"], 600, env=env)
        _run(["apt-get", "install", "-y", *missing], 600, env=env)


def ensure_mlserver_venv() -> Path:
    """bench/.venv-mlserver with the pinned MLServer; reinstalled when the pins change.

    Built with the project's uv when it has one (seconds from uv's cache, about a minute
    without), else with pip (a few minutes); one process at a time builds it (the bench, and
    the MLServer tests of ``make test``, tests/test_mlserver.py, share it)."""
    import fcntl

    digest = hashlib.sha256(MLSERVER_REQS.read_bytes() + MLSERVER_LOCK.read_bytes()).hexdigest()
    stamp = MLSERVER_VENV / ".bench-stamp"
    mlserver = MLSERVER_VENV / "bin" / "mlserver"
    with (BENCH_DIR / ".venv-mlserver.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if mlserver.exists() and stamp.exists() and stamp.read_text() == digest:
            return mlserver
        log("creating bench/.venv-mlserver (MLServer 1.7.1)")
        base_python = shutil.which("python3.11") or shutil.which("python3") or sys.executable
        uv = Path(sys.executable).parent / "uv"
        if uv.exists():
            _run(
                [str(uv), "venv", "-q", "--clear", "--python", base_python, str(MLSERVER_VENV)], 300
            )
            python = str(MLSERVER_VENV / "bin" / "python")
            install = [str(uv), "pip", "install", "-q", "--python", python]
        else:
            _run([base_python, "-m", "venv", "--clear", str(MLSERVER_VENV)], 300)
            install = [str(MLSERVER_VENV / "bin" / "pip"), "install", "-q"]
        _run([*install, "-r", str(MLSERVER_REQS)], 1200, cwd=BENCH_DIR)
        stamp.write_text(digest)
    return mlserver


def train_and_export(project: Path, bentoml_home: Path, out: Path) -> dict[str, str]:
    """Train with the project's train.py into `bentoml_home`; dump joblib copies to `out`."""
    python = str(project / ".venv" / "bin" / "python")
    env = {"BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "True"}
    model_args = [a for m in MODELS for a in ("--model", m)]
    log("training models with train.py into a temporary BENTOML_HOME")
    _run([python, "train.py", *model_args], 600, cwd=project, env=env)
    exported = _run(
        [python, str(BENCH_DIR / "export_models.py"), "--out", str(out), *MODELS],
        300,
        cwd=project,
        env=env,
    )
    return dict(json.loads(exported.strip().splitlines()[-1]))


MLSERVER_TUNED = {"parallel_workers": 2}
"""MLServer as its own benchmark runs it (``benchmarking/`` in its repository): inference in 2
worker processes, adaptive batching of up to 64 requests waiting at most 5 ms (uvicorn picks
httptools and uvloop, both installed, either way)."""
MLSERVER_TUNED_MODEL = {"max_batch_size": 64, "max_batch_time": 0.005}


def write_mlserver_repo(repo: Path, joblib_dir: Path, *, tuned: bool = False) -> None:
    """One folder per model with model-settings.json pointing at the joblib file; ``tuned``:
    with MLServer's benchmark settings (``MLSERVER_TUNED_MODEL``)."""
    for name in MODELS:
        model_dir = repo / name
        model_dir.mkdir(parents=True, exist_ok=True)
        settings = {
            "name": name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": str(joblib_dir / f"{name}.joblib"), "version": "v1"},
        } | (MLSERVER_TUNED_MODEL if tuned else {})
        (model_dir / "model-settings.json").write_text(json.dumps(settings, indent=2))


def write_mlserver_settings(
    repo: Path, http_port: int, grpc_port: int, metrics_port: int, *, tuned: bool = False
) -> None:
    """Default settings except ports and host, so nothing clashes or listens outside loopback;
    ``tuned``: with MLServer's benchmark settings (``MLSERVER_TUNED``)."""
    settings = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
    } | (MLSERVER_TUNED if tuned else {})
    (repo / "settings.json").write_text(json.dumps(settings, indent=2))


def scenario_data() -> dict[str, Matrix]:
    """Request matrices: a real iris row, a seeded 256x20 normal matrix (FP64), and a seeded
    8192x20 one rounded to 6 decimals then stored as FP32 (what both its encodings send)."""
    rng = np.random.default_rng(20240601)
    forest = np.round(rng.normal(size=(256, 20)), 6)
    large = np.random.default_rng(20240602).normal(size=(LARGE_ROWS, 20))
    return {
        "iris-1x4": np.array([[5.1, 3.5, 1.4, 0.2]]),
        "forest-256x20": forest,
        f"{LARGE_ROWS}x20": np.round(large, 6).astype(np.float32),
    }


def _json_numbers(matrix: Matrix) -> list[list[float]]:
    """The matrix as JSON-ready floats that decode to exactly its values: FP32 numbers are
    written in their shortest float32 form (numpy's str), which parses back bit for bit."""
    if matrix.dtype == np.float32:
        return np.asarray(matrix.astype(str), dtype=np.float64).tolist()  # type: ignore[no-any-return]
    return matrix.tolist()  # type: ignore[no-any-return]


# the same work on every server: MLServer and the ceiling return `predict` only
_OUTPUTS = [{"name": "predict"}]


def payload(input_name: str, scenario: Scenario, matrix: Matrix) -> tuple[bytes, dict[str, str]]:
    """The request body and its headers, JSON or binary (Triton's binary tensor data)."""
    rows, cols = matrix.shape
    tensor: dict[str, object] = {
        "name": input_name,
        "shape": [rows, cols],
        "datatype": scenario.datatype,
    }
    if not scenario.binary:
        request = {"inputs": [{**tensor, "data": _json_numbers(matrix)}], "outputs": _OUTPUTS}
        body = json.dumps(request, separators=(",", ":")).encode()
        return body, {"Content-Type": "application/json"}
    raw = matrix.astype(DTYPES[scenario.datatype]).tobytes()
    request = {
        "inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
        "outputs": _OUTPUTS,
        "parameters": {"binary_data_output": True},
    }
    header = json.dumps(request, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return header + raw, headers


# V2 numeric datatypes as little-endian numpy dtypes (binary tensor data is little-endian).
DTYPES: dict[str, np.dtype[Any]] = {
    "FP64": np.dtype("<f8"),
    "FP32": np.dtype("<f4"),
    "INT64": np.dtype("<i8"),
    "INT32": np.dtype("<i4"),
    "BOOL": np.dtype("u1"),
}


def _output(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip()


def host_facts() -> dict[str, object]:
    """Date-independent facts for the report header: the commit measured, CPU, nproc, kernel,
    versions."""
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    probe = "import importlib.metadata as m; print(m.version('mlserver'))"
    mlserver = _output([str(MLSERVER_VENV / "bin/python"), "-c", probe]) or "?"
    packages = ["wrk", "hey", "nghttp2-client"]  # nghttp2-client: h2load
    tools = _output(["dpkg-query", "-W", "-f", "${Package} ${Version}, ", *packages])
    versions = ", ".join(
        [
            f"bentoml {importlib.metadata.version('bentoml')}",
            f"mlserver {mlserver}",
            f"kserve {importlib.metadata.version('kserve')}",
            f"scikit-learn {importlib.metadata.version('scikit-learn')}",
            f"grpcio {importlib.metadata.version('grpcio')} (grpc_load, grpc_ceiling)",
            tools.rstrip(", "),
        ]
    )
    commit = _output(["git", "-C", str(BENCH_DIR), "describe", "--always", "--dirty"]) or "?"
    return {
        "commit": commit,
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "versions": versions,
    }
