"""Launching, probing and stopping the servers under test.

Every server runs in its own session (process group), bound to 127.0.0.1 on a
free port; it is stopped by signalling the whole group, and any descendant
that escaped the group is killed by pid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

READY_POLL_S = 0.05


@dataclass
class ServerSpec:
    """How to start one server; `port` is filled in at launch."""

    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    # Writes per-launch config (e.g. MLServer's settings.json) for a given port.
    prepare: Callable[[int], None] | None = None


@dataclass
class RunningServer:
    name: str
    base_url: str
    proc: subprocess.Popen[bytes]
    launch_to_ready_s: float
    log_path: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat fields after the command name (which may hold spaces and ')')."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[19] if fields else None  # field 22 of stat: starttime


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def process_tree(root: int) -> list[int]:
    """`root` and all its live descendants."""
    children = _children_map()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _read_kb(path: str, key: str) -> int:
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def tree_memory_mib(root: int) -> dict[str, float]:
    """Summed RSS and PSS (MiB) of `root` and its descendants, from /proc."""
    pids = process_tree(root)
    rss = sum(_read_kb(f"/proc/{pid}/status", "VmRSS:") for pid in pids)
    pss = sum(_read_kb(f"/proc/{pid}/smaps_rollup", "Pss:") for pid in pids)
    return {"rss_mib": rss / 1024, "pss_mib": pss / 1024, "processes": len(pids)}


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()


def http_post_json(url: str, body: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()


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


def _wait_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before ready")
        try:
            status, _ = http_get(url, timeout=1.0)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(READY_POLL_S)
    raise TimeoutError(f"not ready within {timeout_s:.0f} s: {url}")


def stop(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever of the tree is left."""
    tree = {pid: _start_time(pid) for pid in process_tree(proc.pid)} if proc.poll() is None else {}
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid, started in tree.items():  # descendants that left the process group
        if started is not None and _start_time(pid) == started:  # not a reused pid
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)


@contextmanager
def launched(spec: ServerSpec, log_path: Path, ready_timeout_s: float) -> Iterator[RunningServer]:
    """Start `spec`, wait for /v2/health/ready, yield it, and always stop it."""
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in spec.argv]
    if spec.prepare is not None:
        spec.prepare(port)
    env = {**os.environ, **spec.env}
    base_url = f"http://127.0.0.1:{port}"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            argv,
            cwd=spec.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_ready(proc, f"{base_url}/v2/health/ready", ready_timeout_s)
            ready_s = time.monotonic() - t0
            yield RunningServer(spec.name, base_url, proc, ready_s, log_path)
        finally:
            stop(proc)
