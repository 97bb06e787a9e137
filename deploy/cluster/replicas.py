"""Replicas of the server behind HAProxy on one machine: bring them up, restart them in turn, stop
them. What runs is written to ``cluster.json`` in the cluster's directory, so that each command
(``make cluster``, ``make rolling-restart``, ``make cluster-stop``) is a process of its own.

Each replica is a ``bentoml serve`` on ports of its own, with a BENTOML_HOME of its own over the
same model store (:func:`liveserver.own_home`), started and stopped by :mod:`liveserver`.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

import liveserver
from deploy.cluster import haproxy

STATE = "cluster.json"
DRAIN_DELAY_S = 3.0
"""The replicas' ``OIP_DRAIN_DELAY_S`` unless set: HAProxy takes a draining replica out within
:data:`haproxy.DETECTION_S` plus a check's answer time; the rest is headroom on a busy machine."""
READY_DEADLINE_S = 180.0


class ClusterError(RuntimeError):
    """A cluster command cannot do what it was asked; the message says why."""


@dataclass
class Replica:
    """One ``bentoml serve``: its name in HAProxy, ports, and the process that runs it now."""

    name: str
    port: int
    grpc_port: int
    pid: int = 0
    started: float = 0.0  # the process's start time (psutil): a reused pid is not this one

    def alive(self) -> bool:
        return _alive(self.pid, self.started)


@dataclass
class Cluster:
    """A running cluster, as ``cluster.json`` records it."""

    directory: Path
    host: str
    lb_port: int
    lb_grpc_port: int
    store: str  # the BENTOML_HOME whose models every replica serves
    env: dict[str, str]  # the replicas' settings (OIP_*), laid over this process's environment
    replicas: list[Replica] = field(default_factory=list)
    haproxy_pid: int = 0
    haproxy_started: float = 0.0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.lb_port}"

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.lb_grpc_port}"

    def save(self) -> None:
        path = self.directory / STATE
        state = asdict(self) | {"directory": str(self.directory)}
        path.write_text(json.dumps(state, indent=2))
        path.chmod(0o600)  # the settings may hold a bearer token

    @classmethod
    def load(cls, directory: Path) -> Cluster:
        try:
            state = json.loads((directory / STATE).read_text())
        except FileNotFoundError:
            raise ClusterError(f"no cluster in {directory} (make cluster starts one)") from None
        state["directory"] = Path(state["directory"])
        state["replicas"] = [Replica(**r) for r in state["replicas"]]
        return cls(**state)


def up(
    directory: Path,
    *,
    replicas: int,
    store: Path,
    env: Mapping[str, str],
    host: str = "127.0.0.1",
    lb_port: int = 8080,
    lb_grpc_port: int = 8081,
) -> Cluster:
    """Start ``replicas`` replicas and HAProxy on ``host:lb_port`` (gRPC ``lb_grpc_port``);
    return once every replica is ready and UP in HAProxy.

    ``env`` configures the replicas (``OIP_*``), over this process's environment without its own
    server settings; ``OIP_DRAIN_DELAY_S`` defaults to :data:`DRAIN_DELAY_S`.
    """
    if replicas < 1:
        raise ClusterError("a cluster has at least one replica")
    directory.mkdir(parents=True, exist_ok=True)
    try:
        running = Cluster.load(directory)
    except ClusterError:
        running = None
    if running is not None and (
        _alive(running.haproxy_pid, running.haproxy_started)
        or any(r.alive() for r in running.replicas)
    ):
        raise ClusterError(f"a cluster is running from {directory}: make cluster-stop first")
    for port in (lb_port, lb_grpc_port):
        if not _bindable(host, port):
            raise ClusterError(f"{host}:{port} is in use: choose LB_PORT / LB_GRPC_PORT")
    (directory / "haproxy.log").unlink(missing_ok=True)
    cluster = Cluster(
        directory,
        host,
        lb_port,
        lb_grpc_port,
        str(store),
        {"OIP_DRAIN_DELAY_S": str(DRAIN_DELAY_S), **env},
    )
    for i in range(replicas):
        port, grpc_port = liveserver.free_port(), liveserver.free_port()
        cluster.replicas.append(Replica(f"r{i + 1}", port, grpc_port))
    cluster.save()
    try:
        with ThreadPoolExecutor(max_workers=replicas) as pool:
            list(pool.map(lambda r: start_replica(cluster, r), cluster.replicas))
        config = haproxy.write_config(
            directory / "haproxy.cfg",
            (haproxy.Server(r.name, r.port, r.grpc_port) for r in cluster.replicas),
            host=host,
            lb_port=lb_port,
            lb_grpc_port=lb_grpc_port,
        )
        balancer = haproxy.start(config, directory / "haproxy.log")
        cluster.haproxy_pid, cluster.haproxy_started = balancer.pid, _start_time(balancer.pid)
        cluster.save()
        haproxy.wait_up(directory, (r.name for r in cluster.replicas), process=balancer)
    except BaseException:
        cluster.save()  # with the replicas that did start
        down(directory)
        raise
    return cluster


