"""Locust scenarios for the V2 server. Every request is built from the models' V2 metadata.

Model names come from ``LOAD_MODELS`` (V2 has no "list models" route); shapes, datatypes and
versions are read from ``GET /v2/models/<name>`` at start, never hard-coded.

* ``SmallRequests``: 1-4 row inferences across every model and version (``latest``, ``best``,
  explicit versions, unversioned), plus metadata and health calls.
* ``BatchRequests``: 256-row inferences on ``LOAD_BATCH_MODELS`` (numeric models).

Run it with ``make load`` (``load_tests/run.py``), which also checks the thresholds.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import orjson
from locust import FastHttpUser, between, events, task
from locust.env import Environment

WORDS = [
    "transformer", "object", "detection", "reinforcement", "agent", "pipeline", "drift",
    "monitoring", "forecasting", "segmentation", "sentiment", "deployment", "kubernetes",
    "feature", "store", "policy", "gradient", "tokenizer",
]  # fmt: skip


@dataclass(frozen=True)
class Target:
    """One model as its metadata describes it."""

    name: str
    versions: tuple[str, ...]
    input: dict[str, Any]  # name, datatype, shape (with -1)


TARGETS: list[Target] = []


def fetch_targets(host: str, names: list[str]) -> list[Target]:
    """Read each model's metadata once, before any user starts."""
    import httpx

    targets = []
    for name in names:
        meta = httpx.get(f"{host}/v2/models/{name}", timeout=10).raise_for_status().json()
        versions = (*meta.get("versions", []), "latest", "best", "")
        targets.append(Target(name, versions, meta["inputs"][0]))
    return targets


def payload(target: Target, rows: int) -> bytes:
    """A valid request of ``rows`` rows for the model's first input."""
    spec = target.input
    shape = [rows if d < 0 else d for d in spec["shape"]]
    count = 1
    for d in shape:
        count *= d
    if spec["datatype"] == "BYTES":
        data: list[Any] = [" ".join(random.choices(WORDS, k=6)) for _ in range(count)]
    elif spec["datatype"] == "BOOL":
        data = [random.random() < 0.5 for _ in range(count)]
    elif spec["datatype"].startswith("FP"):
        data = [round(random.gauss(0, 1), 4) for _ in range(count)]
    else:
        data = [random.randint(0, 9) for _ in range(count)]
    body = {"id": "load", "inputs": [{**spec, "shape": shape, "data": data}]}
    return orjson.dumps(body)


def infer_path(target: Target, version: str) -> str:
    prefix = f"/v2/models/{target.name}"
    return f"{prefix}/versions/{version}/infer" if version else f"{prefix}/infer"


@events.init.add_listener
def on_init(environment: Environment, **_: Any) -> None:
    names = [m for m in os.environ.get("LOAD_MODELS", "iris,diabetes,text").split(",") if m]
    if environment.host:
        TARGETS[:] = fetch_targets(environment.host.rstrip("/"), names)


@events.quitting.add_listener
def check_thresholds(environment: Environment, **_: Any) -> None:
    """Exit non-zero when any request failed or the p99 is over ``LOAD_MAX_P99_MS``."""
    total = environment.stats.total
    limit = float(os.environ.get("LOAD_MAX_P99_MS", "1000"))
    p99 = total.get_response_time_percentile(0.99) or 0.0
    if total.num_failures:
        print(f"load: FAIL {total.num_failures} of {total.num_requests} requests failed")
        environment.process_exit_code = 1
    elif p99 > limit:
        print(f"load: FAIL p99 {p99:.0f} ms is over the threshold LOAD_MAX_P99_MS={limit:g}")
        environment.process_exit_code = 1
    else:
        print(f"load: OK {total.num_requests} requests, 0 failures, p99 {p99:.0f} ms")


JSON = {"Content-Type": "application/json"}


class SmallRequests(FastHttpUser):
    """Interactive traffic: small inferences on every model and version, some metadata."""

    weight = 4
    wait_time = between(0.0, 0.05)

    @task(10)
    def infer(self) -> None:
        target = random.choice(TARGETS)
        version = random.choice(target.versions)
        name = f"infer {target.name}@{version or 'default'}"
        self.client.post(
            infer_path(target, version),
            data=payload(target, random.randint(1, 4)),
            headers=JSON,
            name=name,
        )

    @task(2)
    def metadata(self) -> None:
        target = random.choice(TARGETS)
        self.client.get(f"/v2/models/{target.name}", name="model metadata")

    @task(1)
    def health(self) -> None:
        self.client.get("/v2/health/ready", name="health ready")
        self.client.get("/v2/models/" + random.choice(TARGETS).name + "/ready", name="model ready")


class BatchRequests(FastHttpUser):
    """Bulk scoring: 256-row requests on the numeric models (``LOAD_BATCH_MODELS``)."""

    weight = 1
    wait_time = between(0.0, 0.1)

    def on_start(self) -> None:
        wanted = os.environ.get("LOAD_BATCH_MODELS", "")
        names = set(wanted.split(",")) if wanted else None
        numeric = [t for t in TARGETS if t.input["datatype"] != "BYTES"]
        self.targets = [t for t in numeric if names is None or t.name in names] or numeric
        self.bodies = {t.name: payload(t, 256) for t in self.targets}

    @task
    def batch(self) -> None:
        target = random.choice(self.targets)
        self.client.post(
            infer_path(target, ""),
            data=self.bodies[target.name],
            headers=JSON,
            name=f"batch256 {target.name}",
        )
