"""Real answers of this server, the examples of the OpenAPI document (:mod:`adapters.http.openapi`).

They were taken from the server serving the ``iris`` and ``text`` models that ``train.py``
trains (seed 0), so what Swagger UI shows is what a client gets; ``tests/test_openapi.py``
validates each against its pydantic model and checks the inference and metadata examples against
what the models of its store answer: labels, names, shapes and datatypes exactly, scores within
a stated tolerance (a model trained on another CPU or BLAS build differs in its last digits).
"""

from __future__ import annotations

from typing import Any

IRIS_VERSION, TEXT_VERSION = "vq26iaxjl62tqax4", "vrwqeuxjl62tqax4"
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
IRIS_PROBA = [0.978383939669273, 0.02161597407654691, 8.625418014386708e-8, 9.242989959787873e-5]
IRIS_PROBA += [0.0946434506864831, 0.9052641194139189]
TEXT_PROBA = [0.03486552832337473, 0.08257014414849113, 0.042266355535934684, 0.8115448562069701]
TEXT_PROBA += [0.02875311578522937, 0.16194861783269335, 0.06201408118709194, 0.497160115769841]
TEXT_PROBA += [0.144166702008657, 0.13471048320171658]
TEXT_DECISION = [-0.8018661796273565, 0.06028337061306871, -0.6093734014171897, 2.3455748675100248]
TEXT_DECISION += [
    -0.9946186570783092,
    0.027748928149815416,
    -0.9321687077210215,
    1.1493819558395892,
]
TEXT_DECISION += [-0.08855990004948666, -0.1564022762186577]
TEXT_ROWS = ["a random forest for tabular data", "fine-tuning a transformer on text"]


def _tensor(name: str, datatype: str, shape: list[int], data: Any = None) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


INFER_REQUESTS = {
    "iris": {
        "id": "42",
        "inputs": [_tensor("input-0", "FP64", [2, 4], IRIS_ROWS)],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    },
    "text": {"inputs": [_tensor("text", "BYTES", [2], TEXT_ROWS)]},
}
INFER_RESPONSES = {
    "iris": {
        "model_name": "iris",
        "model_version": IRIS_VERSION,
        "id": "42",
        "outputs": [
            _tensor("predict", "INT64", [2], [0, 2]),
            _tensor("predict_proba", "FP64", [2, 3], IRIS_PROBA),
        ],
    },
    "text": {
        "model_name": "text",
        "model_version": TEXT_VERSION,
        "outputs": [
            _tensor("predict", "BYTES", [2], ["other", "natural-language-processing"]),
            _tensor("predict_proba", "FP64", [2, 5], TEXT_PROBA),
            _tensor("decision_function", "FP64", [2, 5], TEXT_DECISION),
        ],
    },
}
SERVER_METADATA = {
    "name": "bentoml-oip-sklearn",
    "version": "<server_version>",
    "extensions": ["binary_tensor_data", "model_repository", "statistics", "classification"],
}
IRIS_METADATA = {
    "name": "iris",
    "versions": [IRIS_VERSION],
    "platform": "sklearn_logisticregression",
    "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
    "outputs": [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
        {"name": "decision_function", "datatype": "FP64", "shape": [-1, 3]},
    ],
    "properties": {
        "bentoml_tag": f"iris:{IRIS_VERSION}",
        "metrics.accuracy": "1.0",
        "params.C": "1.0",
        "classes": "0,1,2",
        "aliases": "latest,best",
    },
}
TEXT_METADATA = {
    "name": "text",
    "versions": [TEXT_VERSION],
    "platform": "sklearn_logisticregression",
    "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
    "outputs": [
        {"name": "predict", "datatype": "BYTES", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 5]},
        {"name": "decision_function", "datatype": "FP64", "shape": [-1, 5]},
    ],
    "properties": {"bentoml_tag": f"text:{TEXT_VERSION}", "metrics.accuracy": "0.875"},
}
_STAGES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")
_NS = (5824826, 0, 0, 457538, 5569819, 251792)
IRIS_STATS = {
    "name": "iris",
    "version": IRIS_VERSION,
    "last_inference": 1795673291499,
    "inference_count": 6,
    "execution_count": 3,
    "inference_stats": {
        k: {"count": 3 if ns else 0, "ns": ns} for k, ns in zip(_STAGES, _NS, strict=True)
    },
    "batch_stats": [],
}
REPOSITORY_INDEX = [
    {"name": "iris", "version": IRIS_VERSION, "state": "READY", "reason": "", "loaded": True},
    {"name": "text", "version": TEXT_VERSION, "state": "READY", "reason": "", "loaded": True},
]
