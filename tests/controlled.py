"""Stored models the unload and delete tests control (their steps are in ``slow_model``): a held
one, whose predict waits while a file exists, and a heavy one; and a stored version's file broken
for a while. Each is a real scikit-learn pipeline saved in the test store like a user's model."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from bentoml.exceptions import NotFound
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from adapters.models.signature import infer_signature
from adapters.register import save_estimator

from .slow_model import ballast, held

ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}


def save(
    name: str,
    step: FunctionTransformer,
    *,
    C: float = 1.0,
    signature: bool = True,
    sample: bool = False,
) -> str:
    """Fit ``step`` + a logistic regression on iris and save it as a new version of ``name``
    (with a stored signature, or without one: the server then derives it by loading it; with a
    stored sample, its warm-up's input, as ``save_estimator`` stores it, or without one: the
    warm-up then sends zeros)."""
    X, y = load_iris(return_X_y=True)
    pipeline = Pipeline([("step", step), ("clf", LogisticRegression(C=C, max_iter=1000))])
    pipeline.fit(X, y)
    if sample:
        return str(save_estimator(name, pipeline, sample=X[:2]).tag)
    metadata = {"signature": infer_signature(pipeline, X[:2]).to_dict()} if signature else {}
    return str(bentoml.sklearn.save_model(name, pipeline, metadata=metadata).tag)


def save_held(name: str, gate: Path, *, C: float = 1.0) -> str:
    """A version whose predict waits while ``gate`` exists (``slow_model.held``)."""
    return save(name, FunctionTransformer(held, kw_args={"gate": str(gate)}), C=C)


def save_heavy(name: str, mib: int, *, C: float = 1.0) -> str:
    """A version carrying ``mib`` MiB of ballast, so each copy held shows in memory."""
    weight = np.ones(mib * 2**20 // 8)
    return save(name, FunctionTransformer(ballast, kw_args={"weight": weight}), C=C)


@contextmanager
def broken(tag: str) -> Iterator[None]:
    """The version's pickle replaced by garbage inside, restored after: loading it fails."""
    path = Path(bentoml.models.get(tag).path_of("saved_model.pkl"))
    kept = path.with_name("saved_model.kept")
    shutil.copyfile(path, kept)
    path.write_bytes(b"not a pickle")
    try:
        yield
    finally:
        shutil.move(kept, path)


def delete(*tags: str) -> None:
    """Delete these versions from the store, those that are still there ("" is none)."""
    for tag in filter(None, tags):
        with suppress(NotFound):
            bentoml.models.delete(tag)


def v2_error(status: int, body: Any) -> bool:
    """A V2 error answer for a version gone under a call: 404 or 503 with ``{"error": ...}``."""
    return status in (404, 503) and isinstance(body, dict) and list(body) == ["error"]
