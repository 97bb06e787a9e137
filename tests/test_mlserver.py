"""Side by side with MLServer 1.7.1 (mlserver-sklearn) on the same estimator files: MLServer model
folders, served by MLServer and, imported with ``python -m adapters.register --from-mlserver``,
by this server. Requests are built and answers decoded with MLServer's own codecs, REST and gRPC,
in MLServer's environment (bench/.venv-mlserver, made by the bench's own setup: its pins clash
with ours); every ``predict`` equals MLServer's and the estimator's own.

The cases: a mixed-type DataFrame pipeline (age INT64, income FP64, city BYTES with
``content_type: "str"``), a model fitted on a named numeric frame and one fitted on a plain array
(columns in its order), each as ``content_type: "pd"``; a text model's ``str`` input.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import bentoml
import httpx
import joblib
import numpy as np
import pytest
import sklearn

import liveserver
from adapters.models.repository import stored_versions

from .clients import printed_json
from .conftest import ROOT, LiveServer, Store, free_port, start_server, stop_server
from .test_content_types import ASK, MATRIX, estimators

pytestmark = pytest.mark.e2e

NAMES = {"mixed": "mlmixed", "named": "mlnamed", "plain": "mlplain", "text": "mltext"}
NUMERIC = ["age", "income"]
TEXTS = ["win cheap money now", "lunch at noon tomorrow", "cheap pills"]


def setup_env() -> ModuleType:
    """bench/setup_env.py, which builds MLServer's environment (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_setup_env", ROOT / "bench/setup_env.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def cases() -> dict[str, dict[str, Any]]:
    """What each case asks, as columns (MLServer's codecs make the requests of them)."""
    return {
        "mixed": {"codec": "pd", "columns": {c: ASK[c].tolist() for c in ASK.columns}},
        "named": {"codec": "pd", "columns": {c: ASK[c].astype(float).tolist() for c in NUMERIC}},
        "plain": {"codec": "pd", "columns": {f"c{i}": MATRIX[:5, i].tolist() for i in range(4)}},
        "text": {"codec": "str", "columns": {"text": TEXTS}, "input": "input-0"},
    }


def expected(models: dict[str, Any]) -> dict[str, list[Any]]:
    """Each case's ``predict`` from the estimator itself."""
    return {
        "mixed": models["mixed"].predict(ASK).tolist(),
        "named": models["named"].predict(ASK[NUMERIC].astype(float)).tolist(),
        "plain": models["plain"].predict(MATRIX[:5]).tolist(),
        "text": models["text"].predict(TEXTS).tolist(),
    }


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One MLServer folder per model: model-settings.json and its joblib file."""
    repo = tmp_path_factory.mktemp("mlserver-repo")
    fitted = dict(zip(NAMES, estimators().values(), strict=True))
    for case, estimator in fitted.items():
        folder = repo / NAMES[case]
        folder.mkdir()
        joblib.dump(estimator, folder / "model.joblib")
        settings = {
            "name": NAMES[case],
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": "v1"},
        }
        (folder / "model-settings.json").write_text(json.dumps(settings))
    return repo, fitted


@pytest.fixture(scope="module")
def mlserver(
    folders: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    executable = setup_env().ensure_mlserver_venv()
    repo, _ = folders
    http, grpc = free_port(), free_port()
    settings = {"host": "127.0.0.1", "http_port": http, "grpc_port": grpc}
    (repo / "settings.json").write_text(json.dumps({**settings, "metrics_port": free_port()}))
    log = tmp_path_factory.mktemp("mlserver") / "mlserver.log"
    server = liveserver.launch(
        [executable, "start", str(repo)],
        url=f"http://127.0.0.1:{http}",
        cwd=repo,
        base_env=liveserver.clean_environ(),
        log_path=log,
        deadline_s=240,
    )
    yield {"http": server.url, "grpc": f"127.0.0.1:{grpc}", "python": str(executable.parent)}
    liveserver.stop(server.proc)


@pytest.fixture(scope="module")
def ours(
    folders: tuple[Path, dict[str, Any]], store: Store, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """This server, serving the folders imported with one command."""
    repo, _ = folders
    done = subprocess.run(
        [sys.executable, "-m", "adapters.register", "--from-mlserver", str(repo)],
        cwd=ROOT,
        env={**liveserver.clean_environ(), "BENTOML_HOME": str(store.home)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    log = tmp_path_factory.mktemp("ours") / "serve.log"
    server = start_server(store.home, {"OIP_MODELS": ",".join(NAMES.values())}, log)
    yield server
    stop_server(server)
    for name in NAMES.values():
        for model in stored_versions(name):
            bentoml.models.delete(model.tag)


def test_the_same_bodies_get_mlserver_s_predictions(
    mlserver: dict[str, str], ours: LiveServer, folders: tuple[Path, dict[str, Any]]
) -> None:
    spec = {
        "servers": {
            "mlserver": {"http": mlserver["http"], "grpc": mlserver["grpc"], "models": NAMES},
            "ours": {"http": ours.url, "grpc": ours.grpc, "models": NAMES},
        },
        "cases": cases(),
    }
    side = [f"{mlserver['python']}/python", str(ROOT / "tests/clients/mlserver_side.py")]
    results = printed_json([*side, json.dumps(spec)], env=liveserver.clean_environ())
    print(json.dumps(results, indent=1))  # with -s: every server's predict, side by side
    own = expected(folders[1])
    for case, answers in results.items():
        assert set(answers) == {"mlserver/rest", "mlserver/grpc", "ours/rest", "ours/grpc"}
        for where, got in answers.items():
            assert not isinstance(got, dict), (case, where, got)
            np.testing.assert_allclose(got, own[case], rtol=1e-12, err_msg=f"{case} {where}")
        assert answers["ours/rest"] == answers["mlserver/rest"], case


def test_an_imported_folder_shows_the_library_versions_it_was_saved_with(ours: LiveServer) -> None:
    meta = httpx.get(f"{ours.url}/v2/models/{NAMES['mixed']}").json()
    properties = meta["properties"]
    assert properties["saved_with.scikit-learn"] == sklearn.__version__
    assert properties["served_with.scikit-learn"] == sklearn.__version__
    assert properties["imported_from.version"] == "v1"
    assert "library_mismatch" not in properties
