"""Shared fixtures: a temporary BENTOML_HOME with tiny real models, and a live server.

BENTOML_HOME must be set before bentoml is first imported (it reads it at import time), so it
is set here, at collection, for the whole session; nothing touches the user's store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_HOME = Path(tempfile.mkdtemp(prefix="oip-test-bentoml-"))
os.environ["BENTOML_HOME"] = str(_HOME)
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
sys.path.insert(0, str(ROOT))

import liveserver  # noqa: E402
import train  # noqa: E402


@dataclass(frozen=True)
class Store:
    """What the session trained: tags in training order, per model."""

    home: Path
    tags: dict[str, list[str]]


@pytest.fixture(scope="session")
def store() -> Iterator[Store]:
    """Two iris versions (C=1.0, then a much weaker C=0.001), one diabetes, one text, and
    ``slow``, an iris pipeline whose first step burns CPU (the concurrency tests)."""
    tags: dict[str, list[str]] = {}
    runs: list[tuple[str, dict[str, object]]] = [
        ("iris", {}),
        ("diabetes", {}),
        ("text", {}),
        ("iris", {"C": 0.001}),
    ]
    for name, params in runs:
        model = train.train(name, params, seed=0, test_size=0.2)
        tags.setdefault(name, []).append(str(model.tag))
    tags["slow"] = [save_slow_model()]
    yield Store(_HOME, tags)
    shutil.rmtree(_HOME, ignore_errors=True)


def save_slow_model() -> str:
    """A real pipeline (CPU-burning step + logistic regression) saved like any user model."""
    import bentoml
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from adapters import infer_signature

    from .slow_model import burn

    X, y = load_iris(return_X_y=True)
    pipeline = Pipeline(
        [("burn", FunctionTransformer(burn)), ("clf", LogisticRegression(max_iter=1000))]
    )
    pipeline.fit(X, y)
    signature = infer_signature(pipeline, X[:2])
    saved = bentoml.sklearn.save_model(
        "slow", pipeline, metadata={"signature": signature.to_dict()}
    )
    return str(saved.tag)


free_port = liveserver.free_port


@dataclass
class LiveServer:
    """A ``bentoml serve`` subprocess of this session, and the placement it was started with."""

    url: str
    placement: str
    process: subprocess.Popen[bytes]
    log: Path
    grpc: str = ""  # host:port of its gRPC server


def start_server(
    home: Path,
    env: dict[str, str],
    log: Path,
    *,
    target: str = "service:Gateway",
    deadline_s: float = 120.0,
) -> LiveServer:
    """``bentoml serve`` as a subprocess on a free port; returns once /v2/health/ready is 200.

    Raises :class:`liveserver.ServerStartError` (a RuntimeError) with the log's tail otherwise.
    """
    grpc = {"OIP_GRPC_PORT": str(free_port()), "OIP_GRPC_HOST": "127.0.0.1"}
    env = {**grpc, **env}  # a free gRPC port each: servers of one session never share one
    server = liveserver.serve_gateway(
        log_path=log,
        env={"BENTOML_HOME": str(home), **env},
        target=target,
        cwd=ROOT,
        deadline_s=deadline_s,
    )
    placement = env.get("OIP_PLACEMENT", "inprocess")
    address = f"127.0.0.1:{env['OIP_GRPC_PORT']}"
    return LiveServer(server.url, placement, server.proc, log, address)


def stop_server(server: LiveServer) -> None:
    """SIGTERM the whole process group (gateway, runner, watchers), SIGKILL if it lingers."""
    liveserver.stop(server.process, grace_s=20.0)


@pytest.fixture(scope="session", params=["inprocess", "runner"])
def live(
    request: pytest.FixtureRequest, store: Store, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The real server, once per placement, serving every model of the store."""
    log = tmp_path_factory.mktemp("serve") / f"{request.param}.log"
    env = {
        "OIP_MODELS": "iris,diabetes,text,slow",
        "OIP_PLACEMENT": request.param,
        "OIP_ACCESS_LOG": "0",
    }
    server = start_server(store.home, env, log)
    yield server
    stop_server(server)
