"""Shared fixtures: a temporary BENTOML_HOME with tiny real models, and a live server.

BENTOML_HOME must be set before bentoml is first imported (it reads it at import time), so it
is set here, at collection, for the whole session (per process: each pytest-xdist worker has
its own store, ports and files); nothing touches the user's store.

**The tests own their environment.** Whatever the shell carries that configures this server or
its tools (``OIP_*``, ``BENTOML_*``, ``RAY_ADDRESS``, HTTP proxies) is removed from this
process's environment at collection (the header of the run lists what was), so that neither the
in-process tests (``Settings.from_env()``) nor any subprocess inherits it; servers started here
get an environment built from that clean base plus what the test sets.
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
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import liveserver  # noqa: E402

IGNORED_FROM_SHELL = sorted(k for k in os.environ if liveserver.configures_a_server(k))
for _name in IGNORED_FROM_SHELL:
    del os.environ[_name]
_HOME = Path(tempfile.mkdtemp(prefix="oip-test-bentoml-"))
os.environ["BENTOML_HOME"] = str(_HOME)
os.environ["BENTOML_DO_NOT_TRACK"] = "true"

import train  # noqa: E402


def pytest_report_header() -> list[str]:
    if not IGNORED_FROM_SHELL:
        return []
    return [
        f"ignored from the shell (tests own their environment): {', '.join(IGNORED_FROM_SHELL)}"
    ]


@dataclass(frozen=True)
class Store:
    """What the session trained: tags in training order, per model."""

    home: Path
    tags: dict[str, list[str]]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A predictions database: a SQLite file, then the real PostgreSQL server of the module
    (which imports the ``postgres_url`` fixture); ``iris_predictions`` is dropped after."""
    import sqlalchemy as sa

    from adapters.batch.predictions import connect

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'predictions.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = connect(url)
    yield engine
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE IF EXISTS iris_predictions"))
    engine.dispose()


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

    from adapters.models.signature import infer_signature

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

    It serves the store of ``home`` from a BENTOML_HOME of its own (:func:`own_home`).
    Raises :class:`liveserver.ServerStartError` (a RuntimeError) with the log's tail otherwise.
    """
    home = own_home(home, log)
    for attempt in range(PORT_ATTEMPTS):
        grpc = {"OIP_GRPC_PORT": str(free_port()), "OIP_GRPC_HOST": "127.0.0.1"}
        full = {**grpc, **env}  # a free gRPC port each: servers of one session never share one
        try:
            server = liveserver.serve_gateway(
                log_path=log,
                env={"BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true", **full},
                base_env=liveserver.clean_environ(),
                target=target,
                cwd=ROOT,
                deadline_s=deadline_s,
            )
        except liveserver.ServerStartError as exc:
            # another process (a parallel test worker) took a free port before the server
            # bound it: try other ports; any other failure is the test's
            if attempt + 1 < PORT_ATTEMPTS and port_taken(log):
                continue
            raise exc from None
        placement = full.get("OIP_PLACEMENT", "inprocess")
        address = f"127.0.0.1:{full['OIP_GRPC_PORT']}"
        return LiveServer(server.url, placement, server.proc, log, address)
    raise AssertionError("unreachable")


PORT_ATTEMPTS = 3


def own_home(home: Path, log: Path) -> Path:
    """A BENTOML_HOME for one server, beside its log, whose models and Bentos are ``home``'s.

    BentoML keeps its Prometheus files under BENTOML_HOME and empties them when a server starts:
    servers sharing one home would wipe each other's ``/metrics`` (the batching tests read them).
    """
    return liveserver.own_home(home, log.parent / f"{log.stem}.bentoml-home")


def port_taken(log: Path) -> bool:
    """Whether a server's log says one of its ports was in use."""
    return "in use" in liveserver.log_tail(log, 20000).lower()


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None] | pytest.TestReport:
    """A failed test that used a live server shows the end of that server's log: what the
    server saw is often the half of the story the test's own traceback lacks."""
    report: pytest.TestReport = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for name, value in funcargs.items():
            if isinstance(value, LiveServer):
                report.sections.append(
                    (f"server log of {name} ({value.log})", liveserver.log_tail(value.log))
                )
    return report
