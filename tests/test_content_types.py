"""MLServer's content types in process, REST and gRPC: a request of columns
(``content_type: "pd"``) fitted to DataFrame models, to models that know their feature names and
to models fitted on plain arrays; ``str``, ``np`` and ``base64`` inputs; the ``content_type`` of
every output. Every answer equals the estimator's own prediction on the same rows; every bad
request is a 400 saying what is wrong. (The same bodies against MLServer itself:
``tests/test_mlserver.py``.)"""

from __future__ import annotations

import base64
import json
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import bentoml
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from starlette.testclient import TestClient

from adapters.bento.wiring import build_dataplane
from adapters.config.settings import Settings
from adapters.http.routes import build_app
from adapters.register import save_estimator

from .clients import printed_json
from .conftest import Store

PEOPLE = pd.DataFrame(
    {
        "age": [25, 32, 47, 51, 62, 23, 44, 36],
        "income": [30.0, 52.0, 71.0, 80.0, 40.0, 28.0, 90.0, 61.0],
        "city": ["paris", "lyon", "paris", "nice", "lyon", "nice", "paris", "lyon"],
    }
)
CHURN = [0, 1, 1, 0, 0, 1, 1, 0]
ASK = pd.DataFrame({"age": [30, 60], "income": [50.5, 20.0], "city": ["paris", "nice"]})
MATRIX = np.random.default_rng(0).normal(size=(40, 4))
TEXTS = ["cheap pills", "meeting at noon", "win money", "lunch tomorrow"] * 3


def estimators() -> dict[str, Any]:
    mixed = make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), ["age", "income"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
            ]
        ),
        LogisticRegression(),
    ).fit(PEOPLE, CHURN)
    return {
        "ctmixed": mixed,
        "ctnamed": Ridge().fit(PEOPLE[["age", "income"]], np.arange(8.0)),
        "ctplain": LogisticRegression().fit(MATRIX, np.arange(40) % 3),
        "cttext": make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(TEXTS, [1, 0] * 6),
    }


@pytest.fixture(scope="module")
def models(store: Store) -> Iterator[dict[str, Any]]:
    fitted = estimators()
    tags = [str(bentoml.sklearn.save_model(name, e).tag) for name, e in fitted.items()]
    # fitted on a DataFrame, saved with an array sample: one array input, its feature names kept
    known = Ridge().fit(PEOPLE[["age", "income"]], np.arange(8.0))
    sample = PEOPLE[["age", "income"]].to_numpy(dtype=np.float64)[:2]
    with pytest.warns(UserWarning, match="feature names"):
        tags.append(str(save_estimator("ctknown", known, sample=sample).tag))
    fitted["ctknown"] = known
    yield fitted
    for tag in tags:
        bentoml.models.delete(tag)


@pytest.fixture(scope="module")
def plane(models: dict[str, Any]) -> Any:
    with warnings.catch_warnings():  # ctknown's warm-up: the warning of its array sample
        warnings.filterwarnings("ignore", "X does not have valid feature names", UserWarning)
        return build_dataplane(Settings(models=tuple(models)))


@pytest.fixture(scope="module")
def client(plane: Any) -> Iterator[TestClient]:
    app = build_app()
    app.state.dataplane = plane
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def column(name: str, values: list[Any], datatype: str, **parameters: Any) -> dict[str, Any]:
    tensor = {"name": name, "datatype": datatype, "shape": [len(values)], "data": values}
    return {**tensor, "parameters": parameters} if parameters else tensor


def frame(columns: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"parameters": {"content_type": "pd"}, "inputs": columns, **extra}


PEOPLE_COLUMNS = [
    column("age", ASK["age"].tolist(), "INT64"),
    column("income", ASK["income"].tolist(), "FP64"),
    column("city", ASK["city"].tolist(), "BYTES", content_type="str"),
]


def predict(client: TestClient, model: str, body: dict[str, Any]) -> list[Any]:
    answer = client.post(f"/v2/models/{model}/infer", json=body)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert all(o["parameters"] == {"content_type": "np"} for o in outputs.values())
    data: list[Any] = outputs["predict"]["data"]
    return data


def test_a_mixed_dataframe_pipeline_takes_typed_columns(
    client: TestClient, models: dict[str, Any]
) -> None:
    expected = models["ctmixed"].predict(ASK).tolist()
    assert predict(client, "ctmixed", frame(PEOPLE_COLUMNS)) == expected
    as_n_by_1 = [{**c, "shape": [2, 1]} for c in reversed(PEOPLE_COLUMNS)]
    assert predict(client, "ctmixed", frame(as_n_by_1)) == expected


# scikit-learn's own warning: ctknown was fitted on a DataFrame, and its saved signature says it
# takes an array
@pytest.mark.filterwarnings("ignore:X does not have valid feature names:UserWarning")
def test_a_named_numeric_frame_takes_its_columns_by_name(
    client: TestClient, models: dict[str, Any]
) -> None:
    numeric = ASK[["age", "income"]]
    for name in ("ctnamed", "ctknown"):
        got = predict(client, name, frame(PEOPLE_COLUMNS[1::-1]))  # income, then age
        np.testing.assert_allclose(got, models[name].predict(numeric), rtol=1e-12)


