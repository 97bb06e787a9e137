"""``make bento MODELS="churn:best fraud:latest"`` (``python -m adapters.bento.build``): from a
store holding only the user's versions (no demo model), a Bento of exactly the chosen ones, nothing
trained; XGBoost's package in it because one version needs it; served, it answers for exactly
those versions, and the release smoke test (scripts/smoke.py) passes on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import liveserver

from .conftest import ROOT, start_server, stop_server

pytestmark = pytest.mark.e2e

SAVE = """
import json
import numpy as np
import xgboost
from sklearn.linear_model import LogisticRegression
import bentoml
from adapters.register import save_estimator

X = np.random.default_rng(0).normal(size=(60, 3))
y = (X[:, 0] > 0).astype(int)
churn = [
    save_estimator("churn", LogisticRegression(C=c).fit(X, y), metrics={"accuracy": a},
                   select="accuracy")
    for c, a in ((1.0, 0.9), (0.01, 0.6), (0.1, 0.7))
]
fraud = [bentoml.sklearn.save_model("fraud", xgboost.XGBClassifier(n_estimators=n).fit(X, y))
         for n in (3, 5)]
print(json.dumps({"churn": [str(m.tag) for m in churn], "fraud": [str(m.tag) for m in fraud]}))
"""


def run(argv: list[str], home: Path, *, code: int = 0) -> str:
    """What ``argv`` printed, run from the repository over the store at ``home``; it must
    exit with ``code``."""
    env = {**liveserver.clean_environ(), "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "1"}
    done = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == code, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def test_a_bento_of_two_chosen_user_versions(tmp_path: Path) -> None:
    home = tmp_path / "home"
    saved = json.loads(run([sys.executable, "-c", SAVE], home).splitlines()[-1])
    best, latest = saved["churn"][0], saved["fraud"][-1]
    out = run([sys.executable, "-m", "adapters.bento.build", "churn:best", "fraud:latest"], home)
    tag = out.split()[1]
    assert f"with {best}, {latest}" in out
    assert sorted(os.listdir(home / "models")) == ["churn", "fraud"]  # nothing trained
    bento = home / "bentos" / tag.replace(":", "/")
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    packed = [m["tag"] for service in info["services"] for m in service["models"]]
    assert packed == [best, latest]
    envs = {e["name"]: e["value"] for e in info["envs"]}
    assert envs["OIP_MODELS"] == "churn,fraud"
    requirements = (bento / "env/python/requirements.txt").read_text().splitlines()
    assert "xgboost-cpu==3.2.0" in requirements
    assert not any(line.startswith("lightgbm") for line in requirements)

    server = start_server(home, {"OIP_MODELS": "churn,fraud"}, tmp_path / "serve.log", target=tag)
    try:
        smoke = [sys.executable, "scripts/smoke.py", "--url", server.url, "--models"]
        passed = run([*smoke, "churn,fraud", "--tags", f"{best},{latest}"], home)
        assert passed.count("OK  ") == 2, passed
        wrong = run([*smoke, "churn", "--tags", saved["churn"][-1]], home, code=1)
        assert "FAIL churn: serves versions" in wrong
    finally:
        stop_server(server)


def test_a_selection_that_names_nothing_stored_is_refused(tmp_path: Path) -> None:
    build = [sys.executable, "-m", "adapters.bento.build", "churn:best"]
    refused = run(build, tmp_path / "empty", code=2)
    assert "bento: " in refused and "churn" in refused
