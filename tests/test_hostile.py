"""Hostile traffic against the real server: every case of ``tests/data/hostile.json`` answers its
status and ``{"error"}`` without hanging, liveness keeps answering meanwhile, memory stays
bounded, stalled and idle connections are closed, and the connection cap holds.

Time bounds here only say "it does not hang": each is at least ten times what the case takes on
an idle machine (a case's ``seconds`` in the corpus is that figure, rounded up), because a loaded
machine must not fail them. How fast the refusals really are is the benchmark's business.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

import liveserver

from .conftest import LiveServer, Store, start_server, stop_server
from .traffic import IRIS_ROW, Recorded, Traffic, join_all

pytestmark = pytest.mark.e2e
CASES = json.loads((Path(__file__).parent / "data" / "hostile.json").read_text())
LIMITS = {
    "OIP_MAX_BODY_BYTES": str(4 * 2**20),
    "OIP_READ_TIMEOUT_S": "1",  # HEADER_TIMEOUT_S
    "OIP_MAX_BYTES_ELEMENT": "100000",
    "OIP_MAX_CONNECTIONS": "40",
    "OIP_REQUEST_TIMEOUT_S": "10",
}


HEADER_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def hostile(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    log = tmp_path_factory.mktemp("hostile") / "server.log"
    server = start_server(store.home, {"OIP_MODELS": "iris,text", **LIMITS}, log)
    yield server
    stop_server(server)


def build(spec: Any) -> bytes:
    """A case's body (or path): literal text, or generated so the corpus file stays small."""
    if isinstance(spec, str):
        return spec.encode()
    if "gzip_of_spaces" in spec:
        return gzip.compress(b" " * spec["gzip_of_spaces"], compresslevel=9)
    if "latin1" in spec:
        return str(spec["latin1"]).encode("latin-1")
    return (spec["prefix"] + spec["repeat"] * spec["times"] + spec["suffix"]).encode()


HEADROOM = 10
"""Each case may take ten times its ``seconds`` before it counts as a hang."""
MEMORY_GROWTH = 3
"""How much bigger the server's process tree may be after the corpus than before it."""


def test_every_hostile_case_is_a_cheap_v2_error(hostile: LiveServer) -> None:
    slowest_live = 0.0
    stop = threading.Event()

    def probe_liveness() -> None:
        nonlocal slowest_live
        with httpx.Client(base_url=hostile.url, timeout=30) as c:
            while not stop.is_set():
                start = time.monotonic()
                assert c.get("/v2/health/live").status_code == 200
                slowest_live = max(slowest_live, time.monotonic() - start)
                time.sleep(0.02)

    prober = Recorded(probe_liveness, name="liveness-prober")
    prober.start()
    failures = []
    before = liveserver.tree_memory_mib(hostile.process.pid)
    try:
        with httpx.Client(base_url=hostile.url, timeout=120) as c:
            for case in CASES:
                path = build(case["path"]).decode()
                body = build(case["body"])
                headers = {"Content-Type": "application/json", **case.get("headers", {})}
                start = time.monotonic()
                r = c.request(case.get("method", "POST"), path, content=body, headers=headers)
                seconds = time.monotonic() - start
                ok = (
                    r.status_code == case["status"]
                    and r.headers.get("content-type") == "application/json"
                    and list(r.json()) == ["error"]
                    and case["fragment"].lower() in r.json()["error"].lower()
                    and len(r.content) < 2000
                    and seconds < HEADROOM * case["seconds"]
                )
                if not ok:
                    failures.append((case["case"], r.status_code, r.text[:300], seconds))
    finally:
        stop.set()
        join_all([prober])
    assert failures == []
    # the worst case (parsing 3 MB of a million empty inputs, ~0.3 s idle) holds the loop far
    # below a liveness probe's period, even on a loaded machine
    assert slowest_live < HEADROOM * 0.5, slowest_live
    # no case leaves the server much bigger than it was: each is refused at its limit (4 MiB of
    # body here), never decoded whole; measured against this server's own size before the corpus
    after = liveserver.tree_memory_mib(hostile.process.pid)
    print(f"server RSS before the corpus {before['rss_mib']:.0f} MiB, after {after['rss_mib']:.0f}")
    assert after["rss_mib"] < MEMORY_GROWTH * before["rss_mib"], (before, after)
    assert httpx.get(f"{hostile.url}/v2/health/ready").status_code == 200
    assert "Traceback" not in hostile.log.read_text()


