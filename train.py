"""Train the default models and save each run as a new version in the BentoML model store.

Every version carries, in its metadata, the evaluation metrics on a held-out split, the training
parameters, the dataset it saw and its V2 signature (introspected by running the model), so the
server can describe it and pick ``best`` without any hand-written per-model code.

    python train.py                                  # iris, diabetes, text (or $OIP_MODELS)
    python train.py --model iris --param C=0.1       # a new iris version, another C
    python train.py --model text --param tfidf__min_df=2
    python train.py --if-empty                       # only models with no version yet
"""

from __future__ import annotations

import argparse
import ast
import csv
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from sklearn.datasets import load_diabetes, load_iris, make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    r2_score,
    root_mean_squared_error,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from adapters.config.settings import Settings
from adapters.models.introspect import final_estimator
from adapters.models.repository import stored_versions
from adapters.protocol.codecs import Array
from adapters.register import save_estimator

TEXT_DATA = Path(__file__).parent / "data" / "ml_projects.csv"


@dataclass(frozen=True)
class Recipe:
    """How to train one default model."""

    load: Callable[[], tuple[Array, Array, str]]  # X, y, dataset source
    build: Callable[[], Any]
    task: str  # classification | regression
    input_name: str = "input-0"


def _iris() -> tuple[Array, Array, str]:
    X, y = load_iris(return_X_y=True)
    return X, y, "sklearn.datasets.load_iris"


def _diabetes() -> tuple[Array, Array, str]:
    X, y = load_diabetes(return_X_y=True)
    return X, y, "sklearn.datasets.load_diabetes"


def _forest_data() -> tuple[Array, Array, str]:
    X, y = make_classification(n_samples=5000, n_features=20, random_state=0)
    return (
        X,
        y,
        "sklearn.datasets.make_classification(n_samples=5000, n_features=20, random_state=0)",
    )


def _text() -> tuple[Array, Array, str]:
    with TEXT_DATA.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    X = np.array([r["text"] for r in rows], dtype=object)
    y = np.array([r["label"] for r in rows], dtype=object)
    return X, y, f"data/{TEXT_DATA.name}"


RECIPES: dict[str, Recipe] = {
    "iris": Recipe(_iris, lambda: LogisticRegression(C=1.0, max_iter=1000), "classification"),
    "diabetes": Recipe(_diabetes, lambda: Ridge(alpha=0.1), "regression"),
    "text": Recipe(
        _text,
        lambda: Pipeline(
            [
                ("tfidf", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
                ("clf", LogisticRegression(C=10.0, max_iter=1000)),
            ]
        ),
        "classification",
        input_name="text",
    ),
    "forest": Recipe(
        _forest_data,
        lambda: RandomForestClassifier(n_estimators=100, random_state=0),
        "classification",
    ),
    # the forest's data with a model that costs next to nothing: the transport dominates
    "linear": Recipe(_forest_data, lambda: LogisticRegression(max_iter=1000), "classification"),
}

SELECTION = {
    "classification": {"name": "accuracy", "goal": "max"},
    "regression": {"name": "rmse", "goal": "min"},
}


def evaluate(task: str, y_true: Array, y_pred: Array) -> dict[str, float]:
    """Held-out metrics; the selection metric of the task is among them."""
    if task == "classification":
        return {
            "accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
            "f1_macro": round(float(f1_score(y_true, y_pred, average="macro")), 4),
        }
    return {
        "r2": round(float(r2_score(y_true, y_pred)), 4),
        "rmse": round(float(root_mean_squared_error(y_true, y_pred)), 4),
        "mae": round(float(mean_absolute_error(y_true, y_pred)), 4),
    }


def apply_params(estimator: Any, params: dict[str, Any]) -> None:
    """``C=0.1`` sets the final estimator; ``step__name=...`` addresses a pipeline step."""
    final = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    for key, value in params.items():
        (estimator if "__" in key else final).set_params(**{key: value})


def plain_params(estimator: Any) -> dict[str, Any]:
    """The estimator's hyper-parameters as metadata-safe scalars."""
    final = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    return {
        k: v if isinstance(v, (bool, int, float, str)) else str(v)
        for k, v in sorted(final.get_params(deep=False).items())
    }


def train(name: str, params: dict[str, Any], *, seed: int, test_size: float) -> bentoml.Model:
    """Train one model, evaluate it on a held-out split and save it as a new version."""
    recipe = RECIPES[name]
    X, y, source = recipe.load()
    stratify = y if recipe.task == "classification" else None
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=seed, stratify=stratify
    )
    estimator = recipe.build()
    apply_params(estimator, {"random_state": seed} if _takes_seed(estimator) else {})
    apply_params(estimator, params)
    estimator.fit(X_train, y_train)
    metrics = evaluate(recipe.task, y_test, estimator.predict(X_test))
    saved: bentoml.Model = save_estimator(
        name,
        estimator,
        sample=X_test[:2],
        input_name=recipe.input_name,
        metrics=metrics,
        select=f"{SELECTION[recipe.task]['name']}:{SELECTION[recipe.task]['goal']}",
        labels={"task": recipe.task, "dataset": name, "framework": "scikit-learn"},
        metadata={
            "params": plain_params(estimator),
            "overrides": {k: str(v) for k, v in params.items()},
            "dataset": {
                "name": name,
                "source": source,
                "n_samples": len(X),
                "n_train": len(X_train),
                "n_test": len(X_test),
            },
            "seed": seed,
            "test_size": test_size,
        },
    )
    return saved


def _takes_seed(estimator: Any) -> bool:
    final = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    return "random_state" in final.get_params(deep=False)


def parse_param(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as a Python literal when it is one (0.1, 10, True, None)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--param expects KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return key, raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        action="append",
        choices=sorted(RECIPES),
        help="repeatable; default: $OIP_MODELS or iris, diabetes, text",
    )
    parser.add_argument(
        "--param",
        action="append",
        type=parse_param,
        default=[],
        metavar="KEY=VALUE",
        help="hyper-parameter override, repeatable",
    )
    parser.add_argument("--seed", type=int, default=0, help="split and estimator seed (default 0)")
    parser.add_argument(
        "--test-size", type=float, default=0.2, help="held-out fraction (default 0.2)"
    )
    parser.add_argument(
        "--if-empty",
        action="store_true",
        help="train only models that have no version in the store",
    )
    args = parser.parse_args(argv)

    names = args.model or [m for m in Settings.from_env().models if m in RECIPES]
    params = dict(args.param)
    for name in names:
        if args.if_empty and stored_versions(name):
            print(f"{name}: already in the store, skipped (--if-empty)")
            continue
        recipe = RECIPES[name]
        described = type(final_estimator(recipe.build())).__name__
        overrides = f" with {params}" if params else ""
        print(f"{name}: training {described}{overrides} (seed {args.seed}) ...", flush=True)
        try:
            model = train(name, params, seed=args.seed, test_size=args.test_size)
        except (ValueError, TypeError) as exc:
            print(f"{name}: training failed: {exc}", file=sys.stderr)
            return 2
        print(f"{name}: saved {model.tag!s}  {model.info.metadata['metrics']!s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
