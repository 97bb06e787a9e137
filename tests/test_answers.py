"""Answers are bounded (``OIP_MAX_RESPONSE_BYTES``): sized from the signature before predict (an
answer too large is never computed), from the computed outputs before encoding (BYTES,
classification), refused with a 413 ``{"error"}`` naming the setting, REST and gRPC alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from starlette.testclient import TestClient

from adapters.bento.wiring import build_dataplane
from adapters.config.settings import Limits, Settings
from adapters.dataplane.answers import planned_bytes, tensor_bytes
from adapters.http.routes import build_app
from adapters.models.signature import TensorSpec
from adapters.protocol.messages import Tensor
from adapters.protocol.schemas import Datatype
from adapters.register import save_estimator

from .clients import answers
from .conftest import LiveServer, Store, start_server, stop_server

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
IRIS_BYTES_PER_ROW = 8 + 3 * 8 + 3 * 8  # predict INT64, predict_proba and decision FP64 [-1, 3]
WIDE_WORDS = 2000


def iris(rows: int, outputs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [
            {"name": "input-0", "datatype": "FP64", "shape": [rows, 4], "data": IRIS_ROW * rows}
        ]
    }
    if outputs is not None:
        body["outputs"] = outputs
    return body


def test_planned_bytes_from_the_signature() -> None:
    specs = [
        TensorSpec("predict", Datatype.INT64, (-1,)),
        TensorSpec("predict_proba", Datatype.FP32, (-1, 3)),
        TensorSpec("labels", Datatype.BYTES, (-1, 2)),  # at least the 4-byte length prefixes
        TensorSpec("ragged", Datatype.FP64, (-1, -1)),  # unknown until computed
    ]
    assert planned_bytes(specs, 10) == 10 * 8 + 10 * 3 * 4 + 10 * 2 * 4
    assert planned_bytes(specs, 0) == 0


@pytest.mark.parametrize(
    ("data", "datatype", "size"),
    [
        (np.zeros((5, 3)), Datatype.FP64, 5 * 3 * 8),
        (np.zeros(7, dtype=np.bool_), Datatype.BOOL, 7),
        (np.array(["setosa", "versicolor"], dtype=object), Datatype.BYTES, 8 + 6 + 10),
        (np.array(["é", "日本"]), Datatype.BYTES, 8 + 2 + 6),  # UTF-8 bytes, not characters
        (np.array([b"ab", "c", 7], dtype=object), Datatype.BYTES, 12 + 2 + 1 + 1),
    ],
)
def test_tensor_bytes_is_what_the_wire_carries(data: Any, datatype: Datatype, size: int) -> None:
    from adapters.protocol.binary import encode_raw

    assert tensor_bytes(Tensor("out", datatype, data)) == size == len(encode_raw(datatype, data))


class Counting:
    """The data plane's executor, recording each predict it is asked for."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def predict(self, version: Any, methods: tuple[str, ...], x: Any) -> Any:
        self.calls.append((version.name, methods))
        return await self.inner.predict(version, methods, x)


@pytest.fixture(scope="module")
def wide(store: Store) -> Iterator[str]:
    """A model whose ``transform`` makes a sparse output dense: TF-IDF over 2,000 words."""
    import bentoml

    words = [f"w{i}" for i in range(WIDE_WORDS)]
    vectorizer = TfidfVectorizer().fit([" ".join(words[i : i + 50]) for i in range(0, 2000, 50)])
    sample = np.array(["w1 w2"], dtype=object)
    saved = save_estimator("wide", vectorizer, sample=sample, input_name="text")
    yield str(saved.tag)
    bentoml.models.delete(str(saved.tag))


@pytest.fixture
def small_answers(wide: str, store: Store) -> Iterator[tuple[TestClient, Counting]]:
    app = build_app()
    settings = Settings(
        models=("iris", "text", "wide"), limits=Limits(max_response_bytes=100 * 2**10)
    )
    dataplane = build_dataplane(settings)
    counting = Counting(dataplane.executors["iris"])
    dataplane.executors = {name: counting for name in dataplane.executors}
    app.state.dataplane = dataplane
    with TestClient(app) as c:
        yield c, counting


