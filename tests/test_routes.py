"""Every V2 route in process: the Starlette app with a data plane over the test store."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from adapters.bento.wiring import build_dataplane
from adapters.config.settings import Limits, Settings
from adapters.http.routes import build_app
from adapters.protocol.schemas import InferenceResponse, ModelMetadata, ServerMetadata

from .conftest import Store

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def client(store: Store) -> Iterator[TestClient]:
    app = build_app()
    app.state.dataplane = build_dataplane(Settings(models=("iris", "diabetes", "text")))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def golden(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def test_not_ready_until_the_data_plane_is_attached() -> None:
    with TestClient(build_app()) as c:
        assert c.get("/v2/health/live").json() == {"live": True}
        ready = c.get("/v2/health/ready")
        assert (ready.status_code, ready.json()) == (503, {"ready": False})
        loading = c.get("/v2/models/iris")
        assert loading.status_code == 503
        assert "loading" in loading.json()["error"]


@pytest.mark.parametrize("path", ["/v2", "/v2/"])
def test_server_metadata(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 200
    assert set(response.json()) == {"name", "version", "extensions"}


def test_health(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_model_metadata_lists_every_version_and_the_signature(
    client: TestClient, store: Store
) -> None:
    meta = client.get("/v2/models/iris").json()
    assert sorted(meta["versions"]) == sorted(t.split(":")[1] for t in store.tags["iris"])
    assert meta["platform"] == "sklearn_logisticregression"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba", "decision_function"]
    props = meta["properties"]
    assert all(isinstance(v, str) for v in props.values())
    assert props["bentoml_tag"] == store.tags["iris"][-1]  # unversioned = latest
    assert {"metrics.accuracy", "params.C", "dataset.n_train"} <= set(props)


def test_best_and_latest_follow_the_metrics(client: TestClient, store: Store) -> None:
    versions = [
        client.get(f"/v2/models/iris/versions/{t.split(':')[1]}").json() for t in store.tags["iris"]
    ]
    accuracy = [float(v["properties"]["metrics.accuracy"]) for v in versions]
    best = versions[accuracy.index(max(accuracy))]["properties"]["bentoml_tag"]
    assert client.get("/v2/models/iris/versions/best").json()["properties"]["bentoml_tag"] == best
    latest = client.get("/v2/models/iris/versions/latest").json()["properties"]["bentoml_tag"]
    assert latest == store.tags["iris"][-1]


def test_infer_golden(client: TestClient, store: Store) -> None:
    """The whole response against ``tests/data/iris_response.json``: names, shapes, datatypes and
    the id exactly; the scores equal to what the served version's own estimator (loaded from the
    store here) gives for the FP32 inputs cast to FP64. Scores are never recorded: they depend on
    the CPU the model was trained on."""
    import bentoml

    tag = store.tags["iris"][0]
    version = tag.split(":")[1]
    request = golden("iris_request.json")
    response = client.post(f"/v2/models/iris/versions/{version}/infer", json=request)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    InferenceResponse.model_validate(body)  # the wire format the schemas document
    expected = golden("iris_response.json")
    expected["model_version"] = version
    data = body["outputs"][0].pop("data")
    assert body == expected
    rows = np.asarray(request["inputs"][0]["data"], dtype=np.float32).astype(np.float64)
    own = bentoml.sklearn.load_model(tag).predict_proba(rows)
    # the same estimator on the same rows in this process: equal but for summation order
    np.testing.assert_allclose(np.reshape(data, own.shape), own, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("path", ["/v2/models/iris", "/v2/models/text/versions/latest"])
def test_metadata_matches_its_schema(client: TestClient, path: str) -> None:
    ModelMetadata.model_validate(client.get(path).json())


def test_server_metadata_matches_its_schema(client: TestClient) -> None:
    ServerMetadata.model_validate(client.get("/v2").json())


def test_a_value_that_overflows_the_model_dtype_is_refused(client: TestClient) -> None:
    """1e300 declared FP32 would silently be ``inf``: a 400 naming the range instead."""
    body = {
        "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [1e300] * 4}]
    }
    response = client.post("/v2/models/iris/infer", json=body)
    assert response.status_code == 400
    assert "range of FP32" in response.json()["error"]


@pytest.mark.parametrize(
    ("case", "status", "fragment"),
    [(c["case"], c["status"], c["fragment"]) for c in golden("bad_requests.json")],
)
def test_bad_requests(client: TestClient, case: str, status: int, fragment: str) -> None:
    spec = next(c for c in golden("bad_requests.json") if c["case"] == case)
    body = spec["body"] if isinstance(spec["body"], str) else json.dumps(spec["body"])
    response = client.post(
        spec["path"], content=body.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert list(response.json()) == ["error"]
    assert fragment.lower() in response.json()["error"].lower()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v2/models/nope", 404),
        ("GET", "/v2/models/nope/ready", 404),
        ("GET", "/v2/models/iris/versions/nope", 404),
        ("GET", "/v2/models/iris/versions/nope/ready", 404),
        ("GET", "/v2/nothing/here", 404),
        ("GET", "/v2/models/iris/infer", 405),
        ("DELETE", "/v2/models/iris", 405),
    ],
)
def test_routing_errors_are_v2_errors(
    client: TestClient, method: str, path: str, status: int
) -> None:
    response = client.request(method, path)
    assert response.status_code == status
    assert list(response.json()) == ["error"]


def test_versioned_and_unversioned_routes_agree(client: TestClient, store: Store) -> None:
    version = store.tags["iris"][-1].split(":")[1]
    for suffix in ("", "/ready"):
        plain = client.get(f"/v2/models/iris{suffix}").json()
        pinned = client.get(f"/v2/models/iris/versions/{version}{suffix}").json()
        assert plain == pinned
    assert client.get("/v2/models/iris/versions/latest/ready").json() == {
        "name": "iris",
        "ready": True,
    }


def test_text_model_accepts_n_by_1(client: TestClient) -> None:
    for shape, data in [([2], ["a", "b"]), ([2, 1], [["a"], ["b"]])]:
        body = {
            "inputs": [{"name": "text", "shape": shape, "datatype": "BYTES", "data": data}],
            "outputs": [{"name": "predict"}],
        }
        response = client.post("/v2/models/text/infer", json=body)
        assert response.status_code == 200, response.text
        out = response.json()["outputs"][0]
        assert (out["datatype"], out["shape"]) == ("BYTES", [2])


def test_envelope_fields_real_clients_send_are_accepted(client: TestClient) -> None:
    """The KServe SDK sends ``model_name`` (and ``model_version``); other clients add fields of
    their own at the top level: none of these may break a valid request."""
    body = {
        "model_name": "iris",
        "model_version": "latest",
        "client_extra": {"anything": 1},
        "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}],
    }
    for path in ("/v2/models/iris/infer", "/v2/models/iris/versions/latest/infer"):
        response = client.post(path, json=body)
        assert response.status_code == 200, response.text
        assert response.json()["model_name"] == "iris"


def binary_request(x: np.ndarray, **parameters: object) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(x.shape),
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "parameters": parameters,
        }
    ).encode()
    return header + x.astype("<f8").tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def test_binary_in_and_out_equal_json(client: TestClient) -> None:
    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
    body, headers = binary_request(x, binary_data_output=True)
    response = client.post("/v2/models/iris/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    size = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:size])
    raw = response.content[size:]
    plain = {
        "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": x.tolist()}]
    }
    expected = {
        o["name"]: o for o in client.post("/v2/models/iris/infer", json=plain).json()["outputs"]
    }
    offset = 0
    for output in header["outputs"]:
        n = output["parameters"]["binary_data_size"]
        dtype = {"INT64": "<i8", "FP64": "<f8"}[output["datatype"]]
        values = np.frombuffer(raw[offset : offset + n], dtype=dtype).tolist()
        offset += n
        assert values == expected[output["name"]]["data"]
        assert "data" not in output
    assert offset == len(raw)


def test_binary_sizes_that_do_not_add_up_are_a_400(client: TestClient) -> None:
    body, headers = binary_request(np.zeros((1, 4)))
    response = client.post("/v2/models/iris/infer", content=body + b"\x00", headers=headers)
    assert response.status_code == 400
    assert "add up to 32 bytes, the body carries 33" in response.json()["error"]


def test_compressed_request_and_response(client: TestClient) -> None:
    x = np.tile([[5.1, 3.5, 1.4, 0.2]], (100, 1))
    plain = {
        "inputs": [{"name": "input-0", "shape": [100, 4], "datatype": "FP64", "data": x.tolist()}]
    }
    raw = json.dumps(plain).encode()
    for encoding, packed in [("gzip", gzip.compress(raw)), ("deflate", zlib.compress(raw))]:
        response = client.post(
            "/v2/models/iris/infer",
            content=packed,
            headers={"Content-Encoding": encoding, "Accept-Encoding": encoding},
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-encoding"] == encoding  # the client decoded it
        assert len(response.json()["outputs"][0]["data"]) == 100
    small = client.post("/v2/models/iris/infer", json=golden("iris_request.json"))
    assert "content-encoding" not in small.headers  # small answers are not worth compressing


def test_body_limits_and_decompression_bombs(store: Store) -> None:
    app = build_app()
    settings = Settings(models=("iris",), limits=Limits(max_body_bytes=10_000))
    app.state.dataplane = build_dataplane(settings)
    with TestClient(app) as c:
        big = c.post("/v2/models/iris/infer", content=b" " * 10_001)
        assert (big.status_code, list(big.json())) == (413, ["error"])
        assert "OIP_MAX_BODY_BYTES" in big.json()["error"]
        bomb = gzip.compress(b" " * 5_000_000)  # 5 MB of spaces in ~5 kB: 500x the limit
        assert len(bomb) < 10_000
        response = c.post(
            "/v2/models/iris/infer", content=bomb, headers={"Content-Encoding": "gzip"}
        )
        assert response.status_code == 413, response.text
        assert "decompressed body" in response.json()["error"]
        odd = c.post("/v2/models/iris/infer", content=b"{}", headers={"Content-Encoding": "br"})
        assert odd.status_code == 415


def test_every_body_is_read_under_the_configured_read_timeout(store: Store) -> None:
    """A body that stalls is a 408 after OIP_READ_TIMEOUT_S on the repository index too (which
    reads its small body with a limit of its own)."""
    import asyncio

    app = build_app()
    limits = Limits(read_timeout_s=0.3)
    app.state.dataplane = build_dataplane(Settings(models=("iris",), limits=limits))

    async def stalled(path: str) -> tuple[int, bytes]:
        sent: list[dict[str, Any]] = []
        chunks = [{"type": "http.request", "body": b'{"rea', "more_body": True}]

        async def receive() -> dict[str, Any]:
            if chunks:
                return chunks.pop()
            await asyncio.Event().wait()  # the rest never comes
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
        }
        await asyncio.wait_for(app(scope, receive, send), timeout=5)  # 10 s unconfigured
        return sent[0]["status"], sent[1]["body"]

    for path in ("/v2/repository/index", "/v2/models/iris/infer"):
        status, body = asyncio.run(stalled(path))
        assert (status, json.loads(body)) == (
            408,
            {"error": "no body data for 0.3 s (OIP_READ_TIMEOUT_S)"},
        ), path
