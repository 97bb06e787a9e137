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
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
MLSERVER_VENV = BENCH_DIR / ".venv-mlserver"
MLSERVER_REQS = BENCH_DIR / "requirements-mlserver.txt"
MLSERVER_LOCK = BENCH_DIR / "constraints-mlserver.txt"
MODELS = ("iris", "forest")

# Scenario name -> (model, rows, features). Data is fixed: same bytes for every server.
SCENARIOS: dict[str, tuple[str, int, int]] = {
    "iris-1x4": ("iris", 1, 4),
    "forest-256x20": ("forest", 256, 20),
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
    """wrk and hey from Debian; h2load is not needed since hey is packaged."""
    missing = [t for t in ("wrk", "hey") if shutil.which(t) is None]
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
    """bench/.venv-mlserver with the pinned MLServer; reinstalled when the pins change."""
    digest = hashlib.sha256(MLSERVER_REQS.read_bytes() + MLSERVER_LOCK.read_bytes()).hexdigest()
    stamp = MLSERVER_VENV / ".bench-stamp"
    mlserver = MLSERVER_VENV / "bin" / "mlserver"
    if mlserver.exists() and stamp.exists() and stamp.read_text() == digest:
        return mlserver
    log("creating bench/.venv-mlserver (MLServer 1.7.1), takes a few minutes")
    base_python = shutil.which("python3.11") or shutil.which("python3") or sys.executable
    _run([base_python, "-m", "venv", "--clear", str(MLSERVER_VENV)], 300)
    pip = str(MLSERVER_VENV / "bin" / "pip")
    _run([pip, "install", "-q", "-r", str(MLSERVER_REQS)], 1200, cwd=BENCH_DIR)
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


def write_mlserver_repo(repo: Path, joblib_dir: Path) -> None:
    """One folder per model with model-settings.json pointing at the joblib file."""
    for name in MODELS:
        model_dir = repo / name
        model_dir.mkdir(parents=True, exist_ok=True)
        settings = {
            "name": name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": str(joblib_dir / f"{name}.joblib"), "version": "v1"},
        }
        (model_dir / "model-settings.json").write_text(json.dumps(settings, indent=2))


def write_mlserver_settings(repo: Path, http_port: int, grpc_port: int, metrics_port: int) -> None:
    """Default settings except ports and host, so nothing clashes or listens outside loopback."""
    settings = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
    }
    (repo / "settings.json").write_text(json.dumps(settings, indent=2))


def scenario_data() -> dict[str, list[list[float]]]:
    """Request matrices: a real iris row, and a seeded 256x20 normal matrix."""
    rng = np.random.default_rng(20240601)
    forest = np.round(rng.normal(size=(256, 20)), 6)
    return {"iris-1x4": [[5.1, 3.5, 1.4, 0.2]], "forest-256x20": forest.tolist()}


def payload_bytes(input_name: str, data: list[list[float]]) -> bytes:
    rows, cols = len(data), len(data[0])
    request = {
        "inputs": [
            {
                "name": input_name,
                "shape": [rows, cols],
                "datatype": "FP64",
                "data": data,
            }
        ],
        # the same work on every server: MLServer and the ceiling return `predict` only
        "outputs": [{"name": "predict"}],
    }
    return json.dumps(request, separators=(",", ":")).encode()


def _output(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip()


def host_facts() -> dict[str, object]:
    """Date-independent facts for the report header: CPU, nproc, kernel, versions."""
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    probe = "import importlib.metadata as m; print(m.version('mlserver'))"
    mlserver = _output([str(MLSERVER_VENV / "bin/python"), "-c", probe]) or "?"
    tools = _output(["dpkg-query", "-W", "-f", "${Package} ${Version}, ", "wrk", "hey"])
    versions = ", ".join(
        [
            f"bentoml {importlib.metadata.version('bentoml')}",
            f"mlserver {mlserver}",
            f"scikit-learn {importlib.metadata.version('scikit-learn')}",
            tools.rstrip(", "),
        ]
    )
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "versions": versions,
    }
