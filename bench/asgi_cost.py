"""The V2 work of one REST inference, without any server: the gateway's ASGI app (fast lane, V2
routes, data plane, in-process executor) against the ceiling's (``bench/ceiling.py``), called in
a loop with an in-memory ``receive``/``send`` on uvloop, alternating rounds in one process.

Both pay the same scikit-learn ``predict`` (timed alone too); uvicorn, the kernel and the client
are left out, so the difference is what the V2 server does between them.

    BENTOML_HOME=<store with iris> .venv/bin/python bench/asgi_cost.py [--calls N] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

BODY = (
    b'{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP64","data":[5.1,3.5,1.4,0.2]}],'
    b'"outputs":[{"name":"predict"}]}'
)
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def scope() -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    headers.append((b"content-length", str(len(BODY)).encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v2/models/iris/infer",
        "raw_path": b"/v2/models/iris/infer",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 8000),
    }


async def call(app: App) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope(), receive, send)
    return sent


async def per_call_us(app: App, calls: int) -> float:
    for _ in range(min(calls, 500)):  # warm-up: the in-process executor decides to run inline
        await call(app)
    start = time.perf_counter()
    for _ in range(calls):
        await call(app)
    return (time.perf_counter() - start) / calls * 1e6


def gateway_app() -> tuple[App, Any]:
    """The gateway's app as a worker builds it (lane, no auth or CORS), serving iris in process."""
    os.environ.update(OIP_MODELS="iris", OIP_PLACEMENT="inprocess")
    from adapters.bento.wiring import build_dataplane
    from adapters.config.settings import Settings
    from adapters.http.lane import V2FastLane
    from adapters.http.routes import build_app
    from adapters.http.security import secure

    app = build_app()
    app.state.dataplane = build_dataplane(Settings.from_env())
    held = app.state.dataplane.executors["iris"].estimators  # by tag: iris's one version
    lane = V2FastLane(app, app, log_access=False)
    return secure(lane, tokens=(), cors_origins=()), next(iter(held.values()))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import ceiling  # bench/ceiling.py

    ours, estimator = gateway_app()
    ceiling.MODELS["iris"] = estimator  # the very estimator the gateway serves
    for app in (ours, ceiling.app):
        answer = await call(app)
        assert answer[0]["status"] == 200, answer
    row = np.array([[5.1, 3.5, 1.4, 0.2]])
    results: dict[str, list[float]] = {"gateway app": [], "ceiling app": [], "predict alone": []}
    for _ in range(args.rounds):
        results["gateway app"].append(await per_call_us(ours, args.calls))
        results["ceiling app"].append(await per_call_us(ceiling.app, args.calls))
        start = time.perf_counter()
        for _ in range(args.calls):
            estimator.predict(row)
        results["predict alone"].append((time.perf_counter() - start) / args.calls * 1e6)
    for name, values in results.items():
        rounds = ", ".join(f"{v:.1f}" for v in values)
        print(f"{name:14s} median {statistics.median(values):6.1f} us per call ({rounds})")
    ratio = statistics.median(results["ceiling app"]) / statistics.median(results["gateway app"])
    print(f"ceiling / gateway: {ratio:.2f}")


if __name__ == "__main__":
    uvloop.run(main())
