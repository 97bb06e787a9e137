"""The runner's direct lane (adapters/execution/lane.py) over real Unix sockets in a temporary
directory: a server whose handler is a plain coroutine, and the gateway's ``Lanes``.

The live runner-placement tests (test_e2e, test_unload_live, test_hostile, test_concurrency ...)
run every call through it, with BentoML's batching behind it."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import tempfile
import types
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import uvloop

from adapters.execution.lane import (
    HEADER,
    MAX_PATH,
    Handle,
    Lane,
    LaneFailed,
    LaneLost,
    LaneOverloaded,
    Lanes,
    LaneServer,
    socket_path,
)
from adapters.execution.runner import RunnerClient
from adapters.protocol.errors import NotReady, Overloaded

T = TypeVar("T")


class Busy(Exception):
    """What the runner's batching raises for a call queued too long (BentoML's 503)."""


Run = Callable[[Callable[[], Awaitable[T]]], T]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Callable[[], Awaitable[Any]]], Any]:
    """Runs a test's coroutine on asyncio's loop and on uvloop's, which BentoML's workers run
    (a transport closed under a write fails differently on each)."""

    def runner(main: Callable[[], Awaitable[Any]]) -> Any:
        async def bounded() -> Any:
            return await asyncio.wait_for(main(), 30)  # a hang guard only

        if request.param == "uvloop":
            return uvloop.run(bounded())
        return asyncio.run(bounded())

    return runner


@pytest.fixture
def directory() -> Iterator[Path]:
    # NOTE: a short path of its own: a Unix socket's path holds ~100 bytes, pytest's tmp_path
    # can be longer; mkdtemp makes it private (0700), as the runner's shared directory is
    path = Path(tempfile.mkdtemp(prefix="lane-"))
    yield path
    shutil.rmtree(path)


async def echo(api: str, calls: list[Any]) -> list[Any]:
    """A runner's answer per call: the API's name and the rows doubled."""
    if api == "busy":
        raise Busy("process is overloaded")
    if api == "broken":
        raise ValueError("no such estimator")
    return [(api, rows * 2) for rows in calls]


async def serving(directory: Path, handle: Handle = echo, index: int = 1) -> LaneServer:
    """A runner worker's lane, listening in ``directory``."""
    server = LaneServer(handle, overloaded=(Busy,))
    assert await server.open(socket_path(directory, index))
    return server


async def a_lane(lanes: Lanes) -> Lane:
    lane = await lanes.pick()
    assert lane is not None
    return lane


def gated(gate: asyncio.Event) -> Handle:
    """A runner's answer (the calls themselves) once ``gate`` is set."""

    async def held(api: str, calls: list[Any]) -> list[Any]:
        await gate.wait()
        return calls

    return held


def test_a_call_round_trips_through_the_socket(directory: Path, run: Run[None]) -> None:
    async def main() -> None:
        server = LaneServer(echo, overloaded=(Busy,))
        path = socket_path(directory, 1)
        assert await server.open(path)
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0  # the user's alone
        lanes = Lanes(directory)
        lane = await a_lane(lanes)
        rows = np.arange(8.0).reshape(2, 4)
        ((api, doubled),) = await lane.call("run_iris", [rows])
        assert api == "run_iris"
        np.testing.assert_array_equal(doubled, rows * 2)
        lanes.close()
        await server.close()
        assert not path.exists()

    run(main)


def test_calls_in_flight_are_answered_in_any_order_each_to_its_caller(
    directory: Path, run: Run[None]
) -> None:
    release: dict[int, asyncio.Event] = {}

    async def held(api: str, calls: list[Any]) -> list[Any]:
        await release[calls[0]].wait()
        return [c * 10 for c in calls]

    async def main() -> None:
        for i in range(5):
            release[i] = asyncio.Event()
        server = await serving(directory, held)
        lanes = Lanes(directory)
        lane = await a_lane(lanes)
        calls = [asyncio.create_task(lane.call("run", [i])) for i in range(5)]
        await asyncio.sleep(0.05)
        assert len(lane.pending) == 5
        for i in reversed(range(5)):  # the last sent answered first
            release[i].set()
            assert await calls[i] == [i * 10]
        assert not lane.pending
        lanes.close()
        await server.close()

    run(main)


def test_overloaded_and_failed_calls_are_told_apart(directory: Path, run: Run[None]) -> None:
    async def main() -> None:
        server = await serving(directory)
        lane = await a_lane(Lanes(directory))
        with pytest.raises(LaneOverloaded, match="overloaded"):
            await lane.call("busy", [1])
        with pytest.raises(LaneFailed, match="ValueError: no such estimator"):
            await lane.call("broken", [1])
        assert await lane.call("run", [1]) == [("run", 2)]  # the lane still serves
        await server.close()

    run(main)


