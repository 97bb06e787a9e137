"""Model files and folders as other servers keep them, and what to do with a saved version.

KServe's ``storageUri`` and MLServer's model folders hold one estimator under a well-known
name; ``python -m adapters.register NAME DIR`` takes such a folder as it takes the file
(:func:`load_model_file`). :func:`next_steps` is what the command prints once it is saved: how to
serve it and a request to call it with.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from adapters.models.signature import Signature

WELL_KNOWN = ("model.joblib", "model.pickle", "model.pkl")
"""The files MLServer's and KServe's scikit-learn runtimes load from a folder, in their order."""
SAMPLES = {"BYTES": "some text", "BOOL": True, "FP16": 0.5, "FP32": 0.5, "FP64": 0.5}


def model_file(path: Path) -> Path:
    """``path`` itself, or the one well-known model file in the folder ``path``.

    Raises:
        ValueError: a folder with none of them, or with more than one.
    """
    if not path.is_dir():
        return path
    found = [path / name for name in WELL_KNOWN if (path / name).is_file()]
    if len(found) != 1:
        what = "none" if not found else ", ".join(f.name for f in found)
        raise ValueError(f"{path} must hold exactly one of {', '.join(WELL_KNOWN)} (found {what})")
    return found[0]


def load_model_file(path: Path) -> Any:
    """The estimator in a joblib or pickle file, or in a folder holding one (:func:`model_file`)."""
    import joblib

    return joblib.load(model_file(path))


def next_steps(saved: Any, *, url: str = "http://127.0.0.1:3000") -> str:
    """What was saved, and how to serve and call it."""
    name = saved.tag.name
    signature = Signature.from_dict(saved.info.metadata["signature"])
    inputs = ", ".join(f"{t.name} {t.datatype.value} {list(t.shape)}" for t in signature.inputs)
    tensors = []
    for spec in signature.inputs:
        shape = [1 if d < 0 else d for d in spec.shape]
        value = SAMPLES.get(spec.datatype.value, 1)
        data = [value] * math.prod(shape)
        tensors.append({"name": spec.name, "shape": shape, "datatype": spec.datatype.value})
        tensors[-1]["data"] = data
    body = json.dumps({"inputs": tensors})
    return "\n".join(
        [
            f"saved {saved.tag}: inputs {inputs}; outputs {', '.join(signature.output_names)}",
            f"serve it:  OIP_MODELS={name} make serve  (or add {name} to OIP_MODELS)",
            f"  a server already serving {name}: curl -X POST "
            f"{url}/v2/repository/models/{name}/load",
            f"call it:   curl -s {url}/v2/models/{name}/infer "
            f"-H 'content-type: application/json' -d '{body}'",
        ]
    )
