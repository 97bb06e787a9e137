"""The gRPC port belongs to one server: the socket rules :mod:`adapters.grpc.port` relies on,
checked on this machine's kernel, and the real servers: a second ``bentoml serve`` on a port in
use stops with one line naming it while the first keeps serving, and two gateway workers of one
server share it."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

import liveserver
from adapters.grpc import port as grpc_port

from .conftest import ROOT, LiveServer, Store, free_port, start_server, stop_server


@pytest.fixture
def address() -> Iterator[tuple[str, int]]:
    """A free port on 127.0.0.1; whatever the test held on it is released after."""
    key = ("127.0.0.1", free_port())
    yield key
    for sock in grpc_port._held.pop(key, []):
        sock.close()


def listener(host: str, port: int) -> socket.socket:
    """A gRPC server's listening socket, as grpcio binds it (SO_REUSEADDR, SO_REUSEPORT)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(64)
    return sock


def test_the_held_port_admits_its_workers_and_refuses_strangers(address: tuple[str, int]) -> None:
    host, port = address
    grpc_port.own(host, port)
    grpc_port.own(host, port)  # again is the same (one hold per address)
    held = grpc_port._held.pop(address)  # as another server would see it: held by a stranger
    try:
        with pytest.raises(
            grpc_port.PortUnavailable, match=re.escape(f"gRPC port {host}:{port} is in use")
        ):
            grpc_port.own(host, port)
    finally:
        grpc_port._held[address] = held
    workers = [listener(host, port), listener(host, port)]  # this server's workers bind beside it
    try:
        for worker in workers:
            worker.setblocking(False)
        clients = [socket.create_connection(address, timeout=10) for _ in range(40)]
        time.sleep(0.2)
        accepted = 0
        for worker in workers:
            while True:
                try:
                    worker.accept()[0].close()
                except BlockingIOError:
                    break
                accepted += 1
        assert accepted == len(clients)  # every connection reaches a worker, none the hold
        for client in clients:
            client.close()
    finally:
        for worker in workers:
            worker.close()


def test_a_port_someone_listens_on_is_refused_naming_it(address: tuple[str, int]) -> None:
    host, port = address
    # any other program, no SO_REUSEPORT
    with socket.create_server(address), pytest.raises(grpc_port.PortUnavailable) as refused:
        grpc_port.own(host, port)
    assert f"{host}:{port}" in str(refused.value) and "OIP_GRPC_PORT" in str(refused.value)
    assert address not in grpc_port._held


def test_connections_left_in_time_wait_do_not_refuse_a_restart(address: tuple[str, int]) -> None:
    host, port = address
    with listener(host, port) as previous:  # the previous server, which closes first
        client = socket.create_connection(address, timeout=10)
        previous.accept()[0].close()
        time.sleep(0.1)
        client.close()
    grpc_port.own(host, port)


def test_a_host_that_does_not_resolve_is_named() -> None:
    with pytest.raises(grpc_port.PortUnavailable, match=r"OIP_GRPC_HOST 'no-such-host\.invalid'"):
        grpc_port.own("no-such-host.invalid", free_port())


def grpc_live(address: str) -> bool:
    """``ServerLive`` over a fresh channel (raw bytes: no second copy of the stubs here)."""
    import grpc

    with grpc.insecure_channel(address) as channel:
        live = channel.unary_unary("/inference.GRPCInferenceService/ServerLive")
        return bool(live(b"", timeout=10) == b"\x08\x01")


def grpc_listeners(server: LiveServer) -> int:
    """Listening sockets on the server's gRPC port among its processes."""
    number = int(server.grpc.rsplit(":", 1)[1])
    count = 0
    for process in [
        psutil.Process(server.process.pid),
        *liveserver._descendants(server.process.pid),
    ]:
        try:
            connections = process.connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        count += sum(c.laddr.port == number and c.status == psutil.CONN_LISTEN for c in connections)
    return count


@pytest.fixture(scope="module")
def two_workers(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    log = tmp_path_factory.mktemp("grpc-port") / "server.log"
    server = start_server(store.home, {"OIP_MODELS": "iris", "OIP_WORKERS": "2"}, log)
    yield server
    stop_server(server)


@pytest.mark.e2e
def test_two_workers_share_the_grpc_port(two_workers: LiveServer) -> None:
    deadline = time.monotonic() + 60
    while grpc_listeners(two_workers) < 2:  # each worker starts gRPC once it has loaded
        assert time.monotonic() < deadline, grpc_listeners(two_workers)
        time.sleep(0.2)
    assert grpc_listeners(two_workers) == 2  # one per worker; the held socket does not listen
    assert all(grpc_live(two_workers.grpc) for _ in range(10))


@pytest.mark.e2e
def test_a_second_server_on_the_grpc_port_stops_and_the_first_serves_on(
    two_workers: LiveServer, store: Store
) -> None:
    host, number = two_workers.grpc.rsplit(":", 1)
    http_port = free_port()
    env = liveserver.clean_environ() | {"BENTOML_HOME": str(store.home), "OIP_MODELS": "iris"}
    env |= {"OIP_GRPC_HOST": host, "OIP_GRPC_PORT": number, "BENTOML_DO_NOT_TRACK": "true"}
    second = subprocess.Popen(  # its own session: stopped whole if it does not stop by itself
        liveserver.gateway_argv(http_port),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = second.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        liveserver.stop(second)
        raise AssertionError("a second server on the gRPC port kept running") from None
    assert second.returncode != 0
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"oip-sklearn: the gRPC port {host}:{number} is in use"), last
    with pytest.raises(httpx.ConnectError):  # nothing of it left listening
        httpx.get(f"http://127.0.0.1:{http_port}/v2/health/live", timeout=2)
    assert httpx.get(f"{two_workers.url}/v2/health/ready", timeout=10).status_code == 200
    assert grpc_listeners(two_workers) == 2
    assert all(grpc_live(two_workers.grpc) for _ in range(10))
