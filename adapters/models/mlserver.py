"""MLServer model folders into the BentoML store in one command:
``python -m adapters.register --from-mlserver DIR``.

``DIR`` holds a ``model-settings.json`` (or several folders under it do, as ``mlserver start``
finds them): ``name`` (else the folder's), ``parameters.version`` (kept in the metadata as
``imported_from.version``: the store makes versions of its own), ``parameters.uri``, a joblib or
pickle file relative to the folder (else one of the file names MLServer's scikit-learn runtime
looks for). Each is saved as a new version through
:func:`~adapters.models.register.save_estimator` (its signature derived from the estimator);
batching settings and ``predict_fn`` are printed with their counterparts here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters.models.folders import load_model_file, model_file, next_steps
from adapters.models.register import save_estimator

SETTINGS_FILE = "model-settings.json"


def mlserver_folders(path: Path) -> list[Path]:
    """The folders of MLServer models at ``path``: itself, or those under it.

    Raises:
        ValueError: no ``model-settings.json`` there.
    """
    if (path / SETTINGS_FILE).is_file():
        return [path]
    found = sorted(p.parent for p in path.rglob(SETTINGS_FILE))
    if not found:
        raise ValueError(f"no {SETTINGS_FILE} in {path} or under it")
    return found


def read_mlserver(folder: Path) -> dict[str, Any]:
    """What an MLServer folder says: name, version, model file, batching.

    Raises:
        ValueError: unreadable settings, or a model file that is not a joblib or pickle file.
    """
    try:
        settings = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder / SETTINGS_FILE}: {exc}") from None
    if not isinstance(settings, dict):
        raise ValueError(f"{folder / SETTINGS_FILE}: not a JSON object")
    parameters = settings.get("parameters") or {}
    uri = parameters.get("uri")
    path = model_file(folder / uri if uri else folder)
    if path.suffix not in (".joblib", ".pkl", ".pickle"):
        raise ValueError(
            f"{path}: only joblib and pickle files of scikit-learn-API estimators are imported "
            f"(implementation {settings.get('implementation', '?')}); save the estimator with "
            "joblib.dump"
        )
    return {
        "name": str(settings.get("name") or folder.name),
        "version": str(parameters.get("version") or ""),
        "file": path,
        "implementation": str(settings.get("implementation", "")),
        "batching": {k: settings[k] for k in ("max_batch_size", "max_batch_time") if k in settings},
        "predict_fn": str((parameters.get("extra") or {}).get("predict_fn") or ""),
    }


def import_mlserver(folder: Path) -> tuple[Any, list[str]]:
    """Save one MLServer folder as a new version; returns it and the notes to print."""
    found = read_mlserver(folder)
    source = {"server": "mlserver", "folder": str(folder.resolve()), "file": found["file"].name}
    if found["version"]:
        source["version"] = found["version"]
    saved = save_estimator(
        found["name"], load_model_file(found["file"]), metadata={"imported_from": source}
    )
    notes = []
    batching = found["batching"]
    if batching.get("max_batch_size"):
        notes.append(
            f"MLServer max_batch_size {batching['max_batch_size']}: [model.{found['name']}] "
            f"max_batch_size = {batching['max_batch_size']} in the OIP_CONFIG file"
        )
    if "max_batch_time" in batching:
        notes.append(
            "MLServer max_batch_time (a wait to fill a batch) has no counterpart: calls merge "
            "while the model is busy, and max_latency_ms is the wait after which a call is "
            "refused (docs/migrating.md)"
        )
    if found["predict_fn"]:
        notes.append(
            f"MLServer predict_fn {found['predict_fn']}: ask for it by name, "
            f'"outputs": [{{"name": "{found["predict_fn"]}"}}] (unnamed, every output comes back)'
        )
    return saved, notes


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m adapters.register --from-mlserver DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m adapters.register --from-mlserver",
        description="Save the model of an MLServer folder (model-settings.json and a joblib or "
        "pickle file), or of each such folder under DIR, as a new version in the BentoML store.",
    )
    parser.add_argument("--from-mlserver", dest="folder", type=Path, required=True, metavar="DIR")
    args = parser.parse_args(argv)
    try:
        folders = mlserver_folders(args.folder)
    except ValueError as exc:
        print(f"register: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for folder in folders:
        try:
            saved, notes = import_mlserver(folder)
        except (OSError, ValueError, TypeError) as exc:
            print(f"register: {folder}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print("\n".join([next_steps(saved), *notes]))
    return 2 if failed else 0
