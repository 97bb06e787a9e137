"""The upstream seams of ``adapters/bento``, in process: each protection acts in the real upstream
code (uvicorn as BentoML runs it, BentoML's runner client), the start-up check refuses when a
seam is broken, and every package whose internals are touched is pinned at the installed
version."""

from __future__ import annotations

import asyncio
import importlib.metadata
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import bentoml
import pytest
import uvicorn
import uvicorn.config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from adapters.bento import RUNNER_CONNECTION, connections, seams

from .conftest import ROOT


def test_the_seams_hold_with_the_installed_packages() -> None:
    auto = uvicorn.config.HTTP_PROTOCOLS["auto"]
    seams.check()
    assert uvicorn.config.HTTP_PROTOCOLS["auto"] == auto  # the check installs nothing for good


def test_every_touched_package_is_pinned_at_the_installed_version() -> None:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.fullmatch(
            r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)", line.split("#")[0].strip()
        )
        if match:
            pins[match[1].lower().replace("_", "-")] = match[2]
    for name in seams.TOUCHED:
        assert name.lower() in pins, f"{name} is not pinned exactly in requirements.txt"
        assert pins[name.lower()] == importlib.metadata.version(name), name


def _force_plain_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn resolving http='auto' by itself, past its table."""
    load = uvicorn.config.Config.load

    def loaded(self: uvicorn.config.Config) -> None:
        load(self)
        self.http_protocol_class = HttpToolsProtocol

    monkeypatch.setattr(uvicorn.config.Config, "load", loaded)


def _worker_edited(old: str, new: str) -> Callable[[pytest.MonkeyPatch], None]:
    """BentoML's worker with one edit (the source the check reads)."""

    def edit(monkeypatch: pytest.MonkeyPatch) -> None:
        source = seams.worker_source()
        assert old in source  # the edit applies to the pinned BentoML
        monkeypatch.setattr(seams, "worker_source", lambda: source.replace(old, new))

    return edit


BREAKS: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], str]] = {
    "install does nothing": (
        lambda mp: mp.setattr(connections, "install", lambda **_: None),
        "uvicorn cannot run the connection guard for http='auto'",
    ),
    "uvicorn resolves auto past its table": (
        _force_plain_protocol,
        "uvicorn runs HttpToolsProtocol, not the connection guard",
    ),
    "uvicorn renamed a hook the guard extends": (
        lambda mp: mp.delattr(HttpToolsProtocol, "on_message_begin"),
        "has no on_message_begin",
    ),
    "BentoML picks the protocol": (
        _worker_edited("uvicorn.Config(", 'uvicorn.Config(http="h11", '),
        "passes uvicorn http:",
    ),
    "BentoML picks it through its extra options": (
        _worker_edited('uvicorn_extra_options["loop"]', 'uvicorn_extra_options["http"]'),
        "passes uvicorn http:",
    ),
    "BentoML passes options the check cannot read": (
        _worker_edited('uvicorn_extra_options["loop"]', "uvicorn_extra_options[choice]"),
        "passes uvicorn options this check cannot read",
    ),
    "BentoML builds its app past Service.to_asgi": (
        _worker_edited(".to_asgi(", ".build_asgi("),
        "no longer builds its app with Service.to_asgi",
    ),
}


@pytest.mark.parametrize("case", list(BREAKS))
def test_a_broken_seam_refuses_to_start(monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    auto = uvicorn.config.HTTP_PROTOCOLS["auto"]
    breaking, fragment = BREAKS[case]
    breaking(monkeypatch)
    with pytest.raises(SystemExit) as refused:
        seams.require()
    message = str(refused.value)
    assert message.startswith("oip-sklearn: cannot start safely: ") and fragment in message
    assert "\n" not in message and "uvicorn 0." in message  # one line, with the versions
    assert uvicorn.config.HTTP_PROTOCOLS["auto"] == auto


class Uvicorn:
    """A real uvicorn server as BentoML's worker builds it (on a socket it is handed), in a
    thread; any exception in the thread fails the test."""

    def __init__(self) -> None:
        self.go_on = threading.Event()  # /stream sends its last chunk once the test sets it

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            if scope["path"] == "/stream":  # chunked: the first chunk must not wait for the last
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"first", "more_body": True})
                while not self.go_on.is_set():
                    await asyncio.sleep(0.01)
                await send({"type": "http.response.body", "body": b"last"})
                return
            body = b"ok"
            if scope["path"] == "/echo":
                body = (await receive())["body"]
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app=app, log_config=None, workers=1, server_header=False, lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as exc:  # recorded, re-raised in the test
            self.errors.append(exc)

    def __enter__(self) -> Uvicorn:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and not self.errors, self.errors
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
        assert not self.thread.is_alive() and not self.errors, self.errors

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@pytest.fixture(params=["guarded", "unguarded"])
def http_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """uvicorn with the guard installed as the gateway installs it (cap 3, 0.5 s for headers),
    and without it: the same probes must tell them apart, or they prove nothing."""
    # uvicorn's own choice first (another test may have installed the guard in this process)
    monkeypatch.setitem(
        uvicorn.config.HTTP_PROTOCOLS, "auto", uvicorn.config.HTTP_PROTOCOLS["httptools"]
    )
    monkeypatch.setattr(connections.GuardedHttpTools, "header_timeout_s", 0.5)
    monkeypatch.setattr(connections.GuardedHttpTools, "max_connections", 3)
    guarded = request.param == "guarded"
    if guarded:
        connections.install(header_timeout_s=0.5, max_connections=3)
    with Uvicorn() as server:
        yield server, guarded


