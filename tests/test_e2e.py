"""The real server: ``bentoml serve`` in a subprocess, once per placement, over HTTP with httpx.

Expected predictions come from the stored estimators loaded here, never from the server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bentoml
import httpx
import numpy as np
import pytest
from sklearn.datasets import load_iris

import train

from .conftest import ROOT, LiveServer, Store, start_server, stop_server

pytestmark = pytest.mark.e2e
DATA = Path(__file__).parent / "data"


def v(tag: str) -> str:
    return tag.split(":")[1]


def test_server_routes(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url, follow_redirects=False) as c:
        for path in ("/v2", "/v2/"):
            meta = c.get(path)
            assert meta.status_code == 200
            assert set(meta.json()) == {"name", "version", "extensions"}
        assert c.get("/v2/health/live").json() == {"live": True}
        assert c.get("/v2/health/ready").json() == {"ready": True}
        # BentoML's own probes and metrics stay available beside the V2 routes
        assert c.get("/livez").status_code == 200
        assert c.get("/readyz").status_code == 200
        metrics = c.get("/metrics").text
        assert "bentoml" in metrics
        # the fast lane's own request metrics for the V2 calls above
        assert 'oip_request_duration_seconds_count{endpoint="health"' in metrics


def test_model_metadata_and_ready(live: LiveServer, store: Store) -> None:
    with httpx.Client(base_url=live.url) as c:
        for name in ("iris", "diabetes", "text"):
            meta = c.get(f"/v2/models/{name}").json()
            assert sorted(meta["versions"]) == sorted(v(t) for t in store.tags[name])
            assert meta["properties"]["bentoml_tag"] == store.tags[name][-1]
            assert meta["inputs"] and meta["outputs"]
            assert c.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}
            for version in [*meta["versions"], "latest", "best"]:
                pinned = c.get(f"/v2/models/{name}/versions/{version}")
                assert pinned.status_code == 200
                ready = c.get(f"/v2/models/{name}/versions/{version}/ready")
                assert ready.json() == {"name": name, "ready": True}
        metrics = c.get("/v2/models/diabetes").json()["properties"]
        assert metrics["selection_metric.goal"] == "min"
        assert float(metrics["metrics.rmse"]) > 0


@pytest.mark.parametrize("version", ["", "latest", "best", "first"])
def test_iris_inference_matches_the_stored_estimator(
    live: LiveServer, store: Store, version: str
) -> None:
    tags = store.tags["iris"]
    tag = {"": tags[-1], "latest": tags[-1], "first": tags[0]}.get(version)
    accuracy = {t: bentoml.models.get(t).info.metadata["metrics"]["accuracy"] for t in tags}
    if version == "best":
        tag = max(tags, key=lambda t: accuracy[t])
    assert tag is not None
    path = (
        "/v2/models/iris"
        + (f"/versions/{v(tag) if version == 'first' else version}" if version else "")
        + "/infer"
    )
    X = load_iris().data[::10]
    body = {
        "id": "e2e",
        "inputs": [
            {"name": "input-0", "shape": list(X.shape), "datatype": "FP64", "data": X.tolist()}
        ],
    }
    response = httpx.post(live.url + path, json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["id"] == "e2e"
    assert out["model_version"] == v(tag)
    estimator = bentoml.sklearn.load_model(tag)
    by_name = {o["name"]: o for o in out["outputs"]}
    assert by_name["predict"]["data"] == estimator.predict(X).tolist()
    assert by_name["predict"]["datatype"] == "INT64"
    np.testing.assert_allclose(
        np.reshape(by_name["predict_proba"]["data"], by_name["predict_proba"]["shape"]),
        estimator.predict_proba(X),
    )


def test_text_and_regression_inference(live: LiveServer, store: Store) -> None:
    texts = [
        "Fine-tuning a transformer for sentiment analysis of tweets",
        "Deep Q-learning agent for Atari games",
    ]
    body = {
        "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": texts}],
        "outputs": [{"name": "predict"}],
    }
    out = httpx.post(f"{live.url}/v2/models/text/infer", json=body).json()
    expected = bentoml.sklearn.load_model(store.tags["text"][-1]).predict(texts).tolist()
    assert out["outputs"] == [
        {
            "name": "predict",
            "shape": [2],
            "datatype": "BYTES",
            "data": expected,
            "parameters": {"content_type": "np"},
        }
    ]

    x = [[0.01] * 10, [-0.02] * 10]
    body = {"inputs": [{"name": "input-0", "shape": [2, 10], "datatype": "FP32", "data": x}]}
    out = httpx.post(f"{live.url}/v2/models/diabetes/infer", json=body).json()
    expected = bentoml.sklearn.load_model(store.tags["diabetes"][-1]).predict(np.array(x))
    np.testing.assert_allclose(out["outputs"][0]["data"], expected)


def test_every_bad_request_gets_a_v2_error(live: LiveServer) -> None:
    cases = json.loads((DATA / "bad_requests.json").read_text())
    with httpx.Client(base_url=live.url) as c:
        for case in cases:
            body = case["body"] if isinstance(case["body"], str) else json.dumps(case["body"])
            r = c.post(case["path"], content=body, headers={"content-type": "application/json"})
            assert r.status_code == case["status"], (case["case"], r.text)
            assert list(r.json()) == ["error"], case["case"]
            assert case["fragment"].lower() in r.json()["error"].lower(), case["case"]
        for method, path, status in [
            ("GET", "/v2/models/nope", 404),
            ("GET", "/v2/models/iris/versions/zzz/ready", 404),
            ("GET", "/v2/models/iris/infer", 405),
            ("GET", "/v2/unknown", 404),
        ]:
            r = c.request(method, path)
            assert (r.status_code, list(r.json())) == (status, ["error"]), path
        # the server is unharmed by all of the above
        assert c.get("/v2/health/ready").status_code == 200


def test_a_built_bento_serves_the_versions_it_was_built_with(
    store: Store, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``bentoml build``, then a newer version is trained; ``bentoml serve <tag>`` ignores it."""
    bentoml_cli = str(Path(sys.executable).parent / "bentoml")
    env = {"OIP_MODELS": "iris,diabetes,text"}
    built = subprocess.run(
        [bentoml_cli, "build", "--output", "tag"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    bento_tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    info = bentoml.get(bento_tag).info
    packed = {str(m.tag) for m in info.all_models}
    assert packed == {t for name in ("iris", "diabetes", "text") for t in store.tags[name]}

    newer = str(train.train("iris", {"C": 0.5}, seed=1, test_size=0.2).tag)
    body = {
        "inputs": [
            {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
        ]
    }
    try:
        # built in-process, served in both placements: configuration is read at serve time
        for placement in ("inprocess", "runner"):
            log = tmp_path_factory.mktemp("bento") / f"serve-{placement}.log"
            served = {**env, "OIP_PLACEMENT": placement, "OIP_MODELS": "iris,text"}
            server = start_server(store.home, served, log, target=bento_tag)
            try:
                meta = httpx.get(f"{server.url}/v2/models/iris").json()
                assert sorted(meta["versions"]) == sorted(v(t) for t in store.tags["iris"])
                assert v(newer) not in meta["versions"]
                infer = httpx.post(f"{server.url}/v2/models/iris/infer", json=body)
                assert infer.status_code == 200
                assert httpx.get(f"{server.url}/v2/models/diabetes").status_code == 404
            finally:
                stop_server(server)
    finally:
        bentoml.models.delete(newer)


@pytest.mark.parametrize("lane", ["1", "0"])
def test_lane_off_default_best_deadline_and_any_method(
    store: Store, tmp_path_factory: pytest.TempPathFactory, lane: str
) -> None:
    """The same V2 behaviour with BentoML's full stack (``OIP_FAST_LANE=0``) and its HTTP path
    to the runner (``OIP_RUNNER_LANE=0``) as through the lanes: ``OIP_DEFAULT_VERSION=best`` for
    every model, iris on the runner, the request deadline (504 past it, the server unharmed), V2
    errors for any method, and bounded metric labels."""
    log = tmp_path_factory.mktemp("lane") / f"lane-{lane}.log"
    env = {
        "OIP_MODELS": "iris,slow",
        "OIP_PLACEMENT": "iris=runner,*=inprocess",
        "OIP_FAST_LANE": lane,
        "OIP_RUNNER_LANE": lane,
        "OIP_DEFAULT_VERSION": "best",
        "OIP_REQUEST_TIMEOUT_S": "1",
    }
    server = start_server(store.home, env, log)
    tags = store.tags["iris"]
    accuracy = {t: bentoml.models.get(t).info.metadata["metrics"]["accuracy"] for t in tags}
    best = max(tags, key=lambda t: accuracy[t])
    assert best != tags[-1]  # the test store's latest iris is the weaker one
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            meta = c.get("/v2/models/iris").json()
            assert meta["properties"]["bentoml_tag"] == best
            # 10,240 rows of the slow model would take 20 s (ten chunks of 2 s): the 1 s deadline
            # answers long before, and the chunks after the one running are never run
            rows = load_iris().data[np.arange(10240) % 150]
            body = {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [10240, 4],
                        "datatype": "FP64",
                        "data": rows.tolist(),
                    }
                ]
            }
            start = time.monotonic()
            late = c.post("/v2/models/slow/infer", json=body)
            assert (late.status_code, list(late.json())) == (504, ["error"]), late.text
            assert "OIP_REQUEST_TIMEOUT_S" in late.json()["error"]
            # at the deadline, not at the end of the predict: 10x the deadline, half the predict
            assert time.monotonic() - start < 10
            for method in ("TRACE", "PROPFIND", "DELETE"):
                r = c.request(method, "/v2/models/iris")
                assert (r.status_code, list(r.json())) == (405, ["error"]), (method, r.text)
                assert r.headers["allow"] == "GET, HEAD"
            for i in range(3):
                assert c.get(f"/v2/models/invented-{i}/infer").status_code == 405
            assert c.get("/v2/health/ready").status_code == 200
            row = {
                "name": "input-0",
                "shape": [1, 4],
                "datatype": "FP64",
                "data": [5.1, 3.5, 1.4, 0.2],
            }
            iris = c.post("/v2/models/iris/infer", json={"inputs": [row]})
            assert iris.status_code == 200, iris.text
            metrics = c.get("/metrics").text
        lane_calls = sum(
            float(m.rsplit(" ", 1)[1])
            for m in metrics.splitlines()
            if m.startswith("oip_runner_lane_calls_total")
        )
        assert (lane_calls >= 1) if lane == "1" else (lane_calls == 0), lane_calls
        ours = [m for m in metrics.splitlines() if m.startswith("oip_request_duration_seconds")]
        assert ours and not [m for m in ours if "invented-" in m]
        assert any('status="504"' in m and 'model="slow"' in m for m in ours)
        assert "Traceback" not in log.read_text()
    finally:
        stop_server(server)


def test_a_client_leaving_mid_body_is_neither_a_500_nor_an_error_log(live: LiveServer) -> None:
    """Headers promise 10,000 bytes, 20 are sent, the socket closes: counted as 499, no log."""
    host, port = live.url.removeprefix("http://").split(":")
    for _ in range(3):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(
                b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n"
                b'{"inputs": [{"name"'
            )
    time.sleep(0.5)
    metrics = httpx.get(f"{live.url}/metrics").text
    infer = [m for m in metrics.splitlines() if "oip_request_duration_seconds_count" in m]
    assert not [m for m in infer if 'status="500"' in m], infer
    assert any('status="499"' in m and 'endpoint="infer"' in m for m in infer), infer
    assert "Traceback" not in live.log.read_text()


def test_a_runner_model_batched_its_own_way_answers_through_its_own_api(
    store: Store, tmp_path: Path
) -> None:
    """``[model.iris]`` batching on the runner is a ``run_iris`` API of its own (the gateway
    calls it by name: were it missing, every iris call would fail); text keeps the shared
    ``run``. Concurrent calls to both answer what the stored estimators answer."""
    config = tmp_path / "oip.toml"
    config.write_text(
        'models = ["iris", "text"]\nplacement = "runner"\n'
        "[model.iris]\nmax_batch_size = 2\nmax_latency_ms = 5000\n"
    )
    server = start_server(store.home, {"OIP_CONFIG": str(config)}, tmp_path / "serve.log")
    try:
        X = load_iris().data
        texts = ["Deep Q-learning agent for Atari games"]
        iris = bentoml.sklearn.load_model(store.tags["iris"][-1])
        text = bentoml.sklearn.load_model(store.tags["text"][-1])

        def infer(i: int) -> tuple[str, list[object], list[object]]:
            if i % 4 == 3:
                model, expected = "text", text.predict(texts).tolist()
                tensor = {"name": "text", "shape": [1], "datatype": "BYTES", "data": texts}
            else:
                model, expected = "iris", iris.predict(X[i : i + 1]).tolist()
                data = X[i : i + 1].tolist()
                tensor = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": data}
            body = {"inputs": [tensor], "outputs": [{"name": "predict"}]}
            response = httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=30)
            assert response.status_code == 200, response.text
            return model, response.json()["outputs"][0]["data"], expected

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(infer, range(64)))
        assert {model for model, _, _ in answers} == {"iris", "text"}
        assert all(got == expected for _, got, expected in answers)
    finally:
        stop_server(server)