def refused(response: httpx.Response) -> str:
    assert response.status_code == 413, response.text
    assert list(response.json()) == ["error"]
    message: str = response.json()["error"]
    assert "OIP_MAX_RESPONSE_BYTES" in message and str(100 * 2**10) in message
    return message


def test_an_answer_over_the_limit_is_never_computed(
    small_answers: tuple[TestClient, Counting],
) -> None:
    client, executor = small_answers
    rows = 100 * 2**10 // IRIS_BYTES_PER_ROW + 1
    message = refused(client.post("/v2/models/iris/infer", json=iris(rows)))
    assert f"at least {rows * IRIS_BYTES_PER_ROW} bytes" in message
    text = {"name": "text", "datatype": "BYTES", "shape": [20], "data": ["w1 w2"] * 20}
    dense = client.post("/v2/models/wide/infer", json={"inputs": [text]})
    assert f"at least {20 * WIDE_WORDS * 8} bytes" in refused(dense)  # 320 kB from 20 rows
    assert executor.calls == []  # neither predict nor transform ran
    predict_only = client.post("/v2/models/iris/infer", json=iris(rows, [{"name": "predict"}]))
    assert predict_only.status_code == 200 and executor.calls == [("iris", ("predict",))]
    few = client.post(
        "/v2/models/wide/infer", json={"inputs": [{**text, "shape": [5], "data": ["w1 w2"] * 5}]}
    )
    assert few.status_code == 200
    assert few.json()["outputs"][0]["shape"] == [5, WIDE_WORDS]


def test_computed_outputs_over_the_limit_are_refused_before_encoding(
    small_answers: tuple[TestClient, Counting],
) -> None:
    client, executor = small_answers
    rows = 2000  # scores 48 kB fit; "score:index:label" strings for 3 classes do not
    classified = [{"name": "predict_proba", "parameters": {"classification": 3}}]
    message = refused(client.post("/v2/models/iris/infer", json=iris(rows, classified)))
    assert "at least" not in message  # measured, not estimated
    assert executor.calls == [("iris", ("predict_proba",))]
    labels = {"name": "text", "datatype": "BYTES", "shape": [6000], "data": ["ray"] * 6000}
    refused(client.post("/v2/models/text/infer", json={"inputs": [labels]}))
    assert client.get("/v2/health/ready").status_code == 200


@pytest.fixture(scope="module")
def bounded(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    log = tmp_path_factory.mktemp("answers") / "server.log"
    server = start_server(store.home, {"OIP_MODELS": "iris", "OIP_MAX_RESPONSE_BYTES": "4096"}, log)
    yield server
    stop_server(server)


@pytest.mark.e2e
def test_rest_and_grpc_refuse_an_answer_over_the_limit(bounded: LiveServer) -> None:
    rows = 4096 // IRIS_BYTES_PER_ROW + 1
    large = {"model": "iris", **iris(rows)}
    small = {"model": "iris", **iris(rows), "outputs": ["predict"]}
    exact = {"model": "iris", **iris(4096 // 8), "outputs": ["predict"]}  # the limit itself
    with httpx.Client(base_url=bounded.url, timeout=30) as c:
        answer = c.post("/v2/models/iris/infer", json=iris(rows))
        assert answer.status_code == 413 and "OIP_MAX_RESPONSE_BYTES" in answer.json()["error"]
        fits = c.post("/v2/models/iris/infer", json=iris(rows, [{"name": "predict"}]))
        assert fits.status_code == 200
    address = bounded.url.removeprefix("http://")
    over, under, full = answers("triton-grpc", bounded.grpc, [large, small, exact])
    assert over["error"]["code"] == "StatusCode.RESOURCE_EXHAUSTED", over
    assert "OIP_MAX_RESPONSE_BYTES" in over["error"]["message"]
    assert under["outputs"]["predict"]["shape"] == [rows]
    assert full["outputs"]["predict"]["shape"] == [512]  # gRPC's own limit leaves room
    (binary,) = answers("triton-http", address, [large])  # the binary extension too
    assert "OIP_MAX_RESPONSE_BYTES" in binary["error"]["message"]
    assert httpx.get(f"{bounded.url}/v2/health/ready").status_code == 200
    assert "Traceback" not in Path(bounded.log).read_text()