def test_the_connection_guard_acts_in_uvicorn(http_server: tuple[Uvicorn, bool]) -> None:
    server, guarded = http_server
    with server.connect() as ok:  # a whole request is answered either way
        ok.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ok.recv(65536).startswith(b"HTTP/1.1 200")
    with server.connect() as slow:  # headers that never end: cut off at 0.5 s when guarded
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert closed_within(slow, 5) is guarded
    idle = [server.connect() for _ in range(6)]
    try:
        time.sleep(0.2)  # the server has seen them all
        refused = sum(closed_within(s, 0.2) for s in idle)
    finally:
        for s in idle:
            s.close()
    assert (refused >= 3) is guarded, refused  # over the cap of 3: closed at once


class Written:
    """A transport that records each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_a_response_head_goes_out_with_its_body_in_one_write() -> None:
    transport = Written()
    writes = connections.CoalescedWrites(transport)  # type: ignore[arg-type]
    writes.hold_next = True
    writes.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # the client waits for it: sent at once
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    writes.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    writes.write(b"ok")
    assert transport.writes[1:] == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    writes.write(b"more")  # nothing held any more: straight through
    assert transport.writes[2:] == [b"more"]
    writes.hold_next = True  # a response with no body write (HEAD): flushed when it ends
    writes.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert len(transport.writes) == 3
    writes.flush()
    assert transport.writes[3:] == [b"HTTP/1.1 200 OK\r\n\r\n"]
    writes.hold_next = True  # closed mid-response: what is held goes out first
    writes.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    writes.close()
    assert transport.closed and transport.writes[4:] == [
        b"HTTP/1.1 500 Internal Server Error\r\n\r\n"
    ]
    assert writes.is_closing()  # the rest is the transport's


def recv_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, data  # closed before the marker
        data += chunk
    return data


def test_responses_stay_whole_with_writes_coalesced(monkeypatch: pytest.MonkeyPatch) -> None:
    """HEAD, an empty body, ``Expect: 100-continue`` and a streamed answer, through the guarded
    protocol in a real uvicorn: none waits on a held write."""
    monkeypatch.setitem(
        uvicorn.config.HTTP_PROTOCOLS, "auto", uvicorn.config.HTTP_PROTOCOLS["httptools"]
    )
    guard = connections.GuardedHttpTools  # put back after: install sets them for the process
    monkeypatch.setattr(guard, "header_timeout_s", guard.header_timeout_s)
    monkeypatch.setattr(guard, "max_connections", guard.max_connections)
    connections.install(header_timeout_s=10, max_connections=100)
    with Uvicorn() as server, server.connect() as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert recv_until(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert recv_until(sock, b"ok").startswith(b"HTTP/1.1 200")
        request = (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        sock.sendall(request)
        assert recv_until(sock, b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"ping")
        assert recv_until(sock, b"ping").startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"first" in recv_until(sock, b"first")  # while the app still holds "last"
        server.go_on.set()
        assert recv_until(sock, b"0\r\n\r\n").find(b"last") >= 0


def _session_is_kept(runner_connection: dict[str, Any] | None) -> bool:
    """Whether BentoML's client to a service with this ``runner_connection`` keeps one HTTP
    session over 300 calls (its default replaces it every 100)."""
    from _bentoml_impl.client.proxy2 import RemoteProxy

    options = {"runner_connection": runner_connection} if runner_connection else {}

    @bentoml.service(name=f"probe-{len(options)}", **options)
    class Probe:
        @bentoml.api
        def ready(self) -> bool:
            return True

    service: Any = Probe
    service.inject_config()  # what each BentoML worker does before it builds clients
    proxy = RemoteProxy("http://127.0.0.1:9", service=service)

    async def sessions() -> int:
        manager = proxy._async._session_manager
        seen = {id(await manager.get_session()) for _ in range(300)}
        await manager.close()
        return len(seen)

    return asyncio.run(sessions()) == 1


def test_bentoml_keeps_the_runner_session_for_the_process_life() -> None:
    assert _session_is_kept(RUNNER_CONNECTION)
    assert not _session_is_kept(None)  # the default the setting exists for
