"""Smoke test of a running image: ready, then per model its metadata, readiness and one V2
inference built from the metadata; with ``--tags``, each model serves exactly those versions.

    python scripts/smoke.py --url http://127.0.0.1:3000 --models churn,fraud \\
        [--tags churn:abc,fraud:def]

The release workflow runs it on the container it is about to push (the models of its
selection); it needs nothing but the standard library. A model that refuses the synthetic row
(a category it never saw) with the server's "the model rejected the input" still passes: it was
loaded and ran.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import urllib.error
import urllib.request
from typing import Any

SAMPLES = {"BOOL": True, "BYTES": "a short test sentence", "FP16": 0.5, "FP32": 0.5, "FP64": 0.5}
REFUSED = "the model rejected the input"


def call(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def inputs_of(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """One row for every input the metadata declares (INT*/UINT*: 1)."""
    tensors = []
    for spec in meta["inputs"]:
        shape = [1 if int(d) < 0 else int(d) for d in spec["shape"]]
        value = SAMPLES.get(spec["datatype"], 1)
        tensors.append(
            {
                "name": spec["name"],
                "shape": shape,
                "datatype": spec["datatype"],
                "data": [value] * math.prod(shape),
            }
        )
    return tensors


def smoke(base: str, model: str, tags: list[str]) -> tuple[bool, str]:
    status, meta = call(base, "GET", f"/v2/models/{model}")
    if status != 200:
        return False, f"metadata: HTTP {status} {meta}"
    expected = sorted(t.split(":", 1)[1] for t in tags if t.split(":", 1)[0] == model)
    if expected and sorted(meta["versions"]) != expected:
        return False, f"serves versions {meta['versions']}, not {expected}"
    status, ready = call(base, "GET", f"/v2/models/{model}/ready")
    if status != 200:
        return False, f"ready: HTTP {status} {ready}"
    body = {"id": f"smoke-{model}", "inputs": inputs_of(meta)}
    status, result = call(base, "POST", f"/v2/models/{model}/infer", body)
    if status == 400 and str(result.get("error", "")).startswith(REFUSED):
        return True, f"loaded and ran; it refused the synthetic row: {result['error'][:200]}"
    outputs = result.get("outputs") or []
    ok = (
        status == 200
        and result.get("model_name") == model
        and bool(outputs)
        and all(out.get("data") for out in outputs)
    )
    return ok, json.dumps(result)[:300]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--models", required=True, help="comma list of model names")
    parser.add_argument("--tags", default="", help="comma list of name:version served, exactly")
    args = parser.parse_args(argv)
    tags = [t for t in args.tags.replace(" ", ",").split(",") if t]
    failures = 0
    for model in filter(None, args.models.split(",")):
        ok, detail = smoke(args.url.rstrip("/"), model, tags)
        print(f"{'OK  ' if ok else 'FAIL'} {model}: {detail}")
        failures += not ok
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