def test_a_plain_array_model_takes_the_columns_in_the_order_sent(
    client: TestClient, models: dict[str, Any]
) -> None:
    rows = MATRIX[:3]
    columns = [column(f"c{i}", rows[:, i].tolist(), "FP64") for i in range(4)]
    assert predict(client, "ctplain", frame(columns)) == models["ctplain"].predict(rows).tolist()
    columns[0] = column("c0", [1, 2, 3], "INT32")  # any numeric datatype, cast exactly
    expected = models["ctplain"].predict(np.column_stack([[1.0, 2, 3], rows[:, 1:]]))
    assert predict(client, "ctplain", frame(columns)) == expected.tolist()


def test_text_as_str_base64_and_a_single_column(client: TestClient, models: dict[str, Any]) -> None:
    texts = ["win cheap money", "lunch at noon"]
    expected = models["cttext"].predict(texts).tolist()
    encoded = [base64.b64encode(t.encode()).decode() for t in texts]
    for body in (
        {"inputs": [column("input-0", texts, "BYTES", content_type="str")]},
        {"inputs": [column("input-0", texts, "BYTES", content_type="np")]},
        {"inputs": [column("input-0", encoded, "BYTES", content_type="base64")]},
        {"parameters": {"content_type": "str"}, "inputs": [column("input-0", texts, "BYTES")]},
        frame([column("message", texts, "BYTES", content_type="str")]),
    ):
        assert predict(client, "cttext", body) == expected, body


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("ctplain", frame([column("c0", [1.0], "FP64")] * 1), "array of 4 features: send 4 columns"),
    (
        "ctknown",
        frame([column("age", [1.0], "FP64"), column("height", [1.0], "FP64")]),
        "missing ['income'], extra ['height']",
    ),
    (
        "ctmixed",
        frame(PEOPLE_COLUMNS[:2]),
        "missing ['city']",
    ),
    (
        "ctplain",
        frame([{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": [1.0, 2, 3, 4]}]),
        "every input is one column, shape [N] or [N, 1], got [1, 4]",
    ),
    (
        "ctnamed",
        frame([column("age", [1.0, 2.0], "FP64"), column("income", [1.0], "FP64")]),
        "differ in length",
    ),
    (
        "ctnamed",
        frame([column("age", [1.0], "FP64"), column("age", [1.0], "FP64")]),
        "columns ['age'] are given twice",
    ),
    (
        "ctnamed",
        frame([column("age", ["old"], "BYTES"), column("income", [1.0], "FP64")]),
        "input 'age' must be FP64, got BYTES",
    ),
    ("ctplain", {"parameters": {"content_type": "csv"}, "inputs": []}, "content_type 'csv'"),
    (
        "cttext",
        {"inputs": [column("input-0", ["a"], "BYTES", content_type="json")]},
        "content_type 'json' is not one of ['np', 'str', 'base64']",
    ),
    (
        "ctplain",
        {"inputs": [{**column("input-0", [1.0] * 4, "FP64", content_type="str"), "shape": [1, 4]}]},
        "content_type 'str' is for BYTES, not FP64",
    ),
]


@pytest.mark.parametrize(("model", "body", "fragment"), BAD, ids=[b[2][:30] for b in BAD])
def test_a_request_of_columns_that_does_not_fit_is_a_400(
    client: TestClient, model: str, body: dict[str, Any], fragment: str
) -> None:
    answer = client.post(f"/v2/models/{model}/infer", json=body)
    assert answer.status_code == 400, answer.text
    assert list(answer.json()) == ["error"]
    assert fragment in answer.json()["error"]


GRPC = """
import asyncio, json, sys
import numpy as np
from adapters.bento.wiring import build_dataplane
from adapters.config.settings import Settings
from adapters.grpc.codec import read_request, write_response
from adapters.grpc.generated import grpc_service_pb2 as pb

plane = build_dataplane(Settings(models=("ctmixed",)))
request = pb.ModelInferRequest(model_name="ctmixed")
request.parameters["content_type"].string_param = "pd"
for spec in json.loads(sys.argv[1]):
    tensor = request.inputs.add(name=spec["name"], datatype=spec["datatype"], shape=[2])
    if spec["datatype"] == "BYTES":
        tensor.contents.bytes_contents.extend(v.encode() for v in spec["data"])
        tensor.parameters["content_type"].string_param = "str"
    elif spec["datatype"] == "INT64":
        tensor.contents.int64_contents.extend(spec["data"])
    else:
        tensor.contents.fp64_contents.extend(spec["data"])
decoded = read_request(request, plane.limits)
answer = write_response(asyncio.run(plane.infer(decoded)))
raw = dict(zip([o.name for o in answer.outputs], answer.raw_output_contents, strict=True))
(output,) = [o for o in answer.outputs if o.name == "predict"]
print(json.dumps({
    "request": decoded.parameters,
    "content_type": output.parameters["content_type"].string_param,
    "predict": np.frombuffer(raw["predict"], dtype="<i8").tolist(),
}))
"""


def test_grpc_carries_the_content_types_in_infer_parameters(models: dict[str, Any]) -> None:
    """In a process of its own: the KServe SDK's and tritonclient's protobuf messages of the
    same names cannot be registered beside ours (tests/clients/call.py)."""
    got = printed_json([sys.executable, "-c", GRPC, json.dumps(PEOPLE_COLUMNS)])
    assert got["request"] == {"content_type": "pd"}
    assert got["content_type"] == "np"
    assert got["predict"] == models["ctmixed"].predict(ASK).tolist()