def test_a_worker_gone_mid_call_fails_its_calls_and_no_lane_is_offered(
    directory: Path, run: Run[None]
) -> None:
    entered = asyncio.Event()

    async def forever(api: str, calls: list[Any]) -> list[Any]:
        entered.set()
        await asyncio.Event().wait()
        return []

    async def main() -> None:
        server = await serving(directory, forever)
        lanes = Lanes(directory, rescan_s=0)
        lane = await a_lane(lanes)
        call = asyncio.create_task(lane.call("run", [1]))
        await entered.wait()
        await server.close()  # as the worker's death: its connections close
        with pytest.raises(LaneLost):
            await call
        assert lane.closed
        assert await lanes.pick() is None  # the caller takes BentoML's HTTP path

    run(main)


def test_a_stale_socket_is_skipped_and_a_restarted_worker_is_found(
    directory: Path, run: Run[None]
) -> None:
    async def main() -> None:
        path = socket_path(directory, 1)
        first = LaneServer(echo, overloaded=(Busy,))
        await first.open(path)
        first.path = None  # it dies without removing its socket file
        await first.close()
        assert first.server is not None
        await first.server.wait_closed()
        assert path.exists()
        lanes = Lanes(directory, rescan_s=0)
        assert await lanes.pick() is None  # refused: nothing to use
        restarted = LaneServer(echo, overloaded=(Busy,))
        await restarted.open(path)  # its successor replaces the file
        lane = await a_lane(lanes)
        assert await lane.call("run", [3]) == [("run", 6)]
        lanes.close()
        await restarted.close()

    run(main)


def test_calls_spread_over_workers_by_what_each_has_in_flight(
    directory: Path, run: Run[None]
) -> None:
    gate = asyncio.Event()

    async def main() -> None:
        servers = [await serving(directory, gated(gate), index) for index in (1, 2)]
        lanes = Lanes(directory)
        picked = []
        calls = []
        for i in range(6):
            lane = await a_lane(lanes)
            picked.append(lane.path.name)
            calls.append(asyncio.create_task(lane.call("run", [i])))
            await asyncio.sleep(0)  # the call is written and pending
        assert sorted(picked) == ["lane-1.sock"] * 3 + ["lane-2.sock"] * 3
        gate.set()
        assert [await c for c in calls] == [[i] for i in range(6)]
        lanes.close()
        for server in servers:
            await server.close()

    run(main)


def test_a_directory_too_deep_for_a_unix_socket_opens_no_lane(
    directory: Path, run: Run[None]
) -> None:
    deep = directory / ("d" * (MAX_PATH - len(str(directory))))

    async def main() -> None:
        assert not await LaneServer(echo, overloaded=(Busy,)).open(deep / "lane-1.sock")

    run(main)


def test_no_socket_no_lane(directory: Path, run: Run[None]) -> None:
    async def main() -> None:
        assert await Lanes(directory).pick() is None
        assert await Lanes(directory / "absent").pick() is None

    run(main)


def test_a_directory_where_no_socket_can_be_made_opens_no_lane(
    directory: Path, run: Run[None]
) -> None:
    (directory / "file").touch()

    async def main() -> None:
        assert not await LaneServer(echo, overloaded=(Busy,)).open(directory / "file" / "l.sock")

    run(main)


def test_a_frame_that_cannot_be_read_fails_its_own_call_only(
    directory: Path, run: Run[None]
) -> None:
    async def main() -> None:
        server = await serving(directory)
        lane = await a_lane(Lanes(directory))
        kept = asyncio.create_task(lane.call("run", [1]))
        ident = 10**6
        answer = asyncio.get_running_loop().create_future()
        lane.pending[ident] = answer
        lane.writer.write(HEADER.pack(4, ident) + b"junk")  # not a pickle
        outcome, message = await answer
        assert outcome == "error" and "Unpickling" in message, message
        assert await kept == [("run", 2)]
        assert await lane.call("run", [5]) == [("run", 10)]  # the connection serves on
        await server.close()

    run(main)


def test_a_caller_that_gives_up_leaves_the_lane_clean(directory: Path, run: Run[None]) -> None:
    gate = asyncio.Event()

    async def main() -> None:
        server = await serving(directory, gated(gate))
        lane = await a_lane(Lanes(directory))
        with pytest.raises(TimeoutError):  # a request's deadline
            await asyncio.wait_for(lane.call("run", [1]), 0.05)
        assert not lane.pending
        gate.set()  # its late answer arrives and is dropped
        assert await lane.call("run", [2]) == [2]
        assert not lane.pending and not lane.closed
        await server.close()

    run(main)


