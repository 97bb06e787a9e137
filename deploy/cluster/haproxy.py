"""HAProxy for the cluster: its configuration (``haproxy.cfg`` beside this file, filled in), its
process, and what its stats socket says (which replicas are UP, how many requests it answered).

HAProxy is Debian's (``apt-get install haproxy``; ``.ci/run`` installs it when missing).
"""

from __future__ import annotations

import csv
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from string import Template

TEMPLATE = Path(__file__).with_name("haproxy.cfg")
INTER_MS, FALL, RISE = 500, 2, 2
"""Health checks: every 500 ms; out after 2 failed ones, in after 2 passed ones."""
DETECTION_S = (FALL + 1) * INTER_MS / 1000
"""The longest a draining replica waits for HAProxy to take it out, a check's timeout aside."""
HTTP, GRPC = "replicas", "replicas_grpc"  # the backends of haproxy.cfg


class HAProxyError(RuntimeError):
    """HAProxy is missing, refused its configuration, or did not do what was asked in time."""


@dataclass(frozen=True)
class Server:
    """One replica as HAProxy sees it: its name and ports."""

    name: str
    port: int
    grpc_port: int


def executable() -> str:
    """The ``haproxy`` binary (``/usr/sbin`` is not on every user's PATH)."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise HAProxyError("haproxy is not installed: apt-get install haproxy")
    return found


def write_config(
    path: Path, servers: Iterable[Server], *, host: str, lb_port: int, lb_grpc_port: int
) -> Path:
    """``haproxy.cfg`` filled in for these replicas at ``path``, checked by ``haproxy -c``."""
    servers = list(servers)
    text = Template(TEMPLATE.read_text()).substitute(
        stats_socket=str(stats_socket(path.parent)),
        host=host,
        lb_port=lb_port,
        lb_grpc_port=lb_grpc_port,
        inter_ms=INTER_MS,
        fall=FALL,
        rise=RISE,
        http_servers="\n".join(f"    server {s.name} 127.0.0.1:{s.port} check" for s in servers),
        # the gRPC server of a replica is as ready as its HTTP server: checked there, in HTTP/1
        grpc_servers="\n".join(
            f"    server {s.name} 127.0.0.1:{s.grpc_port} proto h2 check port {s.port} "
            "check-proto h1"
            for s in servers
        ),
    )
    path.write_text(text)
    checked = subprocess.run(
        [executable(), "-c", "-q", "-f", str(path)], capture_output=True, text=True, check=False
    )
    if checked.returncode != 0:
        raise HAProxyError(f"haproxy refused {path}: {checked.stderr.strip()}")
    return path


def stats_socket(directory: Path) -> Path:
    return directory / "haproxy.sock"


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """HAProxy in the foreground (``-db``) of a session of its own, its output into ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [executable(), "-db", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def ask(directory: Path, command: str, timeout_s: float = 5.0) -> str:
    """One command on HAProxy's stats socket, and its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(stats_socket(directory)))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def stats(directory: Path) -> dict[str, dict[str, str]]:
    """``show stat``: every row by ``proxy/name`` (``http/FRONTEND``, ``replicas/r1``, ...)."""
    lines = ask(directory, "show stat").removeprefix("# ").splitlines()
    return {f"{row['pxname']}/{row['svname']}": row for row in csv.DictReader(lines) if row}


def answered(directory: Path) -> int:
    """HTTP requests the ``http`` frontend has answered since HAProxy started."""
    return int(stats(directory)["http/FRONTEND"]["req_tot"] or 0)


def wait_up(
    directory: Path,
    names: Iterable[str],
    deadline_s: float = 60.0,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Return once each named replica is UP in both backends (``rise`` checks passed); sooner
    with an error if HAProxy's ``process`` exits."""
    wanted = [f"{backend}/{name}" for name in names for backend in (HTTP, GRPC)]
    deadline = time.monotonic() + deadline_s
    state: dict[str, str] = {}
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            log = directory / "haproxy.log"
            raise HAProxyError(f"haproxy exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            rows = stats(directory)
        except OSError:  # not listening yet
            rows = {}
        state = {key: rows[key]["status"] if key in rows else "?" for key in wanted}
        if all(status == "UP" for status in state.values()):
            return
        time.sleep(0.1)
    raise HAProxyError(f"not UP in HAProxy within {deadline_s:g} s: {state}")
