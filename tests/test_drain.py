"""SIGTERM drains a real server (``adapters/bento/drain.py``), in both placements: it reports not
ready while it still serves, then stops accepting, finishes the requests it holds (the runner
stays until then), and exits. ``oip_requests_in_flight`` counts the held requests, REST through
the fast lane and gRPC alike. The rolling restart built on this is ``tests/test_cluster.py``."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.bento import drain, seams

from .clients import ours
from .conftest import LiveServer, Store, start_server, stop_server
from .controlled import ROW, delete, save_held
from .traffic import Recorded, join_all

DRAIN_S = 10.0  # long enough that "still serving while not ready" holds on a loaded machine


@pytest.fixture
def gate(store: Store, tmp_path: Path) -> Iterator[Path]:
    """``drained``: a model whose predict waits while the returned file exists."""
    gate = tmp_path / "gate"
    tag = save_held("drained", gate)
    yield gate
    gate.unlink(missing_ok=True)
    delete(tag)


@pytest.mark.e2e
@pytest.mark.parametrize("placement", ["inprocess", "runner"])
def test_sigterm_drains_then_finishes_what_it_holds(
    store: Store, gate: Path, tmp_path: Path, placement: str
) -> None:
    env = {
        "OIP_MODELS": "drained,iris",
        # iris in process: a runner busy with the held call would answer nothing else
        "OIP_PLACEMENT": f"drained={placement},iris=inprocess",
        "OIP_DRAIN_DELAY_S": str(DRAIN_S),
        "OIP_MAX_LATENCY_MS": "120000",  # the call queued behind the held one waits it out
    }
    server = start_server(store.home, env, tmp_path / f"{placement}.log")
    try:
        gate.touch()
        results: dict[str, Any] = {}
        held = [Recorded(rest(server, results), name="rest")]
        held.append(Recorded(over_grpc(server, results), name="grpc"))
        for thread in held:
            thread.start()
        until(lambda: in_flight(server) == {"drained": 2.0, "iris": 0.0})

        os.kill(server.process.pid, signal.SIGTERM)
        until(lambda: httpx.get(f"{server.url}/v2/health/ready").status_code == 503)
        # not ready, still serving: a new connection is answered, gRPC health says so too
        answer = httpx.post(f"{server.url}/v2/models/iris/infer", json=ROW)
        assert answer.status_code == 200, answer.text
        assert ours.run("health", server.grpc) == {"status": "NOT_SERVING"}

        until(lambda: refused(server.url))  # past the delay: no longer accepting ...
        assert server.process.poll() is None and all(t.is_alive() for t in held)
        gate.unlink()  # ... yet what it held is finished, the runner's part too
        join_all(held)
        assert server.process.wait(timeout=60) == 0
    finally:
        stop_server(server)
    assert results == {"rest": 200, "grpc": "drained"}


def test_the_drain_refuses_to_start_on_a_circus_it_does_not_know(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from circus.sighandler import SysHandler

    drain.check()
    monkeypatch.delattr(SysHandler, "handle_term")
    with pytest.raises(seams.SeamBroken, match="SysHandler has no handle_term: SIGTERM would"):
        seams.check()


def rest(server: LiveServer, results: dict[str, Any]) -> Callable[[], None]:
    def call() -> None:
        answer = httpx.post(f"{server.url}/v2/models/drained/infer", json=ROW, timeout=90)
        results["rest"] = answer.status_code

    return call


def over_grpc(server: LiveServer, results: dict[str, Any]) -> Callable[[], None]:
    def call() -> None:
        row = json.dumps(ROW["inputs"][0]["data"])
        answer = ours.run("infer", server.grpc, "drained", row)
        results["grpc"] = answer.get("model_name", answer)

    return call


def in_flight(server: LiveServer) -> dict[str, float]:
    """``oip_requests_in_flight`` by model, from ``/metrics``."""
    lines = httpx.get(f"{server.url}/metrics").text.splitlines()
    prefix = 'oip_requests_in_flight{model="'
    return {
        line[len(prefix) :].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith(prefix)
    }


def refused(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def until(condition: Callable[[], bool], deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, "the awaited condition never came"
        time.sleep(0.05)