def raw(server: LiveServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server ends the connection within ``seconds``, and what it sent first."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
        return True, received
    except TimeoutError:
        return False, received
    except ConnectionResetError:
        return True, received


def test_a_body_shorter_than_its_content_length_is_a_408(hostile: LiveServer) -> None:
    with raw(hostile) as s:
        s.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b'\r\nContent-Length: 1000\r\n\r\n{"inputs":'
        )
        closed, answer = closed_within(s, 60)  # the answer, up to the close it announces
    assert closed
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"OIP_READ_TIMEOUT_S" in answer  # the read timeout (1 s), not the request deadline


def test_slow_headers_are_cut_off(hostile: LiveServer) -> None:
    with raw(hostile) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
        closed, _ = closed_within(s, 10 * HEADER_TIMEOUT_S)
    assert closed
    with raw(hostile) as s:  # an idle connection that never says anything
        closed, _ = closed_within(s, 10 * HEADER_TIMEOUT_S)
    assert closed


def answered(sock: socket.socket) -> bool:
    """Whether a request sent on ``sock`` got an HTTP answer (a refused connection: nothing)."""
    try:
        sock.settimeout(60)
        return sock.recv(65536).startswith(b"HTTP/1.1 200")
    except (ConnectionResetError, BrokenPipeError):
        return False


def test_the_connection_cap_refuses_and_the_server_recovers(hostile: LiveServer) -> None:
    """60 connections at once against a cap of 40: each sends a request at once (well inside
    the header deadline); those the server kept answer it, those over the cap get nothing."""
    conns = [raw(hostile) for _ in range(60)]
    try:
        for s in conns:
            with contextlib.suppress(OSError):  # a refused connection may already be reset
                s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        served = sum(answered(s) for s in conns)
    finally:
        for s in conns:
            s.close()
    assert 0 < served <= 40, served  # the cap acts: without it all 60 would be answered
    assert httpx.get(f"{hostile.url}/v2/health/live").status_code == 200
    assert "OIP_MAX_CONNECTIONS" in hostile.log.read_text()