def test_no_lane_in_a_directory_others_can_enter(directory: Path, run: Run[None]) -> None:
    async def main() -> None:
        server = LaneServer(echo, overloaded=(Busy,))
        assert await server.open(socket_path(directory, 1))
        directory.chmod(0o755)  # someone else's, or made by someone else: not to be trusted
        assert await Lanes(directory).pick() is None
        assert not await LaneServer(echo, overloaded=(Busy,)).open(socket_path(directory, 2))
        directory.chmod(0o700)
        await server.close()

    run(main)


VERSION = types.SimpleNamespace(name="iris", tag="iris:v1")  # what RunnerClient reads of one


def client(directory: Path) -> RunnerClient:
    """The gateway's runner client with lanes only (no BentoML client: a call that took the
    HTTP path would fail on ``None``)."""
    return RunnerClient(None, gateway=0, lanes=Lanes(directory))


def dies_under_calls(server: list[LaneServer]) -> Handle:
    async def handle(api: str, calls: list[Any]) -> list[Any]:
        await server[0].close()  # the worker dies with the call in flight
        await asyncio.Event().wait()
        return []

    return handle


def test_a_call_whose_worker_dies_is_sent_to_another(directory: Path, run: Run[None]) -> None:
    async def main() -> None:
        dying: list[LaneServer] = []
        dying.append(LaneServer(dies_under_calls(dying), overloaded=(Busy,)))
        await dying[0].open(socket_path(directory, 1))  # picked first: the lowest path
        alive = await serving(directory, index=2)
        runner = client(directory)
        rows = np.ones((1, 4))
        (api, doubled) = await runner._call(VERSION, ("predict",), rows)  # type: ignore[arg-type]
        assert api == "run"
        assert doubled[0] == "iris:v1" and doubled[1] == ("predict",)  # the call, as sent
        assert runner._known is None  # nothing said not ready: another worker answered
        await alive.close()

    run(main)


def test_a_call_whose_only_worker_dies_is_a_503_to_retry(directory: Path, run: Run[None]) -> None:
    async def main() -> None:
        dying: list[LaneServer] = []
        dying.append(LaneServer(dies_under_calls(dying), overloaded=(Busy,)))
        await dying[0].open(socket_path(directory, 1))
        runner = client(directory)
        with pytest.raises(NotReady) as raised:
            await runner._call(VERSION, ("predict",), np.ones((1, 4)))  # type: ignore[arg-type]
        assert raised.value.status_code == 503
        assert raised.value.headers is not None and raised.value.headers["Retry-After"] == "1"
        assert runner._known is False  # readiness is asked again before the next call

    run(main)


def test_a_call_refused_by_the_batching_is_overloaded(directory: Path, run: Run[None]) -> None:
    async def main() -> None:
        server = await serving(directory)
        runner = RunnerClient(None, gateway=0, lanes=Lanes(directory), apis={"iris": "busy"})
        with pytest.raises(Overloaded):
            await runner._call(VERSION, ("predict",), np.ones((1, 4)))  # type: ignore[arg-type]
        await server.close()

    run(main)


def test_calls_on_a_lane_closing_under_them_are_lost_never_an_error(
    directory: Path, run: Run[None]
) -> None:
    """A worker that hangs up at once (here a bare socket): every call, before, while and after
    the lane learns of it, is LaneLost, a V2 503, never a 500 (on uvloop a write to a transport
    closed under it raises RuntimeError, not ConnectionError)."""

    async def main() -> None:
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(socket_path(directory, 1)))
            listener.listen()
            lane = await a_lane(Lanes(directory))
            accepted, _ = listener.accept()
            accepted.close()
            for _ in range(50):  # before, while and after the lane learns of the close
                with pytest.raises(LaneLost):
                    await lane.call("run", [1])
                await asyncio.sleep(0)

    run(main)


def test_start_up_refuses_a_bentoml_whose_to_asgi_the_runner_would_not_repeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RunnerService.to_asgi repeats BentoML's to keep its app factory (the lane's way into the
    batching): a BentoML whose to_asgi does more, or whose batch_infer changed, is refused."""
    import bentoml
    from _bentoml_impl.server.app import ServiceAppFactory

    from adapters.bento import seams

    seams.check()

    def to_asgi(self: Any, is_main: bool = True) -> Any:
        self.inject_config()
        self.something_new()
        return ServiceAppFactory(self, is_main=is_main)()

    with monkeypatch.context() as patched:
        patched.setattr(bentoml.Service, "to_asgi", to_asgi)
        with pytest.raises(seams.SeamBroken, match="to_asgi is no longer what RunnerService"):
            seams.check()

    async def batch_infer(self: Any, name: str, args: Any) -> Any:
        return None

    monkeypatch.setattr(ServiceAppFactory, "batch_infer", batch_infer)
    with pytest.raises(seams.SeamBroken, match="batch_infer no longer takes"):
        seams.check()
