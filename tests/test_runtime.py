"""Execution: merged batches give exactly the unbatched answers; bad calls fail alone."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from adapters.runtime import PredictFailed, predict_batch, predict_one

X, y = load_iris(return_X_y=True)
A = LogisticRegression(max_iter=500).fit(X, y)
B = LogisticRegression(C=0.01, max_iter=500).fit(X, y)
ESTIMATORS = {"iris:a": A, "iris:b": B}
BOTH = ("predict", "predict_proba")


def test_merged_batch_equals_one_call_at_a_time() -> None:
    calls = [
        ("iris:a", BOTH, X[0:3]),
        ("iris:b", BOTH, X[3:4]),
        ("iris:a", BOTH, X[50:51]),
        ("iris:a", ("predict",), X[100:102]),
        ("iris:a", BOTH, X[140:150]),
    ]
    results = predict_batch(ESTIMATORS, calls)
    assert len(results) == len(calls)
    for (tag, methods, rows), result in zip(calls, results, strict=True):
        alone = predict_one(ESTIMATORS[tag], methods, rows)
        assert isinstance(result, dict) and isinstance(alone, dict)
        assert list(result) == list(methods)
        for m in methods:
            np.testing.assert_allclose(result[m], alone[m], rtol=1e-12, atol=1e-15)
            assert len(result[m]) == len(rows)


def test_one_bad_call_in_a_merged_batch_fails_alone() -> None:
    bad = X[0:2].copy()
    bad[0, 0] = np.inf
    results = predict_batch(ESTIMATORS, [("iris:a", BOTH, X[0:2]), ("iris:a", BOTH, bad)])
    assert isinstance(results[0], dict)
    assert isinstance(results[1], PredictFailed)
    assert "infinity" in results[1].message
