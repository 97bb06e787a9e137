"""Launching, probing and stopping the servers under test.

Every server runs in its own session (process group), bound to 127.0.0.1 on a
free HTTP port and a free gRPC port; it is stopped by signalling the whole group,
and any descendant that escaped the group is killed by pid. The mechanics live in
the repository's ``liveserver.py``, shared with the tests and the load tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # appended: bench's own modules (load, report...) keep priority
    sys.path.append(str(ROOT))

import liveserver  # noqa: E402

READY_POLL_S = 0.05

# Re-exported: run.py and measure.py use them as servers.*.
free_port = liveserver.free_port
tree_memory_mib = liveserver.tree_memory_mib
stop = liveserver.stop


@dataclass
class ServerSpec:
    """How to start one server; `{port}` and `{grpc_port}` in argv and env values are filled
    in at launch."""

    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    # Writes per-launch config (e.g. MLServer's settings.json) for the HTTP and gRPC ports.
    prepare: Callable[[int, int], None] | None = None
    # Speaks Triton's binary tensor data extension; if not, binary scenarios are n/a.
    binary: bool = True
    # Serves gRPC here; if not, gRPC scenarios are n/a.
    grpc: bool = True
    # Its gRPC ModelInfer predicts (the gRPC ceiling answers zeros): its gRPC predictions must
    # equal its HTTP ones on the same data.
    grpc_predicts: bool = True
    # Measured for start-up and idle memory only (bench/floor: no V2 routes to load).
    startup_only: bool = False


@dataclass
class RunningServer:
    name: str
    base_url: str
    proc: subprocess.Popen[bytes]
    launch_to_ready_s: float
    log_path: Path
    grpc_target: str  # host:port of its gRPC server (ready or not: the gRPC preflight waits)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()


def http_post(
    url: str, body: bytes, headers: dict[str, str], timeout: float = 30.0
) -> tuple[int, Message, bytes]:
    """POST `body` with `headers`; status, response headers (case-insensitive) and body."""
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.headers, err.read()


def model_input_name(base_url: str, model: str, default: str = "input-0") -> str:
    """inputs[0].name from the model's V2 metadata, or `default` if none is declared."""
    try:
        status, body = http_get(f"{base_url}/v2/models/{model}", timeout=5.0)
        if status == 200:
            inputs = json.loads(body).get("inputs") or []
            if inputs and inputs[0].get("name"):
                return str(inputs[0]["name"])
    except (OSError, ValueError):
        pass
    return default


@contextmanager
def launched(spec: ServerSpec, log_path: Path, ready_timeout_s: float) -> Iterator[RunningServer]:
    """Start `spec`, wait for /v2/health/ready, yield it, and always stop it."""
    port = free_port()
    grpc_port = free_port()
    while grpc_port == port:
        grpc_port = free_port()

    def fill(text: str) -> str:
        return text.replace("{port}", str(port)).replace("{grpc_port}", str(grpc_port))

    argv = [fill(a) for a in spec.argv]
    if spec.prepare is not None:
        spec.prepare(port, grpc_port)
    try:
        server = liveserver.launch(
            argv,
            url=f"http://127.0.0.1:{port}",
            cwd=spec.cwd,
            env={k: fill(v) for k, v in spec.env.items()},
            log_path=log_path,
            deadline_s=ready_timeout_s,
            poll_s=READY_POLL_S,
        )
    except liveserver.ServerStartError as err:  # the log is kept; raw.json gets the reason
        raise RuntimeError(err.summary) from None
    try:
        grpc_target = f"127.0.0.1:{grpc_port}"
        yield RunningServer(
            spec.name, server.url, server.proc, server.ready_s, log_path, grpc_target
        )
    finally:
        stop(server.proc)
