"""The first request after a load, against the steady state: what the warm-up buys.

    .venv/bin/python bench/warmup.py                        # iris and forest, both placements
    .venv/bin/python bench/warmup.py --models forest --placements runner --cycles 10

For each model and placement: a server of its own (a temporary store, the model trained by
``train.py``), the median of ``--steady`` sequential one-row requests once warm, then
``--cycles`` times an unload, a load and one request, timed from the client (keep-alive: no
connection set-up in any figure). A version answers its warm-up request before the load returns,
so the first request should cost about what any other does; the figure to hold is the first
request's median over the steady median, at most 5.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import liveserver  # noqa: E402

ROWS = {"iris": [[5.1, 3.5, 1.4, 0.2]], "forest": [[0.1 * i for i in range(20)]]}


def body(model: str) -> dict[str, object]:
    rows = ROWS[model]
    tensor = {"name": "input-0", "shape": [1, len(rows[0])], "datatype": "FP64", "data": rows}
    return {"inputs": [tensor]}


def timed(client: httpx.Client, url: str, payload: dict[str, object]) -> float:
    start = time.perf_counter()
    answer = client.post(url, json=payload)
    elapsed = time.perf_counter() - start
    answer.raise_for_status()
    return elapsed * 1000


def measure(home: Path, model: str, placement: str, steady: int, cycles: int) -> dict[str, float]:
    env = {"BENTOML_HOME": str(home), "OIP_MODELS": model, "OIP_PLACEMENT": placement}
    env |= {"OIP_GRPC_PORT": "0", "BENTOML_DO_NOT_TRACK": "true"}
    log = home / f"{model}-{placement}.log"
    server = liveserver.serve_gateway(log_path=log, env=env, base_env=liveserver.clean_environ())
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            infer, payload = f"/v2/models/{model}/infer", body(model)
            for _ in range(20):
                timed(client, infer, payload)
            warm = statistics.median(timed(client, infer, payload) for _ in range(steady))
            first = []
            for _ in range(cycles):
                client.post(f"/v2/repository/models/{model}/unload").raise_for_status()
                client.post(f"/v2/repository/models/{model}/load").raise_for_status()
                first.append(timed(client, infer, payload))
                for _ in range(5):  # back to the steady state between cycles
                    timed(client, infer, payload)
    finally:
        liveserver.stop(server.proc, grace_s=20.0)
    return {"steady": warm, "first": statistics.median(first), "worst": max(first)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="iris,forest")
    parser.add_argument("--placements", default="inprocess,runner")
    parser.add_argument("--steady", type=int, default=200)
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args()
    models = args.models.split(",")
    columns = ["model", "placement", "steady median ms", "first after load, median ms"]
    print("| " + " | ".join([*columns, "worst ms", "ratio"]) + " |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="oip-warmup-") as folder:
        home = Path(folder)
        train = [sys.executable, "train.py", *(f"--model={m}" for m in models)]
        env = {**liveserver.clean_environ(), "BENTOML_HOME": folder, "BENTOML_DO_NOT_TRACK": "true"}
        subprocess.run(train, cwd=ROOT, env=env, check=True, capture_output=True)
        for model in models:
            for placement in args.placements.split(","):
                m = measure(home, model, placement, args.steady, args.cycles)
                ratio = m["first"] / m["steady"]
                print(
                    f"| {model} | {placement} | {m['steady']:.2f} | {m['first']:.2f} | "
                    f"{m['worst']:.2f} | {ratio:.2f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
