"""Start-up as a user meets it: a bad configuration stops ``bentoml serve`` in seconds with one
line naming the variable and the value (never a worker restart loop, never a bound port that does
not answer); a version that cannot be served beside good ones does not stop the model. And the
start-up speed-ups of ``adapters/bento/startup.py``, in process: same store reads, GC back on
after."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import bentoml
import httpx
import numpy as np
import pytest
import yaml
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from adapters.bento.startup import collections_paused, read_yaml_with_libyaml

from .conftest import ROOT, Store, free_port, start_server, stop_server


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OIP_MODELS": "iris,nosuch"}, "OIP_MODELS: 'nosuch' has no version in the BentoML store"),
        ({"OIP_DEFAULT_VERSION": "iris=bset"}, "OIP_DEFAULT_VERSION: 'bset' for model 'iris'"),
        ({"OIP_PLACEMENT": "irsi=runner"}, "OIP_PLACEMENT: 'irsi' is not a served model"),
        ({"OIP_ACCESS_LOG": "ture"}, "OIP_ACCESS_LOG='ture'"),
        ({"OIP_WORKERS": "two"}, "OIP_WORKERS='two'"),
        ({"OIP_MODLES": "iris"}, "OIP_MODLES: not a setting"),
    ],
)
def test_a_bad_configuration_stops_the_server_with_one_line(
    store: Store, env: dict[str, str], message: str
) -> None:
    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "bentoml"),
        "serve",
        "service:Gateway",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    full_env = {**os.environ, "BENTOML_HOME": str(store.home), "OIP_MODELS": "iris,text", **env}
    # stops rather than hangs: ~3 s on an idle machine, 36 s seen on a loaded one, so the bound
    # is the subprocess's timeout (TimeoutExpired fails the test), far above either
    done = subprocess.run(
        cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode != 0
    last = (done.stdout + done.stderr).strip().splitlines()[-1]
    assert last.startswith("oip-sklearn: configuration error: ") and message in last, last
    with pytest.raises(httpx.ConnectError):  # nothing left listening
        httpx.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=2)


@pytest.mark.filterwarnings("ignore:divide by zero")
@pytest.mark.e2e
def test_a_poisoned_version_beside_good_ones(store: Store, tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    good = bentoml.sklearn.save_model("mixed", LogisticRegression(max_iter=500).fit(X, y))
    poisoned = bentoml.sklearn.save_model(  # fails on any sample with a zero: log(0)
        "mixed", make_pipeline(FunctionTransformer(np.log), LogisticRegression()).fit(X, y)
    )
    server = start_server(store.home, {"OIP_MODELS": "mixed"}, tmp_path / "serve.log")
    try:
        index = httpx.post(f"{server.url}/v2/repository/index").json()
        states = {e["version"]: e["state"] for e in index}
        assert states == {good.tag.version: "READY", poisoned.tag.version: "UNAVAILABLE"}
        row = {
            "inputs": [
                {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": X[0].tolist()}
            ]
        }
        answer = httpx.post(f"{server.url}/v2/models/mixed/infer", json=row)
        assert answer.status_code == 200 and answer.json()["model_version"] == good.tag.version
        log = server.log.read_text()
        assert f"{poisoned.tag} cannot be served" in log  # model and version in the log
    finally:
        stop_server(server)
        bentoml.models.delete(str(good.tag))
        bentoml.models.delete(str(poisoned.tag))


@pytest.mark.skipif(not getattr(yaml, "__with_libyaml__", False), reason="PyYAML without libyaml")
def test_store_reads_through_libyaml_read_the_same(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(yaml, "safe_load", yaml.safe_load)  # undone after the test
    tags = [tag for tags in store.tags.values() for tag in tags]
    before = {tag: bentoml.models.get(tag).info.to_dict() for tag in tags}
    files = [Path(bentoml.models.get(tag).path) / "model.yaml" for tag in tags]
    pure = [yaml.load(f.read_text(), Loader=yaml.SafeLoader) for f in files]
    read_yaml_with_libyaml()
    read_yaml_with_libyaml()  # twice is once
    assert yaml.safe_load.keywords == {"Loader": yaml.CSafeLoader}  # type: ignore[attr-defined]
    assert [yaml.safe_load(f.read_text()) for f in files] == pure
    assert {tag: bentoml.models.get(tag).info.to_dict() for tag in tags} == before


@pytest.mark.parametrize("enabled", [True, False])
def test_collections_paused_restores_gc_and_freezes_what_it_loaded(enabled: bool) -> None:
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        frozen = gc.get_freeze_count()
        with collections_paused():
            assert not gc.isenabled()
            loaded = [[i] for i in range(1000)]
        assert gc.isenabled() is enabled
        assert gc.get_freeze_count() >= frozen + len(loaded)
    finally:
        gc.unfreeze()
        (gc.enable if was else gc.disable)()
