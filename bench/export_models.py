"""Export models from the BentoML store (BENTOML_HOME) to joblib files.

Run with the project's venv: the very estimator objects that `bentoml serve`
loads are dumped, so MLServer and the ceiling serve identical models.

    BENTOML_HOME=DIR python bench/export_models.py --out OUT iris forest
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import bentoml
import joblib


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tags: dict[str, str] = {}
    for name in args.models:
        model_ref = bentoml.models.get(f"{name}:latest")
        estimator = bentoml.sklearn.load_model(model_ref)
        joblib.dump(estimator, args.out / f"{name}.joblib")
        tags[name] = str(model_ref.tag)
    print(json.dumps(tags))


if __name__ == "__main__":
    main()