def start_replica(cluster: Cluster, replica: Replica) -> None:
    """``bentoml serve`` for ``replica`` on its ports; returns once it is ready (its previous
    log is kept as ``<name>.previous.log``)."""
    log = cluster.directory / f"{replica.name}.log"
    if log.exists():
        log.replace(log.with_suffix(".previous.log"))
    home = liveserver.own_home(Path(cluster.store), cluster.directory / f"{replica.name}-home")
    env = {
        **cluster.env,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "OIP_GRPC_PORT": str(replica.grpc_port),
    }
    server = liveserver.serve_gateway(
        log_path=log,
        env=env,
        base_env=liveserver.clean_environ(),
        port=replica.port,
        deadline_s=READY_DEADLINE_S,
    )
    replica.pid, replica.started = server.proc.pid, _start_time(server.proc.pid)


@dataclass(frozen=True)
class Restarted:
    """One replica's turn in a rolling restart."""

    name: str
    old_pid: int
    new_pid: int
    stop_s: float  # SIGTERM to exit: the drain, then the requests it held
    start_s: float  # launch to ready and UP in HAProxy


def rolling_restart(
    directory: Path, *, report: Callable[[Restarted], object] = lambda _: None
) -> list[Restarted]:
    """Restart every replica in turn: SIGTERM (it drains: not ready, HAProxy takes it out, it
    finishes what it holds and exits), start it again on the same ports, and wait until it is
    ready and UP in HAProxy before the next one. Returns once the last is UP."""
    cluster = Cluster.load(directory)
    if not _alive(cluster.haproxy_pid, cluster.haproxy_started):
        raise ClusterError(f"HAProxy of {directory} is not running: make cluster first")
    drain_s = float(cluster.env.get("OIP_DRAIN_DELAY_S", 0))
    held_s = float(cluster.env.get("OIP_REQUEST_TIMEOUT_S", 60))
    done = []
    for replica in cluster.replicas:
        old = replica.pid
        stop_s = liveserver.terminate(
            old, started=replica.started, grace_s=drain_s + held_s + 15, group=False
        )
        begun = time.monotonic()
        start_replica(cluster, replica)
        cluster.save()
        haproxy.wait_up(directory, [replica.name])
        turn = Restarted(replica.name, old, replica.pid, stop_s, time.monotonic() - begun)
        report(turn)
        done.append(turn)
    return done


def down(directory: Path) -> None:
    """Stop HAProxy and every replica at once (no drain: nothing is left to serve)."""
    cluster = Cluster.load(directory)
    stops = [(cluster.haproxy_pid, cluster.haproxy_started)]
    stops += [(r.pid, r.started) for r in cluster.replicas]
    with ThreadPoolExecutor(max_workers=len(stops)) as pool:
        list(pool.map(lambda p: liveserver.terminate(p[0], started=p[1], grace_s=20), stops))
    (directory / STATE).unlink(missing_ok=True)
    haproxy.stats_socket(directory).unlink(missing_ok=True)


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _start_time(pid: int) -> float:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return 0.0


def _alive(pid: int, started: float) -> bool:
    if pid <= 0:
        return False
    try:
        process = psutil.Process(pid)
        same = abs(float(process.create_time()) - started) <= 0.01
        return same and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def store_home() -> Path:
    """The model store the replicas serve: BENTOML_HOME, else BentoML's default."""
    return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")