@pytest.fixture(scope="module")
def guarded_server(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    log = tmp_path_factory.mktemp("auth") / "server.log"
    tokens = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    tokens.write_text("# one token a line\nsecond-token\n")
    env = {
        "OIP_MODELS": "iris",
        "OIP_AUTH_TOKEN": "first-token",
        "OIP_AUTH_TOKENS_FILE": str(tokens),
        "OIP_CORS_ORIGINS": "https://app.example",
        "OIP_ACCESS_LOG": "1",
    }
    server = start_server(store.home, env, log)
    yield server
    stop_server(server)


ROW = IRIS_ROW


def test_bearer_tokens_guard_every_route_but_the_probes(guarded_server: LiveServer) -> None:
    with httpx.Client(base_url=guarded_server.url) as c:
        for path in ("/v2/health/live", "/v2/health/ready", "/livez", "/readyz"):
            assert c.get(path).status_code == 200, path
        for method, path in [
            ("GET", "/v2"),
            ("GET", "/v2/models/iris"),
            ("POST", "/v2/models/iris/infer"),
            ("POST", "/v2/repository/index"),
            ("GET", "/v2/docs"),
            ("GET", "/metrics"),
            ("GET", "/"),
        ]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
                r = c.request(method, path, headers=headers, json=ROW if method == "POST" else None)
                assert r.status_code == 401, (method, path, headers)
                assert r.json() == {
                    "error": "a valid bearer token is required (Authorization: Bearer <token>)"
                }
                assert r.headers["www-authenticate"].startswith("Bearer")
        for token in ("first-token", "second-token"):
            auth = {"Authorization": f"Bearer {token}"}
            assert c.post("/v2/models/iris/infer", json=ROW, headers=auth).status_code == 200
            assert c.get("/metrics", headers=auth).status_code == 200
    log = guarded_server.log.read_text()
    assert "first-token" not in log and "second-token" not in log and "wrong" not in log
    assert "path=/v2/models/iris/infer) (status=200)" in log  # the access log was on


def test_cors_only_for_the_configured_origins(guarded_server: LiveServer) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    with httpx.Client(base_url=guarded_server.url) as c:
        ok = c.options(
            "/v2/models/iris/infer", headers={"Origin": "https://app.example", **preflight}
        )
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        other = c.options(
            "/v2/models/iris/infer", headers={"Origin": "https://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in other.headers
        answer = c.post(
            "/v2/models/iris/infer",
            json=ROW,
            headers={"Origin": "https://app.example", "Authorization": "Bearer first-token"},
        )
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.fixture(scope="module", params=["lane", "http"])
def runner_server(
    request: pytest.FixtureRequest, store: Store, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """iris on the runner, reached over the direct lane (the default) or BentoML's HTTP client
    (``OIP_RUNNER_LANE=0``): each has its own way of seeing a runner die or hang."""
    log = tmp_path_factory.mktemp("faults") / f"server-{request.param}.log"
    env = {
        "OIP_MODELS": "iris",
        "OIP_PLACEMENT": "runner",
        "OIP_REQUEST_TIMEOUT_S": "3",
        "OIP_RUNNER_LANE": "1" if request.param == "lane" else "0",
    }
    server = start_server(store.home, env, log)
    yield server
    stop_server(server)


def runner_process(server: LiveServer) -> psutil.Process:
    for child in psutil.Process(server.process.pid).children(recursive=True):
        if "oip-runner" in " ".join(child.cmdline()):
            return child
    raise AssertionError("no runner process")


def wait_ready(url: str, expected: int, deadline_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        if httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == expected:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"/v2/health/ready never answered {expected} in {deadline_s} s")


def test_a_killed_runner_is_unready_then_recovers_without_a_500(runner_server: LiveServer) -> None:
    with Traffic(runner_server.url, "/v2/models/iris/infer", clients=3) as load:
        time.sleep(1)
        runner_process(runner_server).kill()
        wait_ready(runner_server.url, 503, 60)  # the gateway notices (about 3 s idle)
        wait_ready(runner_server.url, 200, 60)  # BentoML restarts the runner
        time.sleep(1)
    assert 500 not in load.statuses
    assert 503 in load.statuses  # refused fast once the runner is known to be down
    assert set(load.statuses) <= {200, 503, 504}, set(load.statuses)  # 504: calls in flight
    assert load.slowest < 30  # never a hang: the deadline is 3 s


def test_a_hung_runner_is_unready_and_calls_end_at_the_deadline(runner_server: LiveServer) -> None:
    runner = runner_process(runner_server)
    with Traffic(runner_server.url, "/v2/models/iris/infer", clients=3) as load:
        time.sleep(1)
        runner.suspend()  # SIGSTOP
        try:
            wait_ready(runner_server.url, 503, 60)
            time.sleep(4)
        finally:
            runner.resume()
        wait_ready(runner_server.url, 200, 60)
        time.sleep(1)
    assert 500 not in load.statuses
    assert 504 in load.statuses  # calls in flight ended at the deadline
    assert set(load.statuses) <= {200, 503, 504}, set(load.statuses)
    assert load.slowest < 30  # never a hang: the deadline is 3 s


def test_grpc_calls_need_the_token_too(guarded_server: LiveServer) -> None:
    """Raw gRPC calls (no stubs: the KServe SDK's, imported elsewhere in this process, would
    clash with any second copy of the ``inference`` messages)."""
    import grpc

    with grpc.insecure_channel(guarded_server.grpc) as channel:
        live = channel.unary_unary("/inference.GRPCInferenceService/ServerLive")
        health = channel.unary_unary("/grpc.health.v1.Health/Check")
        with pytest.raises(grpc.RpcError) as refused:
            live(b"", timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert live(b"", timeout=10, metadata=[("authorization", "Bearer second-token")]) == (
            b"\x08\x01"  # ServerLiveResponse(live=True)
        )
        assert health(b"", timeout=10) == b"\x08\x01"  # SERVING, no token needed
