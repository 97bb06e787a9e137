"""Save a fitted scikit-learn estimator into the BentoML store so that it serves well: with its V2
signature, its metrics and the metric that decides ``best``.

A plain ``bentoml.sklearn.save_model(name, estimator)`` serves too (the signature is derived,
:mod:`adapters.models.introspect`), but ``best`` then means ``latest`` and a model whose inputs
cannot be derived is UNAVAILABLE. From Python::

    from adapters.register import save_estimator
    save_estimator("churn", pipeline, sample=X_test[:5], metrics={"auc": 0.91}, select="auc")

From a shell, with a model file (joblib or pickle) and an optional sample (CSV, Parquet or
.npy)::

    python -m adapters.register churn model.joblib --sample sample.csv \\
        --metric auc=0.91 --select auc

``train.py`` saves every default model through :func:`save_estimator` too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from adapters.models.folders import load_model_file, next_steps
from adapters.models.introspect import (
    column_names,
    derive_signature,
    derived_sample,
    final_estimator,
)
from adapters.models.libraries import saved_with
from adapters.models.signature import (
    DEFAULT_INPUT_NAME,
    Signature,
    encode_sample,
    infer_signature,
)

LOWER_IS_BETTER = ("rmse", "mse", "mae", "loss", "error", "log_loss", "brier")


def selection(metric: str, metrics: Mapping[str, float]) -> dict[str, str]:
    """``{"name", "goal"}`` from ``"auc"`` (goal from the name) or ``"rmse:min"``.

    Raises:
        ValueError: the metric is not among ``metrics``, or the goal is not min/max.
    """
    name, _, goal = metric.partition(":")
    if name not in metrics:
        raise ValueError(f"selection metric {name!r} is not among the metrics {sorted(metrics)}")
    goal = goal or ("min" if any(w in name.lower() for w in LOWER_IS_BETTER) else "max")
    if goal not in ("min", "max"):
        raise ValueError(f"selection goal {goal!r} is not min or max")
    return {"name": name, "goal": goal}


def signature_of(
    estimator: Any, sample: Any = None, input_name: str = DEFAULT_INPUT_NAME
) -> Signature:
    """From a sample when there is one (exact), else derived from the estimator."""
    if sample is not None:
        return infer_signature(estimator, sample, input_name=input_name)
    return derive_signature(estimator)


def save_estimator(
    name: str,
    estimator: Any,
    *,
    sample: Any = None,
    input_name: str = DEFAULT_INPUT_NAME,
    metrics: Mapping[str, float] | None = None,
    select: str | None = None,
    labels: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Any:
    """Save ``estimator`` as a new version of ``name``; returns the ``bentoml.Model``.

    Args:
        name: the model name clients use (``/v2/models/<name>``).
        estimator: a fitted estimator or pipeline.
        sample: a few rows of valid input (array or DataFrame); without one the signature is
            derived from the estimator, which fails clearly when it cannot be. Its first row (or
            that of the sample the signature was derived from) is stored too: the version's
            warm-up request.
        input_name: the input tensor's name (not for a DataFrame: its columns name the inputs).
        metrics: held-out metrics, shown in the model's metadata.
        select: the metric that decides ``best`` (``"auc"``, ``"rmse:min"``); its goal is
            guessed from the name when not given.
        labels: BentoML labels of the version.
        metadata: anything else to keep with the version (parameters, dataset, ...).
    """
    import bentoml

    signature = signature_of(estimator, sample, input_name)
    final = final_estimator(estimator)
    stored: dict[str, Any] = {
        "signature": signature.to_dict(),
        "estimator": type(final).__name__,
    }
    warm = sample if sample is not None else derived_sample(estimator)  # derived: it ran on it
    if (rows := encode_sample(signature, warm)) is not None:
        stored["sample"] = rows  # the warm-up's input (adapters.execution.warmup)
    if hasattr(estimator, "steps"):
        stored["pipeline"] = ",".join(type(step).__name__ for _, step in estimator.steps)
    if hasattr(final, "classes_"):
        stored["classes"] = ",".join(map(str, final.classes_))
    stored["saved_with"] = saved_with(estimator)  # shown beside the versions serving it
    if not signature.frame and column_names(estimator):  # a request of columns finds its order
        stored["feature_names"] = column_names(estimator)
    if metrics:
        stored["metrics"] = dict(metrics)
    if select:
        stored["selection_metric"] = selection(select, metrics or {})
    stored.update(metadata or {})
    return bentoml.sklearn.save_model(
        name,
        estimator,
        signatures={m: {"batchable": True, "batch_dim": 0} for m in signature.output_names},
        labels=dict(labels or {}),
        metadata=stored,
    )


def read_sample(path: Path, estimator: Any) -> Any:
    """A sample file: CSV or Parquet (a DataFrame for a model fitted on one, else an array), or
    a numpy ``.npy``."""
    import numpy as np

    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    import pandas as pd

    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, nrows=100)
    return frame if hasattr(estimator, "feature_names_in_") else frame.to_numpy()


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adapters.register",
        description="Save a fitted scikit-learn model (joblib or pickle file) into the BentoML "
        "store with its V2 signature, metrics and selection metric.",
        epilog="MLServer model folders: python -m adapters.register --from-mlserver DIR",
    )
    parser.add_argument("name", help="model name clients use: /v2/models/<name>")
    parser.add_argument(
        "model_file", type=Path, help="joblib or pickle file, or a folder holding model.joblib"
    )
    parser.add_argument("--sample", type=Path, help="a few valid input rows: .csv, .parquet, .npy")
    parser.add_argument("--input-name", default=DEFAULT_INPUT_NAME)
    parser.add_argument("--metric", type=_pair, action="append", default=[], help="NAME=VALUE")
    parser.add_argument("--select", help="metric that decides best: NAME or NAME:min|max")
    parser.add_argument("--label", type=_pair, action="append", default=[], help="KEY=VALUE")
    args = parser.parse_args(argv)

    try:
        estimator = load_model_file(args.model_file)
        sample = read_sample(args.sample, estimator) if args.sample else None
        metrics = {k: float(v) for k, v in args.metric}
        saved = save_estimator(
            args.name,
            estimator,
            sample=sample,
            input_name=args.input_name,
            metrics=metrics,
            select=args.select,
            labels=dict(args.label),
        )
    except (OSError, ValueError, TypeError) as exc:
        print(f"register: {args.name}: {exc}", file=sys.stderr)
        return 2
    print(next_steps(saved))
    return 0


if __name__ == "__main__":
    sys.exit(main())
