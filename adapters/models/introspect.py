"""V2 signatures of estimators saved without one: what a plain ``bentoml.sklearn.save_model`` of a
user's model can still tell about its inputs.

In order of preference:

* **Columns** (``feature_names_in_`` with string names: fitted on a pandas DataFrame): one input
  per column, named as the column, BYTES where the column feeds a text or categorical encoder
  with string categories, FP64 otherwise (MLServer's pandas codec convention). Requests are
  rebuilt into a DataFrame with the fitted columns, in the fitted order.
* **Text** (a text vectorizer at the head of a pipeline): one BYTES input ``[-1]``.
* **Matrix** (``n_features_in_``): one FP64 input ``[-1, n_features_in_]``.

The derived inputs are then checked the only sure way, by running every output method on a
synthetic sample; a model that fails is reported with the reason, never guessed at.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from adapters.models.signature import DEFAULT_INPUT_NAME, Signature, infer_signature

TEXT_VECTORIZERS = ("CountVectorizer", "TfidfVectorizer", "HashingVectorizer")
CATEGORICAL_ENCODERS = ("OneHotEncoder", "OrdinalEncoder", "TargetEncoder")


def final_estimator(estimator: Any) -> Any:
    """The last step of a pipeline (recursively), else the estimator itself."""
    while hasattr(estimator, "steps"):
        estimator = estimator.steps[-1][1]
    return estimator


def head(estimator: Any) -> Any:
    """The first step of a pipeline (recursively), else the estimator itself."""
    while hasattr(estimator, "steps"):
        estimator = estimator.steps[0][1]
    return estimator


def derive_signature(estimator: Any) -> Signature:
    """The signature of a fitted estimator saved without one.

    Raises:
        ValueError: nothing says what the estimator takes, or it fails on the derived sample.
    """
    sample = derived_sample(estimator)
    if hasattr(sample, "columns"):
        return infer_signature(estimator, sample)
    return _checked(estimator, sample)


def derived_sample(estimator: Any) -> Any:
    """Two rows of what a fitted estimator saved without a sample takes, as far as it tells:
    what its signature is derived from, and the sample stored for its warm-up.

    Raises:
        ValueError: nothing says what it takes, or (a column model) it fails on them.
    """
    names = column_names(estimator)
    if names:
        kinds = _column_kinds(head(estimator), names)
        return _sample_frame(estimator, names, kinds)
    if type(head(estimator)).__name__ in TEXT_VECTORIZERS:
        return np.array(["a sample text", "another one"], dtype=np.object_)
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is None:
        raise ValueError(
            "nothing tells what it takes (no feature_names_in_, no text vectorizer at the head "
            "of a pipeline, no n_features_in_): save it with a signature or a sample "
            "(python -m adapters.register --help)"
        )
    return np.zeros((2, int(n_features)), dtype=np.float64)


def _checked(estimator: Any, sample: Any) -> Signature:
    try:
        return infer_signature(estimator, sample, input_name=DEFAULT_INPUT_NAME)
    except Exception as exc:
        raise ValueError(
            f"it fails on a derived sample ({type(exc).__name__}: {exc}); "
            "save it with a sample (python -m adapters.register --help)"
        ) from None


def column_names(estimator: Any) -> list[str]:
    """The column names a model fitted on a DataFrame knows (its own, or its first step's)."""
    for candidate in (estimator, head(estimator)):
        names = getattr(candidate, "feature_names_in_", None)
        if names is not None and all(isinstance(n, str) for n in names):
            return [str(n) for n in names]
    return []


def column_values(estimator: Any, names: list[str]) -> dict[str, Any]:
    """Per column a value it accepts when that is not a number: the first known category of a
    fitted encoder, ``"text"`` for a text column; ``None`` for a numeric one."""
    return _column_kinds(head(estimator), names)


def _column_kinds(first: Any, names: list[str]) -> dict[str, Any]:
    """Per column: a category/text value it accepts (BYTES), or ``None`` (numeric)."""
    kinds: dict[str, Any] = dict.fromkeys(names)
    for transformer, columns in _routed(first, names):
        step = head(transformer)
        kind = type(step).__name__
        if kind in TEXT_VECTORIZERS:
            for column in columns:
                kinds[column] = "text"
        elif kind in CATEGORICAL_ENCODERS and hasattr(step, "categories_"):
            for column, categories in zip(columns, step.categories_, strict=False):
                if np.asarray(categories).dtype.kind in "OUS":
                    kinds[column] = str(categories[0])
    return kinds


def _routed(first: Any, names: list[str]) -> Iterable[tuple[Any, list[str]]]:
    """``(transformer, its columns)`` of a ColumnTransformer at the head, else the whole."""
    for _, transformer, columns in getattr(first, "transformers_", ()):
        if isinstance(columns, str):
            columns = [columns]
        selected = [names[c] if isinstance(c, int | np.integer) else c for c in list(columns)]
        yield transformer, [str(c) for c in selected if c in names]
    if not hasattr(first, "transformers_"):
        yield first, names


def _sample_frame(estimator: Any, names: list[str], kinds: dict[str, Any]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(
        {
            name: pd.Series([kind, kind], dtype=object) if kind is not None else [0.0, 0.0]
            for name, kind in kinds.items()
        }
    )
    try:
        for method in ("predict", "transform"):
            if hasattr(estimator, method):
                getattr(estimator, method)(frame)
                break
    except Exception as exc:
        raise ValueError(
            f"it fails on a derived sample of its columns {names} ({type(exc).__name__}: "
            f"{exc}); save it with a sample (python -m adapters.register --help)"
        ) from None
    return frame
